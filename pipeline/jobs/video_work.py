"""The video job's work function: chunks of frames stylized into the job folder, one result per frame.

``render_chunks(stylizer, chunks, emit, work=...)`` is what an executor runs (pipeline/scale/work.py):
in this process it gets every chunk of the job in one call, on Ray workers one chunk per call. It is
the only place that decides how a frame is stylized: the chunk's first frame (and the first of each
shot) from its own content with the first frame's budget and the coarse-to-fine schedule, each later
frame from the previous stylized frame as ``--init`` says (pipeline/jobs/temporal.py) with the later
frames' budget.

Every stylized frame is saved losslessly in the job folder (pipeline/jobs/video_resume.py) before the
next frame uses it, and the next frame starts from exactly those bytes, so a chunk called again
(an interrupted job, or a worker that died) goes on from its last saved frame with identical state.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import TemporalConfig
from pipeline.events import EventCallback, ItemStarted, Iteration, Notice
from pipeline.jobs.video_chunks import Chunk
from pipeline.jobs.video_resume import JobFolder
from pipeline.media.common import Size
from pipeline.media.video import VideoInfo

if TYPE_CHECKING:  # the engine is imported when a Stylizer is needed, not with this module
    from pipeline.engine.optimize import Stylizer

QUEUE_FRAMES = 8  # decoded frames waiting for the stylizer: enough to ride out jitter, little memory


@dataclass(frozen=True)
class VideoWork:
    """What a worker needs besides its Stylizer to render chunks of one job (picklable)."""

    info: VideoInfo  # the probed input (its frames' timestamps): workers need not probe again
    output: Path  # the job's output: the job folder sits beside it
    work_size: Size  # frames are stylized at this size
    first_iterations: int  # a chain's first frame, from its content (StyleConfig.iterations)
    iterations: int  # each later frame (VideoConfig.iterations)
    scales: int  # coarse-to-fine levels for frames that start from their content
    temporal: TemporalConfig

    @property
    def folder(self) -> JobFolder:
        return JobFolder(self.output)

    @property
    def shape(self) -> tuple[int, int, int]:
        """A stylized frame's array shape: (height, width, 3)."""
        return (*self.work_size.hw, 3)

    def frames(self, first: int, end: int) -> Iterator[np.ndarray]:
        """Input frames [first, end) at the working size, uint8 RGB. Only those are decoded: the
        decoder seeks to the keyframe before ``first``, so a chunk late in a film starts quickly."""
        from pipeline.media.images import resize_frame
        from pipeline.media.video import decode_frames

        part = dataclasses.replace(self.info, frame_pts=self.info.frame_pts[first:end])
        return (resize_frame(frame.rgb, self.work_size.hw) for frame in decode_frames(part))


@dataclass(frozen=True)
class FrameDone:
    """One frame of a chunk, in the job folder (picklable: it travels back from a worker)."""

    index: int
    lead: bool  # one of the chunk's lead frames (rendered only to hand over), not its own
    seconds: float = 0.0  # stylizing time; 0 for a frame found in the job folder
    losses: dict[str, float] = field(default_factory=dict)
    found: bool = False  # already in the job folder (an earlier run, or a worker that died, made it)


@dataclass
class FrameItem:
    """One input frame on its way through a chunk."""

    index: int  # position in the output, from 0
    content: np.ndarray  # [h, w, 3] uint8 RGB at the working size
    extra: dict = field(default_factory=dict)  # what TemporalGuide.annotate_item found (the optical flow)


_END = object()  # closes the reader's queue


def _read(work: VideoWork, chunk: Chunk, annotate: Callable, out: queue.Queue, stop: threading.Event) -> None:
    """Reader thread: decode the chunk's frames and compute their flow, one frame ahead of the stylizer."""
    previous = None
    try:
        for index, rgb in enumerate(work.frames(chunk.first, chunk.end), start=chunk.first):
            if stop.is_set():
                return
            item = FrameItem(index=index, content=rgb)
            annotate(previous, item)
            out.put(item)
            previous = item
    finally:
        out.put(_END)


class _Reader:
    """The reader thread of one chunk; ``items()`` hands on its frames and re-raises its error."""

    def __init__(self, work: VideoWork, chunk: Chunk, annotate: Callable):
        self.queue: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work, chunk, annotate), name="video-reader",
                                       daemon=True)

    def _run(self, work: VideoWork, chunk: Chunk, annotate: Callable) -> None:
        try:
            _read(work, chunk, annotate, self.queue, self.stop)
        except BaseException as exc:  # handed to the stylizing thread, which raises it
            self.error = exc

    def items(self) -> Iterator[FrameItem]:
        self.thread.start()
        ended = False
        try:
            while (item := self.queue.get()) is not _END:
                yield item
            ended = True
        finally:
            self.stop.set()
            while not ended and self.queue.get() is not _END:
                pass  # unblock the reader so it can see `stop` and finish
            self.thread.join()
        if self.error is not None:
            raise self.error


def render_chunks(stylizer: Stylizer, chunks: list[Chunk], emit: EventCallback, *,
                  work: VideoWork) -> Generator[FrameDone, None, None]:
    """Stylize each chunk (its lead first) into the job folder; one FrameDone per frame, in order."""
    for chunk in chunks:
        yield from _render(stylizer, chunk, emit, work)


def _render(stylizer: Stylizer, chunk: Chunk, emit: EventCallback, work: VideoWork) -> Iterator[FrameDone]:
    from pipeline.jobs.temporal import TemporalGuide
    from pipeline.media.images import from_uint8, to_uint8

    folder, total = work.folder, work.info.frames
    guide = TemporalGuide(work.temporal)
    # --long-term reads earlier results of this chain back from the job folder.
    guide.styled_frame = lambda index: folder.load(index, work.shape, chunk.kind(index))
    previous = previous_styled = None
    for item in _Reader(work, chunk, guide.annotate_item).items():
        kind = chunk.kind(item.index)
        if folder.frame_path(item.index, kind).exists():  # the chain goes on from these very bytes
            styled = folder.load(item.index, work.shape, kind)
            done = FrameDone(index=item.index, lead=bool(kind), found=True)
        else:
            if previous is None:  # the chunk's first frame
                init, temporal, iterations = None, None, work.first_iterations
            else:
                plan = guide.frame_init(item, previous, previous_styled)
                init, temporal = plan.init, plan.temporal
                # A new shot (the guide found a scene cut) starts over like a first frame.
                iterations = work.first_iterations if item.extra.get("scene_cut") else work.iterations
            # From its own content a frame needs the coarse-to-fine schedule; from an already
            # stylized image the coarse levels would only blur it again.
            scales = work.scales if init is None else 1
            start = time.perf_counter()
            emit(ItemStarted(name=f"frame {item.index + 1}/{total}" + (" (hand-over)" if kind else ""),
                             total_iterations=iterations))
            result = stylizer.stylize(from_uint8(item.content), init=init, temporal=temporal, iterations=iterations,
                                      scales=scales,
                                      on_progress=lambda d, t, loss: emit(Iteration(done=d, total=t, loss=loss)),
                                      on_notice=lambda message: emit(Notice(message=message)))
            styled = to_uint8(result.image)
            folder.save(item.index, styled, kind)  # before it is used: a rerun starts from these bytes
            done = FrameDone(index=item.index, lead=bool(kind), seconds=time.perf_counter() - start,
                             losses=result.losses)
        yield done
        previous, previous_styled = item, styled
