"""The benchmark behind ``make bench-scale``: what Ray workers buy, start-up included, and how visible
the hand-overs between a distributed video's chunks are.

**Folder throughput.** A folder of photos (``--images`` variants, crops and resizes, of the shared
photos in ../shared/media/content, made in a temporary folder) is stylized by the real command as a
user runs it, each run in a fresh process, so that everything a run costs is in its wall time: the
interpreter and torch starting, the network loading, Ray and its workers starting, the stylizing,
the shutdown. The two configurations alternate round after round (``--rounds``), so that a shared
machine's load hits both alike, and the figure is the ratio of their wall times in each round:

* one process, one torch thread: ``stylize-images IN STYLE OUT`` with ``OMP_NUM_THREADS=1``;
* two Ray workers of one thread each: the same with ``--workers 2``.

The load average is read before and after every run (a ratio from a busy machine says little).

**Cost per image.** CPU seconds per image in one process at one thread and inside two workers of
one thread each, on the same photos: other programs on the machine hardly move it, so on a busy
machine it still shows whether a worker costs more per image than the one-process job.

**Seams.** Each shared clip is stylized over 2 workers with chunks of ``--max-chunk`` frames and the
default ``--overlap`` (lossless FFV1, so that the codec does not blur what is measured). The warping
error of each frame pair (flow and occlusions from the input) is split into the pairs a chunk
hand-over touches and the pairs inside chunks (pipeline/jobs/video_chunks.py ``seam_figures``);
the figure is their ratio.

Run it as ``python -m bench.scale`` (``--help`` for options); JSON in bench-results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

from bench.common import ROOT, STYLE_CANDIDATES, bench_parser, first_existing, run_main

SHARED = ROOT.parent / "shared/media"
CLIPS = (SHARED / "videos/bigbuckbunny.mp4", SHARED / "videos/carphone_pristine.mp4")
BIN = Path(sys.executable).parent


def make_photos(folder: Path, count: int, long_side: int, seed: int = 0) -> list[Path]:
    """``count`` distinct photos: crops (a quarter to all of the picture, anywhere in it) of the
    shared photos, resized to ``long_side`` px, as JPEG. Generated smooth pictures where the shared
    photos are missing, so that the benchmark still runs (the JSON says which)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = sorted((SHARED / "content").glob("*.jpg"))
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        if sources:
            image = Image.open(sources[i % len(sources)]).convert("RGB")
            w, h = image.size
            share = rng.uniform(0.5, 1.0)
            cw, ch = int(w * share * rng.uniform(0.8, 1.0)), int(h * share * rng.uniform(0.8, 1.0))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            image = image.crop((x, y, x + cw, y + ch))
        else:
            yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
            f = rng.uniform(0.01, 0.05, 3)
            rgb = np.stack([np.sin(xx * f[0] + i), np.cos(yy * f[1] + 2 * i), np.sin((xx + yy) * f[2])], -1)
            image = Image.fromarray(((rgb * 0.5 + 0.5) * 255).astype(np.uint8))
        image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
        path = folder / f"photo{i:03d}.jpg"
        image.save(path, quality=92)
        paths.append(path)
    return paths


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def folder_run(variant: str, photos: Path, style: Path, out: Path, args: argparse.Namespace) -> dict:
    """One run of the command in a fresh process; the wall time is everything it cost."""
    shutil.rmtree(out, ignore_errors=True)
    report = out.with_suffix(".json")
    command = [str(BIN / "stylize-images"), str(photos), str(style), str(out), "--size", str(args.side),
               "--iterations", str(args.iterations), "--scales", "1", "--device", "cpu", "--quiet",
               "--report", str(report)]
    env = dict(os.environ)
    if variant == "one process, 1 thread":
        env["OMP_NUM_THREADS"] = "1"  # what torch starts with: one intra-op thread
    else:
        command += ["--workers", "2"]  # on 2 cores: one thread each (pipeline/scale/cluster.py)
    load_before = _load()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{variant}: exit {done.returncode}: {done.stderr.strip()}")
    summary = json.loads(report.read_text())
    return {"variant": variant, "images": summary["done"], "wall_seconds": round(wall, 2),
            "images_per_minute": round(summary["done"] / wall * 60, 2),
            "setup_seconds": summary["setup_seconds"], "stylizing_seconds": summary["seconds"],
            "device": summary["device"], "load_before": load_before, "load_after": _load()}


VARIANTS = ("one process, 1 thread", "2 Ray workers, 1 thread each")


