"""Shared pieces of the MNIST scripts: data, normalisation, loaders, and the train and test loops.

    >>> import common as c
    >>> images, labels = next(iter(c.get_test_loader()))
    >>> labels
    tensor([7, 2, 1, 0, 4, 1, 4, 9, 5, 9])

The loaders slice mini-batches out of whole tensors (see tensor_loader.py). For the same seed
they give exactly the mini-batches of a torch.utils.data.DataLoader over the torchvision
dataset with `transformations`, which reference_pipeline.py keeps for tests and benchmarks.
"""

import time
from pathlib import Path

import torch
from torchvision import datasets, transforms

from errors import UsageError
from extended_data import ExtendedMNIST, load_or_build_extended_data
from mnist_files import prepare_mnist_files
from tensor_loader import TensorLoader

IMAGE_WIDTH = 28
BATCH_SIZE = 10

# Mini-batch size for measuring test accuracy. It changes only the speed, never the result,
# because evaluation has no gradient step.
EVAL_BATCH_SIZE = 1000

# The data/ folder beside this file, so the scripts find the shipped MNIST from any directory.
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

# Mean and standard deviation of the pixels after scaling to [0, 1]: the published figures of
# the extended training set. A float64 computation gives a mean of 0.1307;
# data_normalization_calculations.md shows both and why the published 0.1305 is kept.
normalization = transforms.Normalize((0.1305,), (0.3081,))
transformations = transforms.Compose([transforms.ToTensor(), normalization])

# Training stops when the loss is NaN or infinite; the latest loss is checked this often
# (in mini-batches), which costs one host synchronisation each time.
DIVERGENCE_CHECK_INTERVAL = 100


def get_dataset(root=DEFAULT_DATA_DIR, train=True, transform=transformations, download=True):
    """Return the MNIST training or test set as a torchvision.datasets.MNIST.

    The IDX files are unpacked from the shipped .gz copies and verified first; torchvision's
    download is tried only when neither copy is present.
    """
    prepare_mnist_files(root, download)
    return datasets.MNIST(root, train=train, transform=transform, download=False)


def get_extended_dataset(root=DEFAULT_DATA_DIR, transform=transformations, download=True):
    """Return the 300,000-image extended training set (see extended_data.py)."""
    training_set = get_dataset(root, train=True, transform=None, download=download)
    cache_folder = Path(root) / "MNIST" / "extended"
    images, labels = load_or_build_extended_data(cache_folder, training_set.data, training_set.targets)
    return ExtendedMNIST(images, labels, transform)


def get_loader(dataset, batch_size=BATCH_SIZE, shuffle=True, device="cpu"):
    """Return a TensorLoader over an MNIST-like dataset (with uint8 .data and int64 .targets).

    The mini-batches are always normalised with `normalization`, whatever transform the
    dataset object carries for per-item access.
    """
    return TensorLoader(
        dataset.data,
        dataset.targets,
        batch_size,
        shuffle,
        normalization.mean,
        normalization.std,
        device=device,
        dataset=dataset,
    )


def get_train_loader(batch_size=BATCH_SIZE, root=DEFAULT_DATA_DIR, device="cpu"):
    """Return a shuffled loader over the 60,000 training images."""
    return get_loader(get_dataset(root, train=True), batch_size, shuffle=True, device=device)


def get_test_loader(batch_size=BATCH_SIZE, root=DEFAULT_DATA_DIR, device="cpu"):
    """Return a loader over the 10,000 test images, in file order."""
    return get_loader(get_dataset(root, train=False), batch_size, shuffle=False, device=device)


def get_extended_train_loader(batch_size=BATCH_SIZE, root=DEFAULT_DATA_DIR, device="cpu"):
    """Return a shuffled loader over the 300,000 images of the extended training set."""
    return get_loader(get_extended_dataset(root), batch_size, shuffle=True, device=device)


def default_device():
    """Return the current accelerator (CUDA, MPS, XPU, ...) when one is available, else the CPU."""
    if torch.accelerator.is_available():
        return torch.accelerator.current_accelerator()
    return torch.device("cpu")


class TrainingDiverged(UsageError):
    """The loss became NaN or infinite."""


