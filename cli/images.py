"""`stylize-images INPUT STYLE OUTPUT`: one image file, or (INPUT a folder) a whole photo folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import common
from cli.common import ENGINE, STYLE

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def stylize_images(
    input: Annotated[Path, typer.Argument(help="An image file (or a folder of images).")],
    style: Annotated[Path, typer.Argument(help="The style image (a painting).")],
    output: Annotated[Path, typer.Argument(help="The output image file (or folder).")],
    size: Annotated[int, typer.Option(help="Long side of the output in pixels.")] = STYLE.size,
    iterations: Annotated[int, typer.Option(help="Network evaluations per image, over all scales.")] = STYLE.iterations,
    content_weight: Annotated[float, typer.Option(help="Weight of the content loss (alpha).")] = STYLE.content_weight,
    style_weight: Annotated[float, typer.Option(help="Weight of the style loss (beta); higher = stronger style.")] = STYLE.style_weight,
    tv_weight: Annotated[float, typer.Option(help="Total-variation weight: smooths high-frequency noise.")] = STYLE.tv_weight,
    optimizer: Annotated[str, typer.Option(help="lbfgs or adam.")] = STYLE.optimizer,
    learning_rate: Annotated[float, typer.Option(help="Adam's step size (pixels in [0, 1]).")] = STYLE.learning_rate,
    init: Annotated[str, typer.Option(help="Starting image: content, noise, or an image file.")] = STYLE.init,
    seed: Annotated[int, typer.Option(help="Seed for the random initialisation.")] = STYLE.seed,
    scales: Annotated[int, typer.Option(help="Coarse-to-fine levels (1 = full size only).")] = STYLE.scales,
    style_scale: Annotated[float, typer.Option(help="Style image's size relative to the output's.")] = STYLE.style_scale,
    preserve_colors: Annotated[bool, typer.Option(help="Keep the content's colours, take the style's texture.")] = STYLE.preserve_colors,
    add_style: Annotated[list[Path] | None, typer.Option(help="Another style image to blend in (repeatable).")] = None,
    style_blend: Annotated[str | None, typer.Option(help="Blend weights for STYLE and each --add-style, e.g. 0.7,0.3 (default: equal).")] = None,
    pooling: Annotated[str, typer.Option(help="VGG pooling: max or avg.")] = STYLE.pooling,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = ENGINE.device,
    weights: Annotated[str, typer.Option(help="VGG19 weights: original (bundled), torchvision (downloads), or a state-dict file.")] = ENGINE.weights,
    precision: Annotated[str, typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16.")] = ENGINE.precision,
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality of the output.")] = 95,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, only errors.")] = False,
) -> None:
    """Apply the style of a painting to an image (Gatys et al. neural style transfer)."""
    with common.user_errors():
        from pipeline.config import EngineConfig, JobConfig, StyleConfig
        from pipeline.jobs import stylize_image_file

        job = JobConfig(
            styles=common.style_images(style, add_style, style_blend),
            style=StyleConfig(
                size=size, iterations=iterations, content_weight=content_weight, style_weight=style_weight,
                tv_weight=tv_weight, optimizer=optimizer, learning_rate=learning_rate, init=init, seed=seed,
                scales=scales, style_scale=style_scale, preserve_colors=preserve_colors, pooling=pooling,
            ),
            engine=EngineConfig(device=device, weights=weights, precision=precision),
        )
        if input.is_dir():
            raise common.fail(f"{input}: folders are not supported yet", common.EXIT_USAGE)
        with common.EventRenderer(quiet) as renderer:
            summary = stylize_image_file(input, output, job, overwrite=overwrite, quality=quality,
                                         on_event=renderer)
        common.print_line(
            f"Wrote {summary['output']} ({summary['width']}x{summary['height']}) in "
            f"{common.format_seconds(summary['seconds'])}: {summary['iterations']} iterations, "
            f"{summary['seconds_per_iteration']:.3f} s/iteration on {summary['device']}",
            quiet,
        )


def main() -> None:
    app()
