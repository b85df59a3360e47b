"""Contact sheets: equal tiles in a grid, each with a few lines of label under it (Pillow only).

Used by the preview (pipeline/jobs/preview.py). Composing is a pure function of the pictures and
their labels; writing adds the text metadata (PNG tEXt chunks) that carries the commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

GAP = 4  # pixels between tiles and around the sheet
BACKGROUND = (255, 255, 255)
CELL_BACKGROUND = (230, 230, 230)  # letterbox around a tile narrower or shorter than the cell
TEXT = (20, 20, 20)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _line_height(font) -> int:
    top, bottom = font.getbbox("Ag|")[1::2]
    return bottom - top + 3


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` shortened in the middle (with "...") to fit ``width`` pixels: a long path keeps its
    start and its file name, a frame label its time."""
    if draw.textlength(text, font=font) <= width:
        return text
    head, tail = text[: len(text) // 2], text[len(text) // 2 :]
    while (head or tail) and draw.textlength(head + "..." + tail, font=font) > width:
        if len(head) >= len(tail):
            head = head[:-1]
        else:
            tail = tail[1:]
    return head + "..." + tail


@dataclass(frozen=True)
class Box:
    """A rectangle of the sheet in pixels: ``sheet[top:bottom, left:right]``."""

    left: int
    top: int
    right: int
    bottom: int


@dataclass(frozen=True)
class Layout:
    """Where everything goes on a sheet: pure arithmetic (``layout``), so a reader can find each tile."""

    width: int
    height: int
    line: int  # the height of one line of text
    cells: list[Box]  # one per tile, row by row: all as large as the largest tile, its labels below
    tiles: list[Box]  # one per tile: where its picture lies, centred in its cell


def layout(tile_sizes: Sequence[tuple[int, int]], label_lines: int, columns: int, title: bool) -> Layout:
    """The layout of a sheet of tiles of these ``(height, width)`` sizes, row by row, ``columns`` per row,
    with up to ``label_lines`` lines of label under each and (``title``) a line of title on top."""
    line = _line_height(_font())
    cell_w = max(w for _, w in tile_sizes)
    cell_h = max(h for h, _ in tile_sizes)
    label_h = line * label_lines + GAP
    title_h = line + GAP if title else 0
    rows = -(-len(tile_sizes) // columns)
    cells, pictures = [], []
    for i, (h, w) in enumerate(tile_sizes):
        row, col = divmod(i, columns)
        x = GAP + col * (cell_w + GAP)
        y = GAP + title_h + row * (cell_h + label_h + GAP)
        cells.append(Box(left=x, top=y, right=x + cell_w, bottom=y + cell_h))
        left, top = x + (cell_w - w) // 2, y + (cell_h - h) // 2
        pictures.append(Box(left=left, top=top, right=left + w, bottom=top + h))
    return Layout(width=columns * (cell_w + GAP) + GAP, height=GAP + title_h + rows * (cell_h + label_h + GAP),
                  line=line, cells=cells, tiles=pictures)


def compose_sheet(
    tiles: Sequence[np.ndarray], labels: Sequence[Sequence[str]], columns: int, title: str = ""
) -> Image.Image:
    """Lay ``tiles`` (uint8 ``[H, W, 3]``, any sizes) out row by row, ``columns`` per row (``layout``).

    Every cell has the size of the largest tile (smaller ones are centred on grey), so the cells of
    the sheet are equal; ``labels[i]`` are the lines written under tile ``i``. ``title`` goes on
    top. Returns an RGB image of width ``columns * (cell_w + GAP) + GAP``.
    """
    if not tiles or len(tiles) != len(labels):
        raise ValueError(f"{len(tiles)} tiles and {len(labels)} label lists: need the same, at least one")
    if columns < 1:
        raise ValueError(f"columns must be at least 1 (got {columns})")
    font = _font()
    plan = layout([(t.shape[0], t.shape[1]) for t in tiles], max(len(lines) for lines in labels), columns,
                  bool(title))
    sheet = Image.new("RGB", (plan.width, plan.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((GAP, GAP), _fit_text(draw, title, font, sheet.width - 2 * GAP), fill=TEXT, font=font)
    for tile, lines, cell, picture in zip(tiles, labels, plan.cells, plan.tiles):
        draw.rectangle((cell.left, cell.top, cell.right - 1, cell.bottom - 1), fill=CELL_BACKGROUND)
        sheet.paste(Image.fromarray(np.ascontiguousarray(tile)), (picture.left, picture.top))
        for k, text in enumerate(lines):
            draw.text((cell.left, cell.bottom + 2 + k * plan.line), _fit_text(draw, text, font, cell.right - cell.left),
                      fill=TEXT, font=font)
    return sheet


def png_text(image_path: Path) -> dict[str, str]:
    """The text chunks of a PNG file ({} for other files or unreadable ones)."""
    try:
        with Image.open(image_path) as img:
            return dict(getattr(img, "text", {}) or {})
    except (OSError, SyntaxError, ValueError):
        return {}


def save_sheet(sheet: Image.Image, path: Path, text: dict[str, str]) -> None:
    """Write ``sheet`` as a PNG carrying ``text`` as tEXt chunks, atomically (temp name, then rename)."""
    from pipeline.media.images import atomic_write

    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    atomic_write(Path(path), lambda tmp: sheet.save(tmp, format="PNG", pnginfo=info, optimize=True))
