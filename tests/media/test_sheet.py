"""pipeline/media/sheet.py: equal cells in a grid, labels under each, PNG text chunks."""

import numpy as np
import pytest
from PIL import Image

from pipeline.media.sheet import GAP, compose_sheet, layout, png_text, save_sheet


def tile(width, height, value):
    return np.full((height, width, 3), value, np.uint8)


def test_cells_are_equal_and_the_sheet_has_the_grid_size():
    tiles = [tile(40, 30, 10), tile(40, 30, 60), tile(20, 30, 110)]  # the last one narrower
    labels = [["#1 a.jpg", "--style-weight 1"], ["#2 a.jpg", "--style-weight 3"], ["#3", "x"]]
    sheet = compose_sheet(tiles, labels, columns=2)
    assert sheet.width == 2 * (40 + GAP) + GAP
    rows_height = sheet.height - GAP
    assert rows_height % 2 == 0  # two rows of equal height
    cell = rows_height // 2
    px = np.asarray(sheet)
    # Each tile sits at the top left of its cell (the narrow one centred), with its own pixels.
    assert (px[GAP + 5, GAP + 5] == 10).all()
    assert (px[GAP + 5, 2 * GAP + 40 + 5] == 60).all()
    assert (px[GAP + cell + 5, GAP + 20] == 110).all()
    assert not (px[GAP + cell + 5, GAP + 2] == 110).all()  # letterbox left of the narrow tile
    # Under every tile there is text: dark pixels in its label band, none in an empty cell's.
    for col in range(2):
        band = px[GAP + 31 : GAP + cell - GAP, GAP + col * (40 + GAP) : GAP + col * (40 + GAP) + 40]
        assert (band < 100).any()
    empty = px[GAP + cell :, 2 * GAP + 40 :]
    assert (empty == 255).all()


def test_title_adds_a_line_on_top():
    tiles, labels = [tile(32, 32, 0)], [["one"]]
    assert compose_sheet(tiles, labels, 1, title="a title").height > compose_sheet(tiles, labels, 1).height


def test_bad_arguments():
    with pytest.raises(ValueError):
        compose_sheet([tile(8, 8, 0)], [], 1)
    with pytest.raises(ValueError):
        compose_sheet([tile(8, 8, 0)], [["x"]], 0)


def test_saved_png_carries_its_text(tmp_path):
    sheet = compose_sheet([tile(16, 16, 0)], [["x"]], 1)
    path = tmp_path / "s.png"
    save_sheet(sheet, path, {"key": "value with spaces"})
    assert png_text(path) == {"key": "value with spaces"}
    assert Image.open(path).size == sheet.size
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]  # no temporary file left
    assert png_text(tmp_path / "missing.png") == {}


def test_a_long_label_is_shortened_in_the_middle():
    from PIL import ImageDraw

    from pipeline.media.sheet import _fit_text, _font

    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), _font()
    text = "#1 holidays/2024/summer/IMG_0001.jpg @ 12.40 s"
    short = _fit_text(draw, text, font, 100)
    assert draw.textlength(short, font=font) <= 100 and "..." in short
    assert short.startswith("#1 h") and short.endswith(" s")
    assert _fit_text(draw, "fits", font, 100) == "fits"


def test_the_layout_says_where_each_tile_lies():
    tiles = [tile(40, 30, 10), tile(40, 30, 60), tile(20, 30, 110)]
    labels = [["#1", "a"], ["#2", "b"], ["#3", "c"]]
    sheet = np.asarray(compose_sheet(tiles, labels, columns=2, title="a title"))
    plan = layout([(30, 40), (30, 40), (30, 20)], label_lines=2, columns=2, title=True)
    assert sheet.shape[:2] == (plan.height, plan.width)
    for picture, cell, value in zip(plan.tiles, plan.cells, (10, 60, 110)):
        assert (sheet[picture.top:picture.bottom, picture.left:picture.right] == value).all()
        assert cell.left <= picture.left and picture.right <= cell.right  # inside its cell
    assert plan.tiles[2].left == plan.cells[2].left + 10  # the narrow tile centred in its cell
