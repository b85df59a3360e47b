"""pipeline/jobs/video.py: the staged job, frame initialisation, resume after a crash, safety.

Most tests use ``EchoStylizer``, a stand-in that mixes the frame with its init image without any
network: it makes the job's own logic (chaining, resume, timing) fast and exactly checkable. The
real VGG19 runs end to end in tests/cli/test_cli_video.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline.config import (
    EncodeConfig,
    JobConfig,
    StyleConfig,
    StyleImage,
    TemporalConfig,
    VideoConfig,
    VideoJobConfig,
)
from pipeline.engine.optimize import StylizeResult
from pipeline.errors import ConfigError, InputError, OutputExistsError
from pipeline.events import ItemDone, JobFinished, JobStarted, Notice
from pipeline.jobs.video import ReportRequest, stylize_video
from pipeline.jobs.video_resume import JobFolder
from pipeline.scale.local import LocalExecutor
from tests.media.test_video import audio_seconds, frame_times, make_video

# The job works at 32 px, 2 iterations for a first frame (the job fixture's StyleConfig) and 2 for
# later ones. "previous": the job-mechanics tests' clips change colour every frame, which "warped"
# (the default) rightly takes for scene cuts; the warped path has its own tests on a clean pan below.
FAST = WARPED = VideoConfig(iterations=2)
PREVIOUS = TemporalConfig(init="previous")
ENCODE = EncodeConfig(preset="ultrafast")
QUICK = VideoJobConfig(video=FAST, encode=ENCODE, temporal=PREVIOUS)  # the job-mechanics tests' settings
QUICK_WARPED = VideoJobConfig(video=WARPED, encode=ENCODE)


class EchoStylizer:
    """Returns the average of the content and the init (or a fixed tint for a first frame)."""

    device = torch.device("cpu")

    def __init__(self, fail_at: int | None = None):
        self.calls: list[dict] = []
        self.fail_at = fail_at

    def stylize(self, content, *, init=None, temporal=None, iterations=None, scales=None, on_progress=None,
                 on_notice=None):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a frame
        self.calls.append({"content": content.clone(), "init": None if init is None else init.clone(),
                           "iterations": iterations, "scales": scales, "temporal": temporal})
        start = init if init is not None else torch.full_like(content, 0.25)
        if on_progress is not None:
            on_progress(iterations, iterations, torch.tensor(1.0))
        return StylizeResult((content + start) / 2, {"style": 1.0}, iterations)

    def measure(self, image, content):
        """Stand-ins for the loss terms, simple enough to check: distance from the content, brightness."""
        return {"content": (image - content).pow(2).flatten(1).mean(1).tolist(),
                "style": image.flatten(1).mean(1).tolist()}


@pytest.fixture
def job(style_file) -> JobConfig:
    return JobConfig(styles=(StyleImage(style_file),), style=StyleConfig(size=32, iterations=2, scales=1))


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_job_keeps_frames_timing_and_sound(tmp_path, job):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    times = make_video(src, width=64, height=48, frames=7, vfr=True)
    events = []
    stylizer = EchoStylizer()
    summary = stylize_video(src, out, job, QUICK, on_event=events.append, executor=LocalExecutor(stylizer))
    assert frame_times(out) == [t / 1000 for t in times]
    assert audio_seconds(out) == pytest.approx(audio_seconds(src), abs=0.03)
    assert (summary.width, summary.height, summary.frames) == (64, 48, 7)
    assert (summary.work_width, summary.work_height) == (32, 24)
    assert not JobFolder(out).path.exists()
    assert [e.total for e in events if isinstance(e, JobStarted)] == [7]
    assert sum(isinstance(e, ItemDone) for e in events) == 7
    assert isinstance(events[-1], JobFinished)
    # The first frame gets the first-frame budget from its content; later ones start from the previous result.
    assert stylizer.calls[0]["init"] is None and stylizer.calls[0]["iterations"] == 2
    assert all(c["init"] is not None and c["scales"] == 1 for c in stylizer.calls[1:])


def test_size_full_stylizes_frames_at_the_inputs_own_size(tmp_path, job):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, width=64, height=48, frames=3, audio=False)
    stylizer = EchoStylizer()
    full = JobConfig(job.styles, job.style.replace(size="full"), job.engine)
    summary = stylize_video(src, out, full, QUICK, executor=LocalExecutor(stylizer))
    assert (summary.work_width, summary.work_height) == (64, 48)
    assert all(c["content"].shape[-2:] == (48, 64) for c in stylizer.calls)


def test_a_phone_clip_filmed_sideways_is_stylized_and_written_upright(tmp_path, job):
    src, out = tmp_path / "phone.mp4", tmp_path / "out.mp4"
    make_video(src, width=64, height=48, frames=3, audio=False, rotation=-90)  # as a phone's "rotate=90" tag
    events = []
    stylizer = EchoStylizer()
    summary = stylize_video(src, out, job, QUICK, on_event=events.append, executor=LocalExecutor(stylizer))
    assert (summary.width, summary.height) == (48, 64)  # portrait, as the phone showed it
    assert stylizer.calls[0]["content"].shape[-2:] == (32, 24)
    assert any("turned by 270°" in e.message for e in events if isinstance(e, Notice))
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        # Upright pixels and no display matrix: players that ignore the matrix show it right too.
        assert (frame.width, frame.height, frame.rotation) == (48, 64, 0)


def test_previous_init_passes_the_exact_saved_bytes(tmp_path, job):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_video(src, frames=4, audio=False)
    stylizer = EchoStylizer(fail_at=3)  # stop before the 4th frame, keeping 3 in the job folder
    with pytest.raises(KeyboardInterrupt):
        stylize_video(src, out, job, VideoJobConfig(video=FAST, encode=EncodeConfig(codec="ffv1"), temporal=PREVIOUS),
                      executor=LocalExecutor(stylizer))
    folder = JobFolder(out)
    saved = [folder.load(i, (21, 32, 3)) for i in range(3)]
    # Frame 2 started from the PNG of frame 1, bit for bit (so a resumed run starts from the same state).
    init = (stylizer.calls[2]["init"][0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(init, saved[1])
    assert not out.exists()


def test_frame_init_starts_every_frame_from_its_content(tmp_path, job):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=3, audio=False)
    stylizer = EchoStylizer()
    stylize_video(src, out, job.__class__(job.styles, job.style.replace(iterations=5)),
                  VideoJobConfig(video=FAST, encode=ENCODE, temporal=TemporalConfig(init="frame")),
                  executor=LocalExecutor(stylizer))
    assert [c["init"] for c in stylizer.calls] == [None, None, None]
    assert [c["iterations"] for c in stylizer.calls] == [5, 2, 2]


def test_a_scene_cut_starts_a_new_chain_with_the_first_frames_budget(tmp_path, job):
    """The guide's scene-cut test inside the chain: the new shot's first frame starts from its own
    content, with the first frame's iterations and the coarse-to-fine schedule."""
    from tests.media.test_video import two_shot_video

    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    two_shot_video(src, 3, 3)
    stylizer = EchoStylizer()
    stylize_video(src, out, job.__class__(job.styles, job.style.replace(iterations=7, scales=2)), QUICK_WARPED,
                  executor=LocalExecutor(stylizer))
    assert [c["init"] is None for c in stylizer.calls] == [True, False, False, True, False, False]
    assert [c["iterations"] for c in stylizer.calls] == [7, 2, 2, 7, 2, 2]
    assert [c["scales"] for c in stylizer.calls] == [2, 1, 1, 2, 1, 1]
    assert [c["temporal"] is not None for c in stylizer.calls] == [False, True, True, False, True, True]


