"""Quality against cost (``make bench-budget``): each method's pictures on fixed yardsticks, against
network evaluations and against wall time, so that a default is chosen on a curve and not on one point.

A *method* is a checkout of this project and the options its ``stylize-images`` runs with: this
checkout with its defaults ("new"), and, with ``--old DIR``, another checkout (e.g. a worktree of an
earlier commit: ``git worktree add ../old 79a5248``) with its own defaults ("old"). ``--method
NAME=OPTIONS`` adds more (``--method 2-levels='--scales 2'``). Every method runs at each of its
budgets (``--budgets`` for this checkout's, ``--old-budgets`` for the old one's: ``--iterations``
values), on every pair, in one process each (start-up included in the wall time), the methods taking
turns pair by pair so that a change in the machine's speed falls on all of them alike.

Each picture is measured by ``bench/measures.py`` as ``make bench-quality`` measures it (style
distance, texture, relu5_1 median and p99, relu4_2 content; ``bench/looks.py``). The report: a
table per pair and method and budget, the means over the pairs, a plot of each yardstick against
evaluations and against wall time (one curve per method), and one sheet per pair with every
method's pictures side by side (the figures only say where to look).

    python -m bench.budget --old ../old --threads 1                       # the 13 pairs, both codes
    python -m bench.budget --only golden_gate:mona_lisa --budgets 175 350 700 --old ../old --old-budgets 300
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, bench_parser, run_main
from bench.looks import (
    Judge,
    Pair,
    add_pair_options,
    cpu_model,
    figure_lines,
    pairs_from,
    save_jpeg,
    sheet_tile,
    yardstick_features,
)
from bench.quality import _run_timed
from pipeline.media.images import load_rgb
from pipeline.media.sheet import compose_sheet

# The yardsticks shown in the table and the plot, with their labels (lower is better for each).
YARDSTICKS = (("style", "style distance"), ("texture", "texture"), ("deep_p99", "relu5_1 p99"),
              ("content", "relu4_2 content"))


@dataclass(frozen=True)
class Method:
    name: str
    code: Path  # the checkout whose cli/ and pipeline/ run
    options: tuple[str, ...]  # stylize-images options beyond the pair, the size and the budget
    budgets: tuple[int | None, ...]  # --iterations values; None = the checkout's own default


def checkout_command(command: str, arguments: list[str]) -> list[str]:
    """``command`` (``stylize-images`` or ``stylize-video``) of whichever checkout is first on PYTHONPATH
    (``run_one``), with ``-P``, which keeps the current folder off the path, so that its cli/ and
    pipeline/ are the ones imported."""
    module = {"stylize-images": "cli.images", "stylize-video": "cli.video"}[command]
    launcher = f"import sys; from {module} import main; sys.argv[0] = {command!r}; sys.exit(main())"
    return [sys.executable, "-P", "-c", launcher, *arguments]


def stylize_command(method: Method, pair: Pair, output: Path, size: int, budget: int | None,
                    device: str | None) -> list[str]:
    """``stylize-images`` of ``method``'s checkout on one pair."""
    extra = (["--iterations", str(budget)] if budget else []) + (["--device", device] if device else [])
    return checkout_command("stylize-images", [str(pair.photo), str(pair.painting), str(output), "--size", str(size),
                                               "--overwrite", "--quiet", *method.options, *extra])


def run_one(method: Method, pair: Pair, budget: int | None, args: argparse.Namespace, judge: Judge) -> dict:
    label = budget or "default"
    output = (args.out / "budget" / f"{pair.name}.{method.name}.{label}.png").resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = stylize_command(method, pair, output, args.size, budget, args.device)
    load_before = os.getloadavg()[0]
    # The method's checkout first on the path: its cli/ and pipeline/, not this one's.
    wall, cpu, _ = _run_timed(cmd, args.threads, env={"PYTHONPATH": str(method.code)})
    return {"pair": pair.name, "method": method.name, "budget": budget, "code": str(method.code),
            "options": list(method.options), "image": str(output), "wall_s": wall, "cpu_s": cpu,
            "load": [load_before, os.getloadavg()[0]], **judge(load_rgb(output))}


def add_method_options(p: argparse.ArgumentParser, command: str) -> None:
    """The options that name the methods and their budgets (``--iterations`` values of ``command``)."""
    p.add_argument("--budgets", type=int, nargs="+", default=[None],
                   help="--iterations values of this checkout's methods (default: its own default only)")
    p.add_argument("--old", type=Path, default=None, help="another checkout to compare with (method 'old')")
    p.add_argument("--old-budgets", type=int, nargs="+", default=[None],
                   help="--iterations values of the old checkout (default: its own default only)")
    p.add_argument("--method", action="append", metavar="NAME=OPTIONS",
                   help=f"one more method: this checkout with these {command} options (repeatable)")


def methods_from(args: argparse.Namespace) -> list[Method]:
    methods = [Method("new", ROOT, (), tuple(args.budgets))]
    if args.old:
        methods.append(Method("old", args.old.resolve(), (), tuple(args.old_budgets)))
    for spec in args.method or []:
        name, _, options = spec.partition("=")
        methods.append(Method(name, ROOT, tuple(shlex.split(options)), tuple(args.budgets)))
    return methods


def in_turns(methods: list[Method]) -> Iterator[tuple[Method, int | None]]:
    """(method, budget) in running order: budgets outermost, the methods taking turns at each, so that
    a change in the machine's speed falls on all of them alike."""
    for step in range(max(len(m.budgets) for m in methods)):
        for method in methods:
            if step < len(method.budgets):
                yield method, method.budgets[step]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None  # None: no row measured it


