"""Image loading and atomic saving.

Loading applies the EXIF orientation and turns every mode PIL knows (grayscale, 16-bit, CMYK,
palette, with or without alpha) into an RGB float tensor in [0, 1]; the alpha channel is returned
apart so it can be put back on the output unchanged. Saving goes through a temporary file in the
same folder and a rename, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import InputError
from pipeline.media.common import check_input_file

# Extensions PIL writes, and the format name it wants for each.
SAVE_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP",
    ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
}
FORMATS_WITH_ALPHA = {"PNG", "WEBP", "TIFF"}
# Extensions a photo folder walk picks up. GIF and the JPEG spellings we cannot save under their own
# name are read, and written in the format of OUTPUT_SUFFIX_FOR (a stylized GIF's 256 colours would
# throw most of the style away).
READ_SUFFIXES = frozenset({*SAVE_FORMATS, ".jpe", ".jfif", ".gif"})
OUTPUT_SUFFIX_FOR = {".jpe": ".jpg", ".jfif": ".jpg", ".gif": ".png"}
# --format names -> the suffix outputs get.
FORMAT_SUFFIXES = {"jpg": ".jpg", "png": ".png", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}


@dataclass
class LoadedImage:
    rgb: torch.Tensor  # [1, 3, H, W] float32 in [0, 1], orientation applied
    alpha: np.ndarray | None = None  # [H, W] float32 in [0, 1], orientation applied
    format: str | None = None  # PIL's name of the file's format
    info: dict = field(default_factory=dict)  # exif / icc_profile to carry to the output
    n_frames: int = 1


def _to_float_array(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any PIL mode -> (RGB float32 [H, W, 3] in [0, 1], alpha float32 [H, W] or None)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grayscale: keep the precision instead of clipping to 8 bits.
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / peak, 0, 1)
        return np.repeat(gray[..., None], 3, axis=2), None
    if mode == "F":
        # A float image can hold NaN or infinities (a damaged or HDR file): black and white, not a NaN
        # that would spread through the whole optimisation.
        values = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        gray = np.clip(values, 0, 1)
        return np.repeat(gray[..., None], 3, axis=2), None
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        return rgba[..., :3], rgba[..., 3]
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0, None


def _icc_colour_space(icc: bytes) -> bytes:
    """The data colour space of an ICC profile (b"RGB ", b"CMYK", b"GRAY", ...): header bytes 16-20."""
    return icc[16:20] if len(icc) >= 20 else b""


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """CMYK -> RGB through the file's own profile when it has one (PIL's plain conversion ignores
    ink behaviour and gives washed-out colours), falling back to the plain conversion."""
    if icc:
        from io import BytesIO

        from PIL import ImageCms

        try:
            source = ImageCms.ImageCmsProfile(BytesIO(icc))
            # None only with inPlace=True, which this call does not ask for: the stubs cannot tell.
            return ImageCms.profileToProfile(  # type: ignore[return-value]
                img, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return img.convert("RGB")


def load_image(path: str | Path, *, draft_long_side: int | None = None) -> LoadedImage:
    """Read an image file; raise InputError with the reason when it cannot be read.

    ``draft_long_side``: the caller will shrink the image to this long side, so a JPEG may be decoded
    at 1/2, 1/4 or 1/8 scale (never below that size): several times faster for camera photos.
    """
    path = Path(path)
    check_input_file(path, "an image file")
    img: Image.Image  # the opened file (an ImageFile), then the picture turned upright: a plain Image
    try:
        with Image.open(path) as img:
            if draft_long_side and img.format == "JPEG":
                # A square request keeps both sides >= the target whatever the EXIF rotation.
                img.draft(img.mode, (draft_long_side, draft_long_side))
            img.load()
            fmt = img.format
            n_frames = getattr(img, "n_frames", 1)
            info = {k: img.info[k] for k in ("icc_profile", "exif") if img.info.get(k)}
            img = ImageOps.exif_transpose(img)
            if img.mode == "CMYK":
                img = _cmyk_to_rgb(img, info.get("icc_profile"))
            if info.get("icc_profile") and _icc_colour_space(info["icc_profile"]) != b"RGB ":
                # A CMYK or grayscale profile would mislabel the RGB output: after the conversion
                # above the pixels are sRGB, which is what a file without a profile means.
                del info["icc_profile"]
            rgb, alpha = _to_float_array(img)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image (unknown or unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: {exc}") from None
    except Exception as exc:
        # Decoders meet every kind of damaged file and some answer with KeyError, TypeError,
        # struct.error and the like (found by tests/media/test_fuzz.py on damaged TIFF headers):
        # that is still one unreadable file, never a reason to stop a job or print a traceback.
        raise InputError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).contiguous()
    return LoadedImage(rgb=tensor, alpha=alpha, format=fmt, info=info, n_frames=n_frames)


def load_rgb(path: str | Path) -> torch.Tensor:
    """Just the RGB pixels ``[1, 3, H, W]`` of an image file."""
    return load_image(path).rgb


def fit_long_side(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) scaled so the longer side is ``long_side``, aspect ratio kept."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_frame(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 ``[H, W, 3]`` video frame at (height, width) (area averaging: frames only shrink)."""
    import cv2

    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` to (height, width), antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def resize_long_side(image: torch.Tensor, long_side: int) -> torch.Tensor:
    return resize(image, fit_long_side(image.shape[-2], image.shape[-1], long_side))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` or ``[3, H, W]`` float in [0, 1] -> ``[H, W, 3]`` uint8."""
    if image.dim() == 4:
        image = image[0]
    return image.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[1, 3, H, W]`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0).float().contiguous() / 255.0


def save_format_for(path: Path, fallback: str | None = None) -> str:
    fmt = SAVE_FORMATS.get(path.suffix.lower(), fallback)
    if fmt is None:
        raise InputError(
            f"{path}: unknown output image type {path.suffix!r} "
            f"(use one of {', '.join(sorted(SAVE_FORMATS))})"
        )
    return fmt


def output_suffix(input_path: Path, output_format: str = "same") -> str:
    """The suffix of the stylized copy of ``input_path``: its own, or the one ``--format`` asks for."""
    if output_format != "same":
        return FORMAT_SUFFIXES[output_format]
    suffix = input_path.suffix
    return OUTPUT_SUFFIX_FOR.get(suffix.lower(), suffix)


def _process_umask() -> int:
    # Read once, at import: os.umask can only be read by setting it, which is not thread-safe later.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_process_umask()  # what a plain open() would give a new file


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename to ``path``; the temporary file never survives a failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file private (0600); a finished picture gets the usual permissions.
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_image(
    image: torch.Tensor,
    path: str | Path,
    *,
    alpha: np.ndarray | None = None,
    info: dict | None = None,
    quality: int = 95,
    fmt: str | None = None,
) -> None:
    """Save ``[1, 3, H, W]`` in [0, 1] atomically; ``alpha`` ``[H, W]`` in [0, 1] is put back if the
    format can hold it."""
    path = Path(path)
    fmt = fmt or save_format_for(path)
    pil = Image.fromarray(to_uint8(image), "RGB")
    if alpha is not None and fmt in FORMATS_WITH_ALPHA:
        a = Image.fromarray(np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8), "L")
        if a.size != pil.size:
            a = a.resize(pil.size, Image.Resampling.BICUBIC)
        pil.putalpha(a)
    kwargs = {}
    info = info or {}
    if info.get("icc_profile") and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = info["icc_profile"]
    if info.get("exif") and fmt in ("JPEG", "PNG", "WEBP"):
        # The pixels are already upright: reset the orientation tag so viewers do not rotate twice.
        exif = Image.Exif()
        exif.load(info["exif"])
        exif[0x0112] = 1
        kwargs["exif"] = exif.tobytes()
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality

    def write(tmp: Path) -> None:
        pil.save(tmp, format=fmt, **kwargs)

    atomic_write(path, write)
