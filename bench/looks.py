"""The quality benchmark that looks (``make bench-quality``): our defaults beside the classic implementation.

For each pair it runs ``stylize-images PHOTO PAINTING out.png --size 512`` (every other option at
its default, a whole process, timed), then measures our picture and, where published, the one of
jcjohnson/neural-style (``../shared/reference/peer-outputs``: 512 px, 1000 L-BFGS iterations) on
the fixed yardsticks of ``bench/measures.py``, and writes one side-by-side sheet per pair:
ours | the peer's | the photo | the painting. The pairs: the four published ones, and three paintings
of people whose faces, eyes, hands or figures must not appear in the result (Van Gogh's
self-portrait ``vg_self.jpg``, ``mona_lisa.jpg``, ``creation_of_adam.jpg``) on the three shared photos.

    python -m bench.looks                              # all 13 pairs, sheets to bench-results/looks/
    python -m bench.looks --sheets docs/images         # the sheets docs/quality.md shows
    python -m bench.looks --only golden_gate:vg_self --threads 1

Read the sheets: the figures only say where to look (a loss value is not a look).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.common import ROOT, bench_parser, run_main
from bench.measures import (
    MEASURE_LAYERS,
    deep_content_distance,
    gram_style_distances,
    median_and_p99,
    relative_error,
    sliced_wasserstein_ratio,
)
from bench.quality import _run_timed
from pipeline.config import CONTENT_LAYER
from pipeline.engine.features import VGGFeatures, build_features
from pipeline.engine.losses import gram
from pipeline.media.images import atomic_write, load_rgb, resize, resize_long_side, to_uint8

DEEP_LAYER = "relu5_1"  # where VGG19 encodes whole objects (a face, an eye)
TEXTURE_LAYERS = MEASURE_LAYERS[:4]  # brushwork, colour and texture: the texture distance's layers
# Published pairs of jcjohnson/neural-style: (photo, painting, its output), names in ../shared.
PUBLISHED = (("golden_gate", "the_scream", "golden_gate_scream.png"),
             ("tubingen", "starry_night", "tubingen_starry.png"),
             ("tubingen", "the_scream", "tubingen_scream.png"),
             ("tubingen", "shipwreck", "tubingen_shipwreck.png"))
# Paintings of people, whose faces, eyes, hands and figures must stay out of every photo (issues 18, 25).
PORTRAITS = ("vg_self", "mona_lisa", "creation_of_adam")
PHOTOS = ("golden_gate", "tubingen", "hoovertowernight")
# Targets of issue 18 on the published pairs: style distance at most the peer's, and relu5_1's 99th
# percentile at most this multiple of the peer's.
DEEP_P99_TARGET = 1.2
SHEET_QUALITY = 85  # JPEG quality of the sheets (each under about 400 KB for docs/)


@dataclass(frozen=True)
class Pair:
    photo: Path
    painting: Path
    peer: Path | None  # the published result, or None

    @property
    def name(self) -> str:
        return f"{self.photo.stem}_{self.painting.stem}"


def default_shared() -> Path | None:
    """``shared/`` beside the checkout (or beside a worktree's parent), where the media and references are."""
    return next((base / "shared" for base in ROOT.parents[:2] if (base / "shared/media").is_dir()), None)


def find_pairs(shared: Path, only: list[str] | None = None) -> list[Pair]:
    """The 13 pairs: the 4 published ones and the 3 portraits on the 3 photos (``only``: ``PHOTO:PAINTING``
    names to keep); an error names a missing file."""
    media, peers = shared / "media", shared / "reference/peer-outputs"
    specs = [(c, s, peers / p) for c, s, p in PUBLISHED] + [(c, s, None) for s in PORTRAITS for c in PHOTOS]
    if only:
        unknown = set(only) - {f"{c}:{s}" for c, s, _ in specs}
        if unknown:
            raise SystemExit(f"unknown pair(s): {', '.join(sorted(unknown))}")
        specs = [spec for spec in specs if f"{spec[0]}:{spec[1]}" in only]
    pairs = [Pair(media / f"content/{c}.jpg", media / f"styles/{s}.jpg", peer) for c, s, peer in specs]
    for path in (p for pair in pairs for p in (pair.photo, pair.painting, pair.peer) if p is not None):
        if not path.is_file():
            raise SystemExit(f"{path}: not found (pass --shared DIR, the folder holding media/ and reference/)")
    return pairs


def pairs_from(args: argparse.Namespace) -> tuple[Path, list[Pair]]:
    """The shared folder and the pairs that ``add_pair_options``' options ask for."""
    shared = args.shared or default_shared()
    if shared is None:
        raise SystemExit("no shared media folder found beside the checkout (pass --shared DIR)")
    return shared, find_pairs(shared, args.only)


def add_pair_options(p: argparse.ArgumentParser, size_help: str) -> None:
    """The options of the benchmarks that stylize the pairs: where they are, which, at what size."""
    p.add_argument("--shared", type=Path, default=None,
                   help="folder with media/ and reference/peer-outputs/ (default: ../shared beside the checkout)")
    p.add_argument("--only", nargs="+", default=None, metavar="PHOTO:PAINTING",
                   help="pairs to run, e.g. golden_gate:mona_lisa (default: all 13)")
    p.add_argument("--size", type=int, default=512, help=size_help)


def yardstick_features() -> VGGFeatures:
    """The network the yardsticks read: to relu5_1 whatever the loss uses, fp32, on the CPU."""
    return build_features((*MEASURE_LAYERS, CONTENT_LAYER)).float().cpu()


class Judge:
    """Measures pictures of one photo and one painting on the fixed yardsticks, each at its own size."""

    def __init__(self, photo: torch.Tensor, painting: torch.Tensor, features: VGGFeatures):
        self.photo, self.painting, self.features = photo, painting, features
        self._painting_feats: dict[int, dict[str, torch.Tensor]] = {}

    def with_photo(self, photo: torch.Tensor) -> Judge:
        """The same painting against another photo (a video's next frame), its features not computed again."""
        judge = Judge(photo, self.painting, self.features)
        judge._painting_feats = self._painting_feats
        return judge

    def _painting(self, long_side: int) -> dict[str, torch.Tensor]:
        # The painting at the picture's long side, as stylize-images sees it (--style-scale 1).
        if long_side not in self._painting_feats:
            self._painting_feats[long_side] = self.features(resize_long_side(self.painting, long_side))
        return self._painting_feats[long_side]

    @torch.no_grad()
    def __call__(self, picture: torch.Tensor) -> dict:
        picture = picture.float().cpu()
        size = tuple(picture.shape[-2:])
        out, photo = self.features(picture), self.features(resize(self.photo, size))
        painting = self._painting(max(size))
        per_layer = gram_style_distances([out[n] for n in MEASURE_LAYERS], [gram(painting[n]) for n in MEASURE_LAYERS])
        deep_median, deep_p99 = median_and_p99(deep_content_distance(out[DEEP_LAYER], photo[DEEP_LAYER]))
        texture = [sliced_wasserstein_ratio(out[n], photo[n], painting[n]) for n in TEXTURE_LAYERS]
        return {"size": [size[1], size[0]], "style": sum(per_layer),
                "style_per_layer": dict(zip(MEASURE_LAYERS, per_layer)),
                "texture": sum(texture) / len(texture), "texture_per_layer": dict(zip(TEXTURE_LAYERS, texture)),
                "deep_median": deep_median, "deep_p99": deep_p99,
                "content": relative_error(out[CONTENT_LAYER], photo[CONTENT_LAYER])}


def stylize_command(pair: Pair, output: Path, args: argparse.Namespace) -> list[str]:
    """``stylize-images`` with its defaults, except the size and what the benchmark was told to pass."""
    extra = (["--device", args.device] if args.device else []) + \
            (["--iterations", str(args.iterations)] if args.iterations else [])
    return [str(Path(sys.executable).parent / "stylize-images"), str(pair.photo), str(pair.painting), str(output),
            "--size", str(args.size), "--overwrite", "--quiet", *extra]


def sheet_tile(image: torch.Tensor, box: tuple[int, int]):
    """An image as a uint8 tile that fits in ``box`` (height, width), aspect kept: ours sets the cell size."""
    h, w = image.shape[-2:]
    scale = min(box[0] / h, box[1] / w)
    return to_uint8(resize(image, (max(1, round(h * scale)), max(1, round(w * scale)))))


def figure_lines(m: dict) -> list[str]:
    """A picture's yardstick figures (one ``Judge`` result) as the two lines printed under its tile."""
    return [f"style {m['style']:.3f} (relu5_1 {m['style_per_layer'][DEEP_LAYER]:.3f}), texture {m['texture']:.3f}",
            f"relu5_1 median {m['deep_median']:.2f}, p99 {m['deep_p99']:.2f}; relu4_2 {m['content']:.3f}"]


def make_sheet(pair: Pair, ours: torch.Tensor, peer: torch.Tensor | None, row: dict):
    """ours | the peer's (where published) | the photo | the painting, figures under each picture."""
    from pipeline.media.sheet import compose_sheet

    box = tuple(ours.shape[-2:])
    tiles = [sheet_tile(ours, box)]
    labels = [[f"ours: stylize-images defaults, --size {row['size_option']}", *figure_lines(row["ours"]),
               f"{row['wall_s']:.0f} s wall (load {row['load'][0]:.1f}-{row['load'][1]:.1f})"]]
    if peer is not None:
        tiles.append(sheet_tile(peer, box))
        labels.append(["jcjohnson/neural-style (published)", *figure_lines(row["peer"]), "1000 iterations, GPU"])
    tiles += [sheet_tile(load_rgb(pair.photo), box), sheet_tile(load_rgb(pair.painting), box)]
    labels += [[f"photo: {pair.photo.name}"], [f"painting: {pair.painting.name}"]]
    title = f"{pair.photo.name} in the style of {pair.painting.name}"
    return compose_sheet(tiles, labels, columns=len(tiles), title=title)


def save_jpeg(sheet, path: Path) -> None:
    """A sheet as JPEG (small enough for docs/), written atomically."""
    atomic_write(path, lambda tmp: sheet.save(tmp, format="JPEG", quality=SHEET_QUALITY))


def verdict(row: dict) -> dict | None:
    """Issue 18's two targets on a published pair: style distance no higher, relu5_1 p99 at most 1.2x the peer's."""
    if row.get("peer") is None:
        return None
    ours, peer = row["ours"], row["peer"]
    return {"style_ratio": ours["style"] / peer["style"], "deep_p99_ratio": ours["deep_p99"] / peer["deep_p99"],
            "style_met": ours["style"] <= peer["style"],
            "deep_met": ours["deep_p99"] <= DEEP_P99_TARGET * peer["deep_p99"]}


def format_table(rows: list[dict]) -> str:
    lines = ["| pair | picture | style distance | its relu5_1 part | texture | relu5_1 median | relu5_1 p99 | "
             "relu4_2 content | wall s (load) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        for who in ("ours", "peer"):
            m = row.get(who)
            if m is None:
                continue
            wall = f"{row['wall_s']:.0f} ({row['load'][0]:.1f}-{row['load'][1]:.1f})" if who == "ours" else "-"
            lines.append(f"| {row['pair']} | {who} | {m['style']:.3f} | {m['style_per_layer'][DEEP_LAYER]:.3f} | "
                         f"{m['texture']:.3f} | {m['deep_median']:.2f} | {m['deep_p99']:.2f} | {m['content']:.3f} | "
                         f"{wall} |")
    for row in rows:
        v = row.get("verdict")
        if v:
            lines.append(f"{row['pair']}: style distance {v['style_ratio']:.2f}x the peer's (target at most 1: "
                         f"{'met' if v['style_met'] else 'NOT met'}), relu5_1 p99 {v['deep_p99_ratio']:.2f}x "
                         f"(target at most {DEEP_P99_TARGET}: {'met' if v['deep_met'] else 'NOT met'})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    shared, pairs = pairs_from(args)
    features = yardstick_features()
    sheets, pictures = args.sheets or args.out / "looks", args.out / "looks"
    for folder in (sheets, pictures):
        folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for pair in pairs:
        output = pictures / f"{pair.name}.png"  # ours at full size, to look at
        load_before = os.getloadavg()[0]
        wall, cpu, _ = _run_timed(stylize_command(pair, output, args), args.threads)
        judge = Judge(load_rgb(pair.photo), load_rgb(pair.painting), features)
        ours = load_rgb(output)
        peer = load_rgb(pair.peer) if pair.peer else None
        row = {"pair": pair.name, "photo": str(pair.photo), "painting": str(pair.painting),
               "peer_image": str(pair.peer or ""), "image": str(output), "size_option": args.size,
               "wall_s": wall, "cpu_s": cpu, "load": [load_before, os.getloadavg()[0]],
               "command": stylize_command(pair, output, args), "ours": judge(ours),
               "peer": judge(peer) if peer is not None else None}
        row["verdict"] = verdict(row)
        sheet = make_sheet(pair, ours, peer, row)
        row["sheet"] = str(sheets / f"quality_{pair.name}.jpg")
        save_jpeg(sheet, Path(row["sheet"]))
        print(f"{pair.name}: {wall:.0f} s wall, {cpu:.0f} s CPU; {', '.join(figure_lines(row['ours']))}",
              file=sys.stderr, flush=True)
        rows.append(row)
    return {"mode": "looks", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "threads": args.threads or "default", "torch": torch.__version__,
            "shared": str(shared), "sheets": str(sheets), "pairs": rows, "table": format_table(rows)}


def cpu_model() -> str:
    """The CPU's model name (Linux), for the report: wall times mean little without the hardware."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.machine())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # --device and --threads are stylize-images' (its OMP_NUM_THREADS); --threads is torch's here too:
    # on busy cores the measuring is faster on one thread than on two.
    p = bench_parser("python -m bench.looks", __doc__, device_default=None,
                     out_help="folder for the JSON report, and under looks/ our full-size pictures")
    add_pair_options(p, "--size of stylize-images (default: 512, the peer's)")
    p.add_argument("--iterations", type=int, default=None, help="--iterations of stylize-images (default: its own)")
    p.add_argument("--sheets", type=Path, default=None,
                   help="folder for the sheets, quality_PAIR.jpg (default: OUT/looks; docs/images for docs/quality.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def summary(report: dict) -> list[str]:
        return [f"stylize-images defaults at --size {args.size} against jcjohnson/neural-style's published results; "
                f"{report['cpu']}, {os.cpu_count()} CPUs, threads {report['threads']}, torch {torch.__version__}",
                report["table"], f"Sheets: {report['sheets']}/quality_*.jpg"]

    return run_main(args, run, "bench-quality.json", summary)


if __name__ == "__main__":
    sys.exit(main())
