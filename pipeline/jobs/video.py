"""The video job: decode -> stylize frame by frame -> encode, resumable after a crash.

Three stages run at once: a reader thread decodes and resizes input frames, the main thread
stylizes, a writer thread encodes and muxes. They talk through bounded queues, each closed by one
sentinel, so decoding and encoding overlap with the (slow) optimisation without piling up frames.

Resume: every stylized frame is saved losslessly (PNG at the working size) in a job folder beside
the output before the next frame uses it, and the next frame starts from exactly those bytes, in
an uninterrupted run too. A rerun therefore continues the temporal chain from identical state.
The output file is always encoded from frame 0 into a temporary file (a half-written MP4 cannot be
appended to) and renamed into place only when complete.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import EncodeConfig, JobConfig, TemporalConfig, VideoConfig
from pipeline.errors import ConfigError, InputError, OutputExistsError
from pipeline.events import EventCallback, ItemDone, ItemStarted, Iteration, JobFinished, JobStarted, Notice, ignore
from pipeline.jobs.common import build_stylizer, check_output, check_styles, job_fingerprint
from pipeline.jobs.lock import job_lock
from pipeline.jobs.video_resume import JobFolder, input_identity, output_bytes, publish, stop_on_refused_write
from pipeline.media.image_sequence import FrameFolderWriter
from pipeline.media.images import fit_long_side, from_uint8, to_uint8
from pipeline.media.video import FrameWindow, VideoInfo, VideoWriter, decode_frames, probe

QUEUE_FRAMES = 8  # frames buffered between stages: enough to ride out jitter, little memory
# The report's long-term warping error compares frames this far apart (0.4 s at 25 fps): far enough
# for an occluded background to reappear, near enough for the flow between them to be reliable.
LONG_TERM_STRIDE = 10


@dataclass
class FrameItem:
    """One input frame on its way through the job."""

    index: int  # position in the output, from 0
    pts: int  # presentation time in the input video stream's time base
    content: np.ndarray  # [h, w, 3] uint8 RGB at the working size
    extra: dict = field(default_factory=dict)  # per-frame data from `annotate` (e.g. optical flow)


# Runs in the reader thread on each frame, with the frame before it (None for the first): per-frame
# work on the INPUT frames, such as optical flow, happens there, off the stylizing thread.
Annotate = Callable[[FrameItem | None, FrameItem], None]

# Chooses how a frame after the first starts: (init image [1, 3, h, w] in [0, 1] or None for "from
# its own content", temporal term or None), given the frame, the previous frame and the previous
# stylized frame (uint8 [h, w, 3], the exact bytes kept in the job folder). Setting
# item.extra["scene_cut"] gives the frame the first frame's iterations.
FrameInit = Callable[[FrameItem, FrameItem, np.ndarray], tuple]


def init_from_frame(item: FrameItem, previous: FrameItem, previous_styled: np.ndarray):
    return None, None


def init_from_previous(item: FrameItem, previous: FrameItem, previous_styled: np.ndarray):
    return from_uint8(previous_styled), None


FRAME_INITS: dict[str, FrameInit] = {"frame": init_from_frame, "previous": init_from_previous}


class _Worker:
    """A thread whose exception is kept for the main thread to re-raise."""

    def __init__(self, name: str, target: Callable[[], None]):
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target,), name=name, daemon=True)

    def _run(self, target) -> None:
        try:
            target()
        except BaseException as exc:  # handed to the main thread, which raises it
            self.error = exc


_END = object()  # the one sentinel closing each queue
_ABORT = object()  # tells the writer to throw its file away


def _read(info: VideoInfo, work_size: tuple[int, int], annotate: Annotate | None, out: queue.Queue,
          stop: threading.Event) -> None:
    previous = None
    try:
        for index, frame in enumerate(decode_frames(info)):
            if stop.is_set():
                return
            item = FrameItem(index, frame.pts, to_work_size(frame.rgb, work_size))
            if annotate is not None:
                annotate(previous, item)
            out.put(item)
            previous = item
    finally:
        out.put(_END)


class _WriterFailed(Exception):
    """The main thread's signal to stop; the writer's own exception is the one raised."""


def _encode(writer: VideoWriter, inbox: queue.Queue, failed: threading.Event) -> None:
    message = None
    try:
        while (message := inbox.get()) is not _ABORT and not isinstance(message, float):
            writer.write(*message)
        if message is _ABORT:
            writer.abort()
        else:
            writer.finish(message)  # the end time of the last frame, in seconds
    except BaseException:
        failed.set()
        writer.abort()
        while message is not _ABORT and not isinstance(message, float):
            message = inbox.get()  # keep consuming so the main thread never blocks on a full queue
        raise


def stylize_video(
    input_path: Path,
    output_path: Path,
    job: JobConfig,
    video: VideoConfig = VideoConfig(),
    encode: EncodeConfig = EncodeConfig(),
    *,
    overwrite: bool = False,
    on_event: EventCallback = ignore,
    stylizer=None,
    annotate: Annotate | None = None,
    frame_init: FrameInit | None = None,
    resume_key: dict | None = None,
    temporal: TemporalConfig | None = None,
    report_path: Path | None = None,
    report_drift: bool = False,
) -> dict:
    """Stylize a video file into ``output_path``; resumes an interrupted run. Returns the summary.

    ``annotate`` and ``frame_init`` plug in per-frame analysis and initialisation (optical flow);
    whatever configures them and changes the frames belongs in ``resume_key`` (plain JSON), so that
    a resumed run with other settings is refused instead of mixing two kinds of frames.
    ``video.init == "warped"`` (the default) plugs in ``pipeline.jobs.temporal.TemporalGuide`` with
    ``temporal``'s settings. ``report_path``: write the stability report (warping error of the
    stylized frames, flow and occlusions from the input frames) as JSON, and its plot beside it.
    ``report_drift``: the report also measures content drift (pipeline.jobs.stability.content_drift)
    on sampled frames, each stylized again on its own with the first frame's budget: that costs
    about ``first_iterations`` evaluations per sampled frame (about 50 frames for a long clip).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.exists() and input_path.exists() and output_path.resolve() == input_path.resolve():
        raise OutputExistsError(f"{output_path}: output would replace the input")
    check_output(output_path, overwrite)
    check_styles(job)  # before the first frame is read
    if report_drift and report_path is None:
        raise ConfigError("--report-drift is part of the stability report: give --report too")
    guide = None
    if video.init == "warped" and frame_init is None:
        from pipeline.jobs.temporal import TemporalGuide

        temporal = dataclasses.replace(temporal or TemporalConfig(), init="warped")
        guide = TemporalGuide(temporal)
        annotate, frame_init = guide.annotate_item, guide.frame_init
        resume_key = {**(resume_key or {}), "temporal": dataclasses.asdict(temporal)}
    if video.init not in FRAME_INITS and frame_init is None:
        raise ConfigError(f"--init must be one of {', '.join(FRAME_INITS)} (got {video.init!r})")
    frame_init = frame_init or FRAME_INITS[video.init]
    info = probe(input_path, FrameWindow(video.start, video.duration, video.max_frames), video.fps)
    if info.damage:
        on_event(Notice(f"{input_path}: damaged file, {info.damage}: the job will stop there"))
    if info.rotation:
        on_event(Notice(f"{input_path}: stored turned by {info.rotation}° (display matrix): stylized and written "
                        f"upright, {info.width}x{info.height}"))
    work_size = fit_long_side(info.height, info.width, min(video.size, max(info.height, info.width)))
    # The first frame starts from its content; the style config's own size/iterations are the video's.
    style = job.style.replace(size=max(work_size), iterations=video.first_iterations, init="content")
    job = dataclasses.replace(job, style=style)

    folder = JobFolder(output_path)
    # One job per output: the lock lives in the job folder and is held until the output is in place.
    with job_lock(folder.path, label=output_path, on_event=on_event):
        check_output(output_path, overwrite)  # again: the run that held the lock may just have finished it
        with stop_on_refused_write(output_path, folder, info.frames):  # a full disk: one line, frames kept
            if guide is not None:  # --long-term reads earlier results back from the job folder
                guide.styled_frame = lambda index: folder.load(index, (*work_size, 3))
            fingerprint = job_fingerprint(job, video=_resume_relevant(video), work_size=list(work_size),
                                          input=input_identity(input_path), **(resume_key or {}))
            done = min(folder.open(fingerprint, overwrite), info.frames)
            shift = float(info.frame_pts[0] * info.time_base) if video.start > 0 else 0.0
            to_folder = is_frame_folder(output_path)
            partial = folder.path / ("output-frames" if to_folder else f"output{output_path.suffix}")
            notices: list[str] = []
            try:  # codec, container and sizes are checked here, before hours of stylizing
                if to_folder:
                    writer = FrameFolderWriter(partial, info, long_side=encode.output_size, shift=shift,
                                               on_notice=notices.append)
                else:
                    writer = VideoWriter(partial, info, codec=encode.codec, crf=encode.crf, preset=encode.preset,
                                         pix_fmt=encode.pix_fmt, long_side=encode.output_size, shift=shift,
                                         on_notice=notices.append)
            except BaseException:
                if not done:
                    folder.remove()
                raise
            if writer.size != (info.width, info.height) and encode.output_size is None:
                notices.append(f"output is {writer.size[0]}x{writer.size[1]}, not {info.width}x{info.height}: "
                               "this pixel format needs even sizes")
            if done:
                notices.append(f"resuming: {done} of {info.frames} frames were already stylized ({folder.path})")
            for message in notices:
                on_event(Notice(message))
            on_event(JobStarted("video", info.frames, "frame", input_path.name, done))

            start = time.perf_counter()
            try:
                if stylizer is None and done < info.frames:
                    stylizer = build_stylizer(job)  # style Gram matrices: once per job, never per frame
                run = _Run(info, folder, stylizer, video, style, frame_init, on_event, done)
                stylize_seconds = run.pipeline(writer, work_size, annotate)
            except BaseException:
                writer.abort()
                if partial.is_file():
                    partial.unlink()  # the stylized frames stay; an encoded half-file is worthless
                raise
            stability = None
            if report_path is not None:  # before the job folder goes: the report reads the stylized frames
                stylizer = stylizer or build_stylizer(job)  # a job resumed at its end has not built one yet
                from pipeline.jobs.video_report import drift_report, stability_report, write_stability

                stability = stability_report(info, folder, work_size, temporal or TemporalConfig(), stylizer)
                if report_drift:
                    on_event(Notice("stability report: stylizing sampled frames on their own to measure drift"))
                    stability.drift = drift_report(info, folder, work_size, stylizer, video.first_iterations,
                                                   style.scales)
                stability.seconds_per_frame = stylize_seconds / (info.frames - done) if info.frames > done else None
                stability.extra.update(input=str(input_path), output=str(output_path), init=video.init)
                write_stability(stability, Path(report_path))
            publish(partial, output_path, folder)
            folder.remove()

    seconds = time.perf_counter() - start
    stylized = info.frames - done
    summary = {
        "output": str(output_path),
        "frames": info.frames,
        "resumed_frames": done,
        "stylized_frames": stylized,
        "width": writer.size[0],
        "height": writer.size[1],
        "work_width": work_size[1],
        "work_height": work_size[0],
        "fps": float(info.rate),
        "seconds": seconds,
        "seconds_per_frame": stylize_seconds / stylized if stylized else 0.0,
        "output_bytes": output_bytes(output_path),
        "device": str(stylizer.device) if stylizer is not None else "none",
    }
    if stability is not None:
        summary["warping_error"] = stability.warping_error
        summary["style_loss"] = stability.losses["style"]
        summary["report"] = str(report_path)
        if stability.drift:
            summary["drift"] = {k: stability.drift[k] for k in ("first", "last", "ratio", "floor_first", "floor_last")}
    on_event(JobFinished(summary))
    return summary


