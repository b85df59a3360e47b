"""pipeline/jobs/preview.py: the grid, the spread samples, the sheet and what it (does not) write.

The runs use the real VGG19 on tiny pictures (32 px, 2 iterations, 2 or 3 tiles).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import JobConfig, PreviewConfig, StyleConfig, StyleImage, VideoConfig
from pipeline.errors import ConfigError, OutputExistsError
from pipeline.events import ItemDone, JobStarted, Notice, PreviewPlanned
from pipeline.jobs.preview import (
    SHEET_KEY,
    check_sheet_path,
    default_sheet_path,
    preview_images,
    preview_video,
    sample_folder,
    sample_video,
    settings_grid,
    spread_indices,
)
from pipeline.media.images import fit_long_side, from_uint8, resize
from pipeline.media.sheet import layout, png_text
from pipeline.media.video import decode_frames, probe
from tests.conftest import pattern
from tests.media.test_video import make_video

TINY = PreviewConfig(size=32, iterations=2, samples=3, style_weights=(1.0, 9.0), style_scales=(1.0,))
# Enough evaluations for the style weight to show: after 2, L-BFGS has taken one step of unit L1 norm
# over the whole image and every tile is still the content to within a grey level.
SHOWN = PreviewConfig(size=32, iterations=10, samples=3, style_weights=(1.0, 9.0), style_scales=(1.0,))
FLAGS = {"StyleConfig.style_weight": "--style-weight", "StyleConfig.style_scale": "--style-scale"}.get  # as the CLI's


def job_for(*styles: Path) -> JobConfig:
    return JobConfig(tuple(StyleImage(s) for s in styles), StyleConfig(scales=1), )


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def test_spread_indices_cover_the_whole_range():
    assert spread_indices(10, 3) == [1, 5, 8]
    assert spread_indices(100, 4) == [12, 37, 62, 87]
    assert spread_indices(5, 1) == [2]
    assert spread_indices(2, 3) == [0, 1]  # fewer items than wanted: each once


def test_default_grid_is_around_the_current_values():
    style = StyleConfig(style_weight=3.0, style_scale=1.0)
    grid, columns = settings_grid(style, 1, PreviewConfig(), one_sample=True)
    assert columns == 3
    assert [(t.style_weight, t.style_scale) for t in grid[:4]] == [(1.0, 0.5), (3.0, 0.5), (9.0, 0.5), (1.0, 1.0)]
    assert {t.style_scale for t in grid} == {0.5, 1.0, 2.0} and len(grid) == 9
    # Several samples: they are the rows, so only the current scale.
    grid, columns = settings_grid(style, 1, PreviewConfig(), one_sample=False)
    assert [(t.style_weight, t.style_scale) for t in grid] == [(1.0, 1.0), (3.0, 1.0), (9.0, 1.0)]
    # Several styles: one row per style, never a blend.
    grid, columns = settings_grid(style, 2, PreviewConfig(style_weights=(2.0,)), one_sample=True)
    assert [(t.style, t.style_weight, t.style_scale) for t in grid] == [(0, 2.0, 1.0), (1, 2.0, 1.0)]
    assert columns == 1


def test_sheet_path_beside_the_output_and_never_over_an_input(tmp_path, content_file, style_file):
    assert default_sheet_path(Path("a/out.jpg"), False) == Path("a/out.preview.png")
    assert default_sheet_path(Path("clip.styled.mp4"), False) == Path("clip.styled.preview.png")
    assert default_sheet_path(Path("photos-styled"), True) == Path("photos-styled.preview.png")
    out = tmp_path / "out.png"
    for bad in (content_file, style_file, out, tmp_path / "sheet.jpg"):
        with pytest.raises(ConfigError):
            check_sheet_path(bad, content_file, out, False, [style_file], overwrite=False)
    with pytest.raises(ConfigError, match="inside the output folder"):
        check_sheet_path(tmp_path / "styled" / "p.png", content_file, tmp_path / "styled", True, [], False)
    precious = tmp_path / "precious.png"
    Image.new("RGB", (4, 4)).save(precious)
    with pytest.raises(OutputExistsError):
        check_sheet_path(precious, content_file, out, False, [style_file], overwrite=False)
    check_sheet_path(precious, content_file, out, False, [style_file], overwrite=True)


def test_image_preview_writes_one_labelled_sheet_and_nothing_else(tmp_path, content_file, style_file):
    out = tmp_path / "out.png"
    before = files_in(tmp_path)
    events = []
    summary = preview_images(content_file, out, job_for(style_file), SHOWN, on_event=events.append,
                             command_for=lambda t: f"run --style-weight {t.style_weight:g}", name_of=FLAGS)
    sheet = tmp_path / "out.preview.png"
    assert files_in(tmp_path) - before == {"out.preview.png", "out.preview.txt"}  # no OUTPUT, no manifest
    image = Image.open(sheet)
    assert image.width == summary.width and summary.columns == 2
    assert image.width < 2 * 32 + 20  # two 32 px cells side by side, one row
    tiles = json.loads(png_text(sheet)[SHEET_KEY])["tiles"]
    assert [(t["tile"], t["input"], t["style_weight"], t["style_scale"]) for t in tiles] == [
        (1, "content.png", 1.0, 1.0), (2, "content.png", 9.0, 1.0)]
    assert [t["command"] for t in tiles] == ["run --style-weight 1", "run --style-weight 9"]
    text = (tmp_path / "out.preview.txt").read_text()
    assert "# tile 2: content.png: --style-weight 9 --style-scale 1\nrun --style-weight 9\n" in text
    planned = [e for e in events if isinstance(e, PreviewPlanned)]
    assert len(planned) == 1 and planned[0].tiles == 2 and planned[0].size == 32
    assert [e.total for e in events if isinstance(e, JobStarted)] == [2]
    assert len([e for e in events if isinstance(e, ItemDone)]) == 2
    # Two weights nine times apart give visibly different tiles: each tile is stylized with its own
    # settings. The tiles are found where the sheet's layout put them (32x24 px each, 3 label lines).
    plan = layout([(24, 32)] * 2, label_lines=3, columns=2, title=True)
    assert image.size == (plan.width, plan.height)
    px = np.asarray(image.convert("RGB"), dtype=np.float32)
    first, second = (px[box.top:box.bottom, box.left:box.right] for box in plan.tiles)
    assert np.abs(first - second).mean() > 2
    # Without the CLI's flags, the labels name the settings themselves.
    preview_images(content_file, out, job_for(style_file), TINY)  # replaces its own sheet without --overwrite
    assert "# tile 2: content.png: StyleConfig.style_weight 9 StyleConfig.style_scale 1\n" in (
        tmp_path / "out.preview.txt").read_text()


def make_folder(root: Path, bad: set[str]) -> Path:
    folder = root / "photos"
    folder.mkdir()
    for i, name in enumerate("abcdef"):
        path = folder / f"{name}.png"
        if name in bad:
            path.write_bytes(b"not a picture")
        else:
            Image.fromarray(pattern(40, 32, seed=i)).save(path)
    return folder


def test_folder_sample_is_spread_and_skips_an_unreadable_file(tmp_path):
    folder = make_folder(tmp_path, bad={"d"})
    items = [(p.name, p) for p in sorted(folder.iterdir())]
    events = []
    samples, skipped = sample_folder(items, 3, 32, events.append)
    # spread_indices(6, 3) = 1, 3, 5: b, d, f; d is unreadable, its nearest readable neighbour is c.
    assert [s.name for s in samples] == ["b.png", "c.png", "f.png"]
    assert [rel for rel, _ in skipped] == ["d.png"]
    assert any(isinstance(e, Notice) and "d.png" in e.message for e in events)
    assert all(max(s.rgb.shape[-2:]) == 32 for s in samples)


def test_folder_preview_writes_nothing_into_the_output_folder(tmp_path, style_file):
    folder = make_folder(tmp_path, bad={"b"})
    out = tmp_path / "styled"
    before = files_in(tmp_path)
    summary = preview_images(folder, out, job_for(style_file),
                             PreviewConfig(size=32, iterations=2, samples=2, style_weights=(3.0,), style_scales=(1.0,)))
    assert not out.exists()
    assert files_in(tmp_path) - before == {"styled.preview.png", "styled.preview.txt"}
    assert [t["input"] for t in summary.tiles] == ["a.png", "e.png"]  # spread_indices(6, 2) = 1, 4; b is bad
    assert [s["input"] for s in summary.skipped] == ["b.png"]


def test_video_preview_takes_frames_spread_over_the_clip(tmp_path, style_file):
    clip = tmp_path / "in.mp4"
    times = make_video(clip, frames=12, audio=False)
    info = probe(clip)
    samples = sample_video(info, 3, 32)
    assert [s.name for s in samples] == [f"in.mp4 @ {times[i] / 1000:.2f} s" for i in (2, 6, 10)]
    frames = [from_uint8(f.rgb) for f in decode_frames(info)]
    for sample, i in zip(samples, (2, 6, 10)):
        expected = resize(frames[i], fit_long_side(32, 48, 32))
        assert (sample.rgb - expected).abs().max() < 1e-6  # exactly that frame, decoded on its own

    out = tmp_path / "out.mp4"
    before = files_in(tmp_path)
    summary = preview_video(clip, out, job_for(style_file), TINY, video=VideoConfig(start=0.2))
    assert files_in(tmp_path) - before == {"out.preview.png", "out.preview.txt"}  # no video, no job folder
    # --start 0.2: the frames from 0.20 s on (pts 200..440 ms), spread: indices 1, 3, 5 of those 7.
    assert [t["input"] for t in summary.tiles][::2] == ["in.mp4 @ 0.24 s", "in.mp4 @ 0.32 s", "in.mp4 @ 0.40 s"]
    assert len(summary.tiles) == 6 and summary.columns == 2
