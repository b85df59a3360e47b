"""What the CLIs share: error handling, the options that are no configuration field, and Rich
rendering of library events.

The options that are configuration fields are made from pipeline/config.py (cli/settings.py); nothing
here decides how stylization works.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli.settings import CommandOptions, UsageError

if TYPE_CHECKING:
    from pipeline.events import EventCallback
    from pipeline.jobs.preview import NameOf, TileSettings
    from pipeline.results import PreviewSummary, Summary

    # --preview's library call, make(command_for, name_of, on_event): preview_images or preview_video.
    MakePreview = Callable[[Callable[[TileSettings], str], NameOf, EventCallback], PreviewSummary]

# Options both commands take that are no configuration field (pipeline/config.py has those).
AddStyle = Annotated[list[Path] | None, typer.Option(help="Another style image to blend in (repeatable).")]
StyleBlend = Annotated[str | None, typer.Option(help="Blend weights for STYLE and each --add-style, e.g. 0.7,0.3 (default: equal).")]
# --preview and its sheet (docs/preview.md); every option whose name starts with "preview" is left
# out of the commands the sheet suggests.
Preview = Annotated[bool, typer.Option("--preview", help="Write a preview sheet instead of OUTPUT: a few small tiles over a grid of settings (style weight x style scale, or one row per style), each labelled, with the command for each tile; about a minute on a CPU. Writes nothing else.")]
PreviewSheet = Annotated[Path | None, typer.Option(help="--preview: the sheet's path (.png; default: beside OUTPUT, e.g. out.jpg -> out.preview.png, photos-styled -> photos-styled.preview.png); the commands go beside it as .txt.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, only warnings and errors.")]

console = Console(stderr=True, highlight=False)

# Exit codes scripts can rely on.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


# SIGTERM (kill, systemd, Slurm / Kubernetes preemption) and SIGHUP (a closed SSH session) stop a job
# like Ctrl-C does; the shell's convention for "ended by signal N" is exit code 128 + N.
STOP_SIGNALS: dict[int, str] = {signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    try:
        console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    except OSError:
        pass  # the terminal is gone (SIGHUP after an SSH session closed): the exit code still says it
    return typer.Exit(code)


class Stopped(KeyboardInterrupt):
    """A stop signal, raised in the main thread. A KeyboardInterrupt on purpose: the library already
    shuts its threads down, keeps finished outputs and writes its report for exactly that."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, _frame) -> None:
    for other in STOP_SIGNALS:  # a second signal must not cut the clean-up short
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into ``Stopped`` for the block (the process's handlers; the CLI's job)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal the caller chose to ignore stays ignored: `nohup` (SIGHUP) must keep a job running
    # after its SSH session closes.
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def user_errors(options: CommandOptions) -> Iterator[None]:
    """Turn the library's user-facing errors into one line (the settings it names as ``options``'
    flags) and a non-zero exit, no traceback; a stop signal or Ctrl-C into one line and 128 + the
    signal's number."""
    from pipeline.errors import StylizeError

    try:
        with stop_signals():
            yield
    except UsageError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except StylizeError as exc:
        raise fail(exc.render(options.flag_of)) from None
    except Stopped as exc:
        raise fail(f"stopped by {STOP_SIGNALS[exc.signum]}; finished outputs are kept, run the same command again "
                   "to resume", 128 + exc.signum) from None
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

    paths = [style, *(extra or [])]  # the files themselves are checked by the job, before any work
    return tuple(StyleImage(path=p, weight=w) for p, w in zip(paths, parse_blend(blend, len(paths))))


