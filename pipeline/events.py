"""Typed progress events: how the library talks to whoever runs it (it never prints).

A job takes ``on_event: Callable[[Event], None]``; the CLI turns events into Rich progress bars and
summaries, a test can simply collect them in a list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.results import Summary

if TYPE_CHECKING:  # only named in annotations: whoever reads events need not load torch
    import torch


@dataclass
class JobStarted:
    kind: str  # "image", "folder", "video"
    total: int  # units of work: iterations, files or frames
    unit: str  # "it", "image", "frame"
    description: str = ""
    done: int = 0  # units already finished by an earlier, interrupted run


@dataclass
class Iteration:
    """One network evaluation of the current image or frame."""

    done: int
    total: int
    loss: torch.Tensor  # a tensor: reading it synchronises the device, so only do it now and then


@dataclass
class ItemStarted:
    name: str
    total_iterations: int


@dataclass
class ItemDone:
    name: str
    output: Path | None
    seconds: float
    losses: dict[str, float] = field(default_factory=dict)
    worker: str | None = None  # which worker made it, in a distributed job ("w1", "w2", ...)


@dataclass
class ItemSkipped:
    name: str
    reason: str


@dataclass
class ItemFailed:
    name: str
    error: str


@dataclass
class Notice:
    """Something the user should know that does not stop the job (a dropped stream, a fallback).

    Like an error's, the message names settings through ``pipeline.errors.setting``:
    ``pipeline.errors.render`` shows them (the CLI as its flags)."""

    message: str


@dataclass
class PreviewPlanned:
    """A preview sheet is about to be made: what it holds and about how long it takes on a CPU."""

    tiles: int
    size: int  # long side of each tile, pixels
    iterations: int  # per tile
    cpu_seconds: float  # estimate on a 2-core CPU (a GPU is much faster)
    sheet: Path


@dataclass
class WorkerStarted:
    """A distributed job's worker is ready (again, after a restart): where it runs."""

    name: str  # "w1", "w2", ...: stable over restarts
    host: str
    pid: int
    device: str


@dataclass
class JobFinished:
    summary: Summary  # the job's result, as it returns it (pipeline/results.py)


Event = (JobStarted | Iteration | ItemStarted | ItemDone | ItemSkipped | ItemFailed | Notice | PreviewPlanned
         | WorkerStarted
         | JobFinished)
EventCallback = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default callback: a caller who does not listen pays nothing."""
