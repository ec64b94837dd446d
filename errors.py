"""The exception for problems that a user can fix, and a check of input files that raises it.

The scripts print a UsageError as one paragraph on stderr and exit with status 1, without a
traceback. Any other exception is a bug and keeps its traceback.
"""


class UsageError(Exception):
    """An invalid value, a missing or corrupt file, or a run that cannot go on.

    The message names the value or file and tells the user what to do next.
    """


def require_regular_file(path, label, missing_advice, advice):
    """Raise UsageError unless path is an existing regular file.

    label names the file in the messages ("Checkpoint", "Image file"). missing_advice follows
    the message for a missing file, and advice the messages for a folder or another kind of
    file. Other kinds are rejected because reading a named pipe blocks until another program
    writes to it, and a device can be endless.
    """
    if not path.exists():
        raise UsageError(f"{label} {path} not found. {missing_advice}")
    if path.is_dir():
        raise UsageError(f"{label} {path} is a folder, not a file. {advice}")
    if not path.is_file():
        raise UsageError(f"{label} {path} is not a regular file but a named pipe, socket or device. {advice}")
