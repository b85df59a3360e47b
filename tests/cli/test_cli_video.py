"""`stylize-video` as a user runs it (real VGG19, tiny clips): the installed console script in its own
process end to end and for --quiet (the whole process's stderr must stay empty), the same app in this
process for the rest (tests/cli/conftest.py)."""

from __future__ import annotations

import av
import pytest

from cli.video import app
from tests.cli.conftest import invoke, one_error_line, script
from tests.media.test_video import audio_seconds, frame_times, make_video

FAST = ["--size", "32", "--first-iterations", "2", "--iterations", "1", "--scales", "1", "--device", "cpu",
        "--preset", "ultrafast"]


def run(*args):
    """The installed script in its own process, exactly as a user runs it."""
    return script("stylize-video", *args)


def run_here(*args):
    """The same app in this process: no 3-4 s of start-up (tests/cli/conftest.py)."""
    return invoke(app, *args)


@pytest.mark.slow
def test_video_end_to_end_keeps_timing_sound_and_input(tmp_path, style_file):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    times = make_video(src, width=49, height=33, frames=4, vfr=True)  # odd size, variable rate
    before = src.read_bytes()
    proc = run(src, style_file, out, *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "Wrote" in proc.stderr and "s/frame" in proc.stderr and "4 frames" in proc.stderr
    assert "even sizes" in proc.stderr  # 49x33 cannot be 4:2:0: said, not hidden
    assert frame_times(out) == [t / 1000 for t in times]
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height, cc.name) == (48, 32, "h264")
    assert audio_seconds(out) == pytest.approx(audio_seconds(src), abs=0.03)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4", "style.png"]


def test_report_drift_prints_the_drift_beside_its_floor(tmp_path, style_file):
    src, out, report = tmp_path / "in.mp4", tmp_path / "out.mp4", tmp_path / "r.json"
    make_video(src, frames=4)
    proc = run_here(src, style_file, out, *FAST, "--report", report, "--report-drift")
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stderr.splitlines() if line.startswith("Content drift"))
    assert "over the first frames" in line and "the measure's floor" in line
    assert report.exists() and report.with_suffix(".png").exists()


@pytest.mark.slow
def test_quiet_range_and_overwrite(tmp_path, style_file):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_video(src, frames=10)
    out.write_bytes(b"precious")
    proc = run_here(src, style_file, out, *FAST, "--quiet", "--start", "0.12", "--max-frames", "2")
    one_error_line(proc, "already exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    proc = run(src, style_file, out, *FAST, "--quiet", "--start", "0.12", "--max-frames", "2", "--overwrite",
               "--init", "frame", "--codec", "ffv1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --quiet: nothing for scripts to parse away
    assert frame_times(out) == [0.0, 0.04]
    assert audio_seconds(out) == pytest.approx(0.08, abs=0.03)


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda p: None, ["in.mp4", "no such file"]),
        (lambda p: p.write_text("hello\n" * 100), ["in.mp4", "not a readable video"]),
        (lambda p: make_video(p, frames=2), ["no video frames in the chosen range"]),
    ],
)
def test_bad_inputs_get_one_line(tmp_path, style_file, make, fragments):
    src = tmp_path / "in.mp4"
    make(src)
    proc = run_here(src, style_file, tmp_path / "out.mp4", *FAST, "--start", "5")
    one_error_line(proc, *fragments)
    assert not (tmp_path / "out.mp4").exists()


def test_bad_options_get_one_line(tmp_path, style_file):
    src = tmp_path / "in.mp4"
    make_video(src, frames=2, audio=False)
    # The library names the settings (EncodeConfig.codec); the user reads the flags.
    one_error_line(run_here(src, style_file, tmp_path / "out.webm", *FAST), "--codec libx264 cannot be stored", "webm")
    one_error_line(run_here(src, style_file, tmp_path / "out.mkv", *FAST, "--pix-fmt", "nv-nothing"),
                   "--pix-fmt nv-nothing: not usable with libx264")
    one_error_line(run_here(src, style_file, tmp_path / "out.mkv", *FAST, "--codec", "aac"),
                   "--codec aac encodes audio, not video")
    one_error_line(run_here(style_file, style_file, tmp_path / "out.mp4", *FAST), "style.png: a still image")
    one_error_line(run_here(src, style_file, tmp_path / "out.mp4", *FAST, "--init", "sideways"), "--init")
    one_error_line(run_here(src, style_file, tmp_path / "out.mp4", *FAST, "--max-frames", "0"), "--max-frames")
    one_error_line(run_here(src, tmp_path / "nope.jpg", tmp_path / "out.mp4", *FAST), "nope.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "style.png"]  # no job folder left behind
