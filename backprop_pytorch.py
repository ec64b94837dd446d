"""
backprop_pytorch
~~~~~~~~~~~~~~~~

The gradient-descent step of backprop_manual_calculation.py, taken with
torch autograd in place of derivatives written out by hand.

The network has one input, one hidden neuron and one output neuron.  Each
layer is an ``nn.Linear(1, 1)`` that computes the weighted input
z = w · a + b, followed by ``torch.sigmoid``.  Its parameters start at the
same values as in the NumPy script, and the cost for the single training
example (x, y) is again C = (a - y)².  ``nn.MSELoss`` computes exactly
that, because the mean of one squared error is the squared error itself.

``loss.backward()`` applies the chain rule through the recorded forward
pass and stores ∂C/∂w and ∂C/∂b in each parameter's ``.grad``.
``torch.optim.SGD`` with learning rate η = 0.1 then moves each parameter
to p - η · ∂C/∂p, the same update as the NumPy script.

The script prints the network topology, then the parameters and the
output before and after the step.  The tensors are float32, PyTorch's
default, and the printed values rounded to 4 decimal places equal those
of the float64 NumPy script.
"""

import torch
from torch import nn

# Training example, as [batch, features] tensors with one example of one feature.
X = torch.tensor([[0.8]])
Y = torch.tensor([[1.0]])

# Initial parameters, listed layer by layer: [w_l1, w_l2] and [b_l1, b_l2].
WEIGHTS = [1.58, 2.45]
BIASES = [-0.14, -0.11]

# Learning rate.
ETA = 0.1


class Net(nn.Module):
    """1-1-1 sigmoid network: one input, one hidden neuron, one output neuron."""

    def __init__(self):
        super().__init__()
        self.hidden_layer = nn.Linear(1, 1)
        self.output_layer = nn.Linear(1, 1)

    def forward(self, x):
        a_l1 = torch.sigmoid(self.hidden_layer(x))
        a_l2 = torch.sigmoid(self.output_layer(a_l1))
        return a_l2


def build_network(weights, biases):
    """Create a Net and replace its random initial parameters with the given values."""
    model = Net()
    layers = [model.hidden_layer, model.output_layer]

    with torch.no_grad():
        for layer, w, b in zip(layers, weights, biases):
            layer.weight.fill_(w)
            layer.bias.fill_(b)

    return model


def train_step(model, x, y, eta):
    """Take one SGD step on the example (x, y) and return the cost before the step.

    The gradients of the step stay in each parameter's ``.grad``.
    """
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=eta)

    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()

    return loss.item()


def print_value(name, value):
    """Print `name = value` with the value rounded to 4 decimal places."""
    print(f"{name} = {round(float(value), 4)}")


def main():
    model = build_network(WEIGHTS, BIASES)
    print(model)

    print_value("w_l1", model.hidden_layer.weight.item())
    print_value("b_l1", model.hidden_layer.bias.item())
    print_value("w_l2", model.output_layer.weight.item())
    print_value("b_l2", model.output_layer.bias.item())
    with torch.no_grad():
        print_value("a_l2", model(X).item())

    train_step(model, X, Y, ETA)

    print_value("updated_w_l1", model.hidden_layer.weight.item())
    print_value("updated_b_l1", model.hidden_layer.bias.item())
    print_value("updated_w_l2", model.output_layer.weight.item())
    print_value("updated_b_l2", model.output_layer.bias.item())
    with torch.no_grad():
        print_value("updated_a_l2", model(X).item())


if __name__ == "__main__":
    main()
