"""`--preview` of both commands (real VGG19, 32 px tiles, 2 iterations), run in this process
(tests/cli/conftest.py)."""

from __future__ import annotations

import json
import shlex

import typer
from PIL import Image

from cli.images import app as images_app
from cli.video import app as video_app
from pipeline.config import StyleConfig
from pipeline.jobs.preview import SHEET_KEY
from pipeline.media.sheet import png_text
from tests.cli.conftest import invoke
from tests.media.test_video import make_video

TINY = ["--preview", "--preview-size", "32", "--preview-iterations", "2", "--device", "cpu"]


def parsed(app, command: str) -> dict:
    """The parameters the CLI would run ``command`` with (parsed, not run)."""
    words = shlex.split(command)
    return typer.main.get_command(app).make_context(words[0], words[1:]).params


def test_images_preview_one_row_per_style_and_exact_commands(tmp_path, content_file, style_file, style_file2):
    out = tmp_path / "out.jpg"
    proc = invoke(images_app, content_file, style_file, out, *TINY, "--add-style", style_file2,
                  "--preview-style-weights", "1,9", "--scales", "1", "--tv-weight", "2")
    assert proc.returncode == 0, proc.stderr
    assert "preview: 4 tiles at 32 px, 2 iterations each, about" in proc.stderr  # said up front
    sheet = tmp_path / "out.preview.png"
    assert f"Wrote preview sheet {sheet}" in proc.stderr and not out.exists()
    commands = [line for line in proc.stdout.splitlines() if line.startswith("stylize-images")]
    assert commands == (tmp_path / "out.preview.txt").read_text().splitlines()[3::2]
    # Each tile's settings are named as the command's flags (the library names the settings themselves).
    assert [line for line in proc.stdout.splitlines() if line.startswith("# tile")] == [
        f"# tile {i}: content.png: style {style.name} --style-weight {weight} --style-scale 1"
        for i, (style, weight) in enumerate([(style_file, 1), (style_file, 9), (style_file2, 1), (style_file2, 9)], 1)]
    assert [t["command"] for t in json.loads(png_text(sheet)[SHEET_KEY])["tiles"]] == commands
    # Tiles row by row: style 1 at weights 1 and 9, then style 2 alone (not blended) at 1 and 9.
    expected = [(style_file, 1.0), (style_file, 9.0), (style_file2, 1.0), (style_file2, 9.0)]
    for command, (style, weight) in zip(commands, expected, strict=True):
        params = parsed(images_app, command)
        assert (params["style"], params["style_weight"]) == (style, weight)
        assert params["add_style"] in (None, (), []) and not params["preview"]
        assert (params["scales"], params["tv_weight"], params["device"]) == (1, 2.0, "cpu")  # the user's own options
        assert "--preview" not in command
    assert Image.open(sheet).size[0] < 2 * 32 + 20  # two columns of 32 px tiles


def test_style_blend_is_refused_with_preview(tmp_path, content_file, style_file, style_file2):
    proc = invoke(images_app, content_file, style_file, tmp_path / "o.jpg", *TINY, "--add-style", style_file2,
                  "--style-blend", "0.5,0.5")
    assert proc.returncode == 2 and "--style-blend" in proc.stderr
    assert list(tmp_path.glob("o*")) == []


def test_video_preview_writes_only_the_sheet(tmp_path, style_file):
    clip = tmp_path / "in.mp4"
    make_video(clip, frames=10, audio=False)
    out = tmp_path / "out.mp4"
    default = StyleConfig().style_weight
    proc = invoke(video_app, clip, style_file, out, *TINY, "--preview-samples", "2", "--preview-style-weights",
                  f"{default:g}", "--iterations", "7")
    assert proc.returncode == 0, proc.stderr
    assert "preview: 2 tiles at 32 px" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.preview.png", "out.preview.txt", "style.png"]
    commands = [line for line in proc.stdout.splitlines() if line.startswith("stylize-video")]
    assert len(commands) == 2
    params = parsed(video_app, commands[0])
    assert (params["input"], params["output"], params["iterations"]) == (clip, out, 7)
    assert "--style-weight" not in commands[0]  # the default weight: the command leaves it out
