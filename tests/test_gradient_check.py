"""Gradient check of pytorch_mnist.Net against backpropagation written out in NumPy.

pytorch_mnist.Net is the 784-100-10 sigmoid network of chapter 1 of "Neural
Networks and Deep Learning".  The NumPy code below applies the book's four
backpropagation equations to it in float64:

    BP1  δ^L = ∇_a C ⊙ σ'(z^L)
    BP2  δ^l = ((w^{l+1})^T δ^{l+1}) ⊙ σ'(z^l)
    BP3  ∂C/∂b^l = δ^l
    BP4  ∂C/∂w^l = δ^l (a^{l-1})^T

The equations are written for one example as a column vector.  Here a
mini-batch is a matrix with one example per row, so (w^{l+1})^T δ^{l+1}
becomes delta @ w, and BP3 and BP4 sum over the rows.  The cost is
nn.MSELoss with its default reduction "mean", which averages over all
N × 10 outputs:

    C = 1/(10 N) Σ (a^L - y)²,   so   ∇_a C = 2 (a^L - y) / (10 N)

The 1/N in ∇_a C makes the summed gradients the mean over the batch.
The tests assert that these gradients equal the ones that autograd
computes in float32 with loss.backward().
"""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import common as c
import pytorch_mnist

# Maximum absolute difference between the float64 NumPy gradients and the float32 autograd gradients.
GRADIENT_TOLERANCE = 1e-5

# Maximum difference between the two gradients relative to the largest entry of the NumPy
# gradient.  The largest entries are between 2.5e-3 and 2.9e-2 in both cases, so this bound
# is tighter than GRADIENT_TOLERANCE.  Float32 rounding alone gives about 1e-7.
RELATIVE_GRADIENT_TOLERANCE = 1e-4

# Maximum absolute difference between the float64 NumPy cost and the float32 autograd loss.
LOSS_TOLERANCE = 1e-6

NUM_CLASSES = 10

PARAMETER_NAMES = [
    "hidden_layer.weight",
    "hidden_layer.bias",
    "output_layer.weight",
    "output_layer.bias",
]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    return sigmoid(z) * (1.0 - sigmoid(z))


def backprop_mean_squared_error(weights, biases, x, y):
    """Compute the cost and its gradients for a mini-batch with the four backpropagation equations.

    weights[l] and biases[l] are the parameters of layer l + 1 in nn.Linear layout, so
    weights[l] has shape [outputs, inputs].  x is [N, 784] and y is the one-hot target [N, 10].
    Returns (cost, nabla_w, nabla_b) with nabla_w[l] and nabla_b[l] shaped like weights[l]
    and biases[l].
    """
    activation = x
    activations = [x]
    zs = []
    for w, b in zip(weights, biases):
        z = activation @ w.T + b
        zs.append(z)
        activation = sigmoid(z)
        activations.append(activation)

    output = activations[-1]
    cost = np.mean((output - y) ** 2)

    nabla_w = [None] * len(weights)
    nabla_b = [None] * len(biases)

    # BP1: the error of the output layer.
    nabla_a = 2.0 * (output - y) / y.size
    delta = nabla_a * sigmoid_prime(zs[-1])

    # BP3 and BP4 for the output layer, summed over the examples of the batch.
    nabla_b[-1] = delta.sum(axis=0)
    nabla_w[-1] = delta.T @ activations[-2]

    # BP2 moves the error one layer back, then BP3 and BP4 give that layer's gradients.
    for layer in reversed(range(len(weights) - 1)):
        delta = (delta @ weights[layer + 1]) * sigmoid_prime(zs[layer])
        nabla_b[layer] = delta.sum(axis=0)
        nabla_w[layer] = delta.T @ activations[layer]

    return cost, nabla_w, nabla_b


def make_default_net(seed):
    """Create a Net with PyTorch's default nn.Linear initialisation under a fixed seed."""
    torch.manual_seed(seed)
    return pytorch_mnist.Net()


def make_gaussian_net(seed):
    """Create a Net with Gaussian weights of standard deviation 1/sqrt(fan_in) and N(0, 1) biases.

    The weights have √3 times the standard deviation of PyTorch's default uniform
    initialisation, and the biases about 50 times (hidden layer) and 17 times (output layer).
    In the "gaussian_init_second_batch" case the hidden weighted inputs reach |z| ≈ 5.4,
    against 1.9 in the default case, so the check also covers sigmoids far from their
    near-linear region around z = 0.
    """
    torch.manual_seed(seed)
    net = pytorch_mnist.Net()
    with torch.no_grad():
        for layer in [net.hidden_layer, net.output_layer]:
            fan_in = layer.weight.shape[1]
            layer.weight.normal_(0.0, fan_in**-0.5)
            layer.bias.normal_(0.0, 1.0)
    return net


