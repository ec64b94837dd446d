"""Save and load training checkpoints: model, optimizer, configuration, history and RNG states.

A checkpoint is written after every epoch to a temporary file that is then renamed, so an
interrupted save leaves the previous checkpoint intact. It is loaded with weights_only=True,
which unpickles only tensors and plain Python containers and never runs code from the file.
"""

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from errors import UsageError

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

    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(descriptor)
    try:
        torch.save(content, temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path, script_name):
    """Load a checkpoint saved by the script script_name; raise UsageError for any other file."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"Checkpoint {path} not found. Check the path, or train first with --save-model {path}.")
    if path.is_dir():
        raise UsageError(f"Checkpoint {path} is a folder; pass the checkpoint file saved with --save-model.")

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise UsageError(f"Checkpoint {path} cannot be read: permission denied.") from None
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise UsageError(
            f"Checkpoint {path} cannot be read ({type(error).__name__}): it is truncated, damaged or "
            f"not a PyTorch file. Use a checkpoint written by --save-model."
        ) from None

    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT or "model_state" not in content:
        raise UsageError(
            f"{path} is not a checkpoint of these scripts (a PyTorch file without their format). "
            f"Use a checkpoint written by --save-model."
        )
    if content.get("script") != script_name:
        raise UsageError(
            f"Checkpoint {path} was saved by {content.get('script')}.py, not {script_name}.py. "
            f"Use it with {content.get('script')}.py."
        )
    return content


def restore_rng_state(checkpoint, device):
    """Set the global random number generators to their state when the checkpoint was saved."""
    torch.set_rng_state(checkpoint["rng_state"])
    if device.type != "cpu" and "accelerator_rng_state" in checkpoint:
        torch.get_device_module(device.type).set_rng_state(checkpoint["accelerator_rng_state"])
