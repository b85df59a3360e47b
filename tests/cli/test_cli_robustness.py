"""What real nights bring (docs/robustness.md): a second copy of the job, kill -9, SIGTERM, SIGHUP, each
against the installed script in its own process; the run that follows (refused, or resuming) and style
images that cannot be used, through the same app in this process (tests/cli/conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from cli.images import app as images_app
from cli.video import app as video_app
from pipeline.jobs.lock import LOCK_NAME
from pipeline.jobs.video import JobFolder
from tests.cli.conftest import invoke, one_error_line, start
from tests.cli.test_cli_folder import tree_outputs
from tests.conftest import photos, stripes
from tests.media.test_video import make_video

# Slow enough per image that a signal lands mid-job, quick enough for the suite: 50 iterations at 32 px
# took 2.9 s a photo on 2 shared cores (half of 100 iterations' time), so the three photos left after the
# first output outlast the test's 50 ms polling and a signal's delivery many times over. The second run
# and the reruns are in this process: the job no longer has to outlast a new process's 3-4 s start-up.
SLOW_IMAGES = ["--size", "32", "--iterations", "50", "--scales", "1", "--device", "cpu", "--quiet"]
SLOW_VIDEO = ["--size", "32", "--first-iterations", "4", "--iterations", "6", "--scales", "1", "--device", "cpu",
              "--init", "previous", "--preset", "ultrafast", "--quiet"]


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 300  # a safety net for a hung job, not a speed requirement
    while not condition():
        assert proc.poll() is None, f"the job ended before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.mark.slow
def test_a_second_run_is_refused_then_kill_9_never_blocks_the_next(folders, style_file):
    src, dst = folders
    photos(src)
    first = start("stylize-images", src, style_file, dst, *SLOW_IMAGES)
    try:
        wait_for(lambda: '"pid"' in ((dst / LOCK_NAME).read_text() if (dst / LOCK_NAME).exists() else ""),
                 first, "lock")
        second = invoke(images_app, src, style_file, dst, *SLOW_IMAGES)  # this process: not the lock's holder
        one_error_line(second, str(dst), "another stylize job is writing here", f"pid {first.pid} on host ")
        assert second.returncode == 1
        wait_for(lambda: tree_outputs(dst), first, "output")
    finally:
        first.send_signal(signal.SIGKILL)  # like a power cut: the lock file stays, the lock does not
        first.wait()
    assert (dst / LOCK_NAME).exists()
    rerun = invoke(images_app, src, style_file, dst, *SLOW_IMAGES)
    assert rerun.returncode == 0, rerun.stderr
    assert set(tree_outputs(dst)) == {f"p{i}.png" for i in range(4)}
    assert not (dst / LOCK_NAME).exists()


@pytest.mark.slow
def test_sigterm_stops_a_folder_job_keeping_its_work_and_the_report(tmp_path, folders, style_file):
    (src, dst), report = folders, tmp_path / "report.json"
    photos(src)
    proc = start("stylize-images", src, style_file, dst, *SLOW_IMAGES, "--report", report)
    wait_for(lambda: dst.exists() and tree_outputs(dst), proc, "output")
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 143, err
    assert err.strip() == "error: stopped by SIGTERM; finished outputs are kept, run the same command again to resume"
    done = tree_outputs(dst)
    assert 1 <= len(done) < 4 and not list(dst.rglob("*.part")) and not (dst / LOCK_NAME).exists()
    for rel in done:
        Image.open(dst / rel).verify()
    statuses = {f["input"]: f["status"] for f in json.loads(report.read_text())["files"]}
    assert sorted(k for k, v in statuses.items() if v == "done") == sorted(done)
    assert set(statuses.values()) <= {"done", "pending"}

    rerun = invoke(images_app, src, style_file, dst, *SLOW_IMAGES)
    assert rerun.returncode == 0, rerun.stderr
    after = tree_outputs(dst)
    assert set(after) == {f"p{i}.png" for i in range(4)}
    assert all(after[rel] == mtime for rel, mtime in done.items())  # finished work was not redone


@pytest.mark.slow
def test_sighup_stops_a_video_job_and_the_same_command_resumes(tmp_path, style_file):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=10)
    folder = JobFolder(out)
    proc = start("stylize-video", src, style_file, out, *SLOW_VIDEO)
    wait_for(lambda: folder.frames.is_dir() and any(folder.frames.glob("*.png")), proc, "stylized frame")
    proc.send_signal(signal.SIGHUP)
    code, err = finish(proc)
    assert code == 129, err
    assert err.strip() == "error: stopped by SIGHUP; finished outputs are kept, run the same command again to resume"
    kept = folder.count_done()
    assert 1 <= kept < 10 and not out.exists() and not list(folder.path.rglob("*.part"))
    assert not (folder.path / "output.mp4").exists()  # the half-encoded file is gone, the frames stay

    rerun = invoke(video_app, src, style_file, out, *SLOW_VIDEO[:-1])
    assert rerun.returncode == 0, rerun.stderr
    assert f"10 frames ({kept} from an earlier run)" in rerun.stderr
    assert out.is_file() and not folder.path.exists()


def _truncated(path: Path) -> None:
    data = BytesIO()
    Image.fromarray(stripes(96, 96)).save(data, "JPEG")
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])


BAD_STYLES = {
    "unreadable": ("style.jpg", lambda p: p.write_text("not a picture\n"), ["style.jpg", "not an image"]),
    "truncated": ("style.jpg", _truncated, ["style.jpg", "unreadable image", "truncated"]),
    "tiny": ("tiny.png", lambda p: Image.fromarray(stripes(12, 9)).save(p), ["tiny.png", "too small (12x9 px)"]),
    "folder": ("styles", lambda p: p.mkdir(), ["styles", "the style is a folder"]),
}


@pytest.mark.parametrize("case", sorted(BAD_STYLES))
def test_a_bad_style_is_one_line_before_any_work(tmp_path, case, style_file, monkeypatch):
    from pipeline.media import video

    name, make, fragments = BAD_STYLES[case]
    style = tmp_path / name
    make(style)
    src, clip = photos(tmp_path / "in", 1), tmp_path / "in.mp4"
    make_video(clip, frames=2)
    # Nothing may be read before the style is checked: the video is not even probed.
    monkeypatch.setattr(video, "probe", lambda *a, **k: pytest.fail("the video was read first"))
    one_error_line(invoke(images_app, src, style, tmp_path / "out", "--size", "32"), *fragments)
    one_error_line(invoke(video_app, clip, style, tmp_path / "out.mp4", "--size", "32"), *fragments)
    one_error_line(invoke(images_app, src / "p0.png", style, tmp_path / "one.png", "--size", "32"), *fragments)
    assert not (tmp_path / "out").exists() and not (tmp_path / "one.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in", "in.mp4", "style.png", name])


def test_a_blend_that_does_not_match_the_styles_is_one_line(tmp_path, style_file, style_file2):
    src, clip = photos(tmp_path / "in", 1), tmp_path / "in.mp4"
    make_video(clip, frames=2)
    for app, source, out in ((images_app, src, "out"), (video_app, clip, "out.mp4")):
        proc = invoke(app, source, style_file, tmp_path / out, "--add-style", style_file2, "--style-blend", "1,2,3")
        one_error_line(proc, "--style-blend has 3 weights for 2 style images")
        assert proc.returncode == 2
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.mp4").exists()
    assert os.listdir(src) == ["p0.png"]


def test_stop_signals_raise_in_the_main_thread_but_an_ignored_sighup_stays_ignored():
    from cli.common import Stopped, stop_signals

    runner_handler = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a plain terminal
    try:
        with pytest.raises(Stopped) as caught, stop_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this at once
        assert caught.value.signum == signal.SIGTERM and isinstance(caught.value, KeyboardInterrupt)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the process's own handler is back
    finally:
        signal.signal(signal.SIGTERM, runner_handler)

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what `nohup` does
    try:
        with stop_signals():
            os.kill(os.getpid(), signal.SIGHUP)  # an SSH session closing under a nohup'ed job
            time.sleep(0.1)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
