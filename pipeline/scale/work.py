"""What a job hands an executor, and what comes back. No Ray here: the one-process path uses it too.

A job is a list of *units* (the folder job's images, the video job's chunks) and a *work function*
that does some of them::

    work(stylizer, units, emit) -> generator of results

``stylizer`` is the worker's own, built once per process by the job's ``setup`` (a picklable
callable, normally ``pipeline.jobs.common.StylizerSetup``); ``units`` are the units of this call;
``emit`` takes progress events (ItemStarted, Iteration) and may drop them: whatever the job must know
travels in the results, and each result names the unit (or the part of it) it is about.

A work function is a module-level function, or a ``functools.partial`` of one, so that it pickles by
name. It must be safe to call again on a unit that a dead worker left half done: outputs are written
atomically and finished ones are kept, so a unit is only ever redone from where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.events import EventCallback


class Setup(Protocol):
    """Builds a worker's state (the job's Stylizer) once per process, on ``device``."""

    @property
    def device(self) -> str:
        """Where the state will live ("cpu", "cuda:0", ...): a "cpu" job asks the cluster for no GPUs."""
        ...

    def __call__(self) -> Any: ...


# A generator, not just an iterator: the one-process pool closes it when its caller stops early, so
# that the work's threads stop at once (pipeline/scale/local.py).
WorkFunction = Callable[[Any, list, EventCallback], Generator[Any, None, None]]
# finishes(unit, result): whether ``result`` is the last the unit gives (the folder job: its one
# result; the video job: the chunk's last frame). A worker that dies after that has lost nothing.
Finishes = Callable[[Any, Any], bool]


@dataclass(frozen=True)
class Done:
    """One result a work function yielded, and which worker made it."""

    value: Any
    worker: str | None  # "w1", "w2", ... (stable over restarts); None in this process


@dataclass(frozen=True)
class GaveUp:
    """A unit whose workers died ``attempts`` times (out of memory, a bad node): the job decides what
    that means (the folder job lists the image as failed, the video job stops)."""

    unit: Any
    attempts: int


Outcome = Done | GaveUp


@dataclass(frozen=True)
class SharedPaths:
    """Paths every worker must see exactly as the driver does (a shared file system): files and
    folders it reads, and the folder the outputs are written into."""

    reads: tuple[Path, ...]
    writes: Path


class Pool(Protocol):
    """Started workers (or this process) that run work functions; from ``Executor.start``."""

    description: str  # for the summary: "cpu", "cuda:0", "ray: 2 workers (CPU, 1 thread each)"
    device: str  # the device of the work: "cpu", "cuda:0", ... ("ray" when it is spread over workers)
    spread: bool  # True: each call gets one unit, and calls go to several processes
    retried: int  # units given back to the queue because their worker died

    def map(self, work: WorkFunction, units: Sequence, emit: EventCallback, *,
            finishes: Finishes | None = None) -> Generator[Outcome, None, None]:
        """Run ``work`` over ``units``; yields each result as soon as it exists. A caller that stops
        early closes the generator (``contextlib.closing``), which stops the work."""
        ...


class Executor(Protocol):
    """Where a job's work runs: ``pipeline.scale.local.LocalExecutor`` (this process) or
    ``pipeline.scale.ray_pool.RayExecutor`` (Ray workers)."""

    # Read-only properties, so that an executor whose max_chunk is always a number fits too.
    @property
    def max_chunk(self) -> int | None:
        """A video's shots longer than this many frames are cut into chunks that can run side by side;
        None: every shot is one chunk (nothing to gain from cutting where the chunks run one by one)."""
        ...

    @property
    def overlap(self) -> int:
        """Frames each chunk inside a shot shares with the one before (the hand-over)."""
        ...

    def start(self, setup: Setup, *, on_event: EventCallback,
              shared: SharedPaths | None = None) -> AbstractContextManager[Pool]:
        """Build the workers' state (``setup``), check they see ``shared``; stop them on exit."""
        ...