# Each case pairs a network with the index of a mini-batch of the test loader.
CASES = {
    "default_init_first_batch": (lambda: make_default_net(seed=0), 0),
    "gaussian_init_second_batch": (lambda: make_gaussian_net(seed=1), 1),
}


@pytest.fixture(scope="module")
def loader_batches():
    """Return the first two mini-batches of the test loader as a list of (images, labels)."""
    return list(itertools.islice(c.get_test_loader(), 2))


@pytest.fixture(scope="module", params=list(CASES))
def gradients(request, loader_batches):
    """Run autograd and the NumPy backpropagation on one case and return both results.

    The result is a dict with the autograd loss, the NumPy cost, and for each name in
    PARAMETER_NAMES the autograd gradient (float32) and the NumPy gradient (float64).
    """
    make_net, batch_index = CASES[request.param]
    net = make_net()
    images, labels = loader_batches[batch_index]

    targets = nn.functional.one_hot(labels, NUM_CLASSES).to(torch.float32)
    loss = nn.MSELoss()(net(images), targets)
    net.zero_grad()
    loss.backward()
    autograd_gradients = {name: parameter.grad for name, parameter in net.named_parameters()}

    layers = [net.hidden_layer, net.output_layer]
    weights = [layer.weight.detach().numpy().astype(np.float64) for layer in layers]
    biases = [layer.bias.detach().numpy().astype(np.float64) for layer in layers]
    x = images.numpy().astype(np.float64).reshape(len(images), -1)
    y = targets.numpy().astype(np.float64)
    cost, nabla_w, nabla_b = backprop_mean_squared_error(weights, biases, x, y)
    numpy_gradients = {
        "hidden_layer.weight": nabla_w[0],
        "hidden_layer.bias": nabla_b[0],
        "output_layer.weight": nabla_w[1],
        "output_layer.bias": nabla_b[1],
    }

    return {
        "loss": loss.item(),
        "cost": cost,
        "autograd": autograd_gradients,
        "numpy": numpy_gradients,
    }


def test_batch_matches_loader_interface(loader_batches):
    for images, labels in loader_batches:
        assert images.shape == (10, 1, 28, 28)
        assert images.dtype == torch.float32
        assert labels.shape == (10,)
        assert labels.dtype == torch.int64


def test_batches_differ(loader_batches):
    (first_images, _), (second_images, _) = loader_batches
    assert not torch.equal(first_images, second_images)


def test_net_has_four_parameters(gradients):
    assert sorted(gradients["autograd"]) == sorted(PARAMETER_NAMES)


def test_numpy_cost_matches_mse_loss(gradients):
    assert gradients["cost"] == pytest.approx(gradients["loss"], abs=LOSS_TOLERANCE)


@pytest.mark.parametrize("name", PARAMETER_NAMES)
def test_gradient_matches_autograd(gradients, name):
    autograd_gradient = gradients["autograd"][name]
    numpy_gradient = gradients["numpy"][name]

    assert autograd_gradient.dtype == torch.float32
    assert autograd_gradient.shape == numpy_gradient.shape

    difference = np.abs(autograd_gradient.numpy().astype(np.float64) - numpy_gradient)
    assert difference.max() <= GRADIENT_TOLERANCE, (
        f"{name}: maximum absolute difference {difference.max():.3g} exceeds {GRADIENT_TOLERANCE}"
    )


@pytest.mark.parametrize("name", PARAMETER_NAMES)
def test_gradient_matches_autograd_relative(gradients, name):
    autograd_gradient = gradients["autograd"][name].numpy().astype(np.float64)
    numpy_gradient = gradients["numpy"][name]

    relative_difference = np.abs(autograd_gradient - numpy_gradient).max() / np.abs(numpy_gradient).max()
    assert relative_difference <= RELATIVE_GRADIENT_TOLERANCE, (
        f"{name}: relative difference {relative_difference:.3g} exceeds {RELATIVE_GRADIENT_TOLERANCE}"
    )


@pytest.mark.parametrize("name", PARAMETER_NAMES)
def test_gradient_is_not_negligible(gradients, name):
    # A gradient far below the tolerance would pass the comparison whatever its values,
    # so each gradient must have an entry well above it.
    largest_entry = np.abs(gradients["numpy"][name]).max()
    assert largest_entry > 10 * GRADIENT_TOLERANCE, f"{name}: largest entry {largest_entry:.3g}"
