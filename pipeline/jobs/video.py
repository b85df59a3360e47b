"""The video job: decode -> stylize frame by frame -> encode, resumable after a crash.

The job is a list of chunks (video_chunks.py: shots, cut where too long) and a function that
stylizes one chunk into the job folder (video_work.py: ``render_chunks``). The executor it is handed
runs that function: in this process (the default: the whole clip is one chunk, its chain restarting
at each cut) or on Ray workers (pipeline/scale/). This module keeps what the job keeps whichever runs
it: probing, the working size, the job folder and its fingerprint, the events, the encoding and the
report.

Resume: every stylized frame is saved losslessly (PNG at the working size) in a job folder beside the
output before the next frame uses it (video_resume.py), so a rerun continues each chain from
identical state. Frames are encoded in order as soon as they are final, in a writer thread, while
later frames are still being stylized. The output file is always encoded from frame 0 into a
temporary file (a half-written MP4 cannot be appended to) and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pipeline.config import FULL_SIZE, JobConfig, VideoConfig, VideoJobConfig
from pipeline.errors import ConfigError, InputError, OutputExistsError, StylizeError, setting
from pipeline.events import EventCallback, ItemDone, JobFinished, JobStarted, Notice, ignore
from pipeline.jobs.common import StylizerSetup, check_output, check_styles, job_fingerprint, working_size
from pipeline.jobs.lock import job_lock
from pipeline.jobs.stability import StabilityReport
from pipeline.jobs.video_chunks import Chunk, handing_over, output_frame, plan_chunks, shot_starts, whole_clip
from pipeline.jobs.video_resume import JobFolder, input_identity, output_bytes, publish, stop_on_refused_write
from pipeline.jobs.video_work import FrameDone, VideoWork, render_chunks
from pipeline.media.common import Size
from pipeline.media.image_sequence import FrameFolderWriter
from pipeline.media.video import FrameWindow, VideoInfo, VideoWriter, probe
from pipeline.results import VideoSummary
from pipeline.scale.local import LocalExecutor
from pipeline.scale.work import Done, Executor, GaveUp, Outcome, Pool, SharedPaths

# Where the frames go: a video file, or a folder of numbered frames (the same interface).
FrameWriter = VideoWriter | FrameFolderWriter


@dataclass(frozen=True)
class ReportRequest:
    """The stability report a video job writes at its end: the JSON's ``path`` (None: no report; the
    plot goes beside it), and whether it also measures content ``drift``. The job's messages name them
    as the CLI's keywords, ``report`` and ``report_drift``."""

    path: Path | None = None
    drift: bool = False


