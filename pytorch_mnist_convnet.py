"""The convolutional networks of chapter 6 of "Neural Networks and Deep Learning".

Four networks, chosen with --net, each a step on from the previous one:

    simple  conv 20 5x5, sigmoid, max-pool 2 -> 100 sigmoid -> 10
    2conv   two conv + pool layers (20 then 40 feature maps), sigmoid -> 100 sigmoid -> 10
    relu    2conv with rectified linear units in place of every sigmoid
    final   relu conv layers -> dropout -> 1000 ReLU -> dropout -> 1000 ReLU -> dropout -> 10

The last layer outputs logits, and training minimises the cross-entropy loss (softmax plus
log-likelihood) with mini-batch SGD and optional L2 weight decay. --extend_data trains on the
300,000 images of the training set plus its one-pixel shifts.

    python pytorch_mnist_convnet.py --net relu --lr 0.03 --wd 0.00005 --extend_data
"""

import torch
from torch import nn

import cli

DEFAULT_EPOCHS = 60
DEFAULT_LEARNING_RATE = 0.1
DEFAULT_WEIGHT_DECAY = 0.0

OUTPUT_SIZE = 10
KERNEL_SIZE = 5
POOL_SIZE = 2

# Feature maps after the conv and pool layers: 20 maps of 12x12 after one, 40 of 4x4 after two.
ONE_CONV_FEATURES = 20 * 12 * 12
TWO_CONV_FEATURES = 40 * 4 * 4


class ConvNetSimple(nn.Module):
    """One convolutional layer (20 feature maps, 5x5 kernels) and max-pooling, then 100 -> 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=KERNEL_SIZE)
        self.fc1 = nn.Linear(ONE_CONV_FEATURES, 100)
        self.out = nn.Linear(100, OUTPUT_SIZE)

    def forward(self, x):
        """Map images [N, 1, 28, 28] to logits [N, 10]."""
        x = nn.functional.max_pool2d(torch.sigmoid(self.conv1(x)), POOL_SIZE)
        x = x.flatten(start_dim=1)
        x = torch.sigmoid(self.fc1(x))
        return self.out(x)


class ConvNetTwoConvLayers(nn.Module):
    """Two conv + max-pool layers (20, then 40 feature maps) with sigmoid, then 100 -> 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=KERNEL_SIZE)
        self.conv2 = nn.Conv2d(20, 40, kernel_size=KERNEL_SIZE)
        self.fc1 = nn.Linear(TWO_CONV_FEATURES, 100)
        self.out = nn.Linear(100, OUTPUT_SIZE)

    def forward(self, x):
        """Map images [N, 1, 28, 28] to logits [N, 10]."""
        x = nn.functional.max_pool2d(torch.sigmoid(self.conv1(x)), POOL_SIZE)
        x = nn.functional.max_pool2d(torch.sigmoid(self.conv2(x)), POOL_SIZE)
        x = x.flatten(start_dim=1)
        x = torch.sigmoid(self.fc1(x))
        return self.out(x)


class ConvNetTwoConvLayersReLU(ConvNetTwoConvLayers):
    """ConvNetTwoConvLayers with rectified linear units, max(0, z), in place of every sigmoid."""

    def forward(self, x):
        """Map images [N, 1, 28, 28] to logits [N, 10]."""
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), POOL_SIZE)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), POOL_SIZE)
        x = x.flatten(start_dim=1)
        x = torch.relu(self.fc1(x))
        return self.out(x)


class ConvNetTwoConvTwoDenseLayersWithDropout(nn.Module):
    """The ReLU conv layers, then two dense layers of 1000 ReLU neurons, with dropout 0.5 before
    each dense layer and before the output layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=KERNEL_SIZE)
        self.conv2 = nn.Conv2d(20, 40, kernel_size=KERNEL_SIZE)
        self.dropout = nn.Dropout(p=0.5)
        self.fc1 = nn.Linear(TWO_CONV_FEATURES, 1000)
        self.fc2 = nn.Linear(1000, 1000)
        self.out = nn.Linear(1000, OUTPUT_SIZE)

    def forward(self, x):
        """Map images [N, 1, 28, 28] to logits [N, 10]; dropout is active only in train() mode."""
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), POOL_SIZE)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), POOL_SIZE)
        x = x.flatten(start_dim=1)
        x = torch.relu(self.fc1(self.dropout(x)))
        x = torch.relu(self.fc2(self.dropout(x)))
        return self.out(self.dropout(x))


# The --net choices.
NETWORKS = {
    "simple": ConvNetSimple,
    "2conv": ConvNetTwoConvLayers,
    "relu": ConvNetTwoConvLayersReLU,
    "final": ConvNetTwoConvTwoDenseLayersWithDropout,
}


def build_model(config):
    """Return an untrained network of the kind config["net"] names.

    With config["channels_last"] the weights use the NHWC memory format. That is faster on
    many CPUs, but the convolutions then round differently, so the weights are no longer
    bit-identical to those of the original pipeline.
    """
    model = NETWORKS[config["net"]]()
    if config.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model


def build_loss_function(config):
    """Return the cross-entropy loss on logits and integer labels."""
    return nn.CrossEntropyLoss()


def build_optimizer(model, config):
    """Return SGD with the configured learning rate and L2 weight decay, using foreach kernels."""
    return torch.optim.SGD(model.parameters(), lr=config["lr"], weight_decay=config["wd"], foreach=True)


def add_arguments(parser):
    """Add the options that only the convnet script has."""
    parser.add_argument(
        "--net",
        choices=list(NETWORKS),
        default=None,
        help="network to train: simple, 2conv, relu or final (default: simple)",
    )
    parser.add_argument(
        "--wd",
        type=cli.non_negative_float,
        default=None,
        metavar="LAMBDA",
        help="L2 weight decay added to each weight's gradient, per mini-batch (default: 0)",
    )
    parser.add_argument(
        "--extend_data",
        "--extend-data",
        dest="extend_data",
        action="store_true",
        default=None,
        help="train on the 300,000-image extended set: each training image plus its copies "
        "shifted one pixel right, left, up and down (default: off)",
    )
    parser.add_argument(
        "--channels-last",
        dest="channels_last",
        action="store_true",
        default=None,
        help="store the convolution weights in NHWC order, faster on many CPUs; results then differ "
        "from the default run in the last digits (default: off)",
    )


SCRIPT = cli.ScriptSpec(
    name="pytorch_mnist_convnet",
    description=__doc__.strip().splitlines()[0],
    default_epochs=DEFAULT_EPOCHS,
    default_learning_rate=DEFAULT_LEARNING_RATE,
    build_model=build_model,
    build_loss_function=build_loss_function,
    build_optimizer=build_optimizer,
    add_arguments=add_arguments,
    extra_defaults={"net": "simple", "wd": DEFAULT_WEIGHT_DECAY, "extend_data": False, "channels_last": False},
    training_only_arguments=["wd", "extend_data"],
)


def main(argv=None):
    cli.main(SCRIPT, argv)


if __name__ == "__main__":
    main()
