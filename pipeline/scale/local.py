"""The executor of the one-process path: the work runs in the caller's thread, on one Stylizer."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any

from pipeline.events import EventCallback, ignore
from pipeline.scale.work import Done, Finishes, Outcome, Setup, SharedPaths, WorkFunction


class LocalExecutor:
    """This process. The work function gets every unit in one call, so it can read ahead and batch
    (the folder job) or run one chain after another (the video job); its progress events reach the
    caller as they happen.

    ``stylizer``: use this one instead of building one with the job's setup (a test's stand-in, or a
    notebook that runs many jobs on one network). ``max_chunk`` / ``overlap``: cut a video's shots
    into chunks as a distributed job would (None, the default: one chunk per shot, no hand-overs).
    """

    def __init__(self, stylizer: Any = None, *, max_chunk: int | None = None, overlap: int = 0):
        self.stylizer = stylizer
        self.max_chunk = max_chunk
        self.overlap = overlap

    @contextmanager
    def start(self, setup: Setup, *, on_event: EventCallback = ignore,
              shared: SharedPaths | None = None) -> Iterator[LocalPool]:
        # `shared` needs no check: this process is the one that sees the paths.
        yield LocalPool(self.stylizer if self.stylizer is not None else setup())


class LocalPool:
    spread = False
    retried = 0

    def __init__(self, stylizer: Any):  # what the work functions get: normally the job's Stylizer
        self.stylizer = stylizer
        self.device = self.description = str(stylizer.device)

    def map(self, work: WorkFunction, units: Sequence, emit: EventCallback, *,
            finishes: Finishes | None = None) -> Generator[Outcome, None, None]:
        # closing(): a caller that stops early (an error, Ctrl-C) stops the work's threads at once.
        with closing(work(self.stylizer, list(units), emit)) as results:
            for value in results:
                yield Done(value=value, worker=None)
