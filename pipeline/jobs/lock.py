"""One job per output: an OS lock (``flock``) on a small file inside the output, held for the whole run.

A second run on the same output (cron firing twice, a second terminal, a scheduler's retry) finds the
lock taken and stops before touching anything, naming the process that holds it. The lock belongs
to the open file, so the operating system drops it when its holder exits in any way, kill -9 and
power loss included: a lock file left behind never blocks anyone, and no age or pid guessing is
needed. The pid, host and start time written into the file only serve to name the holder.

Usage (any driver that writes into one output can take it, e.g. a scale-out driver)::

    with job_lock(output_dir, on_event=on_event):
        ...  # the whole run: planning what is done, writing, the manifest / report
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import JobLockedError
from pipeline.events import EventCallback, Notice, ignore

LOCK_NAME = ".stylize-lock"
# flock answers these where the file system cannot lock (some NFS / SMB / FUSE mounts).
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def describe_holder(holder: dict) -> str:
    """'pid 4242 on host nas, started 2026-11-25 08:40:12 UTC' from what the lock file holds."""
    if not holder:
        return "another process (it has not written its details yet)"
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {when}"


def _read_holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_holder(fd: int) -> None:
    body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": round(time.time(), 3)})
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, body.encode() + b"\n", 0)
    except OSError:
        pass  # a full disk: the lock holds all the same, only the holder's name is missing


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file ``fd`` has locked (its holder unlinks it on release)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


@contextmanager
def job_lock(folder: Path, *, label: Path | str | None = None, on_event: EventCallback = ignore) -> Iterator[bool]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block.

    Raises JobLockedError (naming the holder) at once when another process holds it; yields True
    while held, False where the file system cannot lock (after one Notice). ``label`` names the
    output in messages (default: the folder). On release the lock file is removed, and the folder too
    when this call created it and it is still empty, so a run that stops early leaves nothing.
    """
    folder = Path(folder)
    label = label if label is not None else folder
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise JobLockedError(f"{label}: another stylize job is writing here ({describe_holder(holder)}); "
                                 "let it finish or stop it, then run this command again", holder) from None
        except (OSError, ImportError) as exc:
            os.close(fd)
            if isinstance(exc, OSError) and exc.errno not in UNSUPPORTED:
                raise
            on_event(Notice(message=f"{label}: this file system cannot lock files ({exc}): nothing stops a second "
                                    "run on the same output from writing at the same time"))
            try:
                yield False
            finally:
                _remove(path, folder, created)
            return
        if _same_file(fd, path):
            break
        # The holder we waited behind removed this file as it let go: lock the one at the path now.
        os.close(fd)
    _write_holder(fd)
    try:
        yield True
    finally:
        _remove(path, folder, created)  # unlinked while still held: see _same_file
        os.close(fd)


def _remove(path: Path, folder: Path, created: bool) -> None:
    try:
        path.unlink(missing_ok=True)
        if created:
            folder.rmdir()  # only succeeds when empty: a run that wrote nothing leaves nothing
    except OSError:
        pass
