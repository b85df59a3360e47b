"""A video spread over Ray workers (``stylize-video IN STYLE OUT --workers N``), shot by shot.

Within a shot every frame starts from the previous stylized frame (a chain), so the units of parallel
work are shots: a fast pass over the decoded frames finds the cuts (the scene-cut test of
pipeline/jobs/temporal.py, the same one the one-process job uses). A shot longer than ``max_chunk``
frames is split into chunks; each chunk after the first in its shot also renders ``overlap`` "lead"
frames before its own, starting a fresh chain there, and the driver cross-fades the two chains over
those frames, so the new chain has settled before it takes over and no seam shows in one frame.

Workers write every frame into the job folder (pipeline/jobs/video_resume.py: PNG, atomic) and skip
frames already there, so a chunk whose worker died is redone from its last saved frame, by any
worker, and an interrupted job resumes per frame. The driver then encodes the frames in order and
copies the sound as the one-process job does (pipeline/media/video.py).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import EncodeConfig, JobConfig, ScaleConfig, TemporalConfig, VideoConfig
from pipeline.errors import ConfigError, StylizeError
from pipeline.events import EventCallback, ItemDone, JobFinished, JobStarted, Notice, WorkerStarted, ignore
from pipeline.jobs.video_resume import JobFolder

LEAD = ".lead"  # job-folder name of a chunk's own copy of the frames it shares with the chunk before


@dataclass(frozen=True)
class Chunk:
    """Frames [start, end) are this chunk's; [start - lead, start) it renders only to cross-fade."""

    start: int
    end: int
    lead: int = 0

    @property
    def first(self) -> int:
        return self.start - self.lead


def plan_chunks(shot_starts: list[int], frames: int, max_chunk: int, overlap: int) -> list[Chunk]:
    """Cut each shot into chunks of at most ``max_chunk`` own frames; chunks inside a shot get a lead.

    ``shot_starts`` are the first frame of each shot (0 first, sorted). Every frame belongs to exactly
    one chunk; the lead never reaches back over a cut (a shot's first chunk has none).
    """
    if max_chunk < 1 or overlap < 0:
        raise ConfigError(f"--max-chunk must be at least 1 and the overlap at least 0 (got {max_chunk}, {overlap})")
    bounds = [*sorted(set(shot_starts) | {0}), frames]
    chunks = []
    for shot_start, shot_end in zip(bounds, bounds[1:]):
        for start in range(shot_start, shot_end, max_chunk):
            lead = min(overlap, start - shot_start)
            chunks.append(Chunk(start, min(start + max_chunk, shot_end), lead))
    return chunks


def fade_weight(index: int, chunk: Chunk) -> float:
    """Share of ``chunk``'s chain in frame ``index`` of its lead: rises linearly over the lead, so the
    earlier chain fades out and this one in (frames at and after ``start`` are all this chain's)."""
    return (index - chunk.first + 1) / (chunk.lead + 1)


def assembled_frame(folder: JobFolder, chunks: list[Chunk], index: int, shape: tuple[int, ...]) -> np.ndarray:
    """Frame ``index`` as it goes into the video: the chunk's own frame, or a cross-fade in a lead."""
    rgb = folder.load(index, shape)
    for chunk in chunks:
        if chunk.lead and chunk.first <= index < chunk.start:
            a = fade_weight(index, chunk)
            lead = folder.load(index, shape, LEAD).astype(np.float32)
            return np.clip((1 - a) * rgb.astype(np.float32) + a * lead + 0.5, 0, 255).astype(np.uint8)
    return rgb


def shot_starts(info, work_size: tuple[int, int], temporal: TemporalConfig) -> list[int]:
    """The first frame of each shot: one pass over the decoded frames with the job's scene-cut test."""
    from pipeline.jobs.temporal import TemporalGuide
    from pipeline.jobs.video import to_work_size
    from pipeline.media.video import decode_frames

    guide = TemporalGuide(temporal)
    starts, previous = [0], None
    for index, frame in enumerate(decode_frames(info)):
        rgb = to_work_size(frame.rgb, work_size)
        if previous is not None and guide.is_scene_cut(guide.annotate(previous, rgb)):
            starts.append(index)
        previous = rgb
    return starts