def test_interrupted_job_resumes_to_the_same_result(tmp_path, job):
    src = tmp_path / "in.mp4"
    make_video(src, frames=6)
    whole, resumed = tmp_path / "whole.mkv", tmp_path / "resumed.mkv"
    lossless = EncodeConfig(codec="ffv1")
    stylize_video(src, whole, job, VideoJobConfig(video=FAST, encode=lossless, temporal=PREVIOUS),
                  executor=LocalExecutor(EchoStylizer()))
    with pytest.raises(KeyboardInterrupt):
        stylize_video(src, resumed, job, VideoJobConfig(video=FAST, encode=lossless, temporal=PREVIOUS),
                      executor=LocalExecutor(EchoStylizer(fail_at=4)))
    events = []
    second = EchoStylizer()
    summary = stylize_video(src, resumed, job, VideoJobConfig(video=FAST, encode=lossless, temporal=PREVIOUS),
                            on_event=events.append, executor=LocalExecutor(second))
    assert summary.resumed_frames == 4 and len(second.calls) == 2
    assert any(isinstance(e, Notice) and "resuming" in e.message for e in events)
    assert all(np.array_equal(a, b) for a, b in zip(decoded(whole), decoded(resumed)))
    assert len(decoded(resumed)) == 6
    assert audio_seconds(resumed) == pytest.approx(audio_seconds(whole), abs=1e-6)


