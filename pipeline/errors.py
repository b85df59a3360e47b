"""Exceptions the library raises for problems a user can fix.

The CLI turns each into one clear line and a non-zero exit; anything else is a bug and keeps its
traceback. A message names a setting through ``setting("StyleConfig.size")`` (a configuration field)
or ``setting("overwrite")`` (a job's keyword argument), never through a command-line flag: the
library shows the setting's own name, the CLI its flag (``StylizeError.render``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_MARK = "\x1f"  # never in a path or a number, so a marked name cannot be confused with the text around it
_MARKED = re.compile(f"{_MARK}([^{_MARK}]+){_MARK}")


def setting(name: str) -> str:
    """``name`` ("StyleConfig.size", or a job keyword such as "overwrite") marked inside a message."""
    return f"{_MARK}{name}{_MARK}"


def render(message: str, name_of: Callable[[str], str | None]) -> str:
    """``message`` with each marked setting replaced by ``name_of(setting)`` (its own name when None)."""
    return _MARKED.sub(lambda m: name_of(m.group(1)) or m.group(1), message)


class StylizeError(Exception):
    """Base class: a problem with the user's input, options or environment."""

    def render(self, name_of: Callable[[str], str | None]) -> str:
        """The message with its settings named by ``name_of`` (the CLI passes its flags)."""
        return render(super().__str__(), name_of)

    def __str__(self) -> str:
        return self.render(lambda name: None)


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
