"""A video over real Ray workers: shots, chunks with a cross-faded overlap, every frame once, in order."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.config import EncodeConfig, EngineConfig, JobConfig, ScaleConfig, StyleConfig, StyleImage, VideoConfig
from pipeline.jobs.video_resume import JobFolder
from pipeline.scale.video import Chunk, fade_weight, plan_chunks
from tests.conftest import pattern
from tests.media.test_video import MS, _write_tone, audio_seconds, frame_times

ray = pytest.importorskip("ray", reason="the scale-out tests need the ray extra (make test installs it)")


def test_chunks_cover_every_frame_once_and_leads_stay_inside_their_shot():
    chunks = plan_chunks([0, 5], frames=16, max_chunk=4, overlap=2)
    assert chunks == [Chunk(0, 4, 0), Chunk(4, 5, 2), Chunk(5, 9, 0), Chunk(9, 13, 2), Chunk(13, 16, 2)]
    owned = [i for c in chunks for i in range(c.start, c.end)]
    assert owned == list(range(16))
    cut_chunk = chunks[2]
    assert cut_chunk.lead == 0  # a new shot starts a fresh chain: nothing to blend with
    # The fade hands over gradually: the earlier chain's share falls over the lead frames.
    assert [fade_weight(i, chunks[3]) for i in (7, 8)] == pytest.approx([1 / 3, 2 / 3])


def two_shot_video(path: Path, frames_a: int, frames_b: int, size=(48, 32)) -> list[int]:
    """Shot A (dark, drifting) then shot B (bright, another picture), 25 fps, with sound."""
    width, height = size
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=25)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.time_base = video.codec_context.time_base = MS
    sound = container.add_stream("aac", rate=48000)
    sound.layout = "mono"
    # Each shot: a camera panning one pixel a frame over a smooth picture (flow that is easy to follow).
    dark = pattern(width + frames_a, height, seed=1) // 3
    bright = 150 + pattern(width + frames_b, height, seed=5) // 3
    times = []
    for i in range(frames_a + frames_b):
        rgb = dark[:, i : i + width] if i < frames_a else bright[:, i - frames_a : i - frames_a + width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = i * 40, MS
        times.append(i * 40)
        for packet in video.encode(frame):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    _write_tone(container, sound, (frames_a + frames_b) * 40)
    container.close()
    return times


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_video_over_workers_keeps_every_frame_in_order_with_timing_and_sound(local_ray, tmp_path, style_file):
    from pipeline.scale.video import stylize_video_distributed

    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    times = two_shot_video(src, 5, 7)
    job = JobConfig(styles=(StyleImage(style_file),), style=StyleConfig(scales=1), engine=EngineConfig(device="cpu"))
    video = VideoConfig(size=32, first_iterations=4, iterations=2)
    summary = stylize_video_distributed(src, out, job, video, EncodeConfig(preset="ultrafast"),
                                        ScaleConfig(workers=2, threads=1, max_chunk=3, overlap=1))
    assert summary["shots"] == 2
    assert [tuple(c) for c in summary["chunk_list"]] == [(0, 3, 0), (3, 5, 1), (5, 8, 0), (8, 11, 1), (11, 12, 1)]
    assert frame_times(out) == [t / 1000 for t in times]  # every frame once, with its timestamp
    assert audio_seconds(out) == pytest.approx(audio_seconds(src), abs=0.03)
    with av.open(str(out)) as c:
        brightness = [f.to_ndarray(format="rgb24").mean() for f in c.decode(video=0)]
    # In order: the dark shot's five frames, then the bright shot's seven.
    assert max(brightness[:5]) < min(brightness[5:])
    assert not JobFolder(out).path.exists()


def test_seam_figures_split_boundary_pairs_from_the_rest_and_skip_cuts():
    from pipeline.scale.seams import seam_figures, seam_pairs

    chunks = plan_chunks([0, 6], frames=10, max_chunk=3, overlap=1)  # (0,3,0) (3,6,1) (6,9,0) (9,10,1)
    assert seam_pairs(chunks, [0, 6]) == {2, 3, 8, 9}
    errors = [1.0, 5.0, 5.0, 1.0, 1.0, 9.0, 1.0, 3.0, 3.0]  # pair k is frames (k, k+1); pair 5 crosses the cut
    figures = seam_figures(errors, chunks, [0, 6])
    assert figures["seam"] == pytest.approx(4.0) and figures["inside"] == pytest.approx(1.0)
    assert (figures["seam_pairs"], figures["inside_pairs"], figures["ratio"]) == (4, 4, pytest.approx(4.0))


def test_a_chunk_resumes_from_its_last_saved_frame(tmp_path, style_file):
    """What a re-queued chunk does (no Ray needed: the worker is a plain class): frames already in
    the job folder are kept and the chain goes on from them; only the missing ones are stylized."""
    from pipeline.config import TemporalConfig
    from pipeline.scale.video import LEAD, VideoWorker

    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    two_shot_video(src, 6, 0)
    job = JobConfig(styles=(StyleImage(style_file),), style=StyleConfig(size=32, iterations=3, scales=1),
                    engine=EngineConfig(device="cpu"))
    worker = VideoWorker(job, VideoConfig(size=32, first_iterations=3, iterations=2), TemporalConfig(), 1)
    folder = JobFolder(out)
    folder.open({"test": 1}, overwrite=False)
    chunk = Chunk(2, 6, lead=2)
    assert worker.render(src, out, chunk, (21, 32)) == 6
    assert folder.frame_path(0, LEAD).exists() and folder.frame_path(2).exists()
    kept = {i: folder.frame_path(i).read_bytes() for i in (2, 3)}
    for i in (4, 5):
        folder.frame_path(i).unlink()  # the worker died after frame 3
    assert worker.render(src, out, chunk, (21, 32)) == 2
    assert all(folder.frame_path(i).read_bytes() == data for i, data in kept.items())
    assert all(folder.frame_path(i).exists() for i in range(2, 6))
