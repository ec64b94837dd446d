"""
backprop_manual_calculation
~~~~~~~~~~~~~~~~~~~~~~~~~~~

One step of gradient descent on the smallest network that still has a
hidden layer, with every derivative written out by hand in NumPy.  The
script prints the parameters and the output before and after the step,
so the numbers can be checked on paper.

The network has one input, one hidden neuron and one output neuron, so
every weight and bias is a single number::

    x --(w_l1, b_l1)--> hidden neuron --(w_l2, b_l2)--> output neuron --> a_l2

Forward pass.  Each layer l = 1, 2 takes the activation a_{l-1} of the
layer before it (a_l0 = x), forms the weighted input z_l and applies the
sigmoid function σ::

    z_l = w_l · a_{l-1} + b_l
    a_l = σ(z_l),    σ(z) = 1 / (1 + e^(-z))

Cost.  For one training example (x, y) the quadratic cost is::

    C = (a_l2 - y)²

There is no factor 1/2 in front, so ∂C/∂a_l2 = 2(a_l2 - y).

Backward pass.  The error of layer l is δ_l = ∂C/∂z_l, the rate at which
the cost changes with that layer's weighted input.  The chain rule gives
it from the output backwards, using σ'(z) = σ(z)(1 - σ(z))::

    δ_l2 = ∂C/∂a_l2 · ∂a_l2/∂z_l2          = 2(a_l2 - y) · σ'(z_l2)
    δ_l1 = δ_l2 · ∂z_l2/∂a_l1 · ∂a_l1/∂z_l1 = δ_l2 · w_l2 · σ'(z_l1)

The hidden layer's error is the output error sent back through the
weight w_l2 that connects the two neurons, scaled by the slope of the
hidden neuron's sigmoid.

Gradients.  Since z_l = w_l · a_{l-1} + b_l, we have ∂z_l/∂w_l = a_{l-1}
and ∂z_l/∂b_l = 1, so each parameter's gradient follows from its layer's
error::

    ∂C/∂w_l = δ_l · a_{l-1}
    ∂C/∂b_l = δ_l

Update.  One step of gradient descent with learning rate η moves each
parameter against its gradient::

    w_l → w_l - η · ∂C/∂w_l
    b_l → b_l - η · ∂C/∂b_l

backprop_pytorch.py takes the same step with torch autograd and prints
the same values.
"""

import numpy as np

# Training example.
X = 0.8
Y = 1.0

# Initial parameters, listed layer by layer: [w_l1, w_l2] and [b_l1, b_l2].
WEIGHTS = [1.58, 2.45]
BIASES = [-0.14, -0.11]

# Learning rate.
ETA = 0.1


def sigmoid(z):
    """Apply the sigmoid function σ(z) = 1 / (1 + e^(-z))."""
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    """Return the derivative of the sigmoid function, σ'(z) = σ(z)(1 - σ(z))."""
    return sigmoid(z) * (1.0 - sigmoid(z))


def cost(a, y):
    """Return the quadratic cost (a - y)² of output a for target y."""
    return (a - y) ** 2


def cost_derivative(a, y):
    """Return ∂C/∂a for the quadratic cost (a - y)²."""
    return 2.0 * (a - y)


def feedforward(weights, biases, x):
    """Run the network on input x and return (activations, zs).

    activations[0] is x and activations[l] is the output a_l of layer l.
    zs[l - 1] is the weighted input z_l of layer l.
    """
    activation = x
    activations = [x]
    zs = []

    for w, b in zip(weights, biases):
        z = w * activation + b
        zs.append(z)

        activation = sigmoid(z)
        activations.append(activation)

    return activations, zs


def backprop(weights, biases, x, y):
    """Compute the gradient of the cost for the example (x, y).

    Returns (nabla_w, nabla_b), where nabla_w[l - 1] is ∂C/∂w_l and
    nabla_b[l - 1] is ∂C/∂b_l.
    """
    activations, zs = feedforward(weights, biases, x)
    a_l0, a_l1, a_l2 = activations
    z_l1, z_l2 = zs

    # Output layer: δ_l2 = ∂C/∂a_l2 · σ'(z_l2).
    delta = cost_derivative(a_l2, y) * sigmoid_prime(z_l2)
    nabla_w_l2 = delta * a_l1
    nabla_b_l2 = delta

    # Hidden layer: δ_l1 = δ_l2 · w_l2 · σ'(z_l1), the output error sent
    # back through w_l2 and then through the hidden neuron's sigmoid.
    delta = delta * weights[1] * sigmoid_prime(z_l1)
    nabla_w_l1 = delta * a_l0
    nabla_b_l1 = delta

    return [nabla_w_l1, nabla_w_l2], [nabla_b_l1, nabla_b_l2]


def update(weights, biases, nabla_w, nabla_b, eta):
    """Take one gradient-descent step and return the new (weights, biases)."""
    new_weights = [w - eta * nw for w, nw in zip(weights, nabla_w)]
    new_biases = [b - eta * nb for b, nb in zip(biases, nabla_b)]
    return new_weights, new_biases


def print_value(name, value):
    """Print `name = value` with the value rounded to 4 decimal places."""
    print(f"{name} = {round(float(value), 4)}")


def main():
    activations, _ = feedforward(WEIGHTS, BIASES, X)
    a_l2 = activations[-1]

    nabla_w, nabla_b = backprop(WEIGHTS, BIASES, X, Y)
    updated_weights, updated_biases = update(WEIGHTS, BIASES, nabla_w, nabla_b, ETA)

    updated_activations, _ = feedforward(updated_weights, updated_biases, X)
    updated_a_l2 = updated_activations[-1]

    print_value("w_l1", WEIGHTS[0])
    print_value("b_l1", BIASES[0])
    print_value("w_l2", WEIGHTS[1])
    print_value("b_l2", BIASES[1])
    print_value("a_l2", a_l2)

    print_value("updated_w_l1", updated_weights[0])
    print_value("updated_b_l1", updated_biases[0])
    print_value("updated_w_l2", updated_weights[1])
    print_value("updated_b_l2", updated_biases[1])
    print_value("updated_a_l2", updated_a_l2)


if __name__ == "__main__":
    main()