def means(rows: list[dict], yardsticks=YARDSTICKS) -> list[dict]:
    """Per method and budget: the mean of each yardstick and of the wall time over the pairs."""
    groups: dict[tuple[str, int | None], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["budget"]), []).append(row)
    out = []
    for (method, budget), group in groups.items():
        mean = {key: _mean([r[key] for r in group if r[key] is not None]) for key, _ in yardsticks}
        out.append({"method": method, "budget": budget, "pairs": len(group),
                    "wall_s": sum(r["wall_s"] for r in group) / len(group), **mean})
    return out


def format_table(rows: list[dict], mean_rows: list[dict], yardsticks=YARDSTICKS, item: str = "pair",
                 wall: str = "wall s") -> str:
    """One line per row (``row[item]`` names what was run: a pair, a clip), then the means."""
    head = f"| {item} | method | budget | {wall} | " + " | ".join(label for _, label in yardsticks) + " |"
    lines = [head, "| --- | --- | ---: | ---: |" + " ---: |" * len(yardsticks)]
    for row in [*rows, *({**m, item: f"mean of {m['pairs']}"} for m in mean_rows)]:
        budget = row["budget"] or "default"
        figures = " | ".join("-" if row[key] is None else f"{row[key]:.4g}" for key, _ in yardsticks)
        lines.append(f"| {row[item]} | {row['method']} | {budget} | {row['wall_s']:.1f} | {figures} |")
    return "\n".join(lines)


def write_plot(mean_rows: list[dict], path: Path, yardsticks=YARDSTICKS, cost: str = "wall_s",
               cost_label: str = "wall time per picture (s)",
               title: str = "quality against cost (means over the pairs; lower is better)") -> None:
    """Each yardstick (a row of panels) against evaluations and against ``row[cost]``, one curve per method.
    A yardstick that no row measured (None everywhere) gets no panels."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    yardsticks = [(key, label) for key, label in yardsticks if any(r[key] is not None for r in mean_rows)]
    fig, axes = plt.subplots(len(yardsticks), 2, figsize=(10, 3 * len(yardsticks)), squeeze=False)
    for method in dict.fromkeys(r["method"] for r in mean_rows):
        points = sorted((r for r in mean_rows if r["method"] == method and r["budget"]), key=lambda r: r["budget"])
        if not points:
            continue
        for (key, label), (by_evals, by_wall) in zip(yardsticks, axes):
            shown = [p for p in points if p[key] is not None]  # a figure a run did not measure
            by_evals.plot([p["budget"] for p in shown], [p[key] for p in shown], "o-", label=method)
            by_wall.plot([p[cost] for p in shown], [p[key] for p in shown], "o-", label=method)
            by_evals.set_ylabel(label)
    for by_evals, by_wall in axes:
        by_evals.set_xlabel("network evaluations (--iterations)")
        by_wall.set_xlabel(cost_label)
        by_evals.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_suffix(".part.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


def make_sheet(name: str, rows: list[dict], seconds: str = "s"):
    """Every method's pictures of one pair (or clip: its last frames), by method and budget, with their figures."""
    pictures = [load_rgb(r["image"]) for r in rows]
    box = tuple(pictures[0].shape[-2:])
    tiles = [sheet_tile(p, box) for p in pictures]
    labels = [[f"{r['method']}, --iterations {r['budget'] or 'default'}: {r['wall_s']:.1f} {seconds}",
               *figure_lines(r)] for r in rows]
    return compose_sheet(tiles, labels, columns=min(len(tiles), 3), title=f"{name}: quality against cost")


def run(args: argparse.Namespace) -> dict:
    _, pairs = pairs_from(args)
    methods = methods_from(args)
    features = yardstick_features()
    rows = []
    for pair in pairs:
        judge = Judge(load_rgb(pair.photo), load_rgb(pair.painting), features)
        pair_rows = []
        for method, budget in in_turns(methods):
            row = run_one(method, pair, budget, args, judge)
            print(f"{pair.name} {method.name} {row['budget'] or 'default'}: {row['wall_s']:.0f} s, "
                  f"style {row['style']:.3f}, texture {row['texture']:.3f}, p99 {row['deep_p99']:.2f}, "
                  f"content {row['content']:.3f}", file=sys.stderr, flush=True)
            pair_rows.append(row)
        sheet = args.out / "budget" / f"budget_{pair.name}.jpg"
        save_jpeg(make_sheet(pair.name, pair_rows), sheet)
        rows += pair_rows
    mean_rows = means(rows)
    plot = args.out / "budget" / "budget.png"
    write_plot(mean_rows, plot)
    return {"mode": "budget", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "threads": args.threads or "default", "size": args.size,
            "methods": [{"name": m.name, "code": str(m.code), "options": list(m.options), "budgets": list(m.budgets)}
                        for m in methods],
            "rows": rows, "means": mean_rows, "plot": str(plot), "table": format_table(rows, mean_rows)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser("python -m bench.budget", __doc__, device_default=None,
                     out_help="folder for the JSON report, and under budget/ the pictures, sheets and plot")
    add_pair_options(p, "--size of stylize-images (default: 512)")
    add_method_options(p, "stylize-images")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def summary(report: dict) -> list[str]:
        return [f"quality against cost at --size {args.size}; {report['cpu']}, {os.cpu_count()} CPUs, threads "
                f"{report['threads']}", report["table"],
                f"Plot: {report['plot']}; sheets: {args.out}/budget/budget_*.jpg"]

    return run_main(args, run, "bench-budget.json", summary)


if __name__ == "__main__":
    sys.exit(main())