def train_epoch(model, data_loader, loss_function, optimizer, epoch, num_epochs, log_interval=0):
    """Run one epoch of mini-batch SGD; return the loss of every mini-batch as a 1-D tensor.

    Every `log_interval` mini-batches (0: never) it prints the step line
    `Epoch [1/30], Step [100/6000], Loss: 0.0797`.
    """
    model.train()
    step_count = len(data_loader)
    losses = []

    for step, (images, labels) in enumerate(data_loader, start=1):
        optimizer.zero_grad(set_to_none=True)
        outputs = model(images)
        loss = loss_function(outputs, labels)
        loss.backward()
        optimizer.step()

        # Keeping the loss as a tensor avoids a host synchronisation on every step.
        losses.append(loss.detach())

        if log_interval and step % log_interval == 0:
            print(f"Epoch [{epoch}/{num_epochs}], Step [{step}/{step_count}], Loss: {loss.item():.4f}")
        if step % DIVERGENCE_CHECK_INTERVAL == 0 and not torch.isfinite(loss):
            raise_divergence(losses, epoch, step_count, optimizer)

    losses = torch.stack(losses)
    if not torch.isfinite(losses).all():
        raise_divergence(losses, epoch, step_count, optimizer)
    return losses


def raise_divergence(losses, epoch, step_count, optimizer):
    """Raise TrainingDiverged naming the first mini-batch whose loss was not finite."""
    finite = torch.isfinite(torch.stack(list(losses)))
    first_bad_step = int((~finite).nonzero()[0]) + 1
    bad_loss = float(losses[first_bad_step - 1])
    learning_rate = optimizer.param_groups[0]["lr"]
    raise TrainingDiverged(
        f"Training diverged: the loss became {bad_loss} at epoch {epoch}, step "
        f"{first_bad_step}/{step_count}, with learning rate {learning_rate}. Try a smaller --lr "
        f"(or a smaller --wd)."
    )


def evaluate(model, data_loader):
    """Return the fraction of images in data_loader that the model classifies correctly."""
    model.eval()
    correct = 0
    total = 0

    with torch.no_grad():
        for images, labels in data_loader:
            outputs = model(images)
            predictions = outputs.argmax(dim=1)
            correct = correct + (predictions == labels).sum()
            total += len(labels)

    return int(correct) / total


def test_network(model, data_loader, epoch_info=""):
    """Print and return the test accuracy: `Test data results: 0.9612[, epoch_info]`."""
    accuracy = evaluate(model, data_loader)
    line = f"Test data results: {accuracy:.4f}"
    if epoch_info:
        line += f", {epoch_info}"
    print(line)
    return accuracy


def train_network(
    model,
    data_loader,
    num_epochs,
    loss_function,
    optimizer,
    test_loader=None,
    log_interval=0,
    history=None,
    on_epoch_end=None,
    quiet=False,
):
    """Train with mini-batch SGD for num_epochs, measuring test accuracy after every epoch.

    history: records of epochs already done (when resuming a checkpoint); training goes on
    from the next epoch. on_epoch_end(history) runs after every epoch, for example to save a
    checkpoint. Returns the history: one dict per epoch with epoch, accuracy, mean_loss and
    seconds.
    """
    if test_loader is None:
        device = getattr(data_loader, "device", "cpu")
        test_loader = get_test_loader(EVAL_BATCH_SIZE, device=device)
    history = list(history or [])

    for epoch in range(len(history) + 1, num_epochs + 1):
        start = time.perf_counter()
        losses = train_epoch(model, data_loader, loss_function, optimizer, epoch, num_epochs, log_interval)
        accuracy = evaluate(model, test_loader)
        seconds = time.perf_counter() - start

        record = {"epoch": epoch, "accuracy": accuracy, "mean_loss": float(losses.mean()), "seconds": seconds}
        history.append(record)
        if not quiet:
            total_seconds = sum(item["seconds"] for item in history)
            print(
                f"Test data results: {accuracy:.4f}, Epoch {epoch}/{num_epochs} "
                f"({seconds:.1f} s, total {total_seconds:.1f} s)"
            )
        if on_epoch_end is not None:
            on_epoch_end(history)

    return history


def summarize(history):
    """Return the closing line of a run: final and best accuracy with their epochs, total time."""
    final = history[-1]
    best = max(history, key=lambda record: record["accuracy"])
    total_seconds = sum(record["seconds"] for record in history)
    return (
        f"Final test accuracy {final['accuracy']:.4f} (epoch {final['epoch']}), "
        f"best {best['accuracy']:.4f} (epoch {best['epoch']}), total time {total_seconds:.1f} s"
    )
