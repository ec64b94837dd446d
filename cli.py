"""The command line shared by pytorch_mnist.py and pytorch_mnist_convnet.py.

Each script describes itself with a ScriptSpec (defaults, how to build its model, loss and
optimizer) and calls main(). Invalid values get argparse's usage error (exit status 2). A
missing or damaged file, an unusable device or a diverging run gets a one-paragraph message
on stderr (exit status 1). Ctrl-C stops with a one-line message (exit status 130).
"""

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

import common as c
from checkpoints import describe_format_problem, load_checkpoint, restore_rng_state, save_checkpoint
from errors import UsageError

DEFAULT_SEED = 1

MAX_SEED = 2**63 - 1

# Learning rates and weight decay multiply float32 tensors, so larger values cannot be used.
FLOAT32_MAX = torch.finfo(torch.float32).max

# One thread is never much slower and does not collapse under load; benchmarks/README.md has the figures.
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
        help=f"seed of the random initial weights, shuffling and dropout; the same seed prints "
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
        help="compile the model with torch.compile before training (default: off); compiling takes "
        "tens of seconds, and benchmarks/README.md shows whether it pays off on a CPU",
    )

    files = parser.add_argument_group("checkpoints and results")
    files.add_argument(
        "--save-model",
        type=file_path,
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
        type=file_path,
        metavar="PATH",
        help="write accuracy, mean training loss and seconds per epoch as CSV",
    )
    files.add_argument(
        "--plot",
        type=file_path,
        metavar="PATH",
        help="draw the learning curve (test accuracy and mean training loss per epoch) as PNG",
    )
    files.add_argument(
        "--show-errors",
        type=file_path,
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


def main(script, argv=None):
    """Parse the command line, then train or evaluate; exit non-zero on any failure."""
    parser = make_parser(script)
    args = parser.parse_args(argv)
    check_option_combinations(parser, args, script)
    apply_running_defaults(args)

    torch.set_num_threads(args.threads)
    progress = {"saved_epoch": None}
    try:
        if args.eval is not None:
            evaluate_checkpoint(script, args)
        else:
            train(script, args, progress)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        print(f"error: {error}. Check the path and its permissions.", file=sys.stderr)
        sys.exit(1)
    except torch.OutOfMemoryError:
        print("error: out of memory on the device. Try a smaller --batch-size.", file=sys.stderr)
        sys.exit(1)
    except RuntimeError as error:
        if "allocate memory" not in str(error):
            raise
        print("error: out of memory. Try a smaller --batch-size, or close other programs.", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(interrupt_message(args, progress), file=sys.stderr)
        sys.exit(130)


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


def interrupt_message(args, progress):
    """Return the one line printed when Ctrl-C stops a run."""
    if progress["saved_epoch"] is not None:
        return (
            f"Interrupted. Epoch {progress['saved_epoch']} is saved in {args.save_model}; "
            f"continue with --resume {args.save_model}."
        )
    return "Interrupted."


def resolve_device(text):
    """Turn the --device value into a torch.device that is available here."""
    if text == "auto":
        return c.default_device()

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {text!r} is not a device name. Use cpu, cuda, cuda:0, mps or auto.") from None

    if device.type == "cpu":
        return device
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    if accelerator is None or accelerator.type != device.type:
        raise UsageError(f"--device {text}: no {device.type} device is available here. Use --device cpu or auto.")
    if device.index is not None and device.index >= torch.accelerator.device_count():
        raise UsageError(
            f"--device {text}: there are only {torch.accelerator.device_count()} {device.type} devices."
        )
    return device


def check_output_paths(args):
    """Fail before training, not after it, when a result file cannot or must not be written.

    Each output needs a writable folder and its own file name. None may replace the checkpoint
    given to --eval or --resume (except --save-model, which may update the one being resumed),
    and --save-model may only replace an earlier checkpoint.
    """
    outputs = {
        "--save-model": getattr(args, "save_model", None),
        "--metrics": args.metrics,
        "--plot": args.plot,
        "--show-errors": args.show_errors,
    }
    outputs = {option: path for option, path in outputs.items() if path is not None}

    for option, path in outputs.items():
        if path.is_dir():
            raise UsageError(f"{option} {path} is a folder; give a file name.")
        if path.exists() and not path.is_file():
            raise UsageError(f"{option} {path} is not a regular file; choose another path.")
        if not path.parent.is_dir():
            raise UsageError(f"{option} {path}: the folder {path.parent} does not exist. Create it first.")
        if not os.access(path.parent, os.W_OK):
            raise UsageError(f"{option} {path}: the folder {path.parent} is not writable. Choose another folder.")

    seen = {}
    for option, path in outputs.items():
        resolved = path.resolve()
        if resolved in seen:
            raise UsageError(f"{seen[resolved]} and {option} name the same file {path}; give each its own name.")
        seen[resolved] = option
        for input_option in ("--eval", "--resume"):
            input_path = getattr(args, input_option[2:])
            if input_path is None or resolved != input_path.resolve():
                continue
            if option == "--save-model" and input_option == "--resume":
                continue
            raise UsageError(
                f"{option} {path} would replace the checkpoint given to {input_option}; choose another name."
            )

    save_model = outputs.get("--save-model")
    resuming_same_file = False
    if args.resume is not None and save_model is not None:
        resuming_same_file = save_model.resolve() == args.resume.resolve()
    if save_model is not None and save_model.is_file() and not resuming_same_file:
        if not is_checkpoint_file(save_model):
            raise UsageError(
                f"--save-model {save_model} exists and is not a checkpoint, so it would be lost. "
                f"Choose another name, or delete the file first."
            )


def check_saved_input_paths(args):
    """Fail before evaluating when an image saved by --save-inputs would replace another file.

    The saved images may replace neither an input image nor the checkpoint given to --eval
    nor a result file of the same run.
    """
    if args.save_inputs is None:
        return
    import digit_images

    save_paths = digit_images.network_input_paths(args.predict, args.save_inputs)
    digit_images.check_inputs_kept(args.predict, save_paths)

    other_files = {
        "--eval": args.eval,
        "--metrics": args.metrics,
        "--plot": args.plot,
        "--show-errors": args.show_errors,
    }
    for option, other_path in other_files.items():
        if other_path is None:
            continue
        for save_path in save_paths:
            if save_path.resolve() == other_path.resolve():
                raise UsageError(
                    f"--save-inputs {args.save_inputs} would save an image as {save_path}, which is the "
                    f"file given to {option}. Choose another folder for --save-inputs."
                )


def is_checkpoint_file(path):
    """Return whether path contains a checkpoint written by --save-model."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any file that does not load is not a checkpoint
        return False
    return describe_format_problem(content) is None


# Command-line spelling of configuration keys and argparse dests whose option name differs from the key.
OPTION_NAMES = {"batch_size": "--batch-size", "channels_last": "--channels-last", "log_interval": "--log-interval"}


def build_config(script, args, checkpoint=None):
    """Return the run's configuration: defaults, then the checkpoint's, then the command line.

    A resumed or evaluated run keeps the checkpoint's configuration. An option that contradicts
    it is an error, except --epochs, which sets how far a resumed run trains.
    """
    config = {
        "script": script.name,
        "epochs": script.default_epochs,
        "lr": script.default_learning_rate,
        "batch_size": c.BATCH_SIZE,
        "seed": DEFAULT_SEED,
    }
    config.update(script.extra_defaults)

    if checkpoint is not None:
        config.update(checkpoint["config"])

    for key in config:
        value = getattr(args, key, None)
        if value is None or value == config[key]:
            continue
        if checkpoint is not None and key != "epochs":
            option = OPTION_NAMES.get(key, "--" + key)
            raise UsageError(
                f"{option} {value} contradicts the checkpoint, which was trained with {option} "
                f"{config[key]}. Leave {option} out to use the checkpoint's value."
            )
        config[key] = value
    return config


def describe(config, device):
    """Return the first line of a run: network, device and hyperparameters."""
    network = f"--net {config['net']}" if "net" in config else "784-100-10"
    line = (
        f"{config['script']}.py: {network} on {device}, epochs {config['epochs']}, "
        f"learning rate {config['lr']}, mini-batch {config['batch_size']}, seed {config['seed']}"
    )
    if config.get("wd"):
        line += f", weight decay {config['wd']}"
    if config.get("extend_data"):
        line += ", extended data"
    if config.get("channels_last"):
        line += ", channels-last weights"
    return line


def train(script, args, progress):
    """Train a network (from scratch or from --resume), save checkpoints, write the results."""
    check_output_paths(args)

    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.resume, script.name) if args.resume is not None else None
    config = build_config(script, args, checkpoint)

    # A resumed run keeps its checkpoint up to date unless --save-model names another file.
    if args.resume is not None and args.save_model is None:
        args.save_model = args.resume

    torch.manual_seed(config["seed"])
    model = build_model_checked(script, config, args.resume)
    model = model.to(device)
    optimizer = script.build_optimizer(model, config)
    history = []
    if checkpoint is not None:
        load_states(args.resume, checkpoint, model, optimizer)
        history = checkpoint["history"]
        restore_rng_state(checkpoint, device)

    if config.get("extend_data"):
        train_loader = c.get_extended_train_loader(config["batch_size"], root=args.data_dir, device=device)
    else:
        train_loader = c.get_train_loader(config["batch_size"], root=args.data_dir, device=device)
    test_loader = c.get_test_loader(c.EVAL_BATCH_SIZE, root=args.data_dir, device=device)

    def save_after_epoch(history_so_far):
        save_checkpoint(args.save_model, model, optimizer, config, history_so_far, device)
        progress["saved_epoch"] = len(history_so_far)

    if not args.quiet:
        print(describe(config, device))
        if checkpoint is not None:
            print(f"Resuming from {args.resume} after epoch {len(history)}.")
    if len(history) >= config["epochs"]:
        print(
            f"Nothing to train: the checkpoint {args.resume} already contains {len(history)} epochs. "
            f"Pass --epochs with a larger number to train more."
        )

    training_model = torch.compile(model) if args.compile else model
    history = c.train_network(
        training_model,
        train_loader,
        config["epochs"],
        script.build_loss_function(config),
        optimizer,
        test_loader=test_loader,
        log_interval=args.log_interval,
        history=history,
        on_epoch_end=save_after_epoch if args.save_model is not None else None,
        quiet=args.quiet,
    )

    if history:
        print(c.summarize(history))
    write_results(args, model, test_loader, history)


def build_model_checked(script, config, checkpoint_path):
    """Build the configured model; a damaged configuration in a checkpoint gets a UsageError."""
    try:
        return script.build_model(config)
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(
            f"Checkpoint {checkpoint_path} has a damaged configuration ({type(error).__name__}: {error}). "
            f"Use a checkpoint written by --save-model."
        ) from None


def load_states(path, checkpoint, model, optimizer=None):
    """Copy the checkpoint's weights (and optimizer state) into freshly built objects."""
    try:
        model.load_state_dict(checkpoint["model_state"])
        if optimizer is not None:
            optimizer.load_state_dict(checkpoint["optimizer_state"])
    except (RuntimeError, KeyError, ValueError) as error:
        details = " ".join(str(error).split())[:300]
        raise UsageError(
            f"Checkpoint {path} does not fit the network {type(model).__name__}: {details}"
        ) from None


def evaluate_checkpoint(script, args):
    """Report the test accuracy of a checkpoint, then write any requested results."""
    check_output_paths(args)
    check_saved_input_paths(args)

    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.eval, script.name)
    config = build_config(script, args, checkpoint)

    model = build_model_checked(script, config, args.eval)
    load_states(args.eval, checkpoint, model)
    model = model.to(device)

    test_loader = c.get_test_loader(c.EVAL_BATCH_SIZE, root=args.data_dir, device=device)
    network = f"--net {config['net']}" if "net" in config else "784-100-10"
    c.test_network(model, test_loader, epoch_info=f"{network} from {args.eval}, epoch {checkpoint['epoch']}")

    write_results(args, model, test_loader, checkpoint["history"])
    if args.predict is not None:
        import digit_images

        digit_images.predict_digits(model, args.predict, device=device, save_dir=args.save_inputs)


def write_results(args, model, test_loader, history):
    """Write the files requested with --metrics, --plot and --show-errors."""
    if args.metrics is None and args.plot is None and args.show_errors is None:
        return
    import digit_images

    if args.metrics is not None:
        digit_images.write_metrics_csv(history, args.metrics)
        print(f"Wrote per-epoch metrics to {args.metrics}")
    if args.plot is not None:
        digit_images.save_learning_curve(history, args.plot)
        print(f"Wrote the learning curve to {args.plot}")
    if args.show_errors is not None:
        indices, predictions = digit_images.collect_errors(model, test_loader)
        test_set = test_loader.dataset
        drawn = digit_images.save_error_grid(
            test_set.data[indices], test_set.targets[indices], predictions, args.show_errors
        )
        print(f"Wrote {drawn} of {len(indices)} misclassified test digits to {args.show_errors}")
