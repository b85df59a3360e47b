"""The folder job's work function: images from their files to their output files, one result each.

``stylize_images(stylizer, items, emit)`` is what an executor runs (pipeline/scale/work.py): in this
process it gets every image of the job in one call, on Ray workers one image per call. The steps
are the same either way, so the pixels are the same. Three threads share a call: a reader decodes
and resizes ahead of the stylizer into a bounded queue, the caller's thread stylizes (in batches of
images of equal working size), and a writer saves each result atomically. Each image's outcome comes
back as an ``ItemResult``; the folder job (folder.py) keeps the records, events and report.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.config import FULL_SIZE
from pipeline.errors import DeviceMemoryError, InputError, StylizeError, setting
from pipeline.events import EventCallback, ItemStarted, Iteration, Notice
from pipeline.jobs.common import working_size
from pipeline.jobs.folder_plan import WorkItem
from pipeline.jobs.write_errors import refused_write

if TYPE_CHECKING:  # for the annotations only: the functions import what they use when they run
    import numpy as np
    import torch

    from pipeline.engine.optimize import Stylizer

# --batch-size auto. CPU: 1, measured (docs/performance.md, Photo folders): batching gave no clear gain there.
# CUDA: batches fill the GPU better at small sizes (not yet measured on our GPUs); the batch shrinks
# as images grow so that a night's job does not run out of GPU memory at --size 2048.
CUDA_AUTO_BATCH = ((512, 4), (1024, 2))  # (largest long side, batch size)

OOM_ERROR = "out of GPU memory at this size (a smaller working size fits)"

_END = object()  # the last thing a thread puts on a queue


@dataclass(frozen=True)
class ItemWarning:
    """Something to tell the user about an image that does not fail it."""

    key: str | None  # warnings with one key are shown once per job; None: every time
    message: str


@dataclass(frozen=True)
class ItemResult:
    """What one image came to (picklable: from a worker process it travels back to the driver)."""

    rel: str  # the image's key (WorkItem.rel)
    status: str  # "done", "failed", or "refused": the device refused the write (the job must stop)
    seconds: float = 0.0
    error: str | None = None
    refused: int | None = None  # with "refused": the errno (ENOSPC, EROFS, ...)
    warnings: tuple[ItemWarning, ...] = ()


def resolve_batch_size(batch_size: int | str, device: str, long_side: int | str) -> int:
    """``--batch-size`` for a device ("cpu", "cuda:0", ...): "auto" is 1 on a CPU, more on a GPU for
    small outputs (at full size photos rarely share a size, and each may need the whole GPU)."""
    if batch_size != "auto":
        return int(batch_size)
    if device.startswith("cuda") and isinstance(long_side, int):  # not FULL_SIZE
        return next((n for side, n in CUDA_AUTO_BATCH if long_side <= side), 1)
    return 1


@dataclass
class _Loaded:
    item: WorkItem
    content: torch.Tensor  # [1, 3, h, w] float at the working size
    alpha: np.ndarray | None  # [h, w] float
    info: dict
    fmt: str
    n_frames: int


@dataclass
class _Failed:
    item: WorkItem
    error: str


@dataclass
class _Stylized:
    """One stylized image on its way to the writer thread."""

    job: _Loaded
    image: torch.Tensor  # [1, 3, h, w] float on the CPU
    seconds: float  # its share of its batch's stylizing time
    notes: tuple[ItemWarning, ...]  # warnings that go with its result


def _prepare(item: WorkItem, long_side: int | str, min_side: int) -> _Loaded | _Failed:
    """Decode and resize one image, in the reader thread; user-fixable problems become a _Failed."""
    import numpy as np
    from PIL import Image

    from pipeline.media.images import load_image, resize, save_format_for

    try:
        # Any decoder failure is an InputError; a JPEG to be shrunk may decode at a fraction of its size.
        image = load_image(item.source, draft_long_side=long_side if isinstance(long_side, int) else None)
        height, width = image.rgb.shape[-2:]
        size = working_size(height, width, long_side)
        if min(size.width, size.height) < min_side:
            at = "" if long_side == FULL_SIZE else f" becomes {size.width}x{size.height} px at a working size of " \
                                                   f"{long_side}"
            raise InputError(f"{item.source}: too small: {width}x{height} px{at}, the network needs at least "
                             f"{min_side} px on each side")
        alpha = image.alpha
        if alpha is not None and alpha.shape != size.hw:
            # Only the working-size copy is kept: a full-size float alpha can weigh hundreds of MB.
            a = Image.fromarray(np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8), "L")
            alpha = np.asarray(a.resize((size.width, size.height), Image.Resampling.BICUBIC), np.float32) / 255
        return _Loaded(item=item, content=resize(image.rgb, size.hw), alpha=alpha, info=image.info,
                       fmt=save_format_for(item.output), n_frames=image.n_frames)
    except (StylizeError, OSError) as exc:
        return _Failed(item=item, error=str(exc) if str(item.source) in str(exc) else f"{item.source}: {exc}")


class _Thread(threading.Thread):
    """A thread that runs ``body`` and keeps an unexpected exception for the caller's thread to raise."""

    def __init__(self, body: Callable[[], None], name: str):
        super().__init__(name=name, daemon=True)
        self.body = body
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.body()
        except BaseException as exc:  # a bug: handed to the caller's thread, which re-raises it
            self.error = exc


def _batches(loaded: queue.Queue, batch_size: int, ended: threading.Event) -> Iterator[list[_Loaded] | _Failed]:
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


def _animated(job: _Loaded) -> str:
    return f"{job.item.rel}: animated ({job.n_frames} frames); only the first is stylized"


