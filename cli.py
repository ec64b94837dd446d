"""The command line shared by pytorch_mnist.py and pytorch_mnist_convnet.py.

Each script describes itself with a ScriptSpec (defaults, how to build its model, loss and
optimizer) and calls main(). Invalid values get argparse's usage error (exit status 2). A
missing or damaged file, an unusable device or a diverging run gets a one-paragraph message
on stderr (exit status 1). Ctrl-C stops with a one-line message (exit status 130).
"""

import os
import sys
from pathlib import Path

import torch

import common as c
from checkpoints import describe_format_problem, load_checkpoint, restore_rng_state, save_checkpoint
from cli_options import (
    DEFAULT_CPU_THREADS,
    DEFAULT_SEED,
    OPTION_NAMES,
    ScriptSpec,
    apply_running_defaults,
    check_option_combinations,
    make_parser,
    non_negative_float,
    positive_int,
)
from errors import UsageError

# The exit status of a program killed by SIGPIPE in a shell (128 + 13), used when stdout closes.
BROKEN_PIPE_EXIT_STATUS = 141

# The names that the scripts, tests and benchmarks use as cli.NAME.
__all__ = [
    "DEFAULT_CPU_THREADS",
    "ScriptSpec",
    "build_config",
    "main",
    "make_parser",
    "non_negative_float",
    "positive_int",
]


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
        # A closed stdout shows up here rather than as an error that Python prints at exit.
        sys.stdout.flush()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        # The program reading the output (for example `| head`) has exited. Sending stdout to
        # devnull keeps Python from reporting the same error again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(BROKEN_PIPE_EXIT_STATUS)
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
    given to --eval or --resume (except --save-model, which may update the one being resumed)
    or an image given to --predict. --save-model may not replace an existing file unless it
    resumes that checkpoint, and --metrics, --plot and --show-errors may only replace files of
    their own kind.
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
        for image_path in args.predict or []:
            if resolved == Path(image_path).resolve():
                raise UsageError(f"{option} {path} would replace the image given to --predict; choose another name.")

    for option, path in outputs.items():
        if option != "--save-model" and path.is_file() and not is_result_file(option, path):
            raise UsageError(
                f"{option} {path} exists and is not {RESULT_KINDS[option]}, so it would be lost. "
                f"Choose another name, or delete the file first."
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
        raise UsageError(
            f"--save-model {save_model} already contains a checkpoint, which a new run would replace. "
            f"Continue that run with --resume {save_model}, or choose another name or delete the file "
            f"to start a new run."
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


# The kind of file that --metrics, --plot and --show-errors each write, named in the message
# when another file is in the way.
RESULT_KINDS = {"--metrics": "a metrics CSV file", "--plot": "a PNG image", "--show-errors": "a PNG image"}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_result_file(option, path):
    """Return whether path looks like a file that option writes: a metrics CSV or a PNG image."""
    with open(path, "rb") as file:
        start = file.read(64)
    if option == "--metrics":
        import digit_images

        header = ",".join(digit_images.METRICS_COLUMNS).encode()
        return start.startswith(header)
    return start.startswith(PNG_SIGNATURE)


def is_checkpoint_file(path):
    """Return whether path contains a checkpoint written by --save-model."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any file that does not load is not a checkpoint
        return False
    return describe_format_problem(content) is None


# Command-line spelling of configuration keys and argparse dests whose option name differs from the key.

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
            if isinstance(value, bool):
                # A flag such as --channels-last is None unless given, so here it is True.
                raise UsageError(
                    f"{option} contradicts the checkpoint, which was trained without {option}. "
                    f"Leave {option} out to use the checkpoint's setting."
                )
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
            f"Nothing to train: the checkpoint {args.resume} already contains {len(history)} epoch(s). "
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
        if args.save_inputs is not None:
            print(f"Wrote the 28x28 network input of each image to {args.save_inputs}")


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
