"""The exception for problems that a user can fix.

The scripts print a UsageError as one paragraph on stderr and exit with status 1, without a
traceback. Any other exception is a bug and keeps its traceback.
"""


class UsageError(Exception):
    """An invalid value, a missing or corrupt file, or a run that cannot go on.

    The message names the value or file and tells the user what to do next.
    """
