"""The command-line options of the training scripts: their value types, the parser, and the
checks that reject options which cannot be combined. cli.py uses them and re-exports the
names that the scripts and tests use.
"""

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

import common as c

DEFAULT_SEED = 1

MAX_SEED = 2**63 - 1

# Learning rates and weight decay multiply float32 tensors, so larger values cannot be used.
FLOAT32_MAX = torch.finfo(torch.float32).max

# One thread does not collapse when other processes use the cores. On an idle 2-core machine it
# trains the convnets up to a third slower than two threads, and the dense network faster.
# benchmarks/README.md has the figures.
DEFAULT_CPU_THREADS = 1

# The argparse dest of each shared option that only applies to training. --eval builds the
# network from the checkpoint and only tests it, so it rejects these options and the script's
# ScriptSpec.training_only_arguments. --net and --channels-last are not among them: they
# describe the network, and --eval checks them against the checkpoint.
TRAINING_ONLY_ARGUMENTS = ["epochs", "lr", "batch_size", "seed", "log_interval", "quiet", "compile"]

# Defaults of the running options whose argparse default is None, so that
# check_option_combinations can tell a given option from a left-out one.
RUNNING_DEFAULTS = {"log_interval": 0, "quiet": False, "compile": False}


@dataclass
class ScriptSpec:
    """The description of a training script that the shared command line works from.

    build_model(config), build_loss_function(config) and build_optimizer(model, config) get
    the run's configuration: a dict with script, lr, batch_size, epochs, seed and the script's
    own options (extra_defaults gives their defaults). training_only_arguments names the
    argparse dest of each of the script's own options that only applies to training, so that
    --eval rejects it.
    """

    name: str
    description: str
    default_epochs: int
    default_learning_rate: float
    build_model: Callable
    build_loss_function: Callable
    build_optimizer: Callable
    add_arguments: Callable | None = None
    extra_defaults: dict = field(default_factory=dict)
    training_only_arguments: list = field(default_factory=list)


def positive_int(text):
    """argparse type: an integer of at least 1."""
    value = parse_number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be at least 1")
    return value


def non_negative_int(text):
    """argparse type: an integer of at least 0."""
    value = parse_number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be 0 or more")
    return value


def positive_float(text):
    """argparse type: a number greater than 0 that fits in float32, the type of the weights."""
    value = parse_number(text, float, "a number")
    if not 0 < value <= FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: must be a number greater than 0 and at most {FLOAT32_MAX:.4g}"
        )
    return value


def non_negative_float(text):
    """argparse type: a number of at least 0 that fits in float32, the type of the weights."""
    value = parse_number(text, float, "a number")
    if not 0 <= value <= FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: must be a number of 0 or more and at most {FLOAT32_MAX:.4g}"
        )
    return value


def seed_value(text):
    """argparse type: a seed from 0 to 2**63 - 1, the range torch.manual_seed accepts here."""
    value = non_negative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be at most {MAX_SEED}")
    return value


def thread_count(text):
    """argparse type: from 1 to the number of CPUs of this machine."""
    value = positive_int(text)
    cpu_count = os.cpu_count() or 1
    if value > cpu_count:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: this machine has {cpu_count} CPUs")
    return value


