"""Image loading and saving: modes, EXIF orientation, colour profiles, alpha, atomic writes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from pipeline.errors import InputError
from pipeline.media.images import load_image, output_suffix, save_image
from tests.conftest import pattern


def test_exif_orientation_is_applied_and_reset_on_save(tmp_path):
    # Stored landscape 64x48 with "rotate 90 degrees clockwise to view" (6): upright it is 48x64.
    src = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCam"
    Image.fromarray(pattern(64, 48)).save(src, exif=exif.tobytes(), quality=95)
    image = load_image(src)
    assert image.rgb.shape == (1, 3, 64, 48)
    out = tmp_path / "out.jpg"
    save_image(image.rgb, out, info=image.info)
    with Image.open(out) as saved:
        assert saved.size == (48, 64)
        assert saved.getexif()[0x0112] == 1  # viewers must not rotate a second time
        assert saved.getexif()[0x010F] == "TestCam"  # the rest of the EXIF is kept


def test_sixteen_bit_grayscale_keeps_its_range(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (32, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = load_image(path).rgb
    assert rgb.shape == (1, 3, 32, 40)
    assert rgb.min() == 0 and rgb.max() == 1
    assert torch.equal(rgb[0, 0], rgb[0, 2])  # gray stays gray
    assert rgb[0, 0, 0, 20].item() == pytest.approx(ramp[0, 20] / 65535, abs=1e-6)  # not cut to 8 bits


def test_grayscale_palette_and_alpha_modes(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(pattern(40, 32)[..., 1]).save(gray)
    assert load_image(gray).rgb.shape == (1, 3, 32, 40) and load_image(gray).alpha is None

    palette = tmp_path / "palette.gif"
    Image.fromarray(pattern(40, 32)).convert("P").save(palette)
    loaded = load_image(palette)
    assert loaded.rgb.shape == (1, 3, 32, 40)
    assert loaded.rgb.std() > 0.05  # colours came through the palette

    alpha = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (32, 1))
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([pattern(40, 32), alpha]), "RGBA").save(rgba)
    loaded = load_image(rgba)
    np.testing.assert_allclose(loaded.alpha, alpha / 255, atol=1e-6)
    out = tmp_path / "rgba_out.png"
    save_image(loaded.rgb, out, alpha=loaded.alpha)
    with Image.open(out) as saved:
        assert saved.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(saved)[..., 3], alpha)  # alpha unchanged at equal size


def test_cmyk_becomes_rgb_and_foreign_profiles_are_dropped(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(pattern(40, 32)).convert("CMYK").save(cmyk, quality=95)
    loaded = load_image(cmyk)
    assert loaded.rgb.shape == (1, 3, 32, 40)
    reference = torch.from_numpy(pattern(40, 32)).permute(2, 0, 1).float() / 255
    assert (loaded.rgb[0] - reference).abs().mean() < 0.05  # same picture, not inverted

    # A profile for another colour space (Lab here) would mislabel the RGB output: it is dropped.
    lab_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    assert lab_profile[16:20] != b"RGB "
    gray = tmp_path / "gray_icc.png"
    Image.fromarray(pattern(40, 32)[..., 0]).save(gray, icc_profile=lab_profile)
    assert "icc_profile" not in load_image(gray).info

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = tmp_path / "srgb.png"
    Image.fromarray(pattern(40, 32)).save(rgb, icc_profile=srgb)
    loaded = load_image(rgb)
    assert loaded.info["icc_profile"] == srgb
    out = tmp_path / "srgb_out.webp"
    save_image(loaded.rgb, out, info=loaded.info)
    assert Image.open(out).info.get("icc_profile") == srgb


def test_animated_gif_reports_its_frames(tmp_path):
    frames = [Image.fromarray(pattern(40, 32, seed=i)) for i in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    loaded = load_image(path)
    assert loaded.n_frames == 3 and loaded.rgb.shape == (1, 3, 32, 40)


def test_draft_decoding_keeps_at_least_the_requested_size(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(pattern(800, 600)).save(path, quality=90)
    full = load_image(path)
    draft = load_image(path, draft_long_side=128)
    assert full.rgb.shape[-2:] == (600, 800)
    # JPEG scaled decoding: 1/4 gives 200x150, the smallest scale with both sides >= 128.
    assert draft.rgb.shape[-2:] == (150, 200)


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [("a.JPG", "same", ".JPG"), ("a.gif", "same", ".png"), ("a.jfif", "same", ".jpg"), ("a.png", "jpg", ".jpg"),
     ("a.jpeg", "tiff", ".tif"), ("a.bmp", "webp", ".webp")],
)
def test_output_suffix(tmp_path, name, fmt, expected):
    assert output_suffix(tmp_path / name, fmt) == expected


def test_truncated_and_fake_files_raise_input_error(tmp_path):
    data = io.BytesIO()
    Image.fromarray(pattern(64, 48)).save(data, "JPEG")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(InputError, match="cut.jpg: unreadable image"):
        load_image(truncated)
    fake = tmp_path / "fake.png"
    fake.write_text("just text")
    with pytest.raises(InputError, match="not an image"):
        load_image(fake)


def test_saved_images_get_the_usual_file_permissions_not_the_temporary_files(tmp_path, monkeypatch):
    import os
    import stat

    import pipeline.media.images as images

    mask = os.umask(0o027)  # a umask no default would give: the module must read it
    try:
        assert images._process_umask() == 0o027 and os.umask(0o027) == 0o027  # read, left as it was
    finally:
        os.umask(mask)
    monkeypatch.setattr(images, "FILE_MODE", 0o640)
    save_image(torch.rand(1, 3, 8, 8), tmp_path / "out.png")
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o640  # not mkstemp's private 0600
    assert not list(tmp_path.glob(".*.part"))


def test_a_float_image_with_nan_or_infinite_pixels_reads_as_black_and_white(tmp_path):
    values = np.array([[np.nan, np.inf], [-np.inf, 0.5]], dtype=np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(values, mode="F").save(path)
    rgb = load_image(path).rgb
    assert torch.isfinite(rgb).all()
    assert rgb[0, 0].tolist() == [[0.0, 1.0], [0.0, 0.5]]
