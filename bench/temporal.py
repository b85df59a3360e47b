"""The temporal-stability benchmark (``make bench-temporal``): how steady, how stylized, how fast.

For each clip it runs the real video job once per ``--init`` (frame, previous, warped with its
temporal loss) on the same first frames, with the same stylizer and settings, and reads each run's
stability report: the warping error of Lai et al. (flow and occlusions from the input frames), the
mean style and content loss of the stylized frames measured the same way for every init, and
seconds per frame. The input video's own warping error is the floor: a video cannot be steadier
than the motion it shows.

    python -m bench.temporal                      # carphone + Big Buck Bunny, 30 frames
    python -m bench.temporal --clip a.mp4@256 --frames 10

It prints a Markdown table (the one in the README) and writes JSON and, per clip, a PNG plot of the
warping error per frame of every init and of the input to bench-results/. With ``--drift`` the
warped runs also measure content drift (chained frames against the same frames stylized on their
own, docs/video-drift.md), drawn under the warping error; ``--no-content-blend`` adds a warped
run without the content blend, to compare.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.common import ROOT, STYLE_CANDIDATES, bench_parser, describe_device, first_existing, run_main
from pipeline.config import (
    VIDEO_STYLE,
    EncodeConfig,
    EngineConfig,
    JobConfig,
    StyleImage,
    TemporalConfig,
    VideoConfig,
    VideoJobConfig,
)
from pipeline.events import ItemDone
from pipeline.jobs.common import build_stylizer
from pipeline.jobs.stability import drift_curve, video_frames, warping_errors, write_plot
from pipeline.jobs.video import ReportRequest, stylize_video
from pipeline.jobs.video_report import LONG_TERM_STRIDE
from pipeline.media.images import fit_long_side, resize_frame
from pipeline.scale.local import LocalExecutor

SHARED_VIDEOS = ROOT.parent / "shared/media/videos"
# carphone at its native 176x144; Big Buck Bunny (1280x720) brought down to a similar pixel count.
DEFAULT_CLIPS = (f"{SHARED_VIDEOS / 'carphone_pristine.mp4'}@0", f"{SHARED_VIDEOS / 'bigbuckbunny.mp4'}@192")
FALLBACK_CLIP = f"{ROOT / 'samples/bbb_2s.mp4'}@192"
INITS = ("frame", "previous", "warped")


@dataclass
class Run:
    """One init on one clip, as its stability report and its frame timings saw it."""

    clip: str
    init: str  # "frame", "previous", "warped" or "warped, long-term K"
    frames: int
    width: int
    height: int
    warping_error: float | None
    style_loss: float
    content_loss: float
    seconds_per_frame: float  # mean over all frames, the first (longer) one included
    # Median over the frames after the first: the steady-state cost, robust to a busy moment.
    later_seconds_per_frame: float | None
    per_frame: list[float | None]  # warping error of each pair of frames
    long_term_warping_error: float | None  # between frames LONG_TERM_STRIDE apart (None: clip too short)
    frame_seconds: list[float]  # stylizing time of each frame
    drift: dict  # the stability report's content drift ({} when not measured)


def parse_clip(spec: str) -> tuple[Path, int]:
    """``PATH`` or ``PATH@SIZE`` (working long side; 0 = the clip's own size)."""
    path, _, size = spec.rpartition("@") if "@" in spec else (spec, "", "0")
    return Path(path), int(size)


def input_warping_errors(clip: Path, frames: int, work_size: tuple[int, int], preset: str, stride: int = 1):
    """The input's own warping error at the working size: the floor for any stylization of it."""
    def inputs():
        return (resize_frame(f, work_size) for f in itertools.islice(video_frames(clip), frames))

    return warping_errors(inputs(), inputs(), preset, stride=stride)


def run_label(init: str, temporal: TemporalConfig) -> str:
    if init != "warped":
        return init
    return ", ".join(["warped", *([f"long-term {temporal.long_term}"] if temporal.long_term else []),
                      *([f"carry {temporal.carry}"] if temporal.carry != TemporalConfig.carry else []),
                      *(["no content blend"] if temporal.content_blend == 0 else [])])


def run_init(clip: Path, init: str, job: JobConfig, video: VideoConfig, temporal: TemporalConfig, stylizer,
             tmp: Path, log, drift: bool = False) -> Run:
    seconds: list[float] = []
    label = run_label(init, temporal)

    def on_event(event) -> None:
        if isinstance(event, ItemDone):
            seconds.append(event.seconds)
            log(f"  {label}: {event.name} {event.seconds:.1f} s")

    name = f"{clip.stem}-{init}-{temporal.long_term}-{temporal.carry}-{temporal.content_blend}"
    report_path = tmp / f"{name}.json"
    stylize_video(clip, tmp / f"{name}.mp4", job,
                  VideoJobConfig(video=video, encode=EncodeConfig(), temporal=dataclasses.replace(temporal, init=init)),
                  overwrite=True, on_event=on_event, executor=LocalExecutor(stylizer),
                  report=ReportRequest(path=report_path, drift=drift and init == "warped"))
    report = json.loads(report_path.read_text())
    return Run(str(clip), label, report["frames"], report["width"], report["height"], report["warping_error"],
               report["losses"]["style"], report["losses"]["content"], float(np.mean(seconds)),
               float(np.median(seconds[1:])) if len(seconds) > 1 else None, report["per_frame"],
               report["long_term"].get("warping_error"), seconds, report["drift"])


def bench_clip(clip: Path, size: int, args, stylizer, job: JobConfig, log) -> dict:
    first = next(video_frames(clip))
    height, width = first.shape[:2]
    long_side = size or max(height, width)
    work_size = fit_long_side(height, width, min(long_side, max(height, width)))
    video = VideoConfig(iterations=args.iterations, max_frames=args.frames)
    job = dataclasses.replace(job, style=job.style.replace(size=long_side, iterations=args.first_iterations))
    temporal = TemporalConfig(weight=args.temporal_weight)
    plans = [(init, temporal) for init in args.inits]
    if args.long_term:
        plans.append(("warped", dataclasses.replace(temporal, long_term=args.long_term)))
    if args.no_content_blend:
        plans.append(("warped", dataclasses.replace(temporal, content_blend=0.0)))
    if args.carry_result:
        plans.append(("warped", dataclasses.replace(temporal, carry="result", content_blend=0.0)))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for init, settings in plans:
            log(f"{clip.name} at {work_size[1]}x{work_size[0]}, --init {init}, long-term {settings.long_term}")
            runs.append(run_init(clip, init, job, video, settings, stylizer, Path(tmp), log, args.drift))
    floor = input_warping_errors(clip, args.frames, work_size, temporal.flow_preset)
    far_floor = input_warping_errors(clip, args.frames, work_size, temporal.flow_preset, LONG_TERM_STRIDE)
    curves = {f"--init {r.init}": r.per_frame for r in runs}
    plot = args.out / f"bench-temporal-{clip.stem}.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    drifts = {f"--init {r.init}": drift_curve(r.drift, r.frames) for r in runs if r.drift}
    if drifts:  # every run compares with the same frames stylized alone: one floor for all
        measured = next(r for r in runs if r.drift)
        drifts["floor: frames alone vs their neighbour"] = drift_curve(measured.drift, measured.frames, floor=True)
    below = ({**drifts}, {"title": "content drift per frame (luminance at 1/4 size, vs the frame stylized alone)",
                          "x_label": "frame"}) if drifts else None
    write_plot({**curves, "input video": floor.per_frame}, plot, width=720, height=300, below=below,
               title=f"warping error per frame: {clip.name}, {work_size[1]}x{work_size[0]}")
    settings = {**asdict(video), "size": long_side, "first_iterations": args.first_iterations}
    return {"clip": str(clip), "work_size": [work_size[1], work_size[0]], "video": settings,
            "temporal": asdict(temporal), "input_warping_error": floor.warping_error,
            "input_long_term_warping_error": far_floor.warping_error if args.frames > LONG_TERM_STRIDE else None,
            "input_per_frame": floor.per_frame, "plot": str(plot), "runs": [asdict(r) for r in runs]}


def _number(value: float | None, digits: int = 5) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, floor: float | None) -> str:
    return f"{value / floor:.1f}x" if value and floor else "-"