def folder_benchmark(args: argparse.Namespace, style: Path, on_line=lambda line: None) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="stylize-bench-scale-") as tmp:
        photos = Path(tmp) / "photos"
        make_photos(photos, args.images, args.photo_size)
        for round_ in range(1, args.rounds + 1):
            for variant in VARIANTS:
                row = {"round": round_, **folder_run(variant, photos, style, Path(tmp) / "out", args)}
                rows.append(row)
                on_line(f"round {round_} {variant:>30}: {row['wall_seconds']:7.1f} s wall, "
                        f"{row['images_per_minute']:6.2f} img/min (set-up {row['setup_seconds']:.1f} s, stylizing "
                        f"{row['stylizing_seconds']:.1f} s), load {row['load_before']}->{row['load_after']}")
    ratios = []
    for round_ in range(1, args.rounds + 1):
        one, two = (next(r for r in rows if r["round"] == round_ and r["variant"] == v) for v in VARIANTS)
        ratios.append(round(one["wall_seconds"] / two["wall_seconds"], 3))
    return {"images": args.images, "photo_size": args.photo_size, "side": args.side, "iterations": args.iterations,
            "from_shared_photos": bool(sorted((SHARED / "content").glob("*.jpg"))), "rows": rows,
            "ratio_per_round": ratios, "ratio_median": statistics.median(ratios)}


def _timed_images(stylizer, items, emit, **options):
    """The folder job's work function, one image at a time, with the CPU seconds of the process
    (every thread of it: Ray's own included) and the wall seconds each image took."""
    from pipeline.jobs.folder_work import stylize_images

    for item in items:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in stylize_images(stylizer, [item], emit, **options):
            pass
        yield time.process_time() - cpu, time.perf_counter() - wall


def cpu_benchmark(args: argparse.Namespace, style: Path, on_line=lambda line: None) -> dict:
    """CPU seconds per image in one process (one thread) and inside two Ray workers (one thread
    each), on the same photos: unlike wall time, hardly moved by other programs on the machine, so
    it shows on a busy machine whether a worker costs more per image than the one-process job."""
    import functools

    import torch

    from pipeline.config import EngineConfig, JobConfig, ScaleConfig, StyleConfig, StyleImage
    from pipeline.jobs.common import StylizerSetup
    from pipeline.jobs.folder_plan import plan_folder
    from pipeline.scale.local import LocalExecutor
    from pipeline.scale.ray_pool import RayExecutor

    job = JobConfig(styles=(StyleImage(style),), style=StyleConfig(size=args.side, iterations=args.iterations,
                                                                   scales=1), engine=EngineConfig(device="cpu"))
    work = functools.partial(_timed_images, quality=95, batch_size=1, read_ahead=4)
    result = {}
    with tempfile.TemporaryDirectory(prefix="stylize-bench-cpu-") as tmp:
        make_photos(Path(tmp) / "photos", args.cpu_images, args.photo_size)
        plan = plan_folder(Path(tmp) / "photos", Path(tmp) / "out")
        (Path(tmp) / "out").mkdir()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for name, executor in (("one process, 1 thread", LocalExecutor()),
                                   ("2 Ray workers, 1 thread each", RayExecutor(ScaleConfig(workers=2, threads=1)))):
                load_before = _load()
                with executor.start(StylizerSetup(job)) as pool:
                    # One image per call in both, as a worker gets them; the first of each process
                    # pays the kernels' warm-up, so the median is the figure.
                    units = [[item] for item in plan.items] if not pool.spread else [plan.items]
                    times = [o.value for unit in units for o in pool.map(work, unit, lambda e: None)]
                result[name] = {"cpu_seconds_per_image": round(statistics.median(t[0] for t in times), 3),
                                "wall_seconds_per_image": round(statistics.median(t[1] for t in times), 3),
                                "images": len(times), "load_before": load_before, "load_after": _load()}
                on_line(f"{name:>30}: {result[name]['cpu_seconds_per_image']:.2f} CPU s per image (median), "
                        f"{result[name]['wall_seconds_per_image']:.2f} s wall, load {load_before}->{_load()}")
        finally:
            torch.set_num_threads(threads)
    return result


