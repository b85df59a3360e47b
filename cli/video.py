"""`stylize-video INPUT STYLE OUTPUT`: stylize every frame of a video, keep its timing and sound."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import common
from cli.common import ENGINE, PREVIEW, STYLE
from pipeline.config import EncodeConfig, ScaleConfig, TemporalConfig, VideoConfig

VIDEO = VideoConfig()
ENCODE = EncodeConfig()
TEMPORAL = TemporalConfig()
SCALE = ScaleConfig()

app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _size_text(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return ""


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def stylize_video(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="The video file (any container/codec FFmpeg decodes), or a folder of numbered frames.")],
    style: Annotated[Path, typer.Argument(help="The style image (a painting).")],
    output: Annotated[Path, typer.Argument(help="The output video; its extension picks the container (.mp4, .mkv, .webm, .mov). No extension: a folder of PNG frames.")],
    size: Annotated[int, typer.Option(help="Long side frames are stylized at (never more than the input's); the result is resized back.")] = VIDEO.size,
    first_iterations: Annotated[int, typer.Option(help="Network evaluations for the first frame (coarse-to-fine, from its content).")] = VIDEO.first_iterations,
    iterations: Annotated[int, typer.Option(help="Network evaluations for each later frame.")] = VIDEO.iterations,
    init: Annotated[str, typer.Option(help="How later frames start: warped (the previous stylized frame moved by optical flow, plus a temporal loss: steadiest), previous (the previous stylized frame as it is) or frame (their own content: flickers).")] = VIDEO.init,
    temporal_weight: Annotated[float, typer.Option(help="--init warped: weight of the temporal loss (0 = warped start only).")] = TEMPORAL.weight,
    scene_cut: Annotated[float, typer.Option(help="--init warped: a frame whose flow explains less than this share of its pixels is a new shot and starts from its own content.")] = TEMPORAL.scene_cut,
    flow_preset: Annotated[str, typer.Option(help="Optical flow (OpenCV DIS) preset: ultrafast, fast or medium.")] = TEMPORAL.flow_preset,
    long_term: Annotated[int, typer.Option(help="--init warped: also hold each frame to the stylized frame this many frames back where the previous frame cannot vouch for a pixel (reappearing background); 0 = off.")] = TEMPORAL.long_term,
    carry: Annotated[str, typer.Option(help="--init warped: what moves along the flow to start the next frame where the flow cannot vouch for a pixel: offset (the stylized frame's difference from its input, added to the next input: light and newly visible things come from the frame, so long clips keep their content) or result (the stylized frame itself everywhere, as Ruder et al.).")] = TEMPORAL.carry,
    content_blend: Annotated[float, typer.Option(help="--init warped: share of what is carried that each frame lets go of (offset: the offset shrinks by it; result: that share of the frame's content is mixed in), so a long clip does not drift toward the style (0 = off; more = closer to each frame's content, less stylized).")] = TEMPORAL.content_blend,
    report: Annotated[Path | None, typer.Option(help="Write a stability report (warping error per frame and overall, seconds per frame, style and content loss per frame) as JSON, and a PNG plot beside it.")] = None,
    report_drift: Annotated[bool, typer.Option(help="--report: also measure content drift, how far the chained frames moved from the same frames stylized on their own (frames 1-20, the last 20 and every 10th: each is stylized again with --first-iterations, which takes time), beside its floor: how far those frames alone are from their neighbours alone.")] = False,
    start: Annotated[float, typer.Option(help="Start this many seconds into the input.")] = VIDEO.start,
    duration: Annotated[float | None, typer.Option(help="Stylize only this many seconds.")] = VIDEO.duration,
    max_frames: Annotated[int | None, typer.Option(help="Stylize at most this many frames (quick previews).")] = VIDEO.max_frames,
    fps: Annotated[float, typer.Option(help="Frame rate of an INPUT that is a folder of frames.")] = VIDEO.fps,
    output_size: Annotated[int | None, typer.Option(help="Long side of the output video (default: the input's size).")] = ENCODE.output_size,
    codec: Annotated[str, typer.Option(help="Video encoder: libx264, libx265, libvpx-vp9, ffv1 (lossless, use .mkv), ...")] = ENCODE.codec,
    crf: Annotated[int | None, typer.Option(help="Constant quality (lower = better, bigger); default per codec: x264 18, x265 20, vp9 30.")] = ENCODE.crf,
    preset: Annotated[str | None, typer.Option(help="x264/x265 speed preset (ultrafast ... veryslow).")] = ENCODE.preset,
    pix_fmt: Annotated[str | None, typer.Option(help="Output pixel format (default: yuv420p; RGB for ffv1).")] = ENCODE.pix_fmt,
    content_weight: common.ContentWeight = STYLE.content_weight,
    style_weight: common.StyleWeight = STYLE.style_weight,
    tv_weight: common.TvWeight = STYLE.tv_weight,
    optimizer: common.Optimizer = STYLE.optimizer,
    learning_rate: common.LearningRate = STYLE.learning_rate,
    scales: Annotated[int, typer.Option(help="Coarse-to-fine levels for frames that start from their content.")] = STYLE.scales,
    style_scale: Annotated[float, typer.Option(help="Style image's size relative to the frames'.")] = STYLE.style_scale,
    preserve_colors: Annotated[bool, typer.Option(help="Keep the video's colours, take the style's texture.")] = STYLE.preserve_colors,
    add_style: common.AddStyle = None,
    style_blend: common.StyleBlend = None,
    pooling: common.Pooling = STYLE.pooling,
    device: common.Device = ENGINE.device,
    weights: common.Weights = ENGINE.weights,
    precision: common.Precision = ENGINE.precision,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output, or discard an interrupted job with other options.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, only warnings and errors.")] = False,
    preview: common.Preview = False,
    preview_sheet: common.PreviewSheet = None,
    preview_size: common.PreviewSize = PREVIEW.size,
    preview_iterations: common.PreviewIterations = PREVIEW.iterations,
    preview_samples: common.PreviewSamples = PREVIEW.samples,
    preview_style_weights: common.PreviewStyleWeights = None,
    preview_style_scales: common.PreviewStyleScales = None,
    workers: common.Workers = None,
    ray_address: common.RayAddress = None,
    max_chunk: Annotated[int, typer.Option(help="With --workers: shots longer than this many frames are split into chunks for several workers.")] = SCALE.max_chunk,
    overlap: Annotated[int, typer.Option(help="With --workers: frames each chunk inside a shot shares with the one before, cross-faded so no seam shows.")] = SCALE.overlap,
) -> None:
    """Apply the style of a painting to every frame of a video; sound and timing are kept.

    An interrupted job (crash, Ctrl-C, power loss) resumes where it stopped when the same command
    is run again: its frames are kept in OUTPUT.stylize-job/ until the output is complete.
    """
    with common.user_errors():
        from pipeline.config import EngineConfig, JobConfig, StyleConfig
        from pipeline.jobs.video import stylize_video as run_job

        job = JobConfig(
            styles=common.style_images(style, add_style, style_blend),
            style=StyleConfig(
                size=size, iterations=first_iterations, content_weight=content_weight, style_weight=style_weight,
                tv_weight=tv_weight, optimizer=optimizer, learning_rate=learning_rate, scales=scales,
                style_scale=style_scale, preserve_colors=preserve_colors, pooling=pooling,
            ),
            engine=EngineConfig(device=device, weights=weights, precision=precision),
        )
        video = VideoConfig(size=size, first_iterations=first_iterations, iterations=iterations, init=init,
                            start=start, duration=duration, max_frames=max_frames, fps=fps)
        temporal = TemporalConfig(weight=temporal_weight, scene_cut=scene_cut, flow_preset=flow_preset,
                                  long_term=long_term, carry=carry, content_blend=content_blend)
        encode = EncodeConfig(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, output_size=output_size)
        if preview:
            from pipeline.jobs.preview import preview_video

            options = (preview_size, preview_iterations, preview_samples, preview_style_weights, preview_style_scales)

            def make(config, command_for, on_event):
                return preview_video(input, output, job, config, video=video, sheet=preview_sheet, overwrite=overwrite,
                                 command_for=command_for, on_event=on_event)

            common.run_preview(ctx, "stylize-video", job, style_blend, quiet, options, make)
            return
        scale = common.scale_config(workers, ray_address, max_chunk=max_chunk, overlap=overlap)
        if scale is not None:
            return _distributed(input, output, job, video, encode, scale, temporal, overwrite, quiet, report)
        with common.EventRenderer(quiet) as renderer:
            summary = run_job(input, output, job, video, encode, overwrite=overwrite, on_event=renderer,
                              temporal=temporal, report_path=report, report_drift=report_drift)
        resumed = f" ({summary['resumed_frames']} from an earlier run)" if summary["resumed_frames"] else ""
        common.print_line(
            f"Wrote {summary['output']} ({summary['width']}x{summary['height']}, {summary['frames']} frames"
            f"{resumed}, {_size_text(summary['output_bytes'])}) in {common.format_seconds(summary['seconds'])}: "
            f"{summary['seconds_per_frame']:.2f} s/frame at {summary['work_width']}x{summary['work_height']} "
            f"on {summary['device']}",
            quiet,
        )
        if report is not None:
            error = summary["warping_error"]
            steadiness = f"warping error {error:.5f}" if error is not None else "no frame pair had trusted pixels"
            common.print_line(f"Stability report: {report} ({steadiness}, mean style loss {summary['style_loss']:.4f}; "
                              f"plot {report.with_suffix('.png')})", quiet)
            if (drift := summary.get("drift")) and drift["first"] is not None and drift["last"] is not None:
                floor = f"; frames alone differ from their neighbour by {drift['floor_last']:.4f}, the " \
                        f"measure's floor" if drift.get("floor_last") is not None else ""
                common.print_line(f"Content drift (luminance vs each frame stylized on its own, 0-1): "
                                  f"{drift['first']:.4f} over the first frames, {drift['last']:.4f} over the "
                                  f"last{floor}", quiet)


def _distributed(input, output, job, video, encode, scale, temporal, overwrite, quiet, report) -> None:
    from pipeline.scale.video import stylize_video_distributed

    if report is not None:
        raise common.fail("--report is not available with --workers yet (make bench-scale measures the seams)",
                          common.EXIT_USAGE)
    with common.EventRenderer(quiet) as renderer:
        summary = stylize_video_distributed(input, output, job, video, encode, scale, temporal=temporal,
                                            overwrite=overwrite, on_event=renderer)
    common.print_line(
        f"Wrote {summary['output']} ({summary['width']}x{summary['height']}, {summary['frames']} frames, "
        f"{summary['shots']} shots in {summary['chunks']} chunks) in {common.format_seconds(summary['seconds'])} "
        f"on {summary['device']}", quiet)


def main() -> None:
    app()
