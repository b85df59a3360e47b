"""The photo-folder job: every image under INPUT_DIR stylized into a mirrored tree under OUTPUT_DIR.

Three threads share the work: a reader decodes and resizes ahead of the stylizer into a bounded
queue, the caller's thread stylizes (in batches of images of equal working size), and a writer saves
each result atomically. An output is complete iff it exists under its final name; the manifest
(folder_plan.py) makes sure a re-run resumes only when the options are the same.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import FolderConfig, JobConfig, ScaleConfig
from pipeline.errors import ConfigError, DeviceMemoryError, InputError, StylizeError
from pipeline.events import (
    EventCallback,
    ItemDone,
    ItemFailed,
    ItemStarted,
    Iteration,
    JobFinished,
    JobStarted,
    Notice,
    ignore,
)
from pipeline.jobs.folder_plan import (
    FolderPlan,
    WorkItem,
    finished_outputs,
    plan_folder,
    remove_stale_parts,
    write_manifest,
)
from pipeline.jobs.folder_report import counts, record, write_refused, write_report_if_possible
from pipeline.jobs.lock import job_lock
from pipeline.jobs.write_errors import refused_write

# --batch-size auto. CPU: 1, measured (docs/performance.md, Photo folders): batching gave no clear gain there.
# CUDA: batches fill the GPU better at small sizes (not yet measured on our GPUs); the batch shrinks
# as images grow so that a night's job does not run out of GPU memory at --size 2048.
CUDA_AUTO_BATCH = ((512, 4), (1024, 2))  # (largest long side, batch size)


_END = object()  # the last thing a worker puts on a queue


@dataclass
class _Loaded:
    item: WorkItem
    content: object  # [1, 3, h, w] float tensor at the working size
    alpha: object  # [h, w] float array or None
    info: dict
    fmt: str
    n_frames: int


@dataclass
class _Failed:
    item: WorkItem
    error: str


def resolve_batch_size(batch_size: int | str, device, long_side: int) -> int:
    if batch_size != "auto":
        return int(batch_size)
    if device.type == "cuda":
        return next((n for side, n in CUDA_AUTO_BATCH if long_side <= side), 1)
    return 1


def _prepare(item: WorkItem, long_side: int, min_side: int) -> _Loaded | _Failed:
    """Decode and resize one image, in the reader thread; user-fixable problems become a _Failed."""
    import numpy as np
    from PIL import Image

    from pipeline.media.images import fit_long_side, load_image, resize, save_format_for

    try:
        image = load_image(item.source, draft_long_side=long_side)  # any decoder failure is an InputError
        height, width = image.rgb.shape[-2:]
        size = fit_long_side(height, width, long_side)
        if min(size) < min_side:
            raise InputError(f"{item.source}: too small: {width}x{height} px becomes {size[1]}x{size[0]} px at "
                             f"--size {long_side}, the network needs at least {min_side} px on each side")
        alpha = image.alpha
        if alpha is not None and alpha.shape != size:
            # Only the working-size copy is kept: a full-size float alpha can weigh hundreds of MB.
            a = Image.fromarray(np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8), "L")
            alpha = np.asarray(a.resize((size[1], size[0]), Image.Resampling.BICUBIC), np.float32) / 255
        return _Loaded(item, resize(image.rgb, size), alpha, image.info, save_format_for(item.output),
                       image.n_frames)
    except (StylizeError, OSError) as exc:
        return _Failed(item, str(exc) if str(item.source) in str(exc) else f"{item.source}: {exc}")


class _Worker(threading.Thread):
    """A thread that runs ``body`` and keeps an unexpected exception for the main thread to raise."""

    def __init__(self, body, name: str):
        super().__init__(name=name, daemon=True)
        self.body = body
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.body()
        except BaseException as exc:  # a bug: handed to the main thread, which re-raises it
            self.error = exc


def _batches(loaded: queue.Queue, batch_size: int, ended: threading.Event):
    """Group decoded images by working size; yields lists of _Loaded, or single _Failed.

    At most ``3 * batch_size`` images wait in the buckets: when there are more, the fullest bucket
    goes early, so memory stays bounded whatever the mix of sizes.
    """
    buckets: dict[tuple[int, int], list[_Loaded]] = {}
    waiting = 0
    while (entry := loaded.get()) is not _END:
        if isinstance(entry, _Failed):
            yield entry
            continue
        bucket = buckets.setdefault(tuple(entry.content.shape[-2:]), [])
        bucket.append(entry)
        waiting += 1
        if len(bucket) >= batch_size or waiting > 3 * batch_size:
            key = max(buckets, key=lambda k: len(buckets[k]))
            waiting -= len(buckets[key])
            yield buckets.pop(key)
    ended.set()
    yield from buckets.values()


@dataclass
class _Run:
    """Shared state of one folder run; event calls and records are serialised by ``lock``."""

    plan: FolderPlan
    config: FolderConfig
    on_event: EventCallback
    records: dict[str, dict]
    lock: threading.Lock = field(default_factory=threading.Lock)
    warned: set = field(default_factory=set)

    def emit(self, event) -> None:
        with self.lock:
            self.on_event(event)

    def finish(self, item: WorkItem, status: str, seconds: float = 0.0, error: str | None = None,
               worker: str | None = None) -> None:
        with self.lock:
            self.records[item.rel].update(status=status, seconds=round(seconds, 3), error=error)
            if worker is not None:
                self.records[item.rel]["worker"] = worker
            if status == "failed":
                self.on_event(ItemFailed(item.rel, error))
            else:
                self.on_event(ItemDone(item.rel, item.output, seconds, worker=worker))

    def warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.emit(Notice(message))


def _save(job: _Loaded, image, quality: int) -> tuple[str | None, tuple[str, str] | None]:
    """Save one stylized image ([1, 3, h, w]) atomically; returns (error, warning as (key, message)).

    A device that is full or read-only raises its OSError instead: every later write would fail too,
    so that stops the job rather than failing one image (atomic_write has removed the temporary file).
    """
    from pipeline.media.images import FORMATS_WITH_ALPHA, save_image

    try:
        save_image(image, job.item.output, alpha=job.alpha, info=job.info, quality=quality, fmt=job.fmt)
    except (StylizeError, OSError, ValueError) as exc:  # PIL refusing the data, a name too long, ...
        if (code := refused_write(exc, job.item.output.parent)) is not None:
            raise OSError(code, str(exc)) from exc
        return f"{job.item.output}: cannot write ({exc})", None
    if job.alpha is not None and job.fmt not in FORMATS_WITH_ALPHA:
        return None, ("alpha", f"{job.fmt} cannot hold transparency: alpha channels are dropped "
                      f"(first: {job.item.rel}); use --format png to keep them")
    return None, None


def _write(run: _Run, job: _Loaded, image, seconds: float) -> None:
    start = time.perf_counter()
    try:
        error, warning = _save(job, image, run.config.quality)
    except OSError as exc:
        raise write_refused(refused_write(exc), run.plan.output_dir, run.records) from exc
    if error is not None:
        run.finish(job.item, "failed", error=error)
        return
    if warning is not None:
        run.warn_once(*warning)
    run.finish(job.item, "done", seconds + time.perf_counter() - start)


def _animated(job: _Loaded) -> str:
    return f"{job.item.rel}: animated ({job.n_frames} frames); only the first is stylized"


OOM_ERROR = "out of GPU memory at this size (try a smaller --size)"


@dataclass(frozen=True)
class ItemResult:
    """What one image came to in a worker process (picklable: it travels back to the driver)."""

    status: str  # "done", "failed", or "refused": the device refused the write (the job must stop)
    seconds: float = 0.0
    error: str | None = None
    refused: int | None = None  # with "refused": the errno (ENOSPC, EROFS, ...)
    warnings: tuple[tuple[str | None, str], ...] = ()  # (key: shown once per job, or None: always; message)


def stylize_item(stylizer, item: WorkItem, quality: int) -> ItemResult:
    """One image from its file to its output file, batch size 1: the folder job's steps for a worker.

    Same decode, resize, stylize and atomic save as the one-process job, so the pixels are the same.
    """
    import torch

    job = _prepare(item, stylizer.config.size, stylizer.features.min_size)
    if isinstance(job, _Failed):
        return ItemResult("failed", error=job.error)
    warnings = [(None, _animated(job))] if job.n_frames > 1 else []
    start = time.perf_counter()
    try:
        result = stylizer.stylize(torch.cat([job.content]))
    except DeviceMemoryError:
        return ItemResult("failed", error=f"{item.source}: {OOM_ERROR}")
    except StylizeError as exc:
        return ItemResult("failed", error=f"{item.source}: {exc}")
    try:
        error, warning = _save(job, result.image.cpu()[0:1], quality)
    except OSError as exc:  # full or read-only: the driver stops the job (a worker must not carry on)
        return ItemResult("refused", error=f"{job.item.output}: {exc}", refused=refused_write(exc))
    if error is not None:
        return ItemResult("failed", error=error)
    return ItemResult("done", time.perf_counter() - start, warnings=tuple(warnings + ([warning] if warning else [])))


def _stylize_batch(run: _Run, stylizer, batch: list[_Loaded], writes: queue.Queue) -> None:
    import torch

    names = batch[0].item.rel + (f" (+{len(batch) - 1})" if len(batch) > 1 else "")
    total = stylizer.config.iterations
    run.emit(ItemStarted(names, total))
    for job in batch:
        if job.n_frames > 1:
            run.emit(Notice(_animated(job)))
    start = time.perf_counter()
    try:
        result = stylizer.stylize(torch.cat([job.content for job in batch]),
                                  on_progress=lambda d, t, loss: run.emit(Iteration(d, t, loss)))
    except DeviceMemoryError:
        # Not a bug but a limit of this GPU: a batch is retried one image at a time; a single image
        # that does not fit fails alone (its size is rare in the folder, or every photo would fail).
        # The Stylizer has already given the memory back.
        if len(batch) > 1:
            run.warn_once("oom", f"out of GPU memory for a batch of {len(batch)}: retrying one image at a time "
                          "(a smaller --batch-size avoids the retries)")
            for job in batch:
                _stylize_batch(run, stylizer, [job], writes)
            return
        result = None
        error = OOM_ERROR
    except StylizeError as exc:
        result, error = None, str(exc)
    if result is None:
        for job in batch:
            run.finish(job.item, "failed", error=f"{job.item.source}: {error}")
        return
    images = result.image.cpu()
    share = (time.perf_counter() - start) / len(batch)  # a batch's time, split evenly over its images
    for i, job in enumerate(batch):
        writes.put((job, images[i : i + 1], share))


def _run_items(run: _Run, stylizer, todo: list[WorkItem], batch_size: int) -> None:
    """Reader -> stylizer (this thread) -> writer, with a fixed shutdown order whatever happens."""
    loaded: queue.Queue = queue.Queue(maxsize=run.config.read_ahead)
    writes: queue.Queue = queue.Queue(maxsize=max(2, batch_size))
    stop, ended = threading.Event(), threading.Event()
    long_side, min_side = stylizer.config.size, stylizer.features.min_size

    def read() -> None:
        try:
            for item in todo:
                if stop.is_set():
                    break
                loaded.put(_prepare(item, long_side, min_side))
        finally:
            loaded.put(_END)

    def write() -> None:
        while (entry := writes.get()) is not _END:
            if writer.error is None:  # after a bug, keep draining so the stylizer never blocks on put
                try:
                    _write(run, *entry)
                except BaseException as exc:
                    writer.error = exc

    reader, writer = _Worker(read, "folder-reader"), _Worker(write, "folder-writer")
    reader.start()
    writer.start()
    try:
        for batch in _batches(loaded, batch_size, ended):
            if isinstance(batch, _Failed):
                run.finish(batch.item, "failed", error=batch.error)
            else:
                _stylize_batch(run, stylizer, batch, writes)
            if writer.error is not None:
                break
    finally:
        stop.set()
        while not ended.is_set() and loaded.get() is not _END:  # unblock a reader waiting on a full queue
            pass
        reader.join()
        writes.put(_END)  # results already computed are still written: they cost the most
        writer.join()
    for worker in (reader, writer):
        if worker.error is not None:
            raise worker.error


# -------------------------------------------------------------------------------------------- the job


def stylize_folder(
    input_dir: Path,
    output_dir: Path,
    job: JobConfig,
    config: FolderConfig = FolderConfig(),
    *,
    dry_run: bool = False,
    report: Path | None = None,
    on_event: EventCallback = ignore,
    stylizer=None,
    scale: ScaleConfig | None = None,
) -> dict:
    """Stylize every image under ``input_dir`` into ``output_dir``; returns the summary.

    One bad file never stops the job: it is reported (ItemFailed) and listed in the summary. Options
    that contradict earlier outputs, or unusable folders, raise before any work. On an interrupt, the
    outputs finished so far stay, the report (if asked for) is still written, and the exception goes on.
    With ``scale``, the images are spread over Ray workers (pipeline/scale/folder.py); the plan,
    manifest, resume, records and events stay this function's, so both paths behave the same.
    """
    from pipeline.jobs.common import check_styles, job_fingerprint

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_styles(job)  # a bad style image is one line now, not after the network has loaded
    plan = plan_folder(input_dir, output_dir, config)
    if report is not None and Path(report).resolve().is_relative_to(input_dir.resolve()):
        raise ConfigError(f"{report}: the report must not be written inside the input folder {input_dir}")
    fingerprint = job_fingerprint(job, output={"format": config.format, "quality": config.quality})
    # One job per output folder, held from before it decides what is done until the report is out; with
    # --workers the driver holds it for all of them.
    with contextlib.nullcontext() if dry_run else job_lock(output_dir, on_event=on_event):
        return _locked_run(plan, job, config, fingerprint, dry_run, report, on_event, stylizer, scale)


def _locked_run(plan: FolderPlan, job: JobConfig, config: FolderConfig, fingerprint: dict, dry_run: bool,
                report: Path | None, on_event: EventCallback, stylizer, scale: ScaleConfig | None) -> dict:
    """The folder job once its output is locked: what is done, the stylizing, the summary and report."""
    from pipeline.jobs.common import build_stylizer

    input_dir, output_dir = plan.input_dir, plan.output_dir
    finished = finished_outputs(plan, fingerprint, config.overwrite, dry_run=dry_run, on_event=on_event)
    records = {item.rel: record(item, "skipped" if item.rel in finished else "pending") for item in plan.items}
    todo = [item for item in plan.items if item.rel not in finished]
    summary = {"input": str(input_dir), "output": str(output_dir), "dry_run": dry_run, "images": len(plan.items)}
    start = time.perf_counter()
    run = _Run(plan, config, on_event, records)
    try:
        with contextlib.ExitStack() as stack:
            if not dry_run:
                if not plan.items:
                    raise InputError(f"{input_dir}: no images found ({len(plan.ignored)} other files; images are "
                                     "read from .jpg .jpeg .png .webp .tif .tiff .bmp .gif)")
                if scale is None:
                    stylizer = stylizer or build_stylizer(job)
                    summary["device"] = str(stylizer.device)
                    summary["batch_size"] = resolve_batch_size(config.batch_size, stylizer.device,
                                                               stylizer.config.size)
                else:
                    from pipeline.scale.folder import WorkerPool  # imports Ray: only on this path

                    pool = stack.enter_context(WorkerPool(job, scale, plan, config.quality, run))
                    summary["device"], summary["batch_size"] = pool.description, 1
                    if config.batch_size not in ("auto", 1):
                        run.emit(Notice(f"--batch-size {config.batch_size} is ignored with --workers: each worker "
                                        "takes one image at a time"))
                summary["setup_seconds"] = round(time.perf_counter() - start, 3)
                start = time.perf_counter()  # the rate below is the stylizing's, not the network loading's
                output_dir.mkdir(parents=True, exist_ok=True)
                if removed := remove_stale_parts(output_dir):
                    run.emit(Notice(f"removed {removed} half-written temporary files left by an interrupted run"))
                write_manifest(output_dir, fingerprint, input_dir)
                run.emit(JobStarted("folder", len(plan.items), "image", output_dir.name or str(output_dir),
                                    done=len(finished)))
                if scale is None:
                    _run_items(run, stylizer, todo, summary["batch_size"])
                else:
                    summary["retried"] = pool.run(todo)
    except OSError as exc:  # the manifest or an image could not be written: the device is full or read-only
        if (code := refused_write(exc, output_dir)) is None:
            raise
        raise write_refused(code, run.plan.output_dir, run.records) from exc
    finally:
        summary.update(counts(plan, records, time.perf_counter() - start))
        if report is not None:
            write_report_if_possible(report, summary)
    if not dry_run:
        run.emit(JobFinished({k: v for k, v in summary.items() if k != "files"}))
    return summary