class VideoWorker:
    """One worker process: builds its Stylizer once, then renders whole chunks into the job folder."""

    def __init__(self, job: JobConfig, video: VideoConfig, temporal: TemporalConfig, threads: int):
        import torch

        from pipeline.jobs.common import build_stylizer

        torch.set_num_threads(threads)  # see pipeline/scale/folder.py: workers share the cores
        self.stylizer = build_stylizer(job)
        self.job, self.video, self.temporal = job, video, temporal

    def identity(self) -> tuple[str, int, str]:
        return socket.gethostname(), os.getpid(), str(self.stylizer.device)

    def render(self, input_path: Path, output_path: Path, chunk: Chunk, work_size: tuple[int, int]) -> int:
        """Stylize ``chunk`` (lead first) into the job folder; returns the frames stylized (not found there).

        The same per-frame steps as the one-process job (pipeline/jobs/video.py): the chunk's first
        frame from its content, each later one from the previous stylized frame as ``--init`` says.
        """
        from pipeline.jobs.temporal import TemporalGuide
        from pipeline.jobs.video import FRAME_INITS, FrameItem, to_work_size
        from pipeline.media.images import from_uint8, to_uint8
        from pipeline.media.video import FrameWindow, decode_frames, probe

        video = self.video
        info = probe(input_path, FrameWindow(video.start, video.duration, video.max_frames), video.fps)
        folder = JobFolder(output_path)
        annotate, frame_init = None, FRAME_INITS.get(video.init)
        if video.init == "warped":
            guide = TemporalGuide(dataclasses.replace(self.temporal, init="warped"))
            annotate, frame_init = guide.annotate_item, guide.frame_init
        shape = (*work_size, 3)
        previous = previous_styled = None
        stylized = 0
        # Only the chunk's own frames: decode_frames seeks to the keyframe before the first of them,
        # so a chunk late in a film does not decode the whole film before it.
        own = dataclasses.replace(info, frame_pts=info.frame_pts[chunk.first:chunk.end])
        for index, frame in enumerate(decode_frames(own), start=chunk.first):
            item = FrameItem(index, frame.pts, to_work_size(frame.rgb, work_size))
            if annotate is not None:
                annotate(previous, item)
            kind = LEAD if index < chunk.start else ""
            if folder.frame_path(index, kind).exists():  # a resumed chunk: its chain goes on from these bytes
                styled = folder.load(index, shape, kind)
            else:
                if previous is None:
                    init, temporal, iterations, scales = None, None, video.first_iterations, self.job.style.scales
                else:
                    init, temporal = frame_init(item, previous, previous_styled)
                    iterations = video.first_iterations if item.extra.get("scene_cut") else video.iterations
                    scales = self.job.style.scales if init is None else 1
                result = self.stylizer.stylize(from_uint8(item.content), init=init, temporal=temporal,
                                               iterations=iterations, scales=scales)
                styled = to_uint8(result.image)
                folder.save(index, styled, kind)
                stylized += 1
            previous, previous_styled = item, styled
        return stylized


def chunk_done(folder: JobFolder, chunk: Chunk) -> bool:
    return all(folder.frame_path(i, LEAD if i < chunk.start else "").exists() for i in range(chunk.first, chunk.end))


def stylize_video_distributed(
    input_path: Path,
    output_path: Path,
    job: JobConfig,
    video: VideoConfig,
    encode: EncodeConfig,
    scale: ScaleConfig,
    *,
    temporal: TemporalConfig | None = None,
    overwrite: bool = False,
    on_event: EventCallback = ignore,
) -> dict:
    """The video job over Ray workers; returns the one-process job's summary plus ``chunks``/``shots``."""
    from pipeline.jobs.common import check_output, check_styles, job_fingerprint
    from pipeline.jobs.lock import job_lock
    from pipeline.jobs.video import _resume_relevant, is_frame_folder
    from pipeline.jobs.video_resume import input_identity, publish, stop_on_refused_write
    from pipeline.media.images import fit_long_side
    from pipeline.media.video import FrameWindow, VideoWriter, probe

    input_path, output_path = Path(input_path), Path(output_path)
    check_styles(job)  # before the first frame is read
    check_output(output_path, overwrite)
    if is_frame_folder(output_path):
        raise ConfigError(f"{output_path}: with --workers the output must be a video file (e.g. .mp4)")
    temporal = dataclasses.replace(temporal or TemporalConfig(), init=video.init)
    if temporal.long_term:
        raise ConfigError("--long-term is not available with --workers yet (a chunk cannot see earlier chunks)")
    info = probe(input_path, FrameWindow(video.start, video.duration, video.max_frames), video.fps)
    work_size = fit_long_side(info.height, info.width, min(video.size, max(info.height, info.width)))
    job = dataclasses.replace(job, style=job.style.replace(size=max(work_size), iterations=video.first_iterations,
                                                           init="content"))
    folder = JobFolder(output_path)
    # One job per output, as in one process: the driver holds the job folder's lock for all workers.
    with job_lock(folder.path, label=output_path, on_event=on_event):
        check_output(output_path, overwrite)  # again: the run that held the lock may just have finished it
        with stop_on_refused_write(output_path, folder, info.frames):  # a full disk: one line, frames kept
            fingerprint = job_fingerprint(job, video=_resume_relevant(video), work_size=list(work_size),
                                          input=input_identity(input_path), temporal=dataclasses.asdict(temporal),
                                          chunks={"max_chunk": scale.max_chunk, "overlap": scale.overlap})
            folder.open(fingerprint, overwrite)
            start = time.perf_counter()
            shots = shot_starts(info, work_size, temporal)
            chunks = plan_chunks(shots, info.frames, scale.max_chunk, scale.overlap)
            todo = [c for c in chunks if not chunk_done(folder, c)]
            on_event(JobStarted("video", len(chunks), "chunk", input_path.name, done=len(chunks) - len(todo)))
            with _ChunkPool(job, video, temporal, scale, on_event) as pool:
                device = pool.description
                pool.run(todo, input_path, output_path, work_size)
            shift = float(info.frame_pts[0] * info.time_base) if video.start > 0 else 0.0
            partial = folder.path / f"output{output_path.suffix}"
            writer = VideoWriter(partial, info, codec=encode.codec, crf=encode.crf, preset=encode.preset,
                                 pix_fmt=encode.pix_fmt, long_side=encode.output_size, shift=shift,
                                 on_notice=lambda message: on_event(Notice(message)))
            try:
                for index, pts in enumerate(info.frame_pts):
                    writer.write(assembled_frame(folder, chunks, index, (*work_size, 3)), pts)
                writer.finish(float(info.end_pts * info.time_base) if info.end_pts is not None else float("inf"))
            except BaseException:
                writer.abort()
                partial.unlink(missing_ok=True)
                raise
            publish(partial, output_path, folder)
            folder.remove()
    summary = {"output": str(output_path), "frames": info.frames, "shots": len(shots), "shot_starts": shots,
               "chunks": len(chunks),
               "chunk_list": [dataclasses.astuple(c) for c in chunks], "width": writer.size[0],
               "height": writer.size[1], "work_width": work_size[1], "work_height": work_size[0],
               "seconds": time.perf_counter() - start, "device": device}
    on_event(JobFinished(summary))
    return summary


