"""`stylize-images INPUT STYLE OUTPUT` on one image: the installed console script once, end to end, as a
user runs it; the other cases run the same app in this process (tests/cli/conftest.py)."""

import numpy as np
import pytest
from PIL import Image

from cli.images import app
from tests.cli.conftest import invoke, one_error_line, script
from tests.conftest import pattern

FAST = ["--size", "64", "--iterations", "4", "--scales", "1", "--device", "cpu", "--quiet"]


def run(*args):
    return invoke(app, *args)


@pytest.mark.slow
def test_single_image_end_to_end(tmp_path, content_file, style_file):
    out = tmp_path / "out.png"
    before = content_file.read_bytes()
    proc = script("stylize-images", content_file, style_file, out, *FAST[:-1])
    assert proc.returncode == 0, proc.stderr
    assert "Wrote" in proc.stderr and "s/iteration" in proc.stderr
    img = Image.open(out)
    assert img.size == (64, 48)
    assert content_file.read_bytes() == before  # the input is never touched
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())
    src = np.asarray(Image.open(content_file), dtype=np.float32)
    assert np.abs(np.asarray(img, dtype=np.float32) - src).mean() > 1  # it did change the image


def test_existing_output_needs_overwrite(tmp_path, content_file, style_file):
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    one_error_line(run(content_file, style_file, out, *FAST), "already exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    proc = run(content_file, style_file, out, *FAST, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (64, 48)


def test_blended_styles_and_options(tmp_path, content_file, style_file, style_file2):
    out = tmp_path / "blend.jpg"
    proc = run(content_file, style_file, out, *FAST, "--add-style", style_file2, "--style-blend", "0.7,0.3",
               "--preserve-colors", "--optimizer", "adam", "--init", "noise", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).format == "JPEG"


def test_size_full_keeps_the_photos_own_size_in_tiles(tmp_path, style_file):
    photo, out = tmp_path / "photo.png", tmp_path / "out.png"
    Image.fromarray(pattern(90, 70)).save(photo)
    proc = run(photo, style_file, out, "--size", "full", "--tile", "48", "--iterations", "3", "--scales", "1",
               "--device", "cpu", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (90, 70)
    one_error_line(run(photo, style_file, out, "--size", "huge", "--overwrite"), "--size")
    one_error_line(run(photo, style_file, out, "--tile", "8", "--overwrite"), "--tile")


def test_bad_inputs_get_one_clear_line(tmp_path, content_file, style_file):
    out = tmp_path / "o.png"
    one_error_line(run(tmp_path / "missing.jpg", style_file, out, *FAST), "no such file")
    # Not --quiet, and neither name has a type: the missing input is what gets named.
    one_error_line(run(tmp_path / "missing", style_file, tmp_path / "o", "--device", "cpu"), "missing: no such file")
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello, not an image")
    one_error_line(run(fake, style_file, out, *FAST), "not an image")
    one_error_line(run(content_file, tmp_path / "nostyle.jpg", out, *FAST), "style image not found")
    one_error_line(run(content_file, fake, out, *FAST), "not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    one_error_line(run(empty, style_file, out, *FAST), "empty file")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (40, 4)).save(tiny)  # 64x6 at --size 64: under the 8 px three poolings need
    one_error_line(run(tiny, style_file, out, *FAST), "too small")
    one_error_line(run(content_file, style_file, out, *FAST, "--optimizer", "sgd"), "--optimizer")
    one_error_line(run(content_file, style_file, tmp_path / "o.xyz", *FAST), "unknown output image type")
    assert not out.exists()


def test_help_shows_defaults():
    proc = run("--help")
    assert proc.returncode == 0
    assert "--style-weight" in proc.stdout and "default: 512" in proc.stdout


@pytest.mark.slow
def test_a_run_in_this_process_reads_like_the_installed_scripts_own(tmp_path, style_file):
    """What the in-process runs of these tests see is what a user's terminal shows, to the character."""
    for args in (["--help"], [tmp_path / "missing.jpg", style_file, tmp_path / "o.png"]):
        here, real = run(*args), script("stylize-images", *args)
        assert (here.returncode, here.stdout, here.stderr) == (real.returncode, real.stdout, real.stderr)