def seam_benchmark(args: argparse.Namespace, style: Path, on_line=lambda line: None) -> list[dict]:
    from pipeline.config import (
        EncodeConfig,
        EngineConfig,
        JobConfig,
        ScaleConfig,
        StyleConfig,
        StyleImage,
        VideoConfig,
        VideoJobConfig,
    )
    from pipeline.jobs.video import stylize_video
    from pipeline.jobs.video_chunks import seam_figures
    from pipeline.scale.ray_pool import RayExecutor

    job = JobConfig(styles=(StyleImage(style),),
                    style=StyleConfig(size=args.video_size, iterations=args.first_iterations, scales=1),
                    engine=EngineConfig(device="cpu"))
    video = VideoConfig(iterations=args.video_iterations, max_frames=args.frames)
    encode = EncodeConfig(codec="ffv1", output_size=args.video_size)
    overlap = ScaleConfig().overlap if args.overlap is None else args.overlap
    rows = []
    with tempfile.TemporaryDirectory(prefix="stylize-bench-seams-") as tmp:
        for clip in [c for c in CLIPS if c.is_file()]:
            out = Path(tmp) / f"{clip.stem}.mkv"
            scale = ScaleConfig(workers=2, threads=1, max_chunk=args.max_chunk, overlap=overlap)
            load_before = _load()
            summary = stylize_video(clip, out, job, VideoJobConfig(video=video, encode=encode),
                                    executor=RayExecutor(scale))
            chunks = [_chunk(c) for c in summary.chunks]
            errors = _pair_errors(clip, out, summary.frames)
            rows.append({"clip": clip.name, "frames": summary.frames, "overlap": overlap, "max_chunk": args.max_chunk,
                         "shots": summary.shots, "chunks": len(chunks), "seconds": round(summary.seconds, 1),
                         "load_before": load_before, "load_after": _load(),
                         **seam_figures(errors, chunks, summary.shots)})
            on_line(_seam_line(rows[-1]))
    return rows


def _chunk(values):
    from pipeline.jobs.video_chunks import Chunk

    return Chunk(*values)


def _pair_errors(clip: Path, out: Path, frames: int) -> list[float | None]:
    """Warping error of each pair of ``out``'s frames; flow and occlusions from the clip's first frames."""
    from pipeline.jobs.stability import video_frames, warping_errors

    return warping_errors(islice(video_frames(clip), frames), video_frames(out)).per_frame


def _seam_line(row: dict) -> str:
    def fmt(x):
        return "n/a" if x is None else f"{x:.5f}"

    return (f"{row['clip']}: overlap {row['overlap']}, {row['chunks']} chunks: warping error at hand-overs "
            f"{fmt(row['seam'])} ({row['seam_pairs']} pairs), inside chunks {fmt(row['inside'])} "
            f"({row['inside_pairs']} pairs), ratio {fmt(row['ratio'])}; {row['seconds']} s, "
            f"load {row['load_before']}->{row['load_after']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # No --threads or --device: the comparison is one CPU thread per process, by design.
    p = bench_parser("python -m bench.scale", __doc__, threads=False, device=False, out_help="folder for scale.json")
    p.add_argument("--images", type=int, default=48, help="photos in the folder (default: 48)")
    p.add_argument("--photo-size", type=int, default=640, help="long side of the photos on disk (px)")
    p.add_argument("--side", type=int, default=128, help="working size, --size (px; default: 128)")
    p.add_argument("--iterations", type=int, default=60, help="network evaluations per photo (default: 60)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of both configurations")
    p.add_argument("--skip-folder", action="store_true", help="no folder throughput")
    p.add_argument("--skip-seams", action="store_true", help="no seam figures")
    p.add_argument("--skip-cpu", action="store_true", help="no CPU seconds per image")
    p.add_argument("--cpu-images", type=int, default=12, help="photos for the CPU seconds per image (default: 12)")
    p.add_argument("--style", type=Path, default=None, help="style image (default: samples/starry_night.jpg)")
    p.add_argument("--frames", type=int, default=None, help="frames of each clip (default: all)")
    p.add_argument("--video-size", type=int, default=96, help="long side frames are stylized at (px)")
    p.add_argument("--first-iterations", type=int, default=40)
    p.add_argument("--video-iterations", type=int, default=12)
    p.add_argument("--max-chunk", type=int, default=30, help="frames per chunk: small, so that a clip has seams")
    p.add_argument("--overlap", type=int, default=None, help="hand-over frames (default: --overlap's default)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """The parts asked for, each line printed as it comes (the whole takes about half an hour)."""
    style = args.style or first_existing(STYLE_CANDIDATES)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"bench-scale {started}: {os.cpu_count()} CPUs, load {_load()}", flush=True)
    report = {"started": started, "cpus": os.cpu_count()}
    if not args.skip_folder:
        print(f"folder: {args.images} photos, {args.side} px, {args.iterations} iterations, {args.rounds} rounds",
              flush=True)
        report["folder"] = folder_benchmark(args, style, on_line=lambda line: print(line, flush=True))
        print(f"2 workers vs 1 process (wall time, start-up included): {report['folder']['ratio_per_round']} "
              f"per round, median {report['folder']['ratio_median']:.2f}x", flush=True)
    if not args.skip_cpu:
        print(f"cost per image: {args.cpu_images} photos, CPU seconds in one process and in the workers", flush=True)
        report["cpu"] = cpu_benchmark(args, style, on_line=lambda line: print(line, flush=True))
    if not args.skip_seams:
        report["seams"] = seam_benchmark(args, style, on_line=lambda line: print(line, flush=True))
    report["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return report


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), run, "scale.json")


if __name__ == "__main__":
    sys.exit(main())
