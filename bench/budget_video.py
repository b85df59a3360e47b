"""Quality against cost for video (``make bench-budget`` runs it after the photos): later frames at
several budgets on real clips, each method with its own ``stylize-video``, on the warping error, the
content drift and the picture yardsticks, against evaluations and wall time per later frame.

Methods are those of bench/budget.py: this checkout with its defaults ("new"), ``--old DIR`` (another
checkout with its own defaults), ``--method NAME=OPTIONS`` (this checkout with more stylize-video
options). ``--budgets`` are ``--iterations`` values: evaluations per later frame (the first frame has
its own budget, ``--first-iterations``, and keeps it).

Every figure is taken from outside the checkout, so that any two commits are measured alike:

* Cost per later frame = (wall time of ``--max-frames N`` - wall time of ``--max-frames 1``) / (N - 1).
  Start-up, the first frame and the encoder's set-up cancel out. The same for CPU seconds, which with
  ``--threads 1`` the machine's other work moves less than the wall time. The one-frame run is made once per
  method and clip: its budget does not matter, the first frame does not read ``--iterations``.
* The warping error from the job's own ``--report``.
* With ``--drift``, a second run with ``--report-drift`` over at least 40 frames (20 at each end)
  gives the drift ratio, last 20 frames against the first 20 (docs/video-drift.md). Its time is not
  used: it stylizes the frames again on their own.
* The yardsticks of bench/measures.py (bench/looks.py's ``Judge``) on the middle and the last
  frame, each against its own input frame, both at the working size (``--size``, or this checkout's
  default), averaged.

Clips are ``PATH`` (stylize-video's default size) or ``PATH@SIZE`` (``--size SIZE``). The default is
both shared clips at the demo's size (160) and at the default size. The methods take turns budget by
budget on each clip, as the photos do.

    python -m bench.budget_video --old ../old --budgets 15 30 60 --old-budgets 60 --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

from PIL import Image

from bench.budget import (
    YARDSTICKS,
    Method,
    add_method_options,
    checkout_command,
    format_table,
    in_turns,
    make_sheet,
    methods_from,
    write_plot,
)
from bench.common import ROOT, STYLE_CANDIDATES, bench_parser, first_existing, run_main
from bench.looks import Judge, cpu_model, save_jpeg, yardstick_features
from bench.quality import _run_timed
from pipeline.config import VIDEO_STYLE
from pipeline.jobs.stability import DRIFT_WINDOW, video_frames
from pipeline.media.images import atomic_write, fit_long_side, from_uint8, load_rgb, resize_frame

# The video yardsticks: the two that only a video has, then the pictures' own (lower is better for each).
VIDEO_YARDSTICKS = (("warping_error", "warping error"), ("drift_ratio", "drift ratio"), *YARDSTICKS)
DEMO_SIZE = 160  # the Makefile's DEMO_ARGS
SHARED_CLIPS = ("carphone_pristine.mp4", "bigbuckbunny.mp4")
FALLBACK_CLIP = ROOT / "samples/bbb_2s.mp4"


def parse_clip(spec: str) -> tuple[Path, int | None]:
    """``PATH`` (stylize-video's default size: None) or ``PATH@SIZE``."""
    path, at, size = spec.rpartition("@")
    return (Path(path), int(size)) if at else (Path(spec), None)


def default_clips() -> list[str]:
    shared = ROOT.parent / "shared/media/videos"
    clips = [shared / name for name in SHARED_CLIPS if (shared / name).is_file()] or [FALLBACK_CLIP]
    return [spec for clip in clips for spec in (f"{clip}@{DEMO_SIZE}", str(clip))]


def clip_name(clip: Path, size: int | None) -> str:
    return f"{clip.stem}@{size or 'default'}"


def video_command(method: Method, clip: Path, size: int | None, args: argparse.Namespace, output: Path, frames: int,
                  budget: int | None, drift: bool = False) -> list[str]:
    """``stylize-video`` of ``method``'s checkout on the first ``frames`` frames, with a report beside ``output``."""
    extra = ((["--size", str(size)] if size else []) + (["--iterations", str(budget)] if budget else [])
             + (["--first-iterations", str(args.first_iterations)] if args.first_iterations else [])
             + (["--device", args.device] if args.device else []) + (["--report-drift"] if drift else []))
    return checkout_command("stylize-video", [str(clip), str(args.style), str(output), "--max-frames", str(frames),
                                              "--report", str(output.with_suffix(".json")), "--overwrite", "--quiet",
                                              *method.options, *extra])


def judge_frames(clip: Path, output: Path, judge: Judge, long_side: int) -> dict:
    """The yardsticks on the middle and the last frame of ``output``, each against its input frame, averaged.

    Both are judged at the working size (``long_side``, or the clip's own if smaller): the output is
    written at the input's size, and a frame stylized at 160 px and enlarged to 1280 would be judged
    on its enlargement's blur."""
    outs = list(video_frames(output))
    picks = sorted({len(outs) // 2, len(outs) - 1})
    inputs = [frame for index, frame in enumerate(itertools.islice(video_frames(clip), picks[-1] + 1))
              if index in picks]
    height, width = inputs[0].shape[:2]
    size = fit_long_side(height, width, min(long_side, max(height, width)))
    at_size = [(resize_frame(source, size), resize_frame(outs[pick], size)) for pick, source in zip(picks, inputs)]
    figures = [judge.with_photo(from_uint8(photo))(from_uint8(frame)) for photo, frame in at_size]
    return {**_average(figures), "judged_frames": picks, "judged_size": [size[1], size[0]]}


def _average(figures: list[dict]) -> dict:
    """The mean of each number (and of each number in a dict, as ``style_per_layer``) over ``Judge`` results."""
    out = {}
    for key, value in figures[0].items():
        if isinstance(value, dict):
            out[key] = _average([f[key] for f in figures])
        elif isinstance(value, float):
            out[key] = sum(f[key] for f in figures) / len(figures)
        else:  # not a figure (the size): the same for every frame
            out[key] = value
    return out


def last_frame_png(output: Path) -> Path:
    """The output's last frame as PNG beside it, for the sheet."""
    *_, last = video_frames(output)
    path = output.with_suffix(".last.png")
    atomic_write(path, lambda tmp: Image.fromarray(last).save(tmp, format="PNG"))
    return path


def timed(cmd: list[str], method: Method, threads: int | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``method``'s checkout."""
    wall, cpu, _ = _run_timed(cmd, threads, env={"PYTHONPATH": str(method.code)})
    return wall, cpu


def run_path(args: argparse.Namespace, clip: Path, size: int | None, label: str, ext: str) -> Path:
    """Where a file of this clip's runs goes: one name per clip, size and ``label`` (method and budget),
    the extension added, not put with with_suffix (which would take a budget's ".30" for a suffix and
    let the budgets of a method overwrite one another's clip)."""
    return (args.out / "budget_video" / f"{clip.stem}.{size or 'default'}.{label}{ext}").resolve()


def run_one(method: Method, clip: Path, size: int | None, budget: int | None, one_frame: tuple[float, float],
            args: argparse.Namespace, judge: Judge) -> dict:
    name = clip_name(clip, size)
    output = run_path(args, clip, size, f"{method.name}.{budget or 'default'}", ".mp4")
    wall, cpu = timed(video_command(method, clip, size, args, output, args.frames, budget), method, args.threads)
    later = args.frames - 1
    report = json.loads(output.with_suffix(".json").read_text())
    row = {"clip": name, "method": method.name, "budget": budget, "code": str(method.code),
           "options": list(method.options), "frames": report["frames"], "size": [report["width"], report["height"]],
           "run_s": wall, "one_frame_s": one_frame[0], "wall_s": (wall - one_frame[0]) / later,
           # CPU seconds as well: with --threads 1 they are what a frame costs, whatever else the machine runs.
           "run_cpu_s": cpu, "one_frame_cpu_s": one_frame[1], "cpu_s": (cpu - one_frame[1]) / later,
           "warping_error": report["warping_error"], "drift_ratio": None, "video": str(output),
           "image": str(last_frame_png(output)),
           **judge_frames(clip, output, judge, size or VIDEO_STYLE.size)}
    if args.drift:
        drift_output = output.with_name(output.stem + ".drift.mp4")
        timed(video_command(method, clip, size, args, drift_output, max(args.frames, 2 * DRIFT_WINDOW), budget,
                            drift=True), method, args.threads)
        drift = json.loads(drift_output.with_suffix(".json").read_text())["drift"]
        row |= {"drift_ratio": drift.get("ratio"), "drift": drift}
    return row


def run(args: argparse.Namespace) -> dict:
    if args.frames < 2:
        raise SystemExit("--frames must be at least 2: the cost of a later frame needs one after the first")
    methods = methods_from(args)
    features, painting = yardstick_features(), load_rgb(args.style)
    (args.out / "budget_video").mkdir(parents=True, exist_ok=True)
    rows, plots = [], []
    for spec in args.clip or default_clips():
        clip, size = parse_clip(spec)
        # The painting's features once per clip; each judged frame brings its own photo (Judge.with_photo).
        judge = Judge(from_uint8(next(video_frames(clip))), painting, features)
        one_frame = {}
        for method in methods:
            first = run_path(args, clip, size, f"{method.name}.first", ".mp4")
            one_frame[method.name] = timed(video_command(method, clip, size, args, first, 1, None), method,
                                           args.threads)
        clip_rows = []
        for method, budget in in_turns(methods):
            row = run_one(method, clip, size, budget, one_frame[method.name], args, judge)
            print(f"{row['clip']} {method.name} {row['budget'] or 'default'}: {row['wall_s']:.1f} s a later "
                  f"frame ({row['cpu_s']:.1f} CPU s), warping error {row['warping_error']:.5f}, "
                  f"texture {row['texture']:.3f}", file=sys.stderr, flush=True)
            clip_rows.append(row)
        name = clip_name(clip, size)
        save_jpeg(make_sheet(name, clip_rows, seconds="s a later frame"),
                  args.out / "budget_video" / f"budget_{clip.stem}.{size or 'default'}.jpg")
        plot = args.out / "budget_video" / f"budget_{clip.stem}.{size or 'default'}.png"
        write_plot(clip_rows, plot, VIDEO_YARDSTICKS, cost="cpu_s", cost_label="CPU seconds per later frame",
                   title=f"{name}: quality against cost (lower is better)")
        rows += clip_rows
        plots.append(str(plot))
    return {"mode": "budget-video", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "threads": args.threads or "default", "frames": args.frames,
            "style": str(args.style),
            "methods": [{"name": m.name, "code": str(m.code), "options": list(m.options), "budgets": list(m.budgets)}
                        for m in methods],
            "rows": rows, "plots": plots, "table": format_video_table(rows)}


def format_video_table(rows: list[dict]) -> str:
    # Means over clips of different sizes say little: each clip is its own curve, so no mean rows.
    return format_table(rows, [], VIDEO_YARDSTICKS, item="clip", wall="s a later frame")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser("python -m bench.budget_video", __doc__, device_default=None,
                     out_help="folder for the JSON report, and under budget_video/ the clips, sheets and plots")
    p.add_argument("--clip", action="append", default=None, metavar="PATH[@SIZE]",
                   help="a clip, at stylize-video's default size or at --size SIZE; repeatable "
                        f"(default: the shared clips at {DEMO_SIZE} and at the default size)")
    p.add_argument("--style", type=Path, default=first_existing(STYLE_CANDIDATES),
                   help="the painting (default: samples/starry_night.jpg, the demo's)")
    p.add_argument("--frames", type=int, default=10, help="frames from the start of each clip (default: 10)")
    p.add_argument("--first-iterations", type=int, default=None,
                   help="--first-iterations for every method (default: each checkout's own)")
    p.add_argument("--drift", action="store_true",
                   help=f"also the drift ratio: one more run of each, over at least {2 * DRIFT_WINDOW} frames (slow)")
    add_method_options(p, "stylize-video")
    args = p.parse_args(argv)
    # One line naming the file, before any run starts, rather than the first run's failure an hour in.
    for path in [parse_clip(spec)[0] for spec in args.clip or []] + [args.style]:
        if path is None or not Path(path).is_file():
            p.error(f"{path}: no such file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def summary(report: dict) -> list[str]:
        return [f"video quality against cost, {report['frames']} frames a run; {report['cpu']}, {os.cpu_count()} "
                f"CPUs, threads {report['threads']}", report["table"],
                f"Plots: {', '.join(report['plots'])}; sheets: {args.out}/budget_video/budget_*.jpg"]

    return run_main(args, run, "bench-budget-video.json", summary)


if __name__ == "__main__":
    sys.exit(main())