def to_work_size(rgb: np.ndarray, work_size: tuple[int, int]) -> np.ndarray:
    height, width = work_size
    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def is_frame_folder(output: Path) -> bool:
    """An output without an extension (or an existing folder) is a folder of numbered frames."""
    return output.is_dir() or not output.suffix


def _resume_relevant(video: VideoConfig) -> dict:
    # Frame i depends only on frames 0..i, so the range's length does not change the saved frames.
    options = dataclasses.asdict(video)
    options.pop("duration")
    options.pop("max_frames")
    return options


class _Run:
    """The main thread's part: stylize each frame (or take it from the job folder), pass it on."""

    def __init__(self, info, folder, stylizer, video, style, frame_init, on_event, done):
        self.info, self.folder, self.stylizer, self.video = info, folder, stylizer, video
        self.style, self.frame_init, self.on_event, self.done = style, frame_init, on_event, done
        self.written = 0
        self.stylize_seconds = 0.0

    def pipeline(self, writer: VideoWriter, work_size: tuple[int, int], annotate: Annotate | None) -> float:
        frames_in: queue.Queue = queue.Queue(QUEUE_FRAMES)
        frames_out: queue.Queue = queue.Queue(QUEUE_FRAMES)
        stop = threading.Event()
        reader = _Worker("video-reader", lambda: _read(self.info, work_size, annotate, frames_in, stop))
        writer_failed = threading.Event()
        encoder = _Worker("video-writer", lambda: _encode(writer, frames_out, writer_failed))
        reader.thread.start()
        encoder.thread.start()
        reader_open = True
        try:
            previous, previous_styled = None, None
            while (item := frames_in.get()) is not _END:
                styled = self._frame(item, previous, previous_styled)
                frames_out.put((styled, item.pts))
                previous, previous_styled = item, styled
                self.written += 1
                if writer_failed.is_set():
                    raise _WriterFailed  # no point stylizing for a writer that has failed
            reader_open = False
            reader.thread.join()
            if reader.error is not None:
                raise reader.error
            frames_out.put(self._end_seconds())
        except BaseException as exc:
            stop.set()
            frames_out.put(_ABORT)
            if not isinstance(exc, _WriterFailed):
                _explain(exc, self)
                raise
        finally:
            while reader_open and frames_in.get() is not _END:
                pass  # unblock the reader so it can see `stop` and finish
            reader.thread.join()
            encoder.thread.join()
        if encoder.error is not None:
            raise encoder.error
        return self.stylize_seconds

    def _frame(self, item: FrameItem, previous: FrameItem | None, previous_styled: np.ndarray | None) -> np.ndarray:
        if item.index < self.done:
            return self.folder.load(item.index, item.content.shape)
        name = f"frame {item.index + 1}/{self.info.frames}"
        if previous is None:
            init, temporal, iterations = None, None, self.video.first_iterations
        else:
            init, temporal = self.frame_init(item, previous, previous_styled)
            # A new shot (the init found a scene cut) starts over like a first frame.
            iterations = self.video.first_iterations if item.extra.get("scene_cut") else self.video.iterations
        # From its own content a frame needs the coarse-to-fine schedule; from an already stylized
        # image the coarse levels would only blur it again.
        scales = self.style.scales if init is None else 1
        start = time.perf_counter()
        self.on_event(ItemStarted(name, iterations))
        result = self.stylizer.stylize(
            from_uint8(item.content), init=init, temporal=temporal, iterations=iterations, scales=scales,
            on_progress=lambda d, t, loss: self.on_event(Iteration(d, t, loss)),
        )
        styled = to_uint8(result.image)
        self.folder.save(item.index, styled)  # before it is used: a rerun starts from these bytes
        seconds = time.perf_counter() - start
        self.stylize_seconds += seconds
        self.on_event(ItemDone(name, self.folder.frame_path(item.index), seconds, result.losses))
        return styled

    def _end_seconds(self) -> float:
        """Input time where the copied audio ends: the next frame after a range, else all of it."""
        end = self.info.end_pts
        return float(end * self.info.time_base) if end is not None else float("inf")


def _explain(exc: BaseException, run: _Run) -> None:
    """Say where the work is when a job stops early: nothing is lost, a rerun resumes."""
    if isinstance(exc, InputError) and run.written:
        kept = max(run.written, run.done)
        exc.args = (f"{exc.args[0]}; stopped after {run.written} of {run.info.frames} frames: the {kept} stylized "
                    f"frames are kept in {run.folder.path}, no output was written",)

