"""Save and load training checkpoints: model, optimizer, configuration, history and RNG states.

A checkpoint is written after every epoch to a temporary file that is then renamed, so an
interrupted save leaves the previous checkpoint intact. It is loaded with weights_only=True,
which unpickles only tensors and plain Python containers and never runs code from the file.
"""

from pathlib import Path

import torch

from atomic_files import write_atomically
from errors import UsageError, require_regular_file

CHECKPOINT_FORMAT = 1


def save_checkpoint(path, model, optimizer, config, history, device):
    """Write the state after the last epoch in history to path, atomically."""
    path = Path(path)
    content = {
        "format": CHECKPOINT_FORMAT,
        "script": config["script"],
        "config": dict(config),
        "epoch": len(history),
        "history": list(history),
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "rng_state": torch.get_rng_state(),
    }
    if device.type != "cpu":
        content["accelerator_rng_state"] = torch.get_device_module(device.type).get_rng_state()

    def write_content(file):
        torch.save(content, file)

    write_atomically(path, write_content)


def load_checkpoint(path, script_name):
    """Load a checkpoint saved by the script script_name; raise UsageError for any other file."""
    path = Path(path)
    require_regular_file(
        path,
        "Checkpoint",
        f"Check the path, or train first with --save-model {path}.",
        "Pass the checkpoint file saved with --save-model.",
    )

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise UsageError(f"Checkpoint {path} cannot be read: permission denied.") from None
    except Exception as error:  # noqa: BLE001 - the weights-only unpickler raises many types on bad input
        raise UsageError(
            f"Checkpoint {path} cannot be read ({type(error).__name__}): it is truncated, damaged or "
            f"not a PyTorch file. Use a checkpoint written by --save-model."
        ) from None

    problem = describe_format_problem(content)
    if problem is not None:
        raise UsageError(
            f"{path} is not a checkpoint of these scripts ({problem}). Use a checkpoint written by --save-model."
        )
    if content["script"] != script_name:
        raise UsageError(
            f"Checkpoint {path} was saved by {content['script']}.py, not {script_name}.py. "
            f"Use it with {content['script']}.py."
        )
    return content


# The entries of a checkpoint and their types.
CHECKPOINT_FIELDS = {
    "script": str,
    "config": dict,
    "epoch": int,
    "history": list,
    "model_state": dict,
    "optimizer_state": dict,
    "rng_state": torch.Tensor,
}


def describe_format_problem(content):
    """Return what is wrong with a loaded checkpoint, or None when its structure is right."""
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        return "no checkpoint format marker"
    for field, field_type in CHECKPOINT_FIELDS.items():
        if not isinstance(content.get(field), field_type):
            return f"{field} missing or of the wrong type"
    if content["epoch"] != len(content["history"]) or content["epoch"] < 1:
        return "epoch does not match the history"
    for record in content["history"]:
        if not isinstance(record, dict) or not {"epoch", "accuracy", "mean_loss", "seconds"} <= record.keys():
            return "damaged history"
    if content["rng_state"].dtype != torch.uint8:
        return "damaged RNG state"
    return None


def restore_rng_state(checkpoint, device):
    """Set the global random number generators to their state when the checkpoint was saved."""
    torch.set_rng_state(checkpoint["rng_state"])
    if device.type != "cpu" and "accelerator_rng_state" in checkpoint:
        torch.get_device_module(device.type).set_rng_state(checkpoint["accelerator_rng_state"])
