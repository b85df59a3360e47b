"""The one GPU check (``make bench-gpu``): everything a lent CUDA device should measure, in under 10 minutes.

1. speed: one evaluation of the default path from 256 px to 4K (ms, TFLOP/s, peak memory) beside the
   convolutions alone at the same shapes (bench/speed.py);
2. a 12-megapixel photo (a shared photo upscaled to 4000x3000) stylized at full size with the
   defaults: wall time of each level, total, peak memory (bench/large.py's child);
3. 10 s of 720p video (the shared Big Buck Bunny clip played forward then backward) through
   ``stylize-video`` with its defaults: frames per second and the warping error of its report;
4. the test suite's CUDA tests (``pytest -k cuda``).

Everything goes into one JSON file. Parts that would run past the deadline are skipped, and the JSON
says so. On a machine without CUDA it prints one line and measures nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, VIDEO_CANDIDATES, bench_parser, first_existing, run_main, save_report
from bench.large import PHOTO_CANDIDATES

BBB_CANDIDATES = tuple(base / "shared/media/videos/bigbuckbunny.mp4" for base in ROOT.parents[:2]) + VIDEO_CANDIDATES
SPEED_SIZES = ("256", "512", "720p", "1080p", "4k")
DEADLINE_S = 9 * 60  # the check must end within 10 minutes of device time, start-up included


def ping_pong(source: Path, path: Path, seconds: float) -> Path:
    """``source`` forward then backward (and again) until ``seconds`` long, H.264, no sound: a longer clip
    from a short one whose motion stays real (reversed at each turn)."""
    import av

    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        rate = stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(stream)]
    wanted = int(seconds * rate)
    order, forward = [], True
    while len(order) < wanted:
        order += list(range(len(frames))) if forward else list(range(len(frames) - 2, 0, -1))
        forward = not forward
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        for index in order[:wanted]:
            for packet in video.encode(av.VideoFrame.from_ndarray(frames[index], format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    return path


def _speed(device: str, sizes: tuple[str, ...], iterations: int, repeats: int) -> dict:
    from bench import speed

    args = speed.parse_args(["--device", device, "--sizes", *sizes, "--iterations", str(iterations), "--repeats",
                             str(repeats), "--no-reference", "--no-fp32"])
    report = speed.run_benchmark(args)
    return {"sizes": report["sizes"], "table": report["table"], "precision": report["precision"]}


def _photo(photo: Path, style: Path, side: int, tmp: Path, out: Path) -> dict:
    from bench.large import make_photo, timed_child

    big = make_photo(photo, (side * 3 // 4, side), tmp / "photo.png")
    return timed_child(["--content", str(big), "--style", str(style), "--tile", "auto",
                         "--output", str(out / "bench-gpu-photo.png")])


def _video(clip: Path, style: Path, seconds: float, tmp: Path, device: str) -> dict:
    source = ping_pong(clip, tmp / "clip.mp4", seconds)
    report, output = tmp / "report.json", tmp / "out.mp4"
    command = [str(Path(sys.executable).parent / "stylize-video"), str(source), str(style), str(output),
               "--device", device, "--report", str(report), "--quiet"]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": f"stylize-video failed ({proc.returncode}): {proc.stderr[-2000:]}", "command": command}
    stability = json.loads(report.read_text())
    frames = round(seconds * 25)
    return {"command": command, "seconds": wall, "frames": frames, "fps": frames / wall, "stability": stability}


def _cuda_tests() -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-k", "cuda", str(ROOT / "tests")]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    return {"command": command, "returncode": proc.returncode, "seconds": time.perf_counter() - start,
            "summary": proc.stdout.strip().splitlines()[-1:]}


def run(args: argparse.Namespace) -> dict:
    import torch

    start = time.perf_counter()
    device = args.device
    report: dict = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device, "parts": {}}
    style = args.style or ROOT / "samples/starry_night.jpg"
    photo = args.photo or first_existing(PHOTO_CANDIDATES)
    clip = args.clip or first_existing(BBB_CANDIDATES)
    parts = {
        "speed": lambda tmp: _speed(device, args.sizes, args.iterations, args.repeats),
        "photo": lambda tmp: _photo(photo, style, args.photo_side, tmp, args.out),
        "video": lambda tmp: _video(clip, style, args.video_seconds, tmp, device),
        "cuda_tests": lambda tmp: _cuda_tests(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.parts:
            if time.perf_counter() - start > args.deadline:
                report["parts"][name] = {"skipped": f"past the deadline of {args.deadline} s"}
                continue
            began = time.perf_counter()
            try:
                report["parts"][name] = parts[name](Path(tmp))
            except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others' figures
                report["parts"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            report["parts"][name]["part_seconds"] = time.perf_counter() - began
            save_report(report, args.out, "bench-gpu.json")  # after every part: a cut-off run keeps what it has
    report["seconds"] = time.perf_counter() - start
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # --device cpu only to try the script.
    p = bench_parser("python -m bench.gpu", __doc__, threads=False, device_default="cuda")
    p.add_argument("--parts", nargs="+", choices=("speed", "photo", "video", "cuda_tests"),
                   default=["speed", "photo", "video", "cuda_tests"])
    p.add_argument("--sizes", nargs="+", default=SPEED_SIZES,
                   help=f"speed table sizes (default: {' '.join(SPEED_SIZES)})")
    p.add_argument("--iterations", type=int, default=20, help="evaluations per timed run (default: 20)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per size (default: 3)")
    p.add_argument("--photo", type=Path, default=None)
    p.add_argument("--photo-side", type=int, default=4000, help="long side of the photo (default: 4000 = 12 MP)")
    p.add_argument("--style", type=Path, default=None)
    p.add_argument("--clip", type=Path, default=None)
    p.add_argument("--video-seconds", type=float, default=10.0)
    p.add_argument("--deadline", type=float, default=DEADLINE_S, help="seconds after which parts are skipped")
    return p.parse_args(argv)


def summary(report: dict) -> list[str]:
    lines = []
    for name, part in report["parts"].items():
        text = part.get("table") or part.get("error") or part.get("skipped") or json.dumps(
            {k: v for k, v in part.items() if k in ("fps", "seconds", "wall_seconds", "peak_mb", "summary")})
        lines.append(f"{name}: {text}")
    return [*lines, f"{report['seconds']:.0f} s in all"]


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("make bench-gpu: no CUDA device on this machine, nothing measured (it needs one GPU)")
        return 0
    return run_main(args, run, "bench-gpu.json", summary)


if __name__ == "__main__":
    sys.exit(main())
