"""The original per-image pipeline, kept as the reference that the fast path must reproduce.

Here every image goes through PIL, transforms.ToTensor and transforms.Normalize on its own,
and torch.utils.data.DataLoader collates mini-batches. One-hot targets are built from Python
lists, and the extended set is built one image at a time with numpy.roll. The optimizer is
torch.optim.SGD with its default (per-parameter) implementation. The tests compare the fast
loaders and training step with these, and benchmarks/ times both.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader

import common as c


def get_reference_loader(dataset, batch_size=c.BATCH_SIZE, shuffle=True):
    """Return a DataLoader that transforms one image at a time, with no worker processes."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)


def get_reference_train_loader(batch_size=c.BATCH_SIZE, root=c.DEFAULT_DATA_DIR):
    return get_reference_loader(c.get_dataset(root, train=True), batch_size, shuffle=True)


def get_reference_test_loader(batch_size=c.BATCH_SIZE, root=c.DEFAULT_DATA_DIR):
    return get_reference_loader(c.get_dataset(root, train=False), batch_size, shuffle=False)


def get_reference_extended_train_loader(batch_size=c.BATCH_SIZE, root=c.DEFAULT_DATA_DIR):
    return get_reference_loader(c.get_extended_dataset(root), batch_size, shuffle=True)


def expand_expected_output_per_sample(labels, output_size):
    """Return one-hot targets [N, output_size] built one label at a time from Python lists."""
    rows = []
    for label in labels.tolist():
        row = [0.0] * output_size
        row[label] = 1.0
        rows.append(row)
    return torch.tensor(rows)


def create_reference_optimizer(model, learning_rate, weight_decay=0.0):
    """Return torch.optim.SGD with its default implementation, which on the CPU is a per-parameter loop."""
    return torch.optim.SGD(model.parameters(), lr=learning_rate, weight_decay=weight_decay)


def shift_image_per_image(image, row_shift, column_shift):
    """Shift one 2-D image with numpy.roll and blank the row or column that wrapped around."""
    shifted = np.roll(image, (row_shift, column_shift), axis=(0, 1))
    if row_shift == 1:
        shifted[0, :] = 0
    elif row_shift == -1:
        shifted[-1, :] = 0
    if column_shift == 1:
        shifted[:, 0] = 0
    elif column_shift == -1:
        shifted[:, -1] = 0
    return shifted


# (row shift, column shift) of the copies that follow each image: right, left, up, down. They
# are written out here instead of imported from extended_data.py, so that the tests compare
# the fast build with an independent definition of the order.
PER_IMAGE_SHIFTS = ((0, 1), (0, -1), (-1, 0), (1, 0))


def build_extended_data_per_image(images, labels):
    """Return the extended set built with a Python loop: each image, then right, left, up, down."""
    images = images.numpy()
    extended_images = []
    extended_labels = []
    for image, label in zip(images, labels.tolist()):
        extended_images.append(image)
        extended_labels.append(label)
        for row_shift, column_shift in PER_IMAGE_SHIFTS:
            extended_images.append(shift_image_per_image(image, row_shift, column_shift))
            extended_labels.append(label)

    return torch.from_numpy(np.stack(extended_images)), torch.tensor(extended_labels)


def train_epoch_reference(model, data_loader, loss_function, optimizer):
    """Run one epoch the original way: zero_grad, forward, loss, backward, step, loss.item()."""
    model.train()
    total_loss = 0.0
    for images, labels in data_loader:
        optimizer.zero_grad()
        outputs = model(images)
        loss = loss_function(outputs, labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    return total_loss / len(data_loader)


def evaluate_reference(model, data_loader):
    """Return the test accuracy, counted one mini-batch at a time with .item()."""
    model.eval()
    correct = 0
    total = 0
    with torch.no_grad():
        for images, labels in data_loader:
            predictions = model(images).argmax(dim=1)
            correct += (predictions == labels).sum().item()
            total += len(labels)
    return correct / total
