"""The benchmark behind ``make bench-scale``: a photo folder on 1 and 2 Ray workers vs one process.

On one generated folder it runs, alternating so that a shared machine's load hits every variant alike:
the one-process job at one torch thread and at the machine's default threads, and the Ray job with
1 and 2 single-threaded workers. Throughput is the job's own images/min (stylizing only: network
loading and Ray's start are in ``setup_seconds``). Ray's overhead per image is the 1-worker job's
wall time per image minus the one-thread one-process job's: same thread count, same images, so the
difference is what the hand-off costs (task round trip, result pickling, a decode that the one-process
job overlaps in its reader thread). The load average is recorded before and after each run.

The seam part stylizes a clip (the bundled sample) over 2 workers with chunks of ``--max-chunk``
frames, once without overlap and once with ``--overlap`` cross-faded frames, and once in one process
(no seams at all); for each it gives the warping error over the frame pairs at chunk boundaries and
over the other pairs inside shots (pipeline/scale/seams.py). Outputs are lossless (FFV1) so the codec
does not blur what is measured.

Run it as ``python -m pipeline.bench.scale`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

from pipeline.bench.common import ROOT, save_report

RAY_WORKER_NICENESS = 15  # Ray's default for worker processes (its worker_niceness setting)


def make_folder(root: Path, images: int, side: int) -> Path:
    """``images`` distinct smooth pictures (``side`` x 3/4 ``side`` px) and a striped style image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "in").mkdir(parents=True)
    y, x = np.mgrid[0 : side * 3 // 4, 0:side].astype(np.float32)
    for i in range(images):
        f = rng.uniform(0.03, 0.2, 3)
        rgb = np.stack([np.sin(x * f[0] + i), np.cos(y * f[1] + 2 * i), np.sin((x + y) * f[2])], -1)
        Image.fromarray(((rgb * 0.5 + 0.5) * 255).astype(np.uint8)).save(root / "in" / f"img{i:03d}.png")
    yy, xx = np.mgrid[0:side, 0:side]
    palette = np.array([[230, 40, 30], [250, 220, 40], [20, 40, 200]], np.uint8)
    Image.fromarray(palette[((xx + 2 * yy) // 6) % 3]).save(root / "style.png")
    return root


def _one_run(variant: str, root: Path, job, threads: int | None) -> dict:
    import torch

    from pipeline.config import FolderConfig, ScaleConfig
    from pipeline.jobs.folder import stylize_folder

    out = root / f"out-{variant}"
    shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()[0]
    wall = time.perf_counter()
    if variant.startswith("ray"):
        workers = int(variant.split("-")[1])
        summary = stylize_folder(root / "in", out, job, FolderConfig(batch_size=1),
                                 scale=ScaleConfig(workers=workers, threads=1))
    else:
        saved = torch.get_num_threads()
        torch.set_num_threads(threads or saved)
        try:
            summary = stylize_folder(root / "in", out, job, FolderConfig(batch_size=1))
        finally:
            torch.set_num_threads(saved)
    # Inside the worker (or the stylizing thread): stylize + save, not decode; the rest of the wall time
    # per image is the hand-off (for Ray: task round trip, pickling) plus decoding.
    inner = [f["seconds"] for f in summary["files"] if f["status"] == "done"]
    return {
        "variant": variant,
        "inner_ms_per_image": round(statistics.mean(inner) * 1000, 1),
        "images": summary["done"],
        "seconds": summary["seconds"],
        "setup_seconds": summary["setup_seconds"],
        "total_wall_seconds": round(time.perf_counter() - wall, 3),
        "images_per_minute": summary["images_per_minute"],
        "ms_per_image": round(summary["seconds"] / summary["done"] * 1000, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def run_benchmark(args: argparse.Namespace, on_line=lambda line: None) -> dict:
    import ray
    import torch

    from pipeline.config import EngineConfig, JobConfig, StyleConfig, StyleImage

    default_threads = torch.get_num_threads()
    variants = [("one-process-1thread", 1), ("ray-1", None), ("ray-2", None),
                (f"one-process-{default_threads}threads", default_threads)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="stylize-bench-scale-") as tmp:
        root = make_folder(Path(tmp), args.images, args.side)
        job = JobConfig(styles=(StyleImage(root / "style.png"),),
                        style=StyleConfig(size=args.side, iterations=args.iterations, scales=1),
                        engine=EngineConfig(device="cpu"))
        # One Ray for every run: its start (seconds) is not what the per-image figures are about.
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            for round_ in range(args.rounds):
                for variant, threads in variants:
                    row = {"round": round_ + 1, **_one_run(variant, root, job, threads)}
                    rows.append(row)
                    on_line(f"round {row['round']} {variant:>22}: {row['images_per_minute']:7.2f} img/min, "
                            f"{row['ms_per_image']:8.1f} ms/img (inner {row['inner_ms_per_image']:8.1f}), "
                            f"setup {row['setup_seconds']:5.1f} s, "
                            f"load {row['load_before']:.1f}->{row['load_after']:.1f}")
        finally:
            ray.shutdown()
    return {"config": vars(args), "cpus": os.cpu_count(), "rows": rows, **_ratios(rows)}


def _ratios(rows: list[dict]) -> dict:
    """Per round (same load), the ratios the docs quote; then their medians over the rounds."""
    by_round: dict[int, dict[str, dict]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["variant"]] = row
    per_round = []
    for variants in by_round.values():
        one, r1, r2 = variants["one-process-1thread"], variants["ray-1"], variants["ray-2"]
        per_round.append({
            "ray2_over_ray1": r2["images_per_minute"] / r1["images_per_minute"],
            "ray2_over_one_process_1thread": r2["images_per_minute"] / one["images_per_minute"],
            "ray_overhead_ms_per_image": r1["ms_per_image"] - one["ms_per_image"],
            # The same, measured within the 1-worker run alone (immune to load shifting between runs).
            "ray1_wall_minus_inner_ms_per_image": r1["ms_per_image"] - r1["inner_ms_per_image"],
            "one_process_wall_minus_inner_ms_per_image": one["ms_per_image"] - one["inner_ms_per_image"],
        })
    return {"per_round": per_round,
            "median": {k: round(statistics.median(r[k] for r in per_round), 3) for k in per_round[0]}}


def seam_benchmark(args: argparse.Namespace, on_line=lambda line: None) -> list[dict]:
    import ray

    from pipeline.config import EncodeConfig, EngineConfig, JobConfig, ScaleConfig, StyleConfig, StyleImage, VideoConfig
    from pipeline.jobs.video import stylize_video
    from pipeline.scale.seams import seam_figures
    from pipeline.scale.video import Chunk, plan_chunks, stylize_video_distributed

    job = JobConfig(styles=(StyleImage(args.style),), style=StyleConfig(scales=1), engine=EngineConfig(device="cpu"))
    video = VideoConfig(size=args.video_size, first_iterations=args.first_iterations,
                        iterations=args.video_iterations, max_frames=args.frames)
    encode = EncodeConfig(codec="ffv1", output_size=args.video_size)
    rows = []
    with tempfile.TemporaryDirectory(prefix="stylize-bench-seams-") as tmp:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            plan = None
            for overlap in (0, args.overlap):
                out = Path(tmp) / f"overlap{overlap}.mkv"
                scale = ScaleConfig(workers=2, threads=1, max_chunk=args.max_chunk, overlap=overlap)
                load = os.getloadavg()[0]
                summary = stylize_video_distributed(args.video, out, job, video, encode, scale)
                plan = summary["shot_starts"]
                chunks = [Chunk(*c) for c in summary["chunk_list"]]
                errors = _pair_errors(args.video, out, summary["frames"])
                rows.append({"run": f"2 workers, overlap {overlap}", "chunks": len(chunks), "shots": plan,
                             "seconds": round(summary["seconds"], 1), "load": round(load, 1),
                             **seam_figures(errors, chunks, plan)})
                on_line(_seam_line(rows[-1]))
        finally:
            ray.shutdown()
        out = Path(tmp) / "one-process.mkv"
        load = os.getloadavg()[0]
        summary = stylize_video(args.video, out, job, video, encode)
        errors = _pair_errors(args.video, out, summary["frames"])
        # The same pairs as the chunked runs', in a video that has no seams: the baseline.
        chunks = plan_chunks(plan, summary["frames"], args.max_chunk, args.overlap)
        rows.append({"run": "one process (no chunks)", "chunks": 1, "shots": plan,
                     "seconds": round(summary["seconds"], 1), "load": round(load, 1),
                     **seam_figures(errors, chunks, plan)})
        on_line(_seam_line(rows[-1]))
    return rows


def _pair_errors(clip: Path, out: Path, frames: int) -> list[float | None]:
    """Warping error of each pair of ``out``'s frames; flow and occlusions from the clip's first frames."""
    from pipeline.jobs.stability import video_frames, warping_errors

    return warping_errors(islice(video_frames(clip), frames), video_frames(out)).per_frame


def _seam_line(row: dict) -> str:
    def fmt(x):
        return "n/a" if x is None else f"{x:.5f}"

    return (f"{row['run']:>26}: warping error at seams {fmt(row['seam'])} ({row['seam_pairs']} pairs), inside "
            f"{fmt(row['inside'])} ({row['inside_pairs']} pairs), ratio {fmt(row['ratio'])}; {row['seconds']} s, "
            f"load {row['load']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=8, help="images in the generated folder")
    p.add_argument("--side", type=int, default=64, help="long side of each image and of the work (px)")
    p.add_argument("--iterations", type=int, default=20, help="network evaluations per image")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of all variants")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results", help="folder for scale.json")
    p.add_argument("--skip-folder", action="store_true", help="only the seam figures")
    p.add_argument("--skip-seams", action="store_true", help="only the folder throughput")
    p.add_argument("--video", type=Path, default=ROOT / "samples" / "bbb_2s.mp4")
    p.add_argument("--style", type=Path, default=ROOT / "samples" / "starry_night.jpg")
    p.add_argument("--frames", type=int, default=30, help="frames of the clip to stylize")
    p.add_argument("--video-size", type=int, default=96, help="long side frames are stylized at (px)")
    p.add_argument("--first-iterations", type=int, default=40)
    p.add_argument("--video-iterations", type=int, default=12)
    p.add_argument("--max-chunk", type=int, default=8)
    p.add_argument("--overlap", type=int, default=4)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ray starts its workers at nice 15 (so that its own daemons stay responsive). On a shared
    # machine that alone would slow the workers against other users' processes; running the whole
    # benchmark at the same niceness compares like with like.
    os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), RAY_WORKER_NICENESS))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"bench-scale {started}: {args.images} images, {args.side} px, {args.iterations} iterations, "
          f"{os.cpu_count()} CPUs, niceness {os.getpriority(os.PRIO_PROCESS, 0)}", flush=True)
    report = {"started": started}
    if not args.skip_folder:
        report["folder"] = run_benchmark(args, on_line=lambda line: print(line, flush=True))
        print("median over rounds: " + ", ".join(f"{k} {v}" for k, v in report["folder"]["median"].items()))
    if not args.skip_seams:
        report["seams"] = seam_benchmark(args, on_line=lambda line: print(line, flush=True))
    report["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path = save_report(report, args.out, "scale.json")
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
