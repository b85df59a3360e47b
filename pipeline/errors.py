"""Exceptions the library raises for problems a user can fix.

The CLI turns each into one clear line and a non-zero exit; anything else is a bug and keeps its
traceback.
"""


class StylizeError(Exception):
    """Base class: a problem with the user's input, options or environment."""


class InputError(StylizeError):
    """An input file is missing, unreadable, of the wrong kind or too small."""


class WeightsError(StylizeError):
    """The VGG19 weights cannot be loaded from the chosen source."""


class OutputExistsError(StylizeError):
    """The output exists and --overwrite was not given."""


class ConfigError(StylizeError):
    """The options contradict each other or name something that does not exist."""


class DeviceMemoryError(ConfigError):
    """The work does not fit in the device's memory; a smaller --size (or batch) would."""


class JobLockedError(StylizeError):
    """Another run holds the output (folder job) or job folder (video job): one job per output."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}  # what the lock file says: pid, host, started


class OutputWriteError(StylizeError):
    """The output's device is full or not writable: every later write would fail too, so the job stops.

    ``errno`` is the failed write's (ENOSPC, EDQUOT, EROFS, EACCES); finished outputs are kept and
    the same command resumes once space is freed.
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno
