"""What the CLIs share: option definitions, error handling, and Rich rendering of library events.

Defaults come from the library's config dataclasses; nothing here decides how stylization works.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.config import EngineConfig, StyleConfig

STYLE = StyleConfig()
ENGINE = EngineConfig()

# Options both commands take, declared once (their defaults stay at the parameters: the library's).
ContentWeight = Annotated[float, typer.Option(help="Weight of the content loss (alpha).")]
StyleWeight = Annotated[float, typer.Option(help="Weight of the style loss (beta); higher = stronger style.")]
TvWeight = Annotated[float, typer.Option(help="Total-variation weight: smooths high-frequency noise.")]
Optimizer = Annotated[str, typer.Option(help="lbfgs or adam.")]
LearningRate = Annotated[float, typer.Option(help="Adam's step size (pixels in [0, 1]).")]
AddStyle = Annotated[list[Path] | None, typer.Option(help="Another style image to blend in (repeatable).")]
StyleBlend = Annotated[str | None, typer.Option(help="Blend weights for STYLE and each --add-style, e.g. 0.7,0.3 (default: equal).")]
Pooling = Annotated[str, typer.Option(help="VGG pooling: max or avg.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Weights = Annotated[str, typer.Option(help="VGG19 weights: original (bundled), torchvision (downloads), or a state-dict file.")]
Precision = Annotated[str, typer.Option(
    help="auto (bf16 convolutions on CUDA and on CPUs with native bf16: AVX512-BF16/AMX or Arm BF16; "
         "fp32 elsewhere), fp32 or bf16. Gram matrices and losses stay fp32.")]

console = Console(stderr=True, highlight=False)

# Exit codes scripts can rely on.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's user-facing errors into one line and a non-zero exit, no traceback."""
    from pipeline.errors import StylizeError

    try:
        yield
    except StylizeError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted; run the same command again to resume", EXIT_INTERRUPTED) from None


def parse_blend(value: str | None, n_styles: int) -> list[float]:
    if not value:
        return [1.0] * n_styles
    try:
        weights = [float(v) for v in value.split(",")]
    except ValueError:
        raise fail(f"--style-blend {value!r}: expected comma-separated numbers, e.g. 0.7,0.3", EXIT_USAGE) from None
    if len(weights) != n_styles:
        raise fail(f"--style-blend has {len(weights)} weights for {n_styles} style images", EXIT_USAGE)
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise fail("--style-blend weights must be non-negative and not all zero", EXIT_USAGE)
    return weights


def style_images(style: Path, extra: list[Path] | None, blend: str | None):
    from pipeline.config import StyleImage

    paths = [style, *(extra or [])]
    for path in paths:
        if not path.is_file():
            raise fail(f"{path}: style image not found")
    return tuple(StyleImage(p, w) for p, w in zip(paths, parse_blend(blend, len(paths))))


class EventRenderer:
    """Renders library events as Rich progress: one bar for the job, one for the current item."""

    def __init__(self, quiet: bool = False, unit_label: str = "it"):
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            disable=quiet,
            transient=False,
        )
        self.job_task = None
        self.item_task = None
        self.job_unit = unit_label
        self.job_start = time.perf_counter()
        self.job_done_at_start = 0
        self.last_loss_read = 0.0
        self.summary: dict | None = None
        self.failures: list[tuple[str, str]] = []
        self.notices: list[str] = []

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def _rate(self, done: int) -> str:
        elapsed = time.perf_counter() - self.job_start
        n = done - self.job_done_at_start
        if n <= 0 or elapsed <= 0:
            return ""
        per_second = n / elapsed
        if self.job_unit == "image":
            return f"{per_second * 60:.1f} img/min"
        if per_second < 1:
            return f"{1 / per_second:.2f} s/{self.job_unit}"
        return f"{per_second:.2f} {self.job_unit}/s"

    def __call__(self, event) -> None:
        from pipeline import events as ev

        if isinstance(event, ev.JobStarted):
            self.job_unit = event.unit
            self.job_start = time.perf_counter()
            self.job_done_at_start = event.done
            self.job_task = self.progress.add_task(
                event.description or event.kind, total=event.total, completed=event.done, rate="", info=""
            )
        elif isinstance(event, ev.Iteration):
            if self.job_unit == "it" and self.job_task is not None:
                task = self.job_task
            else:
                if self.item_task is None:
                    self.item_task = self.progress.add_task("  iterations", total=event.total, rate="", info="")
                task = self.item_task
            fields = {}
            now = time.perf_counter()
            # Reading the loss synchronises the GPU: only a few times a second, for the display.
            if now - self.last_loss_read > 0.25 or event.done == event.total:
                self.last_loss_read = now
                fields["info"] = f"loss {float(event.loss):.4g}"
                if task is self.job_task:
                    fields["rate"] = self._rate(event.done)
            self.progress.update(task, completed=event.done, total=event.total, **fields)
        elif isinstance(event, ev.ItemStarted):
            if self.item_task is None and self.job_unit != "it" and self.job_task is not None:
                # Created here rather than at the first iteration, so the first item shows its name too.
                self.item_task = self.progress.add_task(f"  {event.name}", total=event.total_iterations,
                                                        rate="", info="")
            elif self.item_task is not None and self.job_unit != "it":
                self.progress.update(self.item_task, completed=0, total=event.total_iterations,
                                     description=f"  {event.name}")
        elif isinstance(event, (ev.ItemDone, ev.ItemSkipped, ev.ItemFailed)):
            if isinstance(event, ev.ItemFailed):
                self.failures.append((event.name, event.error))
                self.progress.console.print(f"[red]failed:[/] {event.error}", soft_wrap=True)
            if self.job_task is not None and self.job_unit != "it":
                self.progress.advance(self.job_task)
                done = int(self.progress.tasks[self.job_task].completed)
                self.progress.update(self.job_task, rate=self._rate(done))
        elif isinstance(event, ev.Notice):
            self.notices.append(event.message)
            self.progress.console.print(f"[yellow]warning:[/] {event.message}", soft_wrap=True)
        elif isinstance(event, ev.JobFinished):
            self.summary = event.summary
            if self.item_task is not None:
                self.progress.remove_task(self.item_task)
                self.item_task = None


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def print_line(message: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(message, soft_wrap=True)


def is_interactive() -> bool:
    return sys.stderr.isatty()
