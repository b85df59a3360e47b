"""`stylize-video INPUT STYLE OUTPUT`: stylize every frame of a video, keep its timing and sound."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import common
from cli.settings import CommandOptions, Group, Override
from pipeline.config import (
    VIDEO_STYLE,
    EncodeConfig,
    EngineConfig,
    PreviewConfig,
    ScaleConfig,
    StyleConfig,
    TemporalConfig,
    VideoConfig,
)

if TYPE_CHECKING:
    from pipeline.events import EventCallback
    from pipeline.jobs.preview import NameOf, TileSettings
    from pipeline.results import PreviewSummary

# Every option that is a configuration field comes from pipeline/config.py; here only what this
# command words differently: a frame is not a photo.
OPTIONS = CommandOptions(
    Group(VIDEO_STYLE, skip=("init", "seed"), overrides={
        "size": Override(help="Long side frames are stylized at (never more than the input's; full = the "
                              "input's own); the result is resized back."),
        "iterations": Override("--first-iterations", "Network evaluations for the first frame (coarse-to-fine, "
                                                     "from its content)."),
        "scales": Override(help="Coarse-to-fine levels for frames that start from their content."),
        "style_scale": Override(help="Style image's size relative to the frames'."),
        "preserve_colors": Override(help="Keep the video's colours, take the style's texture."),
    }),
    Group(VideoConfig()),
    Group(TemporalConfig()),
    Group(EncodeConfig()),
    Group(EngineConfig()),
    Group(PreviewConfig()),
    Group(ScaleConfig(), only=("workers", "address", "max_chunk", "overlap")),
)

app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _size_text(n_bytes: int) -> str:
    units = ("B", "KB", "MB", "GB")
    size, index = float(n_bytes), 0
    while size >= 1000 and index < len(units) - 1:
        size, index = size / 1000, index + 1
    return f"{size:.0f} B" if index == 0 else f"{size:.1f} {units[index]}"


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
@OPTIONS.command
def stylize_video(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="The video file (any container/codec FFmpeg decodes), or a folder of numbered frames.")],
    style: Annotated[Path, typer.Argument(help="The style image (a painting).")],
    output: Annotated[Path, typer.Argument(help="The output video; its extension picks the container (.mp4, .mkv, .webm, .mov). No extension: a folder of PNG frames.")],
    report: Annotated[Path | None, typer.Option(help="Write a stability report (warping error per frame and overall, seconds per frame, style and content loss per frame) as JSON, and a PNG plot beside it.")] = None,
    report_drift: Annotated[bool, typer.Option(help="--report: also measure content drift, how far the chained frames moved from the same frames stylized on their own (frames 1-20, the last 20 and every 10th: each is stylized again with --first-iterations, which takes time), beside its floor: how far those frames alone are from their neighbours alone.")] = False,
    add_style: common.AddStyle = None,
    style_blend: common.StyleBlend = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output, or discard an interrupted job with other options.")] = False,
    quiet: common.Quiet = False,
    preview: common.Preview = False,
    preview_sheet: common.PreviewSheet = None,
    **settings,
) -> None:
    """Apply the style of a painting to every frame of a video; sound and timing are kept.

    An interrupted job (crash, Ctrl-C, power loss) resumes where it stopped when the same command
    is run again: its frames are kept in OUTPUT.stylize-job/ until the output is complete.
    """
    with common.user_errors(OPTIONS):
        from pipeline.config import JobConfig
        from pipeline.scale import executor_for

        configs = OPTIONS.build(settings)
        job = JobConfig(styles=common.style_images(style, add_style, style_blend), style=configs[StyleConfig],
                        engine=configs[EngineConfig])
        video = configs[VideoConfig]
        if preview:
            from pipeline.jobs.preview import preview_video

            def make(command_for: Callable[[TileSettings], str], name_of: NameOf,
                     on_event: EventCallback) -> PreviewSummary:
                return preview_video(input, output, job, configs[PreviewConfig], video=video, sheet=preview_sheet,
                                     overwrite=overwrite, command_for=command_for, name_of=name_of, on_event=on_event)

            common.run_preview(ctx, "stylize-video", OPTIONS, job, style_blend, quiet, make)
            return
        from pipeline.config import VideoJobConfig
        from pipeline.jobs.video import ReportRequest
        from pipeline.jobs.video import stylize_video as run_job

        config = VideoJobConfig(video=video, temporal=configs[TemporalConfig], encode=configs[EncodeConfig])
        with common.EventRenderer(OPTIONS, quiet) as renderer:
            summary = run_job(input, output, job, config, executor=executor_for(configs[ScaleConfig]),
                              overwrite=overwrite, on_event=renderer,
                              report=ReportRequest(path=report, drift=report_drift))
        resumed = f" ({summary.resumed_frames} from an earlier run)" if summary.resumed_frames else ""
        chunks = f", {len(summary.shots)} shots in {len(summary.chunks)} chunks" if summary.shots else ""
        common.print_line(
            f"Wrote {summary.output} ({summary.width}x{summary.height}, {summary.frames} frames{resumed}{chunks}, "
            f"{_size_text(summary.output_bytes)}) in {common.format_seconds(summary.seconds)}: "
            f"{summary.seconds_per_frame:.2f} s/frame at {summary.work_width}x{summary.work_height} "
            f"on {summary.device}",
            quiet,
        )
        if report is not None:
            error = summary.warping_error
            steadiness = f"warping error {error:.5f}" if error is not None else "no frame pair had trusted pixels"
            common.print_line(f"Stability report: {report} ({steadiness}, mean style loss {summary.style_loss:.4f}; "
                              f"plot {report.with_suffix('.png')})", quiet)
            if (drift := summary.drift) and drift["first"] is not None and drift["last"] is not None:
                floor = f"; frames alone differ from their neighbour by {drift['floor_last']:.4f}, the " \
                        f"measure's floor" if drift.get("floor_last") is not None else ""
                common.print_line(f"Content drift (luminance vs each frame stylized on its own, 0-1): "
                                  f"{drift['first']:.4f} over the first frames, {drift['last']:.4f} over the "
                                  f"last{floor}", quiet)


def main() -> None:
    app()
