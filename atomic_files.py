"""Write files atomically: to a temporary file in the target folder, then rename it.

A reader never sees a half-written file, and an interrupted or failed write (Ctrl-C, a full
disk) leaves any earlier file at the target unchanged and no temporary file behind.
"""

import os
import secrets
from pathlib import Path

from errors import UsageError


def write_atomically(path, write_contents, binary=True):
    """Call write_contents(file) on a temporary file beside path, then rename it over path.

    Raises UsageError naming path when its folder is missing, path is a folder or another
    non-regular file (a device, a pipe), or the file cannot be written.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(
            f"Cannot write {path}: {folder} is not an existing folder. Create the folder or "
            f"choose another path."
        )
    if path.is_dir():
        raise UsageError(f"Cannot write {path}: it is a folder. Pass a file name inside it instead.")
    if path.exists() and not path.is_file():
        raise UsageError(f"Cannot write {path}: it is not a regular file. Choose another path.")

    # Opening with "x" creates the file with the usual permissions (0o666 less the umask). The
    # name is cut so that the temporary name stays within the usual limit of 255 bytes.
    temp_path = folder / f".{path.name[:200]}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    open_arguments = {"mode": "xb"} if binary else {"mode": "x", "newline": "", "encoding": "utf-8"}
    try:
        with open(temp_path, **open_arguments) as file:
            write_contents(file)
        os.replace(temp_path, path)
    except OSError as error:
        raise UsageError(
            f"Cannot write {path}: {error.strerror or error}. Check that the folder is writable "
            f"and has free space, or choose another path."
        ) from error
    except RuntimeError as error:
        # torch.save reports a Ctrl-C inside its zip writer as a RuntimeError raised while
        # handling the KeyboardInterrupt. Raise the interrupt itself, so that it stops the run.
        if caused_by_interrupt(error):
            raise KeyboardInterrupt from None
        raise
    finally:
        temp_path.unlink(missing_ok=True)


def caused_by_interrupt(error):
    """Return whether a KeyboardInterrupt is among the exceptions that error was raised while handling."""
    context = error.__context__
    while context is not None:
        if isinstance(context, KeyboardInterrupt):
            return True
        context = context.__context__
    return False
