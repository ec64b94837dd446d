"""Tests for the 1-1-1 backpropagation scripts.

The scripts run as subprocesses, exactly as a reader runs them, and their
functions are also checked directly against finite differences and
against each other.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import backprop_manual_calculation as manual
import backprop_pytorch

REPO_ROOT = Path(__file__).resolve().parent.parent

EXPECTED_LINES = [
    "w_l1 = 1.58",
    "b_l1 = -0.14",
    "w_l2 = 2.45",
    "b_l2 = -0.11",
    "a_l2 = 0.8506",
    "updated_w_l1 = 1.5814",
    "updated_b_l1 = -0.1383",
    "updated_w_l2 = 2.4529",
    "updated_b_l2 = -0.1062",
    "updated_a_l2 = 0.8515",
]

EXPECTED_TOPOLOGY = [
    "Net(",
    "  (hidden_layer): Linear(in_features=1, out_features=1, bias=True)",
    "  (output_layer): Linear(in_features=1, out_features=1, bias=True)",
    ")",
]

# Step of the central finite differences, and the tolerance of the float64
# comparisons with them.  With this step the truncation error (of order h²)
# and the rounding error (of order 1e-16 / h) both stay far below 1e-8.
FINITE_DIFFERENCE_STEP = 1e-6
FLOAT64_TOLERANCE = 1e-8

# Tolerance for comparing float32 autograd results with float64 NumPy.
FLOAT32_TOLERANCE = 1e-6


def run_script(name):
    """Run a script of the repository with the current interpreter and return the result."""
    return subprocess.run(
        [sys.executable, name],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def manual_result():
    return run_script("backprop_manual_calculation.py")


@pytest.fixture(scope="module")
def pytorch_result():
    return run_script("backprop_pytorch.py")


def cost_with_parameters(weights, biases):
    """Return the manual network's cost on the script's training example."""
    activations, _ = manual.feedforward(weights, biases, manual.X)
    return manual.cost(activations[-1], manual.Y)


def test_manual_script_exits_cleanly(manual_result):
    assert manual_result.returncode == 0, manual_result.stderr
    assert manual_result.stderr == ""


def test_manual_script_prints_expected_lines(manual_result):
    assert manual_result.stdout.splitlines() == EXPECTED_LINES


def test_pytorch_script_exits_cleanly(pytorch_result):
    assert pytorch_result.returncode == 0, pytorch_result.stderr
    assert pytorch_result.stderr == ""


def test_pytorch_script_prints_topology_first(pytorch_result):
    lines = pytorch_result.stdout.splitlines()
    assert lines[: len(EXPECTED_TOPOLOGY)] == EXPECTED_TOPOLOGY


def test_pytorch_script_prints_expected_lines(pytorch_result):
    lines = pytorch_result.stdout.splitlines()
    assert len(lines) == len(EXPECTED_TOPOLOGY) + len(EXPECTED_LINES)
    assert lines[-len(EXPECTED_LINES) :] == EXPECTED_LINES


def test_scripts_agree_line_for_line(manual_result, pytorch_result):
    manual_lines = manual_result.stdout.splitlines()
    pytorch_lines = pytorch_result.stdout.splitlines()[-len(manual_lines) :]
    for manual_line, pytorch_line in zip(manual_lines, pytorch_lines, strict=True):
        assert manual_line == pytorch_line


@pytest.mark.parametrize("module_name", ["backprop_manual_calculation", "backprop_pytorch"])
def test_import_prints_nothing(module_name):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module_name}"],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


@pytest.mark.parametrize("z", [-3.0, -0.5, 0.0, 0.7, 2.5])
def test_sigmoid_prime_matches_finite_difference(z):
    h = FINITE_DIFFERENCE_STEP
    estimate = (manual.sigmoid(z + h) - manual.sigmoid(z - h)) / (2 * h)
    assert manual.sigmoid_prime(z) == pytest.approx(estimate, abs=FLOAT64_TOLERANCE)


@pytest.mark.parametrize("layer_index", [0, 1])
def test_manual_weight_gradient_matches_finite_difference(layer_index):
    nabla_w, _ = manual.backprop(manual.WEIGHTS, manual.BIASES, manual.X, manual.Y)
    h = FINITE_DIFFERENCE_STEP

    weights_plus = list(manual.WEIGHTS)
    weights_plus[layer_index] += h
    weights_minus = list(manual.WEIGHTS)
    weights_minus[layer_index] -= h
    cost_plus = cost_with_parameters(weights_plus, manual.BIASES)
    cost_minus = cost_with_parameters(weights_minus, manual.BIASES)
    estimate = (cost_plus - cost_minus) / (2 * h)

    assert nabla_w[layer_index] == pytest.approx(estimate, abs=FLOAT64_TOLERANCE)


@pytest.mark.parametrize("layer_index", [0, 1])
def test_manual_bias_gradient_matches_finite_difference(layer_index):
    _, nabla_b = manual.backprop(manual.WEIGHTS, manual.BIASES, manual.X, manual.Y)
    h = FINITE_DIFFERENCE_STEP

    biases_plus = list(manual.BIASES)
    biases_plus[layer_index] += h
    biases_minus = list(manual.BIASES)
    biases_minus[layer_index] -= h
    cost_plus = cost_with_parameters(manual.WEIGHTS, biases_plus)
    cost_minus = cost_with_parameters(manual.WEIGHTS, biases_minus)
    estimate = (cost_plus - cost_minus) / (2 * h)

    assert nabla_b[layer_index] == pytest.approx(estimate, abs=FLOAT64_TOLERANCE)


def test_autograd_gradients_match_manual():
    nabla_w, nabla_b = manual.backprop(manual.WEIGHTS, manual.BIASES, manual.X, manual.Y)
    model = backprop_pytorch.build_network(backprop_pytorch.WEIGHTS, backprop_pytorch.BIASES)
    backprop_pytorch.train_step(model, backprop_pytorch.X, backprop_pytorch.Y, backprop_pytorch.ETA)

    layers = [model.hidden_layer, model.output_layer]
    for layer, expected_w, expected_b in zip(layers, nabla_w, nabla_b, strict=True):
        assert layer.weight.grad.item() == pytest.approx(expected_w, abs=FLOAT32_TOLERANCE)
        assert layer.bias.grad.item() == pytest.approx(expected_b, abs=FLOAT32_TOLERANCE)


def test_pytorch_cost_matches_manual():
    activations, _ = manual.feedforward(manual.WEIGHTS, manual.BIASES, manual.X)
    expected_cost = manual.cost(activations[-1], manual.Y)
    model = backprop_pytorch.build_network(backprop_pytorch.WEIGHTS, backprop_pytorch.BIASES)

    loss = backprop_pytorch.train_step(model, backprop_pytorch.X, backprop_pytorch.Y, backprop_pytorch.ETA)

    assert loss == pytest.approx(expected_cost, abs=FLOAT32_TOLERANCE)


def test_pytorch_uses_float32():
    model = backprop_pytorch.build_network(backprop_pytorch.WEIGHTS, backprop_pytorch.BIASES)
    for parameter in model.parameters():
        assert parameter.dtype == torch.float32
    assert backprop_pytorch.X.dtype == torch.float32
    assert backprop_pytorch.Y.dtype == torch.float32


def test_scripts_start_from_same_example():
    assert backprop_pytorch.WEIGHTS == manual.WEIGHTS
    assert backprop_pytorch.BIASES == manual.BIASES
    assert backprop_pytorch.ETA == manual.ETA
    assert backprop_pytorch.X.item() == pytest.approx(manual.X)
    assert backprop_pytorch.Y.item() == pytest.approx(manual.Y)


def test_update_lowers_cost():
    nabla_w, nabla_b = manual.backprop(manual.WEIGHTS, manual.BIASES, manual.X, manual.Y)
    updated_weights, updated_biases = manual.update(
        manual.WEIGHTS, manual.BIASES, nabla_w, nabla_b, manual.ETA
    )

    cost_before = cost_with_parameters(manual.WEIGHTS, manual.BIASES)
    cost_after = cost_with_parameters(updated_weights, updated_biases)

    assert cost_after < cost_before


def test_update_moves_against_gradient():
    nabla_w = [0.5, -2.0]
    nabla_b = [-1.0, 4.0]

    updated_weights, updated_biases = manual.update([1.0, 1.0], [0.0, 0.0], nabla_w, nabla_b, 0.1)

    assert updated_weights == pytest.approx([0.95, 1.2])
    assert updated_biases == pytest.approx([0.1, -0.4])
