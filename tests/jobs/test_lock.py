"""pipeline/jobs/lock.py: one job per output, held by a real OS lock in another real process."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest

from pipeline.errors import JobLockedError
from pipeline.events import Notice
from pipeline.jobs.folder import stylize_folder
from pipeline.jobs.folder_plan import MANIFEST_NAME
from pipeline.jobs.lock import LOCK_NAME, job_lock
from pipeline.jobs.video import stylize_video
from pipeline.jobs.video_resume import JobFolder
from pipeline.scale.local import LocalExecutor
from tests.conftest import photos
from tests.jobs.test_folder import FakeStylizer
from tests.jobs.test_folder import job as folder_job  # noqa: F401  (the fixture, under another name)
from tests.jobs.test_video_job import QUICK, EchoStylizer
from tests.media.test_video import make_video


def _holder(folder: Path, held) -> None:
    with job_lock(folder):
        held.set()
        time.sleep(120)


@pytest.fixture
def hold():
    """Start a real process that takes the lock of a folder and keeps it; yields a starter. The process
    is a fork of this one: another process with its own open file and lock, without the 3-4 s of a new
    interpreter importing torch (pipeline.events does)."""
    fork = multiprocessing.get_context("fork")
    procs = []

    def start(folder: Path) -> multiprocessing.Process:
        held = fork.Event()
        proc = fork.Process(target=_holder, args=(folder, held), daemon=True)
        proc.start()
        procs.append(proc)
        assert held.wait(timeout=60), "the holder did not take the lock"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.join()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_second_holder_is_refused_and_named_until_the_first_is_killed(tmp_path, hold):
    folder = tmp_path / "out"
    holder = hold(folder)
    with pytest.raises(JobLockedError) as caught:
        with job_lock(folder):
            pytest.fail("two holders at once")
    message = str(caught.value)
    assert str(folder) in message and f"pid {holder.pid} on host {socket.gethostname()}, started 20" in message
    assert caught.value.holder["pid"] == holder.pid

    holder.kill()  # SIGKILL, no clean-up at all: the lock file stays behind
    holder.join()
    assert (folder / LOCK_NAME).exists()
    with job_lock(folder) as locked:  # ...and blocks nobody: the OS dropped the lock with its process
        assert locked is True
        assert f'"pid": {os.getpid()}' in (folder / LOCK_NAME).read_text()
    assert not (folder / LOCK_NAME).exists()


def test_release_leaves_nothing_in_a_folder_it_created(tmp_path):
    with job_lock(tmp_path / "new"):
        assert (tmp_path / "new" / LOCK_NAME).exists()
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with job_lock(tmp_path / "kept"):
        (tmp_path / "kept" / "result.png").write_bytes(b"x")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["result.png"]


def test_a_file_system_without_locks_gets_one_notice_and_the_job_goes_on(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    events = []
    with job_lock(tmp_path / "nfs", on_event=events.append) as locked:
        assert locked is False
    assert len(events) == 1 and isinstance(events[0], Notice) and "cannot lock" in events[0].message


def test_a_second_folder_job_touches_nothing(tmp_path, folders, hold, folder_job):  # noqa: F811
    src, dst = folders
    photos(src, 1)
    hold(dst)
    before = snapshot(dst)
    fake = FakeStylizer()
    with pytest.raises(JobLockedError, match="another stylize job is writing here"):
        stylize_folder(src, dst, folder_job, executor=LocalExecutor(fake), report=tmp_path / "report.json")
    assert snapshot(dst) == before and not (dst / MANIFEST_NAME).exists()
    assert fake.batches == [] and not (tmp_path / "report.json").exists()


def test_a_second_video_job_touches_nothing(tmp_path, hold, style_file):
    from pipeline.config import JobConfig, StyleConfig, StyleImage

    job = JobConfig(styles=(StyleImage(style_file),), style=StyleConfig(scales=1))
    clip = tmp_path / "in.mp4"
    make_video(clip, frames=4)
    out = tmp_path / "out.mp4"
    folder = JobFolder(out)
    hold(folder.path)
    before = snapshot(folder.path)
    echo = EchoStylizer()
    with pytest.raises(JobLockedError, match=str(out)):
        stylize_video(clip, out, job, QUICK, executor=LocalExecutor(echo))
    assert snapshot(folder.path) == before and echo.calls == [] and not out.exists()
