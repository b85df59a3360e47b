"""The benchmark's two quality-aware modes (``python -m bench.speed --compare-pastiche | --schedule-study``).

Both judge results with one fixed yardstick: the losses of an output image, recomputed in fp32,
against the same content and style images at the same size: the relative Gram error summed with
equal weights over relu1_1..relu5_1 (the loss before issue 18) and the relative relu4_2 error, as
written in ``bench/measures.py`` (so a change of the loss does not move it). A lower style
loss means closer statistics, not always a better picture: ``make bench-quality`` shows them.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import (
    CONTENT_CANDIDATES,
    PASTICHE_CONTENT_CANDIDATES,
    PASTICHE_STYLE_CANDIDATES,
    STYLE_CANDIDATES,
    first_existing,
)
from bench.measures import MEASURE_LAYERS, gram_style_distances, relative_error
from pipeline.config import CONTENT_LAYER, EngineConfig, StyleConfig
from pipeline.engine.features import build_features
from pipeline.engine.losses import gram, tv_loss
from pipeline.engine.optimize import Stylizer, scale_schedule
from pipeline.media.images import fit_long_side, load_rgb, resize, resize_long_side


class Yardstick:
    """Content and style losses of any image against fixed content and style images, in fp32.

    Its own network, to ``relu5_1``: the yardstick's layers (``MEASURE_LAYERS``) are not the loss's."""

    def __init__(self, content: torch.Tensor, style: torch.Tensor, long_side: int,
                 config: StyleConfig = StyleConfig()):
        self.features = build_features((*MEASURE_LAYERS, CONTENT_LAYER)).float().cpu()
        self.config = config
        self.size = fit_long_side(*content.shape[-2:], long_side)
        with torch.no_grad():
            self.content_target = self.features(resize(content, self.size))[CONTENT_LAYER]
            style_feats = self.features(resize_long_side(style, long_side))
            self.style_targets = [gram(style_feats[n]) for n in MEASURE_LAYERS]

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> dict[str, float]:
        image = resize(image.float().cpu(), self.size)
        feats = self.features(image)
        # Fixed formulas (bench/measures.py), not the optimiser's loss, which may change.
        terms = {
            "content": relative_error(feats[CONTENT_LAYER], self.content_target),
            "style": sum(gram_style_distances([feats[n] for n in MEASURE_LAYERS], self.style_targets)),
            "tv": float(tv_loss(image).sum()),
        }
        cfg = self.config
        terms["total"] = cfg.content_weight * terms["content"] + cfg.style_weight * terms["style"] + \
            cfg.tv_weight * terms["tv"]
        return terms


def _bench_inputs(content: Path | None = None, style: Path | None = None,
                  candidates=(CONTENT_CANDIDATES, STYLE_CANDIDATES)) -> tuple[Path, Path]:
    """The given content and style images, or the first of each candidate list that exists."""
    content = content or first_existing(candidates[0])
    style = style or first_existing(candidates[1])
    for path, what in ((content, "content"), (style, "style")):
        if path is None or not path.is_file():
            raise SystemExit(f"no {what} image: {path or 'none of the default candidates exists'} (pass --{what})")
    return content, style


# ----------------------------------------------------------------------------- against pastiche


def _run_timed(cmd: list[str], threads: int | None = None,
               env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a command (``env``: variables to set for it); (wall seconds, CPU seconds of the child, its output)."""
    # One thread each makes CPU seconds comparable on a busy machine, where idle threads of a
    # larger pool burn CPU waiting for their turn.
    env = {**os.environ, **(env or {}), **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout + proc.stderr


def _pastiche_loop_seconds(output: str, steps: int) -> float | None:
    """Seconds between pastiche's step-0 and step-N progress lines (its own loop, startup excluded)."""
    rows = {int(m[1]): float(m[2]) for m in re.finditer(r"^(\d+)\s+([\d.]+)\s+[\d.eE+-]+\s*$", output, re.M)}
    if 0 in rows and steps in rows:
        return rows[steps] - rows[0]
    return None


def _ours_seconds_per_iteration(output: str) -> float | None:
    match = re.search(r"([\d.]+) s/iteration", output)
    return float(match[1]) if match else None


# Issue 13's target: our defaults reach pastiche's quality in at most this share of its wall time.
PASTICHE_WALL_TARGET = 0.33


def compare_pastiche(args) -> dict:
    """Time `stylize-images` and `pastiche` alternately at one size; judge both on one yardstick.

    ``pastiche`` runs ``--steps`` iterations (default 300); ours runs with its defaults (only
    ``--size`` and the CPU are given) unless ``--ours-iterations`` is set. The default pair is a
    photo and a painting that are not in the repository (``../shared/media``), when present.
    """
    content, style = _bench_inputs(args.content, args.style, (PASTICHE_CONTENT_CANDIDATES, PASTICHE_STYLE_CANDIDATES))
    size = args.size or 256
    steps = (args.steps or [300])[0]
    ours_iterations = getattr(args, "ours_iterations", None)
    bin_dir = Path(sys.executable).parent
    runs: dict[str, list[dict]] = {"ours": [], "pastiche": []}
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {"ours": Path(tmp) / "ours.png", "pastiche": Path(tmp) / "pastiche.png"}
        commands = {
            "ours": [str(bin_dir / "stylize-images"), str(content), str(style), str(outputs["ours"]),
                     "--size", str(size), "--device", "cpu", "--overwrite",
                     *(["--iterations", str(ours_iterations)] if ours_iterations else [])],
            "pastiche": [str(bin_dir / "pastiche"), "--device", "cpu", "--size", str(size), "--num-steps", str(steps),
                         "--info-step", str(steps), "--content", str(content), "--styles", str(style),
                         "--output", str(outputs["pastiche"])],
        }
        for round_ in range(args.rounds):
            order = ("ours", "pastiche") if round_ % 2 == 0 else ("pastiche", "ours")
            for tool in order:
                wall, cpu, output = _run_timed(commands[tool], args.threads)
                loop = ((_ours_seconds_per_iteration(output) or float("nan")) if tool == "ours"
                        else (_pastiche_loop_seconds(output, steps) or float("nan")) / steps)
                runs[tool].append({"wall_s": wall, "cpu_s": cpu, "loop_s_per_iteration": loop})
                print(f"round {round_ + 1} {tool:>8}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, "
                      f"{loop:.3f} s/iteration in its loop", flush=True)
        yardstick = Yardstick(load_rgb(content), load_rgb(style), size)
        quality = {tool: yardstick(load_rgb(path)) for tool, path in outputs.items()}
        kept = {}
        if getattr(args, "out", None):  # keep the two results to look at
            args.out.mkdir(parents=True, exist_ok=True)
            for tool, path in outputs.items():
                kept[tool] = args.out / f"pastiche-compare-{tool}.png"
                shutil.copyfile(path, kept[tool])
    iterations = {"ours": ours_iterations or StyleConfig().iterations, "pastiche": steps}
    summary = pastiche_summary(runs, quality, iterations)
    for tool in summary:
        summary[tool].update(command=commands[tool], image=str(kept.get(tool, "")))
    verdict = pastiche_verdict(summary)
    table = "\n".join([
        f"stylize-images (defaults) vs pastiche --num-steps {steps}, {content.name} in the style of {style.name}, "
        f"{size} px, {args.rounds} alternating rounds (CPU)",
        f"{'tool':>9} {'iters':>6} {'wall s':>8} {'CPU s':>8} {'s/it (loop)':>12} {'style loss':>11} "
        f"{'content loss':>13}",
        *(f"{tool:>9} {s['iterations']:>6} {s['median_wall_s']:>8.1f} {s['median_cpu_s']:>8.1f} "
          f"{s['median_loop_s_per_iteration']:>12.3f} {s['yardstick']['style']:>11.4f} "
          f"{s['yardstick']['content']:>13.4f}"
          for tool, s in summary.items()),
        f"ours / pastiche: wall {verdict['ratio_wall']:.2f}x, CPU {verdict['ratio_cpu']:.2f}x, "
        f"style loss {verdict['ratio_style_loss']:.2f}x, content loss {verdict['ratio_content_loss']:.2f}x "
        f"(losses below 1 = ours is closer)",
        f"target (issue 13): pastiche's style and content loss reached (both ratios at most 1) in at most "
        f"{PASTICHE_WALL_TARGET}x its wall time: quality {'reached' if verdict['quality_reached'] else 'NOT reached'}, "
        f"time {'met' if verdict['time_met'] else 'NOT met'}",
    ])
    return {"mode": "compare-pastiche", "device": "cpu", "threads": args.threads or "default",
            "size": size, "content": str(content), "style": str(style), "rounds": args.rounds,
            "tools": summary, **verdict, "table": table}


def pastiche_summary(runs: dict[str, list[dict]], quality: dict[str, dict], iterations: dict[str, int]) -> dict:
    """Per tool: medians over the rounds, seconds per iteration, and its yardstick losses."""
    def med(tool, key):
        return statistics.median(r[key] for r in runs[tool])

    return {tool: {"iterations": iterations[tool], "median_wall_s": med(tool, "wall_s"),
                   "median_cpu_s": med(tool, "cpu_s"),
                   "median_s_per_iteration_wall": med(tool, "wall_s") / iterations[tool],
                   "median_loop_s_per_iteration": med(tool, "loop_s_per_iteration"),
                   "yardstick": quality[tool], "runs": runs[tool]}
            for tool in runs}


def pastiche_verdict(summary: dict) -> dict:
    """Ours against pastiche: time and loss ratios, and whether issue 13's target is met."""
    ours, theirs = summary["ours"], summary["pastiche"]
    ratios = {
        "ratio_wall": ours["median_wall_s"] / theirs["median_wall_s"],
        "ratio_cpu": ours["median_cpu_s"] / theirs["median_cpu_s"],
        "ratio_style_loss": ours["yardstick"]["style"] / theirs["yardstick"]["style"],
        "ratio_content_loss": ours["yardstick"]["content"] / theirs["yardstick"]["content"],
    }
    ratios["quality_reached"] = ratios["ratio_style_loss"] <= 1.0 and ratios["ratio_content_loss"] <= 1.0
    ratios["time_met"] = ratios["ratio_wall"] <= PASTICHE_WALL_TARGET
    return ratios


# ----------------------------------------------------------------------------- schedule study


def full_size_cost(height: int, width: int, scales: int, iterations: int) -> float:
    """Evaluations weighted by their pixel count relative to full size: the schedule's compute cost."""
    return sum(n * (h * w) / (height * width) for (h, w), n in scale_schedule(height, width, scales, iterations))


def schedule_study(args) -> dict:
    """Which (scales, iterations) reaches the plain long run's losses, and at what cost."""
    content_path, style_path = _bench_inputs()
    size = args.size or 128
    long_run = args.iterations or 300
    budgets = args.steps or [50, 100, 200, 300]
    config = StyleConfig(size=size)
    engine = EngineConfig(device="cpu", precision="fp32")
    content_full, style = load_rgb(content_path), load_rgb(style_path)
    # A square crop: at 128 px a 4:3 image's coarse level would fall under MIN_COARSE_SIDE.
    side = min(content_full.shape[-2:])
    top, left = (content_full.shape[-2] - side) // 2, (content_full.shape[-1] - side) // 2
    content = resize(content_full[..., top:top + side, left:left + side], (size, size))
    stylizer = Stylizer([(style, 1.0)], config, engine)
    yardstick = Yardstick(content, style, size, config)
    h, w = content.shape[-2:]

    def run(scales: int, iterations: int) -> dict:
        start = time.perf_counter()
        image = stylizer.stylize(content, iterations=iterations, scales=scales).image
        levels = [list(s) for s, _ in scale_schedule(h, w, scales, iterations)]
        row = {"scales": scales, "levels": levels, "iterations": iterations,
               "cost_full_size_evals": full_size_cost(h, w, scales, iterations),
               "seconds": time.perf_counter() - start, **yardstick(image)}
        print(f"scales {scales} ({len(levels)} levels), {iterations:4d} it: cost {row['cost_full_size_evals']:6.1f}, "
              f"style {row['style']:.4f}, content {row['content']:.4f}, total {row['total']:.4f}", flush=True)
        return row

    reference = run(1, long_run)
    rows, seen = [], set()
    for scales in (1, 2, 3):
        for n in budgets:
            key = (len(scale_schedule(h, w, scales, n)), n)
            if key in seen or (scales == 1 and n >= long_run):
                continue
            seen.add(key)
            rows.append(run(scales, n))
    for row in rows:
        for term in ("style", "content", "total"):
            row[f"{term}_vs_long"] = row[term] / reference[term]
    lines = [f"schedule study at {w}x{h}, reference: 1 scale, {long_run} iterations "
             f"(style {reference['style']:.4f}, content {reference['content']:.4f}, total {reference['total']:.4f})",
             f"{'levels':>6} {'iters':>6} {'cost':>7} {'style/long':>11} {'content/long':>13} {'total/long':>11}"]
    lines += [f"{len(r['levels']):>6} {r['iterations']:>6} {r['cost_full_size_evals']:>7.1f} "
              f"{r['style_vs_long']:>11.3f} {r['content_vs_long']:>13.3f} {r['total_vs_long']:>11.3f}" for r in rows]
    return {"mode": "schedule-study", "device": "cpu", "size": [w, h], "config": repr(config),
            "reference": reference, "rows": rows, "table": "\n".join(lines)}
