"""Folders of numbered frames (``0001.png, 0002.png, ...``) as video input and output.

Media workflows hand frames between tools as image sequences. A folder input becomes a video at
``fps`` frames per second; a folder output gets one PNG per frame plus ``timecodes.txt`` (the
Matroska "timecode format v2": one presentation time in milliseconds per frame), so variable frame
rate timing is not lost. A folder holds no sound: the input's audio is dropped with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.media.common import Size

FRAME_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def _natural_key(path: Path) -> list[int | str]:
    """frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and not p.name.startswith(".")]
    if not files:
        raise InputError(f"{folder}: no image frames in this folder ({', '.join(sorted(FRAME_EXTENSIONS))})")
    return sorted(files, key=_natural_key)


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path}: unreadable image frame")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def probe_folder(folder: Path, fps: float, window) -> dict:
    """What ``pipeline.media.video.probe`` needs for a frame folder: size, time base and frame times."""
    files = frame_files(folder)
    first = read_rgb(files[0])
    rate = Fraction(fps).limit_denominator(1001)
    pts = [i for i in range(len(files)) if window.contains(float(i / rate))]
    if window.max_frames is not None:
        pts = pts[: window.max_frames]
    if not pts:
        raise InputError(f"{folder}: no frames in the chosen range")
    end = pts[-1] + 1 if pts[-1] + 1 < len(files) else None
    return {"width": first.shape[1], "height": first.shape[0], "time_base": 1 / rate, "rate": rate,
            "frame_pts": tuple(pts), "end_pts": end}


def decode_folder(folder: Path, frame_pts: Sequence[int], size: Size) -> Iterator[np.ndarray]:
    """The frames numbered ``frame_pts`` (their places in the folder), in that order, uint8 RGB."""
    files = frame_files(folder)
    for p in frame_pts:
        rgb = read_rgb(files[p])
        if rgb.shape[:2] != size.hw:
            raise InputError(f"{files[p]}: {rgb.shape[1]}x{rgb.shape[0]} px, but the first frame is "
                             f"{size.width}x{size.height}: all frames of a sequence must have one size")
        yield rgb


class FrameFolderWriter:
    """Writes frames as ``000000.png, ...`` into ``path`` (a fresh folder), same interface as VideoWriter."""

    def __init__(self, path: Path, info, *, long_side: int | None, shift: float,
                 on_notice: Callable[[str], None] = lambda _m: None):
        self.path, self.info, self.shift = path, info, shift
        width, height = info.width, info.height
        if long_side is not None:
            scale = long_side / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        self.size = Size(width=width, height=height)
        self.count = 0
        self.times: list[float] = []
        if info.audio_streams or info.subtitle_streams:
            on_notice("a folder of frames holds no sound or subtitles: those streams are dropped")
        path.mkdir(parents=True, exist_ok=True)
        for old in path.iterdir():  # left by an interrupted earlier run
            old.unlink()

    def write(self, rgb: np.ndarray, pts: int) -> None:
        width, height = self.size.width, self.size.height
        if rgb.shape[1] != width or rgb.shape[0] != height:
            shrinking = rgb.shape[1] > width
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"{self.path}: could not encode frame {self.count}")
        # Written by Python rather than cv2.imwrite, whose bare False hides why (a full disk, say).
        (self.path / f"{self.count:06d}.png").write_bytes(data.tobytes())
        self.times.append(float(pts * self.info.time_base) - self.shift)
        self.count += 1

    def finish(self, end_seconds: float) -> None:
        lines = ["# timecode format v2", *(f"{t * 1000:.3f}" for t in self.times)]
        (self.path / "timecodes.txt").write_text("\n".join(lines) + "\n")

    def abort(self) -> None:
        pass  # the folder lives in the job folder; the next run empties it
