"""A video over real Ray workers (a local Ray, 2 CPUs, started once for this module).

The reference is the one-process job with the same chunking at one torch thread: workers run one
thread each here, and results are bit-identical only at equal thread counts (float sums in another
order, which the optimisation then amplifies).
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline import events as ev
from pipeline.config import (
    EncodeConfig,
    EngineConfig,
    JobConfig,
    ScaleConfig,
    StyleConfig,
    StyleImage,
    TemporalConfig,
    VideoConfig,
    VideoJobConfig,
)
from pipeline.jobs.video import ReportRequest, stylize_video
from pipeline.jobs.video_resume import JobFolder
from pipeline.scale.local import LocalExecutor
from tests.conftest import stripes
from tests.media.test_video import audio_seconds, frame_times, two_shot_video

ray = pytest.importorskip("ray", reason="the scale-out tests need the ray extra (make test installs it)")
from pipeline.scale.ray_pool import RayExecutor  # noqa: E402  (needs Ray)

pytestmark = pytest.mark.slow  # a Ray cluster and real stylizing (make test-fast leaves these out)

CHUNKS = {"max_chunk": 3, "overlap": 1}
LOSSLESS = EncodeConfig(codec="ffv1")
VIDEO = VideoConfig(iterations=3)
LONG_TERM = TemporalConfig(long_term=2)
SETTINGS = VideoJobConfig(video=VIDEO, encode=LOSSLESS, temporal=LONG_TERM)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[int]]:
    root = tmp_path_factory.mktemp("video-ray")
    times = two_shot_video(root / "in.mp4", 5, 7)  # 2 shots: 5 frames, then 7
    return root / "in.mp4", times


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> JobConfig:
    from PIL import Image

    style = tmp_path_factory.mktemp("video-ray-style") / "style.png"
    Image.fromarray(stripes(48, 48)).save(style)
    return JobConfig(styles=(StyleImage(style),), style=StyleConfig(size=32, iterations=4, scales=1),
                     engine=EngineConfig(device="cpu"))


def one_thread(run):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(clip, job, tmp_path_factory):
    """The one-process job with the workers' chunking (one torch thread), with its stability report."""
    root = tmp_path_factory.mktemp("video-ray-reference")
    out, report = root / "out.mkv", root / "report.json"
    summary = one_thread(lambda: stylize_video(clip[0], out, job, SETTINGS, executor=LocalExecutor(**CHUNKS),
                                               report=ReportRequest(path=report, drift=True)))
    return summary, decoded(out), json.loads(report.read_text()), audio_seconds(out)


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_the_shots_are_cut_into_chunks_with_a_hand_over_inside_each_shot(reference):
    summary = reference[0]
    assert summary.shots == [0, 5]
    assert summary.chunks == [(0, 3, 0), (3, 5, 1), (5, 8, 0), (8, 11, 1), (11, 12, 1)]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_the_frames_and_report_of_one_process(local_ray, clip, job, reference, tmp_path, workers):
    """The same job on Ray workers, --long-term and the report with drift included, is the same video:
    every frame once, in order, with its timing and sound, and bit for bit the one-process frames."""
    src, times = clip
    out, report = tmp_path / "out.mkv", tmp_path / "report.json"
    events = []
    summary = stylize_video(src, out, job, SETTINGS, on_event=events.append,
                            executor=RayExecutor(ScaleConfig(workers=workers, threads=1, **CHUNKS)),
                            report=ReportRequest(path=report, drift=True))
    expected, frames, expected_report, sound = reference
    assert summary.device.startswith(f"ray: {workers} worker")
    assert (summary.chunks, summary.shots, summary.frames, summary.stylized_frames) == \
        (expected.chunks, expected.shots, 12, 12)
    assert frame_times(out) == [t / 1000 for t in times]
    assert audio_seconds(out) == sound > 0.4  # the sound is copied as in one process
    got = decoded(out)
    assert len(got) == len(frames) and all(np.array_equal(a, b) for a, b in zip(got, frames))
    done = [e for e in events if isinstance(e, ev.ItemDone)]
    assert sorted(e.name for e in done) == sorted(f"frame {i + 1}/12" for i in range(12))  # each frame once
    assert {e.worker for e in done} == {f"w{i + 1}" for i in range(workers)}  # every worker took chunks
    data = json.loads(report.read_text())
    # Same frames, same network at the same thread count: the report's numbers are the same too.
    for key in ("per_frame", "long_term", "per_frame_losses", "drift"):
        assert data[key] == expected_report[key], key
    assert (summary.warping_error, summary.drift) == (expected.warping_error, expected.drift)
    assert not JobFolder(out).path.exists()