def stylize_video(
    input_path: Path,
    output_path: Path,
    job: JobConfig,
    config: VideoJobConfig = VideoJobConfig(),
    *,
    executor: Executor | None = None,
    overwrite: bool = False,
    on_event: EventCallback = ignore,
    report: ReportRequest = ReportRequest(),
) -> VideoSummary:
    """Stylize a video file (or a folder of numbered frames) into ``output_path``; resumes an
    interrupted run. Returns the summary.

    ``job.style.size`` is the working size (never more than the input's; ``VIDEO_STYLE`` holds the
    video defaults), ``job.style.iterations`` the first frame's budget, ``config.video.iterations``
    each later frame's; ``config.temporal`` ties the frames together, ``config.encode`` says how they
    are encoded. ``executor``: where the frames are stylized (default: this process). ``report.path``:
    write the stability report (warping error of the output frames, flow and occlusions from the
    input frames) as JSON, and its plot beside it. ``report.drift``: the report also measures content
    drift (pipeline.jobs.stability.content_drift) on sampled frames, each stylized again on its own
    with the first frame's budget: that costs about ``job.style.iterations`` evaluations per sampled
    frame (about 50 frames for a long clip).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    executor = executor or LocalExecutor()
    video = config.video
    if output_path.exists() and input_path.exists() and output_path.resolve() == input_path.resolve():
        raise OutputExistsError(f"{output_path}: output would replace the input")
    check_output(output_path, overwrite)
    check_styles(job)  # before the first frame is read
    if report.drift and report.path is None:
        raise ConfigError(f"{setting('report_drift')} is part of the stability report: give {setting('report')} too")
    window = FrameWindow(start=video.start, duration=video.duration, max_frames=video.max_frames)
    info = probe(input_path, window, video.fps)
    if info.damage:
        on_event(Notice(message=f"{input_path}: damaged file, {info.damage}: the job will stop there"))
    if info.rotation:
        on_event(Notice(message=f"{input_path}: stored turned by {info.rotation}° (display matrix): stylized and "
                                f"written upright, {info.width}x{info.height}"))
    size = job.style.size if job.style.size == FULL_SIZE else min(job.style.size, max(info.height, info.width))
    work_size = working_size(info.height, info.width, size)
    # Every chain starts from its frame's content; the style config's size is the frames' own.
    job = dataclasses.replace(job, style=job.style.replace(size=max(work_size.width, work_size.height),
                                                           init="content"))
    work = VideoWork(info=info, output=output_path, work_size=work_size, first_iterations=job.style.iterations,
                     iterations=video.iterations, scales=job.style.scales, temporal=config.temporal)
    folder = JobFolder(output_path)
    # One job per output: the lock lives in the job folder and is held until the output is in place.
    with job_lock(folder.path, label=output_path, on_event=on_event):
        check_output(output_path, overwrite)  # again: the run that held the lock may just have finished it
        with stop_on_refused_write(output_path, folder, info.frames):  # a full disk: one line, frames kept
            job_run = _VideoRun(work, job, config, executor, on_event)
            summary = job_run.run(overwrite, report)
    on_event(JobFinished(summary=summary))
    return summary


def is_frame_folder(output: Path) -> bool:
    """An output without an extension (or an existing folder) is a folder of numbered frames."""
    return output.is_dir() or not output.suffix


def _resume_relevant(video: VideoConfig) -> dict:
    # Frame i depends only on frames 0..i, so the range's length does not change the saved frames.
    options = dataclasses.asdict(video)
    options.pop("duration")
    options.pop("max_frames")
    return options


@dataclass(frozen=True)
class _Stylized:
    """How the stylizing went: the stability report (when asked for), where it ran, chunks re-queued."""

    stability: StabilityReport | None
    device: str  # the pool's description; "none" when every frame was resumed
    retried: int


class _VideoRun:
    """One locked run of the video job: plan, stylize (on the executor), encode, report."""

    def __init__(self, work: VideoWork, job: JobConfig, config: VideoJobConfig, executor: Executor,
                 on_event: EventCallback):
        self.work, self.job, self.config = work, job, config
        self.executor, self.on_event = executor, on_event
        self.folder = work.folder
        self.counted: set[int] = set()  # own frames resumed or reported so far
        self.stylized = 0  # own frames stylized by this run
        self.stylize_seconds = 0.0  # their stylizing time, and that of the hand-over frames

    def run(self, overwrite: bool, report: ReportRequest) -> VideoSummary:
        work, folder, info = self.work, self.folder, self.work.info
        output = work.output
        chunking = {"max_chunk": self.executor.max_chunk, "overlap": self.executor.overlap if self.executor.max_chunk
                    else 0}
        # The working size as [height, width]: the resume key of job folders written before it was a Size.
        fingerprint = job_fingerprint(self.job, video=_resume_relevant(self.config.video),
                                      work_size=list(work.work_size.hw), input=input_identity(info.path),
                                      temporal=dataclasses.asdict(work.temporal), chunks=chunking)
        folder.open(fingerprint, overwrite)
        self.counted = {i for i in range(info.frames) if folder.frame_path(i).exists()}
        resumed = len(self.counted)
        writer, partial = self._writer(output, resumed)
        start = time.perf_counter()
        try:
            if self.executor.max_chunk is None:
                shots, chunks = [], whole_clip(info.frames)  # its chain restarts at each cut by itself
            else:
                shots = shot_starts(info, work.work_size, work.temporal)
                chunks = plan_chunks(shots, info.frames, self.executor.max_chunk, self.executor.overlap)
            if resumed:
                self.on_event(Notice(message=f"resuming: {resumed} of {info.frames} frames were already stylized "
                                             f"({folder.path})"))
            self.on_event(JobStarted(kind="video", total=info.frames, unit="frame", description=info.path.name,
                                     done=resumed))
            encoder = _Encoder(writer, folder, chunks, info, work.shape)
            done = self._stylize(chunks, encoder, report)
        except BaseException as exc:
            writer.abort()
            if partial.is_file():
                partial.unlink()  # the stylized frames stay; an encoded half-file is worthless
            if isinstance(exc, InputError):
                _explain(exc, folder, info.frames)
            raise
        publish(partial, output, folder)
        folder.remove()
        summary = VideoSummary(
            output=str(output), frames=info.frames, resumed_frames=resumed, stylized_frames=self.stylized,
            width=writer.size.width, height=writer.size.height,
            work_width=work.work_size.width, work_height=work.work_size.height,
            fps=float(info.rate), seconds=time.perf_counter() - start,
            seconds_per_frame=self.stylize_seconds / self.stylized if self.stylized else 0.0,
            output_bytes=output_bytes(output), device=done.device,
            shots=shots, chunks=[dataclasses.astuple(c) for c in chunks], retried=done.retried)
        if (stability := done.stability) is not None:
            summary.report = str(report.path)
            summary.warping_error, summary.style_loss = stability.warping_error, stability.losses["style"]
            if stability.drift:
                summary.drift = {k: stability.drift[k] for k in ("first", "last", "ratio", "floor_first", "floor_last")}
        return summary

    def _writer(self, output: Path, resumed: int) -> tuple[FrameWriter, Path]:
        """The encoder (or frame-folder writer), made before any work so that a codec, container or
        size it cannot take is refused before hours of stylizing."""
        info, encode = self.work.info, self.config.encode
        shift = float(info.frame_pts[0] * info.time_base) if self.config.video.start > 0 else 0.0
        to_folder = is_frame_folder(output)
        partial = self.folder.path / ("output-frames" if to_folder else f"output{output.suffix}")
        notices: list[str] = []
        writer: FrameWriter
        try:
            if to_folder:
                writer = FrameFolderWriter(partial, info, long_side=encode.output_size, shift=shift,
                                           on_notice=notices.append)
            else:
                writer = VideoWriter(partial, info, encode, shift=shift, on_notice=notices.append)
        except BaseException:
            if not resumed:
                self.folder.remove()
            raise
        if writer.size != Size(width=info.width, height=info.height) and encode.output_size is None:
            notices.append(f"output is {writer.size.width}x{writer.size.height}, not {info.width}x{info.height}: "
                           "this pixel format needs even sizes")
        for message in notices:
            self.on_event(Notice(message=message))
        return writer, partial

    def _stylize(self, chunks: list[Chunk], encoder: _Encoder, report: ReportRequest) -> _Stylized:
        """Run the chunks on the executor while the encoder writes what is final; then the report."""
        todo = [c for c in chunks if not encoder.complete(c)]
        if not todo and report.path is None:  # resumed at its very end: nothing needs the network
            with encoder:
                encoder.finish()
            return _Stylized(stability=None, device="none", retried=0)
        shared = SharedPaths(reads=(self.work.info.path,), writes=self.folder.frames)
        with encoder, self.executor.start(StylizerSetup(job=self.job), on_event=self.on_event, shared=shared) as pool:
            render = functools.partial(render_chunks, work=self.work)
            last_frame = lambda chunk, done: done.index == chunk.end - 1  # noqa: E731
            with contextlib.closing(pool.map(render, todo, self.on_event, finishes=last_frame)) as outcomes:
                for outcome in outcomes:
                    if isinstance(outcome, GaveUp):
                        chunk = outcome.unit
                        raise StylizeError(f"frames {chunk.first}-{chunk.end - 1}: {outcome.attempts} workers died on "
                                           "them; run the same command again to resume")
                    self._frame_done(outcome.value, outcome.worker)
                    encoder.add(outcome.value)
            encoder.finish()
            stability = None
            if report.path is not None:  # before the job folder goes: the report reads the frames kept there
                stability = self._report(pool, chunks, Path(report.path), report.drift)
            return _Stylized(stability=stability, device=pool.description, retried=pool.retried)

    def _frame_done(self, done: FrameDone, worker: str | None) -> None:
        self.stylize_seconds += done.seconds
        # Hand-over frames are work, not frames of the output (the bar counts those). Each frame counts
        # once: one found in the job folder was resumed or already reported, unless a worker that made
        # it in this run died before saying so.
        if done.lead or done.index in self.counted:
            return
        self.counted.add(done.index)
        self.stylized += 1
        info = self.work.info
        self.on_event(ItemDone(name=f"frame {done.index + 1}/{info.frames}", output=self.folder.frame_path(done.index),
                               seconds=done.seconds, losses=done.losses, worker=worker))

    def _report(self, pool: Pool, chunks: list[Chunk], report_path: Path, report_drift: bool) -> StabilityReport:
        from pipeline.jobs import stability
        from pipeline.jobs.video_report import (
            FrameAlone,
            FrameLosses,
            drift_frames,
            drift_report,
            losses_summary,
            measure_frames,
            warping_report,
            write_stability,
        )

        work, info = self.work, self.work.info
        report = warping_report(work, chunks)
        measure = functools.partial(measure_frames, work=work, chunks=chunks)
        per_frame = {}
        ranges = [range(c.start, c.end) for c in chunks]  # each chunk's own frames
        last = lambda frames, result: result.index == frames.stop - 1  # noqa: E731
        with contextlib.closing(pool.map(measure, ranges, ignore, finishes=last)) as outcomes:
            for outcome in outcomes:
                measured: FrameLosses = _require_done(outcome).value
                per_frame[measured.index] = measured.losses
        losses_summary(report, per_frame)
        if report_drift:
            self.on_event(Notice(message="stability report: stylizing sampled frames on their own to measure drift"))
            alone = {}
            drift = functools.partial(drift_frames, work=work)
            one = lambda index, result: True  # noqa: E731  (one result per frame)
            with contextlib.closing(pool.map(drift, stability.drift_frames(info.frames), ignore,
                                             finishes=one)) as outcomes:
                for outcome in outcomes:
                    frame: FrameAlone = _require_done(outcome).value
                    alone[frame.index] = frame.rgb
            report.drift = drift_report(work, chunks, alone)
        report.seconds_per_frame = self.stylize_seconds / self.stylized if self.stylized else None
        report.extra.update(input=str(info.path), output=str(work.output), init=work.temporal.init)
        write_stability(report, report_path)
        return report


def _require_done(outcome: Outcome) -> Done:
    if isinstance(outcome, GaveUp):
        raise StylizeError(f"the stability report: {outcome.attempts} workers died measuring it; run the same command "
                           "again (the stylized frames are kept)")
    return outcome


class _WriterFailed(Exception):
    """The driver's signal to stop; the writer's own exception is the one raised."""


_ABORT = object()  # tells the writer to throw its file away


class _Encoder:
    """The writer thread: frames go into the video in order, each as soon as it is final (its own frame
    saved and, in a hand-over, the next chunk's lead frame too), while later ones are still being made."""

    def __init__(self, writer: FrameWriter, folder: JobFolder, chunks: list[Chunk], info: VideoInfo,
                 shape: tuple[int, ...]):
        self.writer, self.folder, self.chunks, self.info, self.shape = writer, folder, chunks, info, shape
        self.own = {i for i in range(info.frames) if folder.frame_path(i).exists()}
        self.leads = {i for c in chunks for i in range(c.first, c.start) if folder.frame_path(i, c.kind(i)).exists()}
        self.next = 0  # the first frame not yet handed to the thread
        self.inbox: queue.Queue = queue.Queue()  # frame indices (small), then the end time or _ABORT
        self.failed = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="video-writer", daemon=True)

    def complete(self, chunk: Chunk) -> bool:
        return all(i in (self.leads if i < chunk.start else self.own) for i in range(chunk.first, chunk.end))

    def __enter__(self) -> _Encoder:
        self.thread.start()
        self._hand_on()
        return self

    def add(self, done: FrameDone) -> None:
        (self.leads if done.lead else self.own).add(done.index)
        self._hand_on()
        if self.failed.is_set():
            raise _WriterFailed  # no point stylizing for a writer that has failed

    def _hand_on(self) -> None:
        while self.next < self.info.frames and self._final(self.next):
            self.inbox.put(self.next)
            self.next += 1

    def _final(self, index: int) -> bool:
        return index in self.own and (handing_over(self.chunks, index) is None or index in self.leads)

    def finish(self) -> None:
        """Every frame is final: write the rest, the sound up to the range's end, and close the file."""
        self._hand_on()
        if self.next < self.info.frames:  # a bug, never a shorter video
            raise RuntimeError(f"frame {self.next} of {self.info.frames} is not in the job folder")
        end = self.info.end_pts  # the next frame after a range, else all of the sound
        self.inbox.put(float(end * self.info.time_base) if end is not None else float("inf"))
        self.thread.join()
        if self.error is not None:
            raise self.error

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.inbox.put(_ABORT)
            self.thread.join()
            if isinstance(exc, _WriterFailed) and self.error is not None:
                raise self.error from None

    def _run(self) -> None:
        message = None
        try:
            while (message := self.inbox.get()) is not _ABORT and not isinstance(message, float):
                self.writer.write(output_frame(self.folder, self.chunks, message, self.shape),
                                  self.info.frame_pts[message])
            if isinstance(message, float):  # the end time
                self.writer.finish(message)
            else:  # _ABORT
                self.writer.abort()
        except BaseException as exc:  # handed to the driver, which raises it
            self.error = exc
            self.failed.set()
            self.writer.abort()
            while message is not _ABORT and not isinstance(message, float):
                message = self.inbox.get()  # keep consuming so that a later put never waits


def _explain(exc: InputError, folder: JobFolder, frames: int) -> None:
    """Say where the work is when a job stops early: nothing is lost, a rerun resumes."""
    kept = sum(folder.frame_path(i).exists() for i in range(frames))
    if kept:
        exc.args = (f"{exc.args[0]}; stopped with {kept} of {frames} frames stylized: the stylized frames are kept "
                    f"in {folder.path}, no output was written",)
