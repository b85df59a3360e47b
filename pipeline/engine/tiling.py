"""Where the tiles of a stage lie: pure geometry, no tensors.

A stage of the network (pipeline/engine/features.py ``Stage``) runs on a map of ``length`` positions
along each axis. Its tiles **own** consecutive runs of positions (their *core*) and **read** the core
widened by the stage's halo (their *padded* span), clipped to the map. Cores start on multiples of
the stage's alignment, so every pooling window of a tile is a pooling window of the whole map, and
the halo keeps the zero padding at a tile's edge out of the outputs it owns: the owned outputs are
exactly the whole map's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Span:
    """One axis of a tile, in units of the stage's input: owns ``[start, stop)``, reads ``[read_start, read_stop)``."""

    start: int
    stop: int
    read_start: int
    read_stop: int

    def owned(self, scale: int, length: int) -> tuple[slice, slice]:
        """(where in the whole map, where in this tile's output) a layer ``scale`` times smaller than the
        stage's input owns its positions; ``length`` is the whole input's length along this axis."""
        stop = length // scale if self.stop == length else self.stop // scale
        start = self.start // scale
        offset = self.read_start // scale
        return slice(start, stop), slice(start - offset, stop - offset)


def spans(length: int, core: int, halo: int, align: int) -> list[Span]:
    """Cut ``[0, length)`` into cores of at most ``core`` positions (multiples of ``align``, equal as far
    as alignment allows), each read with ``halo`` more on both sides where the map goes on."""
    if core >= length:
        return [Span(0, length, 0, length)]
    count = math.ceil(length / max(align, core // align * align))
    step = math.ceil(length / count / align) * align
    result = []
    for start in range(0, length, step):
        stop = min(start + step, length)
        result.append(Span(start, stop, max(0, start - halo), min(length, stop + halo)))
    return result


class Window(NamedTuple):
    """A rectangle of a map: ``tensor[..., window.rows, window.cols]``."""

    rows: slice
    cols: slice


class Owned(NamedTuple):
    """The positions a tile owns in one layer: where they lie in the whole layer and in the tile's own."""

    whole: Window
    local: Window


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span

    def read(self) -> Window:
        """The part of the stage's input this tile reads (its core and halo)."""
        return Window(rows=slice(self.rows.read_start, self.rows.read_stop),
                      cols=slice(self.cols.read_start, self.cols.read_stop))

    def owned(self, scale: int, height: int, width: int) -> Owned:
        """The tile's owned positions of a layer ``scale`` times smaller than the stage's ``height x width`` input."""
        (grow, lrow), (gcol, lcol) = self.rows.owned(scale, height), self.cols.owned(scale, width)
        return Owned(whole=Window(rows=grow, cols=gcol), local=Window(rows=lrow, cols=lcol))


def tiles(height: int, width: int, core: int, halo: int, align: int) -> list[Tile]:
    """The tiles of a ``height x width`` map with cores of at most ``core x core`` positions, row by row."""
    return [Tile(r, c) for r in spans(height, core, halo, align) for c in spans(width, core, halo, align)]
