"""Write files atomically: to a temporary file in the target folder, then rename it.

A reader never sees a half-written file, and an interrupted or failed write (Ctrl-C, a full
disk) leaves any earlier file at the target unchanged and no temporary file behind.
"""

import contextlib
import os
import secrets
import signal
import threading
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
        with interrupts_deferred():
            with open(temp_path, **open_arguments) as file:
                write_contents(file)
            os.replace(temp_path, path)
    except OSError as error:
        raise UsageError(
            f"Cannot write {path}: {error.strerror or error}. Check that the folder is writable "
            f"and has free space, or choose another path."
        ) from error
    finally:
        temp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def interrupts_deferred():
    """Hold back Ctrl-C (SIGINT) inside the block, then raise KeyboardInterrupt at its end.

    A KeyboardInterrupt raised inside torch.save's zip writer can turn into a RuntimeError or
    be lost, so a write is finished first and the interrupt takes effect right after it.
    The block runs as is outside the main thread, where Python cannot change signal handlers,
    and when SIGINT does not raise KeyboardInterrupt (it is ignored, as under nohup, or has
    another handler).
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not in_main_thread or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    received = []
    previous_handler = signal.signal(signal.SIGINT, lambda signal_number, frame: received.append(signal_number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    if received:
        raise KeyboardInterrupt