def _word(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def command_line(ctx: typer.Context, program: str, changes: dict) -> str:
    """The shell command that repeats this invocation with ``changes`` (parameter name -> value),
    without the --preview options, and without options left at their defaults."""
    import shlex

    words = [program]
    for param in ctx.command.params:
        if param.name.startswith("preview"):
            continue
        value = changes.get(param.name, ctx.params.get(param.name))
        if param.param_type_name == "argument":
            words.append(_word(value))
        elif value is None or value in ((), []) or value == param.default:
            continue
        elif getattr(param, "is_flag", False):
            flags = param.opts if value else param.secondary_opts
            words += flags[:1]
        elif getattr(param, "multiple", False):
            for item in value:
                words += [param.opts[0], _word(item)]
        else:
            words += [param.opts[0], _word(value)]
    return shlex.join(words)


def tile_command(ctx: typer.Context, program: str, styles, tile) -> str:
    """The full-size command for one preview tile (``tile``: pipeline.jobs.preview.TileSettings)."""
    changes = {"style_weight": tile.style_weight, "style_scale": tile.style_scale}
    if len(styles) > 1:  # a row per style: that style alone
        changes.update(style=styles[tile.style].path, add_style=None, style_blend=None)
    return command_line(ctx, program, changes)


def about(seconds: float) -> str:
    """Rough wording for an estimate: "about 30 s", "about a minute", "about 4 minutes"."""
    if seconds < 45:
        return f"about {max(10, round(seconds, -1)):.0f} s"
    if seconds < 90:
        return "about a minute"
    return f"about {round(seconds / 60)} minutes"


def print_preview(summary, quiet: bool) -> None:
    """The sheet's path, then each tile's command on stdout (so it can be copied or piped)."""
    print_line(f"Wrote preview sheet {summary.sheet} ({len(summary.tiles)} tiles at {summary.size} px, "
               f"{summary.width}x{summary.height}) in {format_seconds(summary.seconds)} on "
               f"{summary.device}; commands in {summary.commands}", quiet)
    if summary.skipped:
        console.print(f"[bold yellow]{len(summary.skipped)} unreadable files left out of the sample:[/]")
        for item in summary.skipped:
            console.print(f"  {item['error']}", soft_wrap=True, markup=False)
    for tile in summary.tiles:
        typer.echo(f"# tile {tile['tile']}: {tile['input']}: {tile['options']}\n{tile['command']}")


class EventRenderer:
    """Renders library events as Rich progress: one bar for the job, one for the current item."""

    def __init__(self, options: CommandOptions, quiet: bool = False, unit_label: str = "it"):
        self.options = options  # library messages name settings: shown as this command's flags
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
        self.job_task: TaskID | None = None
        self.item_task: TaskID | None = None
        self.job_unit = unit_label
        self.job_start = time.perf_counter()
        self.job_done_at_start = 0
        self.last_loss_read = 0.0
        self.summary: Summary | None = None
        self.failures: list[tuple[str, str]] = []
        self.notices: list[str] = []
        self.per_worker: dict[str, int] = {}  # images done per worker, in a distributed job
        self.live = False

    def __enter__(self) -> EventRenderer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live:
            self.progress.__exit__(exc_type, exc, tb)

    def _add_task(self, description: str, **fields: Any) -> TaskID:
        # The display starts with the first bar: started earlier, a job that fails before its first
        # item (a missing input, say) would leave an empty line above its one error line.
        if not self.live:
            self.progress.__enter__()
            self.live = True
        return self.progress.add_task(description, **fields)

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
            self.job_task = self._add_task(
                event.description or event.kind, total=event.total, completed=event.done, rate="", info=""
            )
        elif isinstance(event, ev.Iteration):
            if self.job_unit == "it" and self.job_task is not None:
                task = self.job_task
            else:
                if self.item_task is None:
                    self.item_task = self._add_task("  iterations", total=event.total, rate="", info="")
                task = self.item_task
            fields: dict[str, Any] = {}
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
                self.item_task = self._add_task(f"  {event.name}", total=event.total_iterations,
                                                        rate="", info="")
            elif self.item_task is not None and self.job_unit != "it":
                self.progress.update(self.item_task, completed=0, total=event.total_iterations,
                                     description=f"  {event.name}")
        elif isinstance(event, (ev.ItemDone, ev.ItemSkipped, ev.ItemFailed)):
            if isinstance(event, ev.ItemFailed):
                self.failures.append((event.name, event.error))
                self.progress.console.print(f"[red]failed:[/] {self.options.text(event.error)}", soft_wrap=True)
            fields = {}
            if isinstance(event, ev.ItemDone) and event.worker is not None:
                self.per_worker[event.worker] = self.per_worker.get(event.worker, 0) + 1
                fields["info"] = " ".join(f"{w}:{n}" for w, n in sorted(self.per_worker.items()))
            if self.job_task is not None and self.job_unit != "it":
                self.progress.advance(self.job_task)
                done = int(self.progress.tasks[self.job_task].completed)
                self.progress.update(self.job_task, rate=self._rate(done), **fields)
        elif isinstance(event, ev.WorkerStarted):
            if not self.quiet:
                self.progress.console.print(f"[dim]worker {event.name}: {event.host}, pid {event.pid}, "
                                            f"{event.device}[/]", soft_wrap=True)
        elif isinstance(event, ev.Notice):
            message = self.options.text(event.message)
            self.notices.append(message)
            self.progress.console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)
        elif isinstance(event, ev.PreviewPlanned) and not self.quiet:
            self.progress.console.print(
                f"preview: {event.tiles} tiles at {event.size} px, {event.iterations} iterations each, "
                f"{about(event.cpu_seconds)} on a 2-core CPU (less on a GPU); sheet: {event.sheet}", soft_wrap=True)
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


def run_preview(ctx, command: str, options: CommandOptions, job, style_blend: str | None, quiet: bool,
                make: MakePreview) -> None:
    """The --preview branch both commands share; ``make(command_for, name_of, on_event)`` is the library
    call (``name_of``: the tiles' labels name their settings as this command's flags)."""
    if style_blend:
        raise fail("--style-blend has no effect with --preview: each style image gets its own row", EXIT_USAGE)
    with EventRenderer(options, quiet) as renderer:
        summary = make(lambda tile: tile_command(ctx, command, job.styles, tile), options.flag_of, renderer)
    print_preview(summary, quiet)