def format_table(clips: list[dict]) -> str:
    """Markdown: one row per clip and init, plus the input's own row, with ratios to the input."""
    lines = [f"| clip | frames | init | warping error | vs input | {LONG_TERM_STRIDE} frames apart | vs input | "
             "style loss | content loss | drift, first 20 | drift, last 20 | drift floor, last 20 | s/frame | "
             "s/frame after the first (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in clips:
        name = f"{Path(c['clip']).name} ({c['work_size'][0]}x{c['work_size'][1]})"
        floor, far_floor = c["input_warping_error"], c["input_long_term_warping_error"]
        for r in c["runs"]:
            far = r["long_term_warping_error"]
            lines.append(f"| {name} | {r['frames']} | {r['init']} | {_number(r['warping_error'])} | "
                         f"{_ratio(r['warping_error'], floor)} | {_number(far)} | {_ratio(far, far_floor)} | "
                         f"{r['style_loss']:.3f} | {r['content_loss']:.3f} | {_number(r['drift'].get('first'), 4)} | "
                         f"{_number(r['drift'].get('last'), 4)} | {_number(r['drift'].get('floor_last'), 4)} | "
                         f"{r['seconds_per_frame']:.1f} | "
                         f"{_number(r['later_seconds_per_frame'], 1)} |")
        lines.append(f"| {name} | {c['runs'][0]['frames'] if c['runs'] else '-'} | input video itself | "
                     f"{_number(floor)} | 1.0x | {_number(far_floor)} | 1.0x | | | | | | | |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = VideoConfig()
    first = VIDEO_STYLE.iterations
    p = bench_parser("python -m bench.temporal", __doc__, precision=True)
    p.add_argument("--clip", action="append", default=None,
                   help="PATH or PATH@SIZE (working long side, 0 = native); repeatable "
                        "(default: the shared carphone clip at native size and Big Buck Bunny at 192)")
    p.add_argument("--style", type=Path, default=None, help="style image (default: samples/starry_night.jpg)")
    p.add_argument("--frames", type=int, default=30, help="frames from the start of each clip (default: 30)")
    p.add_argument("--inits", nargs="+", choices=INITS, default=list(INITS), help="inits to compare (default: all)")
    p.add_argument("--first-iterations", type=int, default=first,
                   help=f"iterations for the first frame (default: {first}, as stylize-video)")
    p.add_argument("--iterations", type=int, default=defaults.iterations,
                   help=f"iterations for later frames (default: {defaults.iterations}, as stylize-video)")
    p.add_argument("--temporal-weight", type=float, default=TemporalConfig().weight,
                   help=f"temporal loss weight for --init warped (default: {TemporalConfig().weight:g})")
    p.add_argument("--long-term", type=int, default=0,
                   help="also run --init warped with --long-term K (default: 0 = not run)")
    p.add_argument("--drift", action="store_true",
                   help="warped runs also measure content drift (sampled frames stylized again on their own: slow)")
    p.add_argument("--no-content-blend", action="store_true", help="also run --init warped with --content-blend 0")
    p.add_argument("--carry-result", action="store_true",
                   help="also run --init warped with --carry result --content-blend 0 (the chain before the drift fix)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    specs = args.clip or [s for s in DEFAULT_CLIPS if parse_clip(s)[0].is_file()] or [FALLBACK_CLIP]
    style = args.style or first_existing(STYLE_CANDIDATES)
    job = JobConfig(styles=(StyleImage(style),), engine=EngineConfig(device=args.device, precision=args.precision))
    stylizer = build_stylizer(job)  # one for every run: the style's Gram matrices are computed once

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    clips = [bench_clip(*parse_clip(spec), args, stylizer, job, log) for spec in specs]
    return {"device": describe_device(stylizer.device), "device_type": stylizer.device.type, "time": started,
            "style": str(style), "clips": clips, "table": format_table(clips)}


def summary(report: dict) -> list[str]:
    return [f"Device: {report['device']}, style {Path(report['style']).name}, started {report['time']}",
            report["table"]]


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), run, lambda report: f"bench-temporal-{report['device_type']}.json", summary)


if __name__ == "__main__":
    sys.exit(main())
