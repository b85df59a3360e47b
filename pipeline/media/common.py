"""What the media modules share: a picture's size, and the checks every input file gets first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError


@dataclass(frozen=True)
class Size:
    """A picture's size in pixels. Not a tuple, so that it is never read in the wrong order: PIL and
    OpenCV take (width, height), arrays and tensors are shaped (height, width) (``hw``)."""

    width: int
    height: int

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width): the order of an array's or a tensor's shape."""
        return self.height, self.width


def check_input_file(path: Path, expected: str) -> None:
    """Refuse what cannot be an input file before a decoder sees it: a missing path, a folder, an
    empty file. ``expected`` says what a folder should have been ("an image file", "a video file")."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected {expected}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
