"""Where one evaluation's time goes, operator by operator (``python -m bench.profile``).

Runs the stylizer's own evaluation (pipeline/engine/evaluate.py, the default path of this machine:
dtype, layout, Gram products) under ``torch.profiler`` and prints the self time of each operator per
evaluation, for each size and thread count asked, and writes them to bench-results/bench-profile.json.
docs/performance.md has the tables it printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from bench.common import bench_parser, describe_device, run_main
from bench.speed import bench_images
from pipeline.config import CONTENT_LAYER, EngineConfig, StyleConfig
from pipeline.engine.evaluate import Targets, evaluate, feature_statistics
from pipeline.engine.optimize import Stylizer, loss_weights
from pipeline.media.images import resize

# Operators grouped under the names the tables use; anything else keeps its own name.
GROUPS = {
    "aten::mkldnn_convolution": "convolution forward",
    "aten::cudnn_convolution": "convolution forward",
    "aten::convolution_backward": "convolution backward",
    "aten::threshold_backward": "ReLU backward",
    "aten::clamp_min": "ReLU forward",
    "aten::relu": "ReLU forward",
    "aten::max_pool2d_with_indices": "max pooling forward",
    "aten::max_pool2d_with_indices_backward": "max pooling backward",
    "aten::bmm": "Gram products (forward and backward)",
    "aten::copy_": "copies (layout, dtype)",
    "aten::_to_copy": "copies (layout, dtype)",
    "aten::add": "gradient sums (add)",
    "aten::add_": "gradient sums (add)",
    "aten::fill_": "zero fills",
    "aten::zero_": "zero fills",
}


def profile_evaluation(size: int, threads: int, evaluations: int = 5, engine: EngineConfig = EngineConfig()) -> dict:
    """Self time per evaluation (ms) of each operator group, over ``evaluations`` profiled evaluations."""
    torch.set_num_threads(threads)
    content, style = bench_images()
    stylizer = Stylizer([(style, 1.0)], StyleConfig(), engine)
    net, device = stylizer.features, stylizer.device
    image = resize(content, (size, size)).to(device)
    maps = feature_statistics(net, image, stylizer.gram_dtype, keep=(CONTENT_LAYER,)).maps
    targets = Targets(content=maps[CONTENT_LAYER], style=stylizer.style.grams(size, stylizer.config.style_scale))
    weights = loss_weights(stylizer.config)
    x = image.clone().requires_grad_(True)

    def once():
        x.grad = None
        evaluate(net, x, targets, weights, stylizer.gram_dtype)

    for _ in range(3):  # warm-up: oneDNN's primitive cache, the allocator
        once()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(evaluations):
            once()
        if device.type == "cuda":
            torch.cuda.synchronize()
    groups: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        own = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        groups[GROUPS.get(event.key, event.key)] += own / 1000 / evaluations
    total = sum(groups.values())
    rows = sorted(groups.items(), key=lambda kv: -kv[1])
    return {"size": size, "threads": threads, "device": describe_device(device), "dtype": str(stylizer.dtype),
            "total_ms": total, "rows": [{"operator": k, "ms": v, "share": v / total} for k, v in rows]}


def format_profile(result: dict, top: int = 14) -> str:
    lines = [f"{result['size']}x{result['size']}, {result['threads']} thread(s), {result['dtype']}: "
             f"{result['total_ms']:.1f} ms of operator time per evaluation",
             f"{'operator':<42} {'ms':>8} {'share':>6}"]
    shown = result["rows"][:top]
    lines += [f"{r['operator'][:42]:<42} {r['ms']:>8.2f} {100 * r['share']:>5.1f}%" for r in shown]
    rest = result["rows"][top:]
    if rest:
        lines.append(f"{'everything else':<42} {sum(r['ms'] for r in rest):>8.2f} "
                     f"{100 * sum(r['share'] for r in rest):>5.1f}%")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser("python -m bench.profile", __doc__, threads=False, precision=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="square image sides (default: 256 512)")
    # Not the shared --threads (one count for the whole run): a table for each count here.
    p.add_argument("--threads", dest="thread_counts", type=int, nargs="+", default=[1, 2],
                   help="torch threads, one table each (default: 1 2)")
    p.add_argument("--evaluations", type=int, default=5, help="profiled evaluations per row (default: 5)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Every size at every thread count; each table printed as it is done (a row takes minutes on a CPU)."""
    engine = EngineConfig(device=args.device, precision=args.precision)
    results = []
    for size in args.sizes:
        for threads in args.thread_counts:
            results.append(profile_evaluation(size, threads, args.evaluations, engine))
            print(format_profile(results[-1]), "\n", flush=True)
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch": torch.__version__, "profiles": results}


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), run, "bench-profile.json")


if __name__ == "__main__":
    sys.exit(main())