def file_path(text):
    """argparse type: a non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("invalid value '': expected a path")
    return Path(text)


def output_file_path(text):
    """argparse type: a non-empty path of a file to write, not ending in a path separator."""
    path = file_path(text)
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: names a folder; give a file name inside it")
    return path


def parse_number(text, number_type, description):
    try:
        return number_type(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {description}") from None


def make_parser(script):
    """Return the argument parser: the shared options plus the script's own."""
    parser = argparse.ArgumentParser(
        prog=f"{script.name}.py",
        description=script.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"number of passes over the training set (default: {script.default_epochs}); "
        f"with --resume, the epoch to train up to",
    )
    training.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        metavar="ETA",
        help=f"learning rate eta of stochastic gradient descent (default: {script.default_learning_rate})",
    )
    training.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"training images per mini-batch (default: {c.BATCH_SIZE})",
    )
    training.add_argument(
        "--seed",
        type=seed_value,
        default=None,
        metavar="N",
        help=f"seed of the random initial weights, the shuffling and (final convnet) dropout; the same seed prints "
        f"the same accuracies on the CPU (default: {DEFAULT_SEED})",
    )
    if script.add_arguments is not None:
        script.add_arguments(training)

    running = parser.add_argument_group("running")
    running.add_argument(
        "--device",
        default="auto",
        help="where to train: cpu, cuda, cuda:1, mps, ... or auto, which takes the accelerator "
        "when one is available (default: auto)",
    )
    running.add_argument(
        "--threads",
        type=thread_count,
        default=DEFAULT_CPU_THREADS,
        metavar="N",
        help=f"CPU threads for PyTorch's operations (default: {DEFAULT_CPU_THREADS}); more threads can speed "
        f"up the convnets on an idle machine but slow training down many times over while other "
        f"programs use the cores (see benchmarks/README.md)",
    )
    running.add_argument(
        "--data-dir",
        type=file_path,
        default=c.DEFAULT_DATA_DIR,
        metavar="PATH",
        help="folder that contains MNIST/raw (default: the data/ folder beside the scripts)",
    )
    running.add_argument(
        "--log-interval",
        type=non_negative_int,
        default=None,
        metavar="N",
        help=f"print the training loss every N mini-batches; 0 turns it off "
        f"(default: {RUNNING_DEFAULTS['log_interval']})",
    )
    running.add_argument(
        "--quiet",
        action="store_true",
        default=None,
        help="print only the final summary, not a line per epoch (default: off)",
    )
    running.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="compile the model with torch.compile before training (default: off); the first epoch "
        "then includes the compile time, and benchmarks/README.md shows whether it pays off on a CPU",
    )

    files = parser.add_argument_group("checkpoints and results")
    files.add_argument(
        "--save-model",
        type=output_file_path,
        metavar="PATH",
        help="save a checkpoint (model, optimizer, configuration, accuracies, RNG states) after every epoch",
    )
    files.add_argument(
        "--resume",
        type=file_path,
        metavar="PATH",
        help="continue training from a checkpoint saved with --save-model, and keep saving to it "
        "after every epoch unless --save-model names another file",
    )
    files.add_argument(
        "--eval",
        type=file_path,
        metavar="PATH",
        help="report the test accuracy of a saved checkpoint without training; the options that "
        f"only apply to training ({', '.join(training_only_options(script).values())}) are then an error",
    )
    files.add_argument(
        "--metrics",
        type=output_file_path,
        metavar="PATH",
        help="write accuracy, mean training loss and seconds per epoch as CSV",
    )
    files.add_argument(
        "--plot",
        type=output_file_path,
        metavar="PATH",
        help="draw the learning curve (test accuracy and mean training loss per epoch) as PNG",
    )
    files.add_argument(
        "--show-errors",
        type=output_file_path,
        metavar="PATH",
        help="draw the misclassified test digits with predicted and true labels as a PNG grid",
    )
    files.add_argument(
        "--predict",
        type=file_path,
        nargs="+",
        metavar="IMAGE",
        help="with --eval: classify your own PNG or JPEG images of single digits",
    )
    files.add_argument(
        "--save-inputs",
        type=file_path,
        metavar="FOLDER",
        help="with --predict: save the 28x28 image the network saw for each input as "
        "FOLDER/<stem>-28x28.png, numbered (<stem>-2-28x28.png, ...) when names repeat, and create "
        "FOLDER if needed; when a saved image would replace an input image, the checkpoint or "
        "another result file, the run stops before it writes anything",
    )
    return parser


def check_option_combinations(parser, args, script):
    """Reject combinations of options that cannot work together, with argparse's usage error."""
    if args.eval is not None and args.resume is not None:
        parser.error("--eval and --resume cannot be combined: --eval does not train")
    if args.eval is not None and args.save_model is not None:
        parser.error("--eval and --save-model cannot be combined: --eval does not train")
    if args.eval is not None:
        check_no_training_options(parser, args, script)
    if args.predict is not None and args.eval is None:
        parser.error("--predict needs --eval PATH: the checkpoint of the network that classifies the images")
    if args.save_inputs is not None and args.predict is None:
        parser.error("--save-inputs needs --predict IMAGE")


def check_no_training_options(parser, args, script):
    """Reject each option given with --eval that only applies to training, with argparse's usage error.

    These options default to None, so any other value was given on the command line.
    """
    for dest, option in training_only_options(script).items():
        if getattr(args, dest) is None:
            continue
        parser.error(
            f"--eval and {option} cannot be combined: --eval does not train, so {option} would have "
            f"no effect. Leave {option} out."
        )


def training_only_options(script):
    """Return {argparse dest: option name} of the options that only apply to training."""
    options = {}
    for dest in TRAINING_ONLY_ARGUMENTS + script.training_only_arguments:
        options[dest] = OPTION_NAMES.get(dest, "--" + dest)
    return options


def apply_running_defaults(args):
    """Set each running option that was left out to its default from RUNNING_DEFAULTS."""
    for dest, default in RUNNING_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)


OPTION_NAMES = {"batch_size": "--batch-size", "channels_last": "--channels-last", "log_interval": "--log-interval"}