def _save(job: _Loaded, image: torch.Tensor, quality: int, seconds: float,
          notes: tuple[ItemWarning, ...] = ()) -> ItemResult:
    """Save one stylized image ([1, 3, h, w]) atomically, in the writer thread.

    A device that is full or read-only is a "refused" result: every later write would fail too, so
    the job stops rather than failing one image (atomic_write has removed the temporary file).
    """
    from pipeline.media.images import FORMATS_WITH_ALPHA, save_image

    start = time.perf_counter()
    warnings = [*notes, *([ItemWarning(key=None, message=_animated(job))] if job.n_frames > 1 else [])]
    try:
        save_image(image, job.item.output, alpha=job.alpha, info=job.info, quality=quality, fmt=job.fmt)
    except (StylizeError, OSError, ValueError) as exc:  # PIL refusing the data, a name too long, ...
        if (code := refused_write(exc, job.item.output.parent)) is not None:
            return ItemResult(rel=job.item.rel, status="refused", error=f"{job.item.output}: {exc}", refused=code)
        return ItemResult(rel=job.item.rel, status="failed", error=f"{job.item.output}: cannot write ({exc})",
                          warnings=tuple(warnings))
    if job.alpha is not None and job.fmt not in FORMATS_WITH_ALPHA:
        warnings.append(ItemWarning(key="alpha", message=f"{job.fmt} cannot hold transparency: alpha channels are "
                                    f"dropped (first: {job.item.rel}); use {setting('FolderConfig.format')} png to "
                                    "keep them"))
    return ItemResult(rel=job.item.rel, status="done", seconds=seconds + time.perf_counter() - start,
                      warnings=tuple(warnings))


def _stylize_batch(stylizer: Stylizer, batch: list[_Loaded], writes: queue.Queue, emit: EventCallback,
                   notes: tuple[ItemWarning, ...] = ()) -> Iterator[ItemResult]:
    """Stylize one batch and hand its images to the writer; yields the images that failed.
    ``notes``: warnings that go with each image's result."""
    import torch

    names = batch[0].item.rel + (f" (+{len(batch) - 1})" if len(batch) > 1 else "")
    emit(ItemStarted(name=names, total_iterations=stylizer.config.iterations))
    start = time.perf_counter()
    try:
        result = stylizer.stylize(torch.cat([job.content for job in batch]),
                                  on_progress=lambda d, t, loss: emit(Iteration(done=d, total=t, loss=loss)),
                                  on_notice=lambda message: emit(Notice(message=message)))
    except DeviceMemoryError:
        # Not a bug but a limit of this GPU: a batch is retried one image at a time; a single image
        # that does not fit fails alone (its size is rare in the folder, or every photo would fail).
        # The Stylizer has already given the memory back.
        if len(batch) > 1:
            note = ItemWarning(key="oom", message=f"out of GPU memory for a batch of {len(batch)}: retrying one image "
                               f"at a time (a smaller {setting('FolderConfig.batch_size')} avoids the retries)")
            for job in batch:
                yield from _stylize_batch(stylizer, [job], writes, emit, (*notes, note))
            return
        result, error = None, OOM_ERROR
    except StylizeError as exc:
        result, error = None, str(exc)
    if result is None:
        for job in batch:
            yield ItemResult(rel=job.item.rel, status="failed", error=f"{job.item.source}: {error}", warnings=notes)
        return
    images = result.image.cpu()
    share = (time.perf_counter() - start) / len(batch)  # a batch's time, split evenly over its images
    for i, job in enumerate(batch):
        writes.put(_Stylized(job=job, image=images[i : i + 1], seconds=share, notes=notes))


def stylize_images(stylizer: Stylizer, items: list[WorkItem], emit: EventCallback, *, quality: int = 95,
                   batch_size: int = 1, read_ahead: int = 4) -> Generator[ItemResult, None, None]:
    """Reader -> stylizer (this thread) -> writer over ``items``; one ItemResult per image, as each is
    written. The threads stop in a fixed order whatever happens, also when the caller stops early."""
    loaded: queue.Queue = queue.Queue(maxsize=read_ahead)
    writes: queue.Queue = queue.Queue(maxsize=max(2, batch_size))
    written: queue.Queue = queue.Queue()  # results from the writer, handed on between batches
    stop, ended = threading.Event(), threading.Event()
    long_side, min_side = stylizer.config.size, stylizer.features.min_size

    def read() -> None:
        try:
            for item in items:
                if stop.is_set():
                    break
                loaded.put(_prepare(item, long_side, min_side))
        finally:
            loaded.put(_END)

    def write() -> None:
        stopped = False  # after a full disk or a bug, keep draining so the stylizer never blocks on put
        while (entry := writes.get()) is not _END:
            if stopped:
                continue
            try:
                result = _save(entry.job, entry.image, quality, entry.seconds, entry.notes)
            except BaseException as exc:  # a bug (or a test's interrupt): the caller's thread raises it
                writer.error, stopped = exc, True
                continue
            stopped = result.status == "refused"
            written.put(result)

    def finished() -> Iterator[ItemResult]:
        while not written.empty():
            yield written.get()

    reader, writer = _Thread(read, "folder-reader"), _Thread(write, "folder-writer")
    reader.start()
    writer.start()
    try:
        for batch in _batches(loaded, batch_size, ended):
            if isinstance(batch, _Failed):
                yield ItemResult(rel=batch.item.rel, status="failed", error=batch.error)
            else:
                yield from _stylize_batch(stylizer, batch, writes, emit)
            yield from finished()
            if writer.error is not None:
                break
    finally:
        stop.set()
        while not ended.is_set() and loaded.get() is not _END:  # unblock a reader waiting on a full queue
            pass
        reader.join()
        writes.put(_END)  # results already computed are still written: they cost the most
        writer.join()
    for thread in (reader, writer):
        if thread.error is not None:
            raise thread.error
    yield from finished()
