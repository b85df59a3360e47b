"""pipeline/jobs/video_chunks.py and video_work.py: the video job's units and the function that does
one, without Ray (the executor is this process; tests/scale/test_video_ray.py runs them on workers)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import (
    EncodeConfig,
    JobConfig,
    StyleConfig,
    StyleImage,
    TemporalConfig,
    VideoConfig,
    VideoJobConfig,
)
from pipeline.events import ignore
from pipeline.jobs.video import stylize_video
from pipeline.jobs.video_chunks import Chunk, fade_weight, plan_chunks, seam_figures, seam_pairs
from pipeline.jobs.video_resume import JobFolder
from pipeline.jobs.video_work import VideoWork, render_chunks
from pipeline.media.common import Size
from pipeline.media.video import FrameWindow, probe
from pipeline.scale.local import LocalExecutor
from tests.jobs.test_video_job import EchoStylizer, decoded
from tests.media.test_video import two_shot_video


def test_chunks_cover_every_frame_once_and_leads_stay_inside_their_shot():
    chunks = plan_chunks([0, 5], frames=16, max_chunk=4, overlap=2)
    assert chunks == [Chunk(0, 4, 0), Chunk(4, 5, 2), Chunk(5, 9, 0), Chunk(9, 13, 2), Chunk(13, 16, 2)]
    owned = [i for c in chunks for i in range(c.start, c.end)]
    assert owned == list(range(16))
    cut_chunk = chunks[2]
    assert cut_chunk.lead == 0  # a new shot starts a fresh chain: nothing to blend with
    # The fade hands over gradually: the earlier chain's share falls over the lead frames.
    assert [fade_weight(i, chunks[3]) for i in (7, 8)] == pytest.approx([1 / 3, 2 / 3])


def test_seam_figures_split_boundary_pairs_from_the_rest_and_skip_cuts():
    chunks = plan_chunks([0, 6], frames=10, max_chunk=3, overlap=1)  # (0,3,0) (3,6,1) (6,9,0) (9,10,1)
    assert seam_pairs(chunks, [0, 6]) == {2, 3, 8, 9}
    errors = [1.0, 5.0, 5.0, 1.0, 1.0, 9.0, 1.0, 3.0, 3.0]  # pair k is frames (k, k+1); pair 5 crosses the cut
    figures = seam_figures(errors, chunks, [0, 6])
    assert figures["seam"] == pytest.approx(4.0) and figures["inside"] == pytest.approx(1.0)
    assert (figures["seam_pairs"], figures["inside_pairs"], figures["ratio"]) == (4, 4, pytest.approx(4.0))


def test_a_chunk_called_again_goes_on_from_its_last_saved_frame(tmp_path, style_file):
    """What a re-queued chunk does: frames already in the job folder are kept and the chain goes on
    from them; only the missing ones are stylized."""
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    two_shot_video(src, 6, 0)
    info = probe(src, FrameWindow())
    work = VideoWork(info=info, output=out, work_size=Size(width=32, height=21), first_iterations=3, iterations=2,
                     scales=1, temporal=TemporalConfig())
    folder = JobFolder(out)
    folder.open({"test": 1}, overwrite=False)
    chunk = Chunk(2, 6, lead=2)
    first = list(render_chunks(EchoStylizer(), [chunk], ignore, work=work))
    assert [(d.index, d.lead, d.found) for d in first] == [(0, True, False), (1, True, False), (2, False, False),
                                                            (3, False, False), (4, False, False), (5, False, False)]
    assert folder.frame_path(0, ".lead").exists() and folder.frame_path(2).exists()
    kept = {i: folder.frame_path(i).read_bytes() for i in range(6) if i >= 2}
    for i in (4, 5):
        folder.frame_path(i).unlink()  # the worker died after frame 3
    again = EchoStylizer()
    second = list(render_chunks(again, [chunk], ignore, work=work))
    assert [d.found for d in second] == [True, True, True, True, False, False] and len(again.calls) == 2
    # The chain went on from the saved bytes: frames 4 and 5 came out as they did the first time.
    assert all(folder.frame_path(i).read_bytes() == data for i, data in kept.items())


def test_the_same_chunking_in_one_process_cross_fades_the_hand_over(tmp_path, style_file):
    """A shot cut into chunks in this process: each chunk's first frame starts afresh, and the frames
    of a lead are a cross-fade of the two chains (here the echo's two chains differ, so the fade shows)."""
    src = tmp_path / "in.mp4"
    two_shot_video(src, 8, 0)
    job = JobConfig(styles=(StyleImage(style_file),), style=StyleConfig(size=32, iterations=3, scales=1))
    stylizer = EchoStylizer()
    chunked, whole = tmp_path / "chunked.mkv", tmp_path / "whole.mkv"
    summary = stylize_video(src, chunked, job,
                            VideoJobConfig(video=VideoConfig(iterations=2), encode=EncodeConfig(codec="ffv1")),
                            executor=LocalExecutor(stylizer, max_chunk=4, overlap=2))
    assert summary.chunks == [(0, 4, 0), (4, 8, 2)] and summary.shots == [0]
    assert summary.stylized_frames == 8 and len(stylizer.calls) == 10  # 8 frames, and 2 of hand-over
    assert [c["init"] is None for c in stylizer.calls] == [True, False, False, False, True, False, False, False,
                                                           False, False]
    stylize_video(src, whole, job, VideoJobConfig(video=VideoConfig(iterations=2), encode=EncodeConfig(codec="ffv1")),
                  executor=LocalExecutor(EchoStylizer()))
    a, b = decoded(chunked), decoded(whole)
    assert len(a) == len(b) == 8
    assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2]))  # before the hand-over: the same chain
    assert not np.array_equal(a[2], b[2]) and not np.array_equal(a[4], b[4])  # the fade, then the new chain