def test_a_worker_killed_mid_chunk_costs_only_its_unfinished_frames(local_ray, clip, job, reference, tmp_path):
    """kill -9 of the worker that just reported a frame, in the middle of its chunk: its chunk goes to
    a worker in another process, which keeps the frames saved so far, and the video has every frame
    once, the same as without the kill."""
    pids, events, killed = {}, [], {}
    chunks = [range(s - lead, e) for s, e, lead in reference[0].chunks]

    def on_event(event):
        events.append(event)
        if isinstance(event, ev.WorkerStarted):
            pids[event.name] = event.pid
        if isinstance(event, ev.ItemDone) and not killed:
            index = int(event.name.split()[1].split("/")[0]) - 1
            chunk = next(c for c in chunks if index in c)
            if index + 1 < chunk.stop:  # frames of this chunk are still to come
                killed.update(pid=pids[event.worker], chunk=chunk, after=len(events))
                os.kill(killed["pid"], signal.SIGKILL)  # as when a machine dies

    out = tmp_path / "out.mkv"
    summary = stylize_video(clip[0], out, job, SETTINGS, on_event=on_event,
                            executor=RayExecutor(ScaleConfig(workers=2, threads=1, **CHUNKS)))
    assert killed, "no frame was reported in the middle of a chunk"
    assert summary.retried >= 1 and any("was lost" in e.message for e in events if isinstance(e, ev.Notice))
    # The killed chunk's later frames came from a live process: the other worker or the restarted one.
    later = [e for e in events[killed["after"]:] if isinstance(e, ev.ItemDone)
             and int(e.name.split()[1].split("/")[0]) - 1 in killed["chunk"]]
    assert later
    now = dict(pids)
    for e in events[killed["after"]:]:  # which process each name had when it reported
        if isinstance(e, ev.WorkerStarted):
            now[e.name] = e.pid
        elif e in later:
            assert now[e.worker] != killed["pid"]
    # Every frame once (none lost, none counted twice), and the frames are the uninterrupted job's.
    counted = Counter(e.name for e in events if isinstance(e, ev.ItemDone))
    assert counted == Counter(f"frame {i + 1}/12" for i in range(12)) and summary.stylized_frames == 12
    assert frame_times(out) == [t / 1000 for t in clip[1]]
    assert all(np.array_equal(a, b) for a, b in zip(decoded(out), reference[1], strict=True))


def test_a_users_error_in_a_worker_is_raised_as_itself(local_ray, clip, job, tmp_path):
    """A StylizeError raised on a worker (here: the input gone when the worker opens it) reaches the
    driver as that error, one line for the CLI, not wrapped in Ray's remote traceback."""
    import dataclasses
    import functools

    from pipeline.errors import InputError
    from pipeline.jobs.common import StylizerSetup
    from pipeline.jobs.video_report import drift_frames
    from pipeline.jobs.video_work import VideoWork
    from pipeline.media.common import Size
    from pipeline.media.video import FrameWindow, probe

    gone = dataclasses.replace(probe(clip[0], FrameWindow()), path=tmp_path / "gone.mp4")
    work = VideoWork(info=gone, output=tmp_path / "out.mkv", work_size=Size(width=32, height=21), first_iterations=2,
                     iterations=2, scales=1, temporal=TemporalConfig())
    with RayExecutor(ScaleConfig(workers=1, threads=1)).start(StylizerSetup(job)) as pool:
        with pytest.raises(InputError) as caught:
            list(pool.map(functools.partial(drift_frames, work=work), [0]))
    assert type(caught.value) is InputError and str(caught.value) == f"{tmp_path / 'gone.mp4'}: no such file"