def test_changed_options_are_refused_then_discarded_with_overwrite(tmp_path, job):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=4, audio=False)
    with pytest.raises(KeyboardInterrupt):
        stylize_video(src, out, job, QUICK, executor=LocalExecutor(EchoStylizer(fail_at=2)))
    other = VideoConfig(iterations=3)
    with pytest.raises(ConfigError, match="video differ"):
        stylize_video(src, out, job, VideoJobConfig(video=other, encode=ENCODE, temporal=PREVIOUS),
                      executor=LocalExecutor(EchoStylizer()))
    summary = stylize_video(src, out, job, VideoJobConfig(video=other, encode=ENCODE, temporal=PREVIOUS),
                            overwrite=True, executor=LocalExecutor(EchoStylizer()))
    assert summary.resumed_frames == 0 and summary.frames == 4


def test_existing_output_is_kept_without_overwrite(tmp_path, job):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=3, audio=False)
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        stylize_video(src, out, job, QUICK, executor=LocalExecutor(EchoStylizer()))
    assert out.read_bytes() == b"precious"
    stylize_video(src, out, job, QUICK, overwrite=True, executor=LocalExecutor(EchoStylizer()))
    assert len(frame_times(out)) == 3
    with pytest.raises(OutputExistsError, match="replace the input"):
        stylize_video(src, src, job, QUICK, overwrite=True, executor=LocalExecutor(EchoStylizer()))


def test_damaged_input_stops_with_where_the_frames_are(tmp_path, job):
    whole, src, out = tmp_path / "whole.mp4", tmp_path / "cut.mp4", tmp_path / "out.mp4"
    make_video(whole, frames=30, audio=False, options={"movflags": "+faststart"})
    data = whole.read_bytes()
    src.write_bytes(data[: int(len(data) * 0.8)])
    events = []
    with pytest.raises(InputError) as info:
        stylize_video(src, out, job, QUICK, on_event=events.append, executor=LocalExecutor(EchoStylizer()))
    message = str(info.value)
    assert ("could not be decoded" in message or "decoding failed" in message) and "frames are kept in" in message
    assert any(isinstance(e, Notice) and "damaged" in e.message for e in events)
    assert not out.exists() and src.read_bytes() == data[: int(len(data) * 0.8)]
    assert not list(JobFolder(out).path.glob("output*"))


