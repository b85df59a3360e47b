"""`stylize-images INPUT STYLE OUTPUT`: one image file, or (INPUT a folder) a whole photo folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import common
from cli.common import ENGINE, PREVIEW, STYLE
from pipeline.config import FolderConfig

FOLDER = FolderConfig()

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def stylize_images(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="An image file (or a folder of images).")],
    style: Annotated[Path, typer.Argument(help="The style image (a painting).")],
    output: Annotated[Path, typer.Argument(help="The output image file (or folder).")],
    size: Annotated[int, typer.Option(help="Long side of the output in pixels.")] = STYLE.size,
    iterations: Annotated[int, typer.Option(help="Network evaluations per image, over all scales.")] = STYLE.iterations,
    content_weight: common.ContentWeight = STYLE.content_weight,
    style_weight: common.StyleWeight = STYLE.style_weight,
    tv_weight: common.TvWeight = STYLE.tv_weight,
    optimizer: common.Optimizer = STYLE.optimizer,
    learning_rate: common.LearningRate = STYLE.learning_rate,
    init: Annotated[str, typer.Option(help="Starting image: content, noise, or an image file.")] = STYLE.init,
    seed: Annotated[int, typer.Option(help="Seed for the random initialisation.")] = STYLE.seed,
    scales: Annotated[int, typer.Option(help="Coarse-to-fine levels (1 = full size only).")] = STYLE.scales,
    style_scale: Annotated[float, typer.Option(help="Style image's size relative to the output's.")] = STYLE.style_scale,
    preserve_colors: Annotated[bool, typer.Option(help="Keep the content's colours, take the style's texture.")] = STYLE.preserve_colors,
    add_style: common.AddStyle = None,
    style_blend: common.StyleBlend = None,
    pooling: common.Pooling = STYLE.pooling,
    device: common.Device = ENGINE.device,
    weights: common.Weights = ENGINE.weights,
    precision: common.Precision = ENGINE.precision,
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality of the output.")] = FOLDER.quality,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output (folders: redo every image).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, only errors.")] = False,
    recursive: Annotated[bool, typer.Option(help="Folders: walk sub-folders too, mirroring them under OUTPUT.")] = FOLDER.recursive,
    include: Annotated[list[str] | None, typer.Option("--include", "--glob", help="Folders: only files matching this pattern (on the name or the relative path, e.g. '*.jpg', '2024/*'; repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Folders: leave out files matching this pattern (repeatable).")] = None,
    output_format: Annotated[str, typer.Option("--format", help="Folders: output format: same (as each input), jpg, png, webp, tiff or bmp.")] = FOLDER.format,
    batch_size: Annotated[str, typer.Option(help="Folders: images of equal size stylized together: auto (1 on CPU; on CUDA 4 up to --size 512, 2 up to 1024, else 1) or a number.")] = str(FOLDER.batch_size),
    dry_run: Annotated[bool, typer.Option(help="Folders: list what would be done, write nothing.")] = False,
    report: Annotated[Path | None, typer.Option(help="Folders: write a JSON report (per file: input, output, status, seconds, error).")] = None,
    preview: common.Preview = False,
    preview_sheet: common.PreviewSheet = None,
    preview_size: common.PreviewSize = PREVIEW.size,
    preview_iterations: common.PreviewIterations = PREVIEW.iterations,
    preview_samples: common.PreviewSamples = PREVIEW.samples,
    preview_style_weights: common.PreviewStyleWeights = None,
    preview_style_scales: common.PreviewStyleScales = None,
    workers: common.Workers = None,
    ray_address: common.RayAddress = None,
) -> None:
    """Apply the style of a painting to an image (Gatys et al. neural style transfer)."""
    with common.user_errors():
        from pipeline.config import EngineConfig, JobConfig, StyleConfig
        from pipeline.jobs.common import stylize_image_file

        job = JobConfig(
            styles=common.style_images(style, add_style, style_blend),
            style=StyleConfig(
                size=size, iterations=iterations, content_weight=content_weight, style_weight=style_weight,
                tv_weight=tv_weight, optimizer=optimizer, learning_rate=learning_rate, init=init, seed=seed,
                scales=scales, style_scale=style_scale, preserve_colors=preserve_colors, pooling=pooling,
            ),
            engine=EngineConfig(device=device, weights=weights, precision=precision),
        )
        folder = FOLDER
        scale = common.scale_config(workers, ray_address)
        if scale is not None and not input.is_dir():
            raise common.fail("--workers and --ray-address spread a folder over workers; INPUT is a single file",
                              common.EXIT_USAGE)
        if input.is_dir():
            folder = FolderConfig(recursive=recursive, include=tuple(include or ()), exclude=tuple(exclude or ()),
                                  format=output_format, quality=quality, batch_size=_batch_size(batch_size),
                                  overwrite=overwrite)
        if preview:
            from pipeline.jobs.preview import preview_images

            options = (preview_size, preview_iterations, preview_samples, preview_style_weights, preview_style_scales)

            def make(config, command_for, on_event):
                return preview_images(input, output, job, config, folder=folder, sheet=preview_sheet, overwrite=overwrite,
                                  command_for=command_for, on_event=on_event)

            common.run_preview(ctx, "stylize-images", job, style_blend, quiet, options, make)
            return
        if input.is_dir():
            raise typer.Exit(_stylize_folder(input, output, job, folder, dry_run, report, quiet, scale))
        with common.EventRenderer(quiet) as renderer:
            summary = stylize_image_file(input, output, job, overwrite=overwrite, quality=quality,
                                         on_event=renderer)
        common.print_line(
            f"Wrote {summary['output']} ({summary['width']}x{summary['height']}) in "
            f"{common.format_seconds(summary['seconds'])}: {summary['iterations']} iterations, "
            f"{summary['seconds_per_iteration']:.3f} s/iteration on {summary['device']}",
            quiet,
        )


def _batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise common.fail(f"--batch-size must be 'auto' or a positive whole number (got {value!r})",
                          common.EXIT_USAGE) from None


def _stylize_folder(input: Path, output: Path, job, folder: FolderConfig, dry_run: bool, report: Path | None,
                    quiet: bool, scale=None) -> int:
    """The folder branch; returns the exit code (EXIT_PARTIAL when some files failed)."""
    from pipeline.jobs.folder import stylize_folder

    if dry_run:
        summary = stylize_folder(input, output, job, folder, dry_run=True, report=report)
        for record in summary["files"]:
            if record["status"] in ("pending", "skipped"):
                verb = "stylize" if record["status"] == "pending" else "keep (done)"
                typer.echo(f"{verb}: {record['input']} -> {record['output']}")
        common.print_line(f"Dry run: {summary['pending']} images to stylize, {summary['skipped']} already done, "
                          f"{_ignored(summary)}; nothing written.", quiet)
        return common.EXIT_OK
    with common.EventRenderer(quiet, unit_label="image") as renderer:
        summary = stylize_folder(input, output, job, folder, report=report, on_event=renderer, scale=scale)
    rate = f", {summary['images_per_minute']:.2f} img/min" if summary["images_per_minute"] else ""
    common.print_line(
        f"Done in {common.format_seconds(summary['seconds'])}: {summary['done']} stylized, "
        f"{summary['skipped']} already done, {len(summary['failed'])} failed, {_ignored(summary)} "
        f"(on {summary['device']}, batch {summary['batch_size']}{rate}).", quiet)
    if summary["failed"]:
        # Always shown, even with --quiet: this is the list the user needs in the morning.
        common.console.print(f"[bold red]{len(summary['failed'])} files failed:[/]")
        for failure in summary["failed"]:
            common.console.print(f"  {failure['error']}", soft_wrap=True, markup=False)
    if report is not None:
        common.print_line(f"Report: {report}", quiet)
    return common.EXIT_PARTIAL if summary["failed"] else common.EXIT_OK


def _ignored(summary: dict) -> str:
    if not summary["ignored"]:
        return "no other files"
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(summary["ignored_types"].items()))
    return f"{summary['ignored']} other file{'s' if summary['ignored'] > 1 else ''} skipped ({kinds})"


def main() -> None:
    app()
