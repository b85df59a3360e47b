"""A write that fails because the output's device is full or not writable stops the whole job.

Such a failure is not one bad photo: every later write would fail the same way, so going on would
only turn a whole night's work into a list of identical errors. The job stops with one line that
says how far it got and what to do; what is finished stays, and the same command resumes.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from pipeline.errors import OutputWriteError

# errno -> (what happened to OUT, what the user does about it)
_REASONS = {
    errno.ENOSPC: ("no space left on the device holding {out}", "free space"),
    errno.EDQUOT: ("disk quota exceeded on the device holding {out}", "free space (or raise the quota)"),
    errno.EROFS: ("{out} is on a read-only file system", "make it writable"),
    errno.EACCES: ("{out} is not writable (permission denied)", "fix its permissions"),
    errno.EPERM: ("{out} is not writable (operation not permitted)", "fix its permissions"),
}
WRITE_ERRNOS = frozenset(_REASONS)


def refused_write(exc: BaseException, under: Path | str | None = None) -> int | None:
    """The errno of ``exc`` (or of an exception it was raised from) when it means 'the device will not
    take writes', else None. With ``under``, an error that names a file elsewhere (a weights file
    that cannot be read, say) is not the output's: a failed ``write()`` names no file and counts."""
    seen = set()
    link: BaseException | None = exc  # walks the chain of causes
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError) and link.errno in WRITE_ERRNOS:
            if under is None or not link.filename or _inside(link.filename, under):
                return link.errno
            return None
        link = link.__cause__ or link.__context__
    return None


def _inside(filename: str | bytes | os.PathLike, folder: Path | str) -> bool:  # an OSError's filename
    try:
        return Path(os.fsdecode(filename)).resolve().is_relative_to(Path(folder).resolve())
    except (TypeError, ValueError, OSError):
        return False


def output_write_error(code: int, out: Path | str, progress: str) -> OutputWriteError:
    """'no space left on the device holding OUT: 3 of 10 images done, the rest not written; free space
    and run the same command again'."""
    what, fix = _REASONS[code]
    return OutputWriteError(f"{what.format(out=out)}: {progress}; {fix} and run the same command again", code)