def test_writer_failure_stops_the_job_without_hanging(tmp_path, job, monkeypatch):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=30, audio=False)  # more frames than the queues hold
    from pipeline.media.video import VideoWriter

    def broken(self, rgb, pts):
        raise OSError("disk full")

    monkeypatch.setattr(VideoWriter, "write", broken)
    stylizer = EchoStylizer()
    with pytest.raises(OSError, match="disk full"):
        stylize_video(src, out, job, QUICK, executor=LocalExecutor(stylizer))
    assert len(stylizer.calls) < 30 and not out.exists()
    assert len(list(JobFolder(out).frames.glob("*.png"))) == len(stylizer.calls)  # kept for a rerun


KILL_SCRIPT = """
import sys, time, torch
sys.path.insert(0, {root!r})
from tests.jobs.test_video_job import EchoStylizer, QUICK
from pipeline.config import JobConfig, StyleConfig, StyleImage
from pipeline.jobs.video import stylize_video
from pipeline.scale.local import LocalExecutor

class Slow(EchoStylizer):
    def stylize(self, content, **kw):
        time.sleep(0.3)  # long enough for the test to kill it partway
        return super().stylize(content, **kw)

job = JobConfig(styles=(StyleImage({style!r}),), style=StyleConfig(size=32, iterations=2, scales=1))
stylize_video({src!r}, {out!r}, job, QUICK, executor=LocalExecutor(Slow()))
"""


@pytest.mark.slow
def test_sigkill_partway_then_rerun_completes(tmp_path, job, style_file):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=20)
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(root=str(Path(__file__).parents[2]), style=str(style_file), src=str(src),
                                         out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=Path(__file__).parents[2])
    frames = JobFolder(out).frames
    try:
        while len(list(frames.glob("*.png"))) < 3 and proc.poll() is None:
            time.sleep(0.05)  # watching another process: there is nothing to join
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    assert not out.exists()
    summary = stylize_video(src, out, job, QUICK, executor=LocalExecutor(EchoStylizer()))
    assert 3 <= summary.resumed_frames < 20
    assert frame_times(out) == [round(i * 0.04, 4) for i in range(20)]
    assert audio_seconds(out) == pytest.approx(0.8, abs=0.03)
    assert not JobFolder(out).path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4", "run.py", "style.png"]



def test_frame_folders_in_and_out(tmp_path, job):
    src, frames_out = tmp_path / "in.mp4", tmp_path / "styled"
    times = make_video(src, frames=5, vfr=True)
    events = []
    summary = stylize_video(src, frames_out, job,
                            VideoJobConfig(video=FAST, encode=EncodeConfig(output_size=24), temporal=PREVIOUS),
                            on_event=events.append, executor=LocalExecutor(EchoStylizer()))
    names = sorted(p.name for p in frames_out.iterdir())
    assert names == ["000000.png", "000001.png", "000002.png", "000003.png", "000004.png", "timecodes.txt"]
    assert (summary.width, summary.height) == (24, 16)
    timecodes = (frames_out / "timecodes.txt").read_text().split("\n")
    assert timecodes[0] == "# timecode format v2" and [float(t) for t in timecodes[1:6]] == times
    assert any(isinstance(e, Notice) and "no sound" in e.message for e in events)
    # ...and that folder as the input of another job, at 10 fps.
    again = tmp_path / "again.mp4"
    summary = stylize_video(frames_out, again, job.__class__(job.styles, job.style.replace(size=24, iterations=1)),
                            VideoJobConfig(video=VideoConfig(iterations=1, fps=10), encode=ENCODE, temporal=PREVIOUS),
                            executor=LocalExecutor(EchoStylizer()))
    assert frame_times(again) == [0.0, 0.1, 0.2, 0.3, 0.4]
    with pytest.raises(OutputExistsError):
        stylize_video(src, frames_out, job, QUICK, executor=LocalExecutor(EchoStylizer()))
    stylize_video(src, frames_out, job, QUICK, overwrite=True, executor=LocalExecutor(EchoStylizer()))
    assert len(list(frames_out.glob("*.png"))) == 5 and not JobFolder(frames_out).path.exists()