class _ChunkPool:
    """Video worker actors; a lost worker's chunk goes back to the queue and resumes from its frames."""

    def __init__(self, job, video, temporal, scale: ScaleConfig, on_event):
        self.args, self.scale, self.on_event = (job, video, temporal), scale, on_event
        self.actors, self.in_flight, self.started_ray, self.description = [], {}, False, ""

    def __enter__(self):
        import ray

        from pipeline.scale.cluster import cluster_resources, connect, worker_shape

        self.started_ray = connect(self.scale)
        try:
            cpus, gpus = cluster_resources()
            shape = worker_shape(self.scale, cpus, gpus, self.args[0].engine.device)
            actor = ray.remote(VideoWorker).options(num_cpus=shape.num_cpus, num_gpus=shape.num_gpus,
                                                    max_restarts=self.scale.max_restarts, max_task_retries=0)
            self.actors = [actor.remote(*self.args, shape.threads) for _ in range(shape.count)]
            for i, (host, pid, device) in enumerate(ray.get([a.identity.remote() for a in self.actors])):
                self.on_event(WorkerStarted(f"w{i + 1}", host, pid, device))
            self.description = f"ray: {shape.count} workers ({'GPU' if shape.num_gpus else 'CPU'})"
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        if self.in_flight:  # frames are written atomically: a killed worker leaves at most a .part file
            ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=30)
        self.actors, self.in_flight = [], {}
        if self.started_ray:
            ray.shutdown()

    def run(self, todo: list[Chunk], input_path: Path, output_path: Path, work_size) -> None:
        import ray

        from pipeline.scale.folder import POLL, _first_line

        queue, lost, idle = list(todo), {}, list(range(len(self.actors)))
        while queue or self.in_flight:
            while queue and idle:
                i, chunk = idle.pop(0), queue.pop(0)
                ref = self.actors[i].render.remote(input_path, output_path, chunk, work_size)
                self.in_flight[ref] = (chunk, i)
            done, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=POLL)
            for ref in done:
                chunk, i = self.in_flight.pop(ref)
                idle.append(i)  # a dead worker is restarted by Ray; calls to it wait for the restart
                try:
                    stylized = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    lost[chunk] = lost.get(chunk, 0) + 1
                    if lost[chunk] >= self.scale.max_attempts:
                        raise StylizeError(f"frames {chunk.first}-{chunk.end - 1}: {lost[chunk]} workers died on "
                                           "them; run the same command again to resume") from None
                    self.on_event(Notice(f"worker w{i + 1} was lost ({_first_line(exc)}); frames "
                                         f"{chunk.first}-{chunk.end - 1} resume from their last saved frame"))
                    queue.insert(0, chunk)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None
                self.on_event(ItemDone(f"frames {chunk.start}-{chunk.end - 1} ({stylized} new)", None, 0.0,
                                       worker=f"w{i + 1}"))
