"""`stylize-images INPUT STYLE OUTPUT`: one image file, or (INPUT a folder) a whole photo folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import common
from cli.settings import CommandOptions, Group
from pipeline.config import EngineConfig, FolderConfig, PreviewConfig, ScaleConfig, StyleConfig

if TYPE_CHECKING:
    from pipeline.events import EventCallback
    from pipeline.jobs.preview import NameOf, TileSettings
    from pipeline.results import PreviewSummary

# Every option that is a configuration field comes from pipeline/config.py.
OPTIONS = CommandOptions(
    Group(StyleConfig()),
    Group(EngineConfig()),
    Group(FolderConfig()),
    Group(PreviewConfig()),
    Group(ScaleConfig(), only=("workers", "address")),
)

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
@OPTIONS.command
def stylize_images(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="An image file (or a folder of images).")],
    style: Annotated[Path, typer.Argument(help="The style image (a painting).")],
    output: Annotated[Path, typer.Argument(help="The output image file (or folder).")],
    add_style: common.AddStyle = None,
    style_blend: common.StyleBlend = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, only errors.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Folders: list what would be done, write nothing.")] = False,
    report: Annotated[Path | None, typer.Option(help="Folders: write a JSON report (per file: input, output, status, seconds, error).")] = None,
    preview: common.Preview = False,
    preview_sheet: common.PreviewSheet = None,
    **settings,
) -> None:
    """Apply the style of a painting to an image (Gatys et al. neural style transfer)."""
    with common.user_errors(OPTIONS):
        from pipeline.config import JobConfig
        from pipeline.scale import executor_for

        configs = OPTIONS.build(settings)
        job = JobConfig(styles=common.style_images(style, add_style, style_blend), style=configs[StyleConfig],
                        engine=configs[EngineConfig])
        folder, scale = configs[FolderConfig], configs[ScaleConfig]
        if scale.distributed and not input.is_dir():
            raise common.fail("--workers and --ray-address spread a folder over workers; INPUT is a single file",
                              common.EXIT_USAGE)
        if preview:
            from pipeline.jobs.preview import preview_images

            def make(command_for: Callable[[TileSettings], str], name_of: NameOf,
                     on_event: EventCallback) -> PreviewSummary:
                return preview_images(input, output, job, configs[PreviewConfig], folder=folder, sheet=preview_sheet,
                                      overwrite=folder.overwrite, command_for=command_for, name_of=name_of,
                                      on_event=on_event)

            common.run_preview(ctx, "stylize-images", OPTIONS, job, style_blend, quiet, make)
            return
        if input.is_dir():
            raise typer.Exit(_stylize_folder(input, output, job, folder, dry_run, report, quiet, executor_for(scale)))
        from pipeline.jobs.image import stylize_image_file

        with common.EventRenderer(OPTIONS, quiet) as renderer:
            summary = stylize_image_file(input, output, job, overwrite=folder.overwrite, quality=folder.quality,
                                         on_event=renderer)
        common.print_line(
            f"Wrote {summary.output} ({summary.width}x{summary.height}) in "
            f"{common.format_seconds(summary.seconds)}: {summary.iterations} iterations, "
            f"{summary.seconds_per_iteration:.3f} s/iteration on {summary.device}",
            quiet,
        )


def _stylize_folder(input: Path, output: Path, job, folder: FolderConfig, dry_run: bool, report: Path | None,
                    quiet: bool, executor) -> int:
    """The folder branch; returns the exit code (EXIT_PARTIAL when some files failed)."""
    from pipeline.jobs.folder import stylize_folder

    if dry_run:
        summary = stylize_folder(input, output, job, folder, dry_run=True, report=report)
        for record in summary.files:
            if record["status"] in ("pending", "skipped"):
                verb = "stylize" if record["status"] == "pending" else "keep (done)"
                typer.echo(f"{verb}: {record['input']} -> {record['output']}")
        common.print_line(f"Dry run: {summary.pending} images to stylize, {summary.skipped} already done, "
                          f"{_ignored(summary)}; nothing written.", quiet)
        return common.EXIT_OK
    with common.EventRenderer(OPTIONS, quiet, unit_label="image") as renderer:
        summary = stylize_folder(input, output, job, folder, report=report, on_event=renderer, executor=executor)
    rate = f", {summary.images_per_minute:.2f} img/min" if summary.images_per_minute else ""
    common.print_line(
        f"Done in {common.format_seconds(summary.seconds)}: {summary.done} stylized, "
        f"{summary.skipped} already done, {len(summary.failed)} failed, {_ignored(summary)} "
        f"(on {summary.device}, batch {summary.batch_size}{rate}).", quiet)
    if summary.failed:
        # Always shown, even with --quiet: this is the list the user needs in the morning.
        common.console.print(f"[bold red]{len(summary.failed)} files failed:[/]")
        for failure in summary.failed:
            common.console.print(f"  {OPTIONS.text(failure['error'])}", soft_wrap=True, markup=False)
    if report is not None:
        common.print_line(f"Report: {report}", quiet)
    return common.EXIT_PARTIAL if summary.failed else common.EXIT_OK


def _ignored(summary) -> str:
    if not summary.ignored:
        return "no other files"
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(summary.ignored_types.items()))
    return f"{summary.ignored} other file{'s' if summary.ignored > 1 else ''} skipped ({kinds})"


def main() -> None:
    app()
