"""Tests that the fast path reproduces the reference pipeline bit for bit.

The fast path is TensorLoader (common.get_*_loader), one-hot targets by indexing, foreach SGD and
zero_grad(set_to_none=True). The reference is reference_pipeline.py: a DataLoader that transforms
one PIL image at a time, one-hot targets from Python lists and the default SGD loop. For the same
seed both must produce equal mini-batches, equal weights after training and the same random
number generator state.
"""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

import common as c
import mnist_files
import pytorch_mnist
import pytorch_mnist_convnet
import reference_pipeline as r

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RAW_FOLDER = REPO_ROOT / "data" / "MNIST" / "raw"

SEED = 1
COMPARED_BATCHES = 200
EXTENDED_COMPARED_BATCHES = 50
DENSE_TRAINING_STEPS = 300

# Short epochs for the training comparisons: the first images of the training set, and the
# first images of the test set for the accuracy pass between epochs.
SHORT_EPOCH_IMAGES = 300
SHORT_TEST_IMAGES = 2000

CONVNET_LEARNING_RATE = 0.005
CONVNET_WEIGHT_DECAY = 0.00005


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A temporary data folder with copies of the shipped .gz files, for the extended-data cache."""
    root = tmp_path_factory.mktemp("data")
    raw = mnist_files.raw_folder(root)
    raw.mkdir(parents=True)
    for name in mnist_files.MNIST_FILES:
        shutil.copy(SHIPPED_RAW_FOLDER / (name + ".gz"), raw / (name + ".gz"))
    return root


@pytest.fixture(scope="module")
def training_set():
    return c.get_dataset(train=True)


@pytest.fixture(scope="module")
def mnist_test_set():
    return c.get_dataset(train=False)


def first_batches(loader, count):
    batches = []
    for images, labels in loader:
        batches.append((images, labels))
        if len(batches) == count:
            break
    return batches


def collect_epochs(loader, epochs, count):
    """Seed the global generator, then return the first `count` mini-batches of each epoch."""
    torch.manual_seed(SEED)
    return [first_batches(loader, count) for _ in range(epochs)]


def assert_same_batches(fast_batches, reference_batches):
    assert len(fast_batches) == len(reference_batches)
    for index, ((fast_images, fast_labels), (reference_images, reference_labels)) in enumerate(
        zip(fast_batches, reference_batches)
    ):
        assert torch.equal(fast_labels, reference_labels), f"labels of mini-batch {index}"
        assert torch.equal(fast_images, reference_images), f"images of mini-batch {index}"


def assert_same_parameters(fast_model, reference_model):
    reference_parameters = dict(reference_model.named_parameters())
    for name, parameter in fast_model.named_parameters():
        assert torch.equal(parameter, reference_parameters[name]), name


def fast_subset_loader(dataset, count, batch_size, shuffle):
    """A TensorLoader over the first `count` images of an MNIST dataset, through common.get_loader."""
    subset = SimpleNamespace(data=dataset.data[:count], targets=dataset.targets[:count])
    return c.get_loader(subset, batch_size, shuffle=shuffle)


def reference_subset_loader(dataset, count, batch_size, shuffle):
    return r.get_reference_loader(Subset(dataset, range(count)), batch_size, shuffle=shuffle)


# Mini-batches.


def test_train_batches_match_reference():
    fast_epochs = collect_epochs(c.get_train_loader(), 2, COMPARED_BATCHES)
    reference_epochs = collect_epochs(r.get_reference_train_loader(), 2, COMPARED_BATCHES)

    assert_same_batches(fast_epochs[0], reference_epochs[0])
    assert_same_batches(fast_epochs[1], reference_epochs[1])


def test_train_batches_reshuffled_each_epoch():
    first_epoch, second_epoch = collect_epochs(c.get_train_loader(), 2, COMPARED_BATCHES)
    first_labels = torch.cat([labels for _images, labels in first_epoch])
    second_labels = torch.cat([labels for _images, labels in second_epoch])
    assert not torch.equal(first_labels, second_labels)


def test_test_batches_match_reference():
    fast_batches = list(c.get_test_loader(c.EVAL_BATCH_SIZE))
    reference_batches = list(r.get_reference_test_loader(c.EVAL_BATCH_SIZE))

    assert len(fast_batches) == 10
    assert_same_batches(fast_batches, reference_batches)


def test_extended_batches_match_reference(data_root):
    fast_loader = c.get_extended_train_loader(root=data_root)
    reference_loader = r.get_reference_extended_train_loader(root=data_root)

    (fast_batches,) = collect_epochs(fast_loader, 1, EXTENDED_COMPARED_BATCHES)
    (reference_batches,) = collect_epochs(reference_loader, 1, EXTENDED_COMPARED_BATCHES)

    assert len(fast_loader) == 30000
    assert_same_batches(fast_batches, reference_batches)


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in_order"])
def test_loader_rng_draws_match_dataloader(shuffle, mnist_test_set):
    fast_loader = fast_subset_loader(mnist_test_set, SHORT_TEST_IMAGES, c.EVAL_BATCH_SIZE, shuffle)
    reference_loader = reference_subset_loader(mnist_test_set, SHORT_TEST_IMAGES, c.EVAL_BATCH_SIZE, shuffle)

    torch.manual_seed(SEED)
    seeded_state = torch.get_rng_state()
    for _batch in fast_loader:
        pass
    fast_state = torch.get_rng_state()

    torch.manual_seed(SEED)
    for _batch in reference_loader:
        pass
    reference_state = torch.get_rng_state()

    assert not torch.equal(fast_state, seeded_state)
    assert torch.equal(fast_state, reference_state)


# Training.


def reference_mse_loss(outputs, labels):
    return nn.functional.mse_loss(outputs, r.expand_expected_output_per_sample(labels, pytorch_mnist.OUTPUT_SIZE))


def test_dense_training_matches_reference():
    torch.manual_seed(SEED)
    fast_model = pytorch_mnist.Net()
    initial_state = {name: value.clone() for name, value in fast_model.state_dict().items()}
    loss_function = pytorch_mnist.create_loss_function(nn.MSELoss())
    optimizer = pytorch_mnist.create_optimizer(fast_model, pytorch_mnist.DEFAULT_LEARNING_RATE)
    for _step, (images, labels) in zip(range(DENSE_TRAINING_STEPS), c.get_train_loader()):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(fast_model(images), labels)
        loss.backward()
        optimizer.step()

    torch.manual_seed(SEED)
    reference_model = pytorch_mnist.Net()
    reference_optimizer = r.create_reference_optimizer(reference_model, pytorch_mnist.DEFAULT_LEARNING_RATE)
    for _step, (images, labels) in zip(range(DENSE_TRAINING_STEPS), r.get_reference_train_loader()):
        reference_optimizer.zero_grad()
        loss = reference_mse_loss(reference_model(images), labels)
        loss.backward()
        reference_optimizer.step()

    assert optimizer.param_groups[0]["foreach"] is True
    assert not torch.equal(fast_model.hidden_layer.weight, initial_state["hidden_layer.weight"])
    assert_same_parameters(fast_model, reference_model)


def test_final_convnet_training_matches_reference(training_set, mnist_test_set):
    config = {"net": "final", "lr": CONVNET_LEARNING_RATE, "wd": CONVNET_WEIGHT_DECAY}

    torch.manual_seed(SEED)
    fast_model = pytorch_mnist_convnet.build_model(config)
    optimizer = pytorch_mnist_convnet.build_optimizer(fast_model, config)
    loss_function = pytorch_mnist_convnet.build_loss_function(config)
    train_loader = fast_subset_loader(training_set, SHORT_EPOCH_IMAGES, c.BATCH_SIZE, shuffle=True)
    test_loader = fast_subset_loader(mnist_test_set, SHORT_TEST_IMAGES, c.EVAL_BATCH_SIZE, shuffle=False)
    fast_accuracies = []
    for epoch in (1, 2):
        c.train_epoch(fast_model, train_loader, loss_function, optimizer, epoch, 2)
        fast_accuracies.append(c.evaluate(fast_model, test_loader))

    torch.manual_seed(SEED)
    reference_model = pytorch_mnist_convnet.build_model(config)
    reference_optimizer = r.create_reference_optimizer(reference_model, CONVNET_LEARNING_RATE, CONVNET_WEIGHT_DECAY)
    reference_train_loader = reference_subset_loader(training_set, SHORT_EPOCH_IMAGES, c.BATCH_SIZE, shuffle=True)
    reference_test_loader = reference_subset_loader(mnist_test_set, SHORT_TEST_IMAGES, c.EVAL_BATCH_SIZE, shuffle=False)
    reference_accuracies = []
    for _epoch in (1, 2):
        r.train_epoch_reference(reference_model, reference_train_loader, nn.CrossEntropyLoss(), reference_optimizer)
        reference_accuracies.append(r.evaluate_reference(reference_model, reference_test_loader))

    assert isinstance(fast_model.dropout, nn.Dropout)
    assert fast_accuracies == reference_accuracies
    assert_same_parameters(fast_model, reference_model)


def test_train_network_matches_reference(training_set, mnist_test_set):
    epochs = 2
    images_per_epoch = 10 * SHORT_EPOCH_IMAGES

    torch.manual_seed(SEED)
    fast_model = pytorch_mnist.Net()
    history = c.train_network(
        fast_model,
        fast_subset_loader(training_set, images_per_epoch, c.BATCH_SIZE, shuffle=True),
        epochs,
        pytorch_mnist.create_loss_function(nn.MSELoss()),
        pytorch_mnist.create_optimizer(fast_model, pytorch_mnist.DEFAULT_LEARNING_RATE),
        test_loader=fast_subset_loader(mnist_test_set, SHORT_TEST_IMAGES, c.EVAL_BATCH_SIZE, shuffle=False),
        quiet=True,
    )

    torch.manual_seed(SEED)
    reference_model = pytorch_mnist.Net()
    reference_optimizer = r.create_reference_optimizer(reference_model, pytorch_mnist.DEFAULT_LEARNING_RATE)
    train_loader = reference_subset_loader(training_set, images_per_epoch, c.BATCH_SIZE, shuffle=True)
    test_loader = reference_subset_loader(mnist_test_set, SHORT_TEST_IMAGES, c.EVAL_BATCH_SIZE, shuffle=False)
    reference_losses = []
    reference_accuracies = []
    for _epoch in range(epochs):
        mean_loss = r.train_epoch_reference(reference_model, train_loader, reference_mse_loss, reference_optimizer)
        reference_losses.append(mean_loss)
        reference_accuracies.append(r.evaluate_reference(reference_model, test_loader))

    assert [record["epoch"] for record in history] == [1, 2]
    assert [record["accuracy"] for record in history] == reference_accuracies
    assert [record["mean_loss"] for record in history] == pytest.approx(reference_losses, rel=1e-5)
    assert_same_parameters(fast_model, reference_model)