def make_pan(path: Path, frames: int, width: int = 64, height: int = 48) -> None:
    """A camera pan: one smooth picture moving 2 px left per frame (lossless, so flow is clean)."""
    from tests.conftest import pattern

    scene = pattern(width + 2 * frames, height, seed=3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
        for i in range(frames):
            rgb = np.ascontiguousarray(scene[:, 2 * i: 2 * i + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_warped_is_the_default_and_writes_a_stability_report(tmp_path, job):
    import json

    src, out, report = tmp_path / "in.mkv", tmp_path / "out.mp4", tmp_path / "stability.json"
    make_pan(src, frames=5)
    stylizer = EchoStylizer()
    summary = stylize_video(src, out, job, QUICK_WARPED, executor=LocalExecutor(stylizer),
                            report=ReportRequest(path=report))
    assert TemporalConfig().init == "warped"
    # Frames after the first start from the flow-warped previous result, held by a temporal term.
    assert stylizer.calls[0]["temporal"] is None
    later = stylizer.calls[1:]
    assert all(c["temporal"] is not None and c["init"] is not None for c in later)
    assert all(c["temporal"].mask.shape == (1, 1, 24, 32) for c in later)
    data = json.loads(report.read_text())
    assert data["frames"] == 5 and len(data["per_frame"]) == 4
    assert data["warping_error"] == pytest.approx(summary.warping_error)
    assert data["seconds_per_frame"] is not None and data["extra"]["init"] == "warped"
    # Each stylized frame's losses, measured from the saved frames against the input frames.
    styles = data["per_frame_losses"]["style"]
    assert len(styles) == 5 and len(data["per_frame_losses"]["content"]) == 5
    first = np.asarray(decoded(src)[0], np.float32) / 255
    assert styles[0] == pytest.approx((first + 0.25).mean() / 2, abs=2e-3)  # the echo of frame 0
    assert data["losses"]["style"] == pytest.approx(np.mean(styles)) == pytest.approx(summary.style_loss)
    assert data["long_term"] == {}  # 5 frames: none are LONG_TERM_STRIDE apart


def test_the_report_measures_frames_ten_apart_on_a_longer_clip(tmp_path, job):
    import json

    from pipeline.jobs.video_report import LONG_TERM_STRIDE

    src, out, report = tmp_path / "in.mkv", tmp_path / "out.mp4", tmp_path / "stability.json"
    make_pan(src, frames=LONG_TERM_STRIDE + 2)
    stylize_video(src, out, job, QUICK_WARPED, executor=LocalExecutor(EchoStylizer()),
                  report=ReportRequest(path=report))
    far = json.loads(report.read_text())["long_term"]
    assert far["stride"] == LONG_TERM_STRIDE and len(far["per_frame"]) == 2
    assert far["warping_error"] == pytest.approx(np.mean([e for e in far["per_frame"] if e is not None]))
    assert report.with_suffix(".png").stat().st_size > 0
    assert not JobFolder(out).path.exists()


def test_long_term_resumes_to_the_same_result(tmp_path, job, monkeypatch):
    import pipeline.jobs.temporal as temporal_module
    from pipeline.config import TemporalConfig

    used = []
    real = temporal_module.with_long_term
    monkeypatch.setattr(temporal_module, "with_long_term", lambda *a: used.append(1) or real(*a))
    src, whole, resumed = tmp_path / "in.mkv", tmp_path / "whole.mkv", tmp_path / "resumed.mkv"
    make_pan(src, frames=7)
    lossless, settings = EncodeConfig(codec="ffv1"), TemporalConfig(long_term=2)
    stylize_video(src, whole, job, VideoJobConfig(video=WARPED, encode=lossless, temporal=settings),
                  executor=LocalExecutor(EchoStylizer()))
    # Frames 2..6 each had the frame two back, from the same shot; --carry offset (the default) folds
    # it in twice per frame: into the moved result and into the moved offset.
    assert len(used) == 2 * 5
    with pytest.raises(KeyboardInterrupt):
        stylize_video(src, resumed, job, VideoJobConfig(video=WARPED, encode=lossless, temporal=settings),
                      executor=LocalExecutor(EchoStylizer(fail_at=4)))
    used.clear()
    summary = stylize_video(src, resumed, job, VideoJobConfig(video=WARPED, encode=lossless, temporal=settings),
                            executor=LocalExecutor(EchoStylizer()))
    # The resumed frames 4..6 found frames 2..4 (two from the job folder) exactly as the whole run did.
    assert summary.resumed_frames == 4 and len(used) == 2 * 3
    assert all(np.array_equal(a, b) for a, b in zip(decoded(whole), decoded(resumed), strict=True))


def test_temporal_settings_are_part_of_the_resume_state(tmp_path, job):
    from pipeline.config import TemporalConfig

    src, out = tmp_path / "in.mkv", tmp_path / "out.mp4"
    make_pan(src, frames=4)
    with pytest.raises(KeyboardInterrupt):
        stylize_video(src, out, job, VideoJobConfig(video=WARPED, encode=ENCODE, temporal=TemporalConfig(weight=50)),
                      executor=LocalExecutor(EchoStylizer(fail_at=2)))
    with pytest.raises(ConfigError, match="temporal"):
        stylize_video(src, out, job, VideoJobConfig(video=WARPED, encode=ENCODE, temporal=TemporalConfig(weight=5)),
                      executor=LocalExecutor(EchoStylizer()))
    summary = stylize_video(src, out, job,
                            VideoJobConfig(video=WARPED, encode=ENCODE, temporal=TemporalConfig(weight=50)),
                            executor=LocalExecutor(EchoStylizer()))
    assert summary.resumed_frames == 2 and summary.frames == 4


def test_the_report_measures_content_drift_on_request(tmp_path, job):
    import json

    from PIL import Image

    src, report = tmp_path / "in.mkv", tmp_path / "stability.json"
    make_pan(src, frames=5)
    with pytest.raises(ConfigError, match="report_drift is part of the stability report"):
        stylize_video(src, tmp_path / "x.mp4", job, QUICK_WARPED, executor=LocalExecutor(EchoStylizer()),
                      report=ReportRequest(drift=True))
    drifts, floors = {}, {}
    for init in ("frame", "warped"):
        events = []
        summary = stylize_video(src, tmp_path / f"{init}.mp4", job,
                                VideoJobConfig(video=WARPED, encode=ENCODE, temporal=TemporalConfig(init=init)),
                                executor=LocalExecutor(EchoStylizer()), on_event=events.append,
                                report=ReportRequest(path=report, drift=True))
        drift = json.loads(report.read_text())["drift"]
        assert drift["frames"] == [1, 2, 3, 4] and len(drift["per_frame"]) == 4
        assert summary.drift["last"] == pytest.approx(drift["last"])
        assert any(isinstance(e, Notice) and "drift" in e.message for e in events)
        drifts[init] = drift["per_frame"]
        # Frames 1-4 alone and their neighbours: the floor of frames 2-4 (frame 0 is not sampled).
        assert drift["floor_frames"] == [2, 3, 4] and summary.drift["floor_last"] == drift["floor_last"]
        floors[init] = drift["floor_per_frame"]
    # Frames stylized on their own are exactly what the drift measure compares with: no drift. The
    # echo chain keeps half of the previous frame, which differs from the frame's own result.
    assert drifts["frame"] == [0.0] * 4
    assert min(drifts["warped"]) > 0.005
    # The floor compares frames alone with each other: the same for any chain, and not zero on a pan.
    assert floors["frame"] == floors["warped"] and min(floors["frame"]) > 0.005
    assert Image.open(report.with_suffix(".png")).size[1] == 2 * 240  # drift under the warping error
