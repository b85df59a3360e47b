"""What every job shares: the style images' check, building the Stylizer from a plain config (in this
process or in a worker), the options fingerprint that guards resumed work, the output check."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import JobConfig
from pipeline.errors import InputError, OutputExistsError, setting
from pipeline.media.common import Size

if TYPE_CHECKING:  # the engine is imported when a Stylizer is needed, not with this module
    from pipeline.engine.optimize import Stylizer

# A style image smaller than this on its short side holds too little texture to take a style from
# (it would be blown up many times over to the working size); such a file is almost always a
# thumbnail or an icon picked by mistake.
MIN_STYLE_SIDE = 32


def check_styles(job: JobConfig) -> None:
    """Read every style image once before any work: a missing, unreadable, truncated or tiny style
    (or a folder given as one) is one InputError naming the file, before a photo or frame is read."""
    from pipeline.media.images import load_image

    for style in job.styles:
        path = Path(style.path)
        if path.is_dir():
            raise InputError(f"{path}: the style is a folder; give one image file (more with {setting('add_style')})")
        if not path.exists():
            raise InputError(f"{path}: style image not found")
        try:
            image = load_image(path)
        except InputError as exc:
            raise InputError(f"style image {exc}") from None
        height, width = image.rgb.shape[-2:]
        if min(height, width) < MIN_STYLE_SIDE:
            raise InputError(f"style image {path}: too small ({width}x{height} px); a style needs at least "
                             f"{MIN_STYLE_SIDE} px on each side, a few hundred show its brush strokes")


def build_stylizer(job: JobConfig) -> Stylizer:
    """A ready Stylizer (network on its device, style Gram matrices loaded) for this job."""
    from pipeline.engine.optimize import Stylizer

    for style in job.styles:
        if not Path(style.path).is_file():
            raise InputError(f"{style.path}: style image not found")
    return Stylizer(job.styles, job.style, job.engine)


@dataclass(frozen=True)
class StylizerSetup:
    """How a worker builds the job's Stylizer: picklable, so it travels to Ray workers
    (pipeline/scale/work.py ``Setup``)."""

    job: JobConfig

    @property
    def device(self) -> str:
        return self.job.engine.device  # "cpu" keeps a distributed job from asking for GPUs

    def __call__(self) -> Stylizer:
        return build_stylizer(self.job)


def working_size(height: int, width: int, size: int | str) -> Size:
    """The size an input of ``height`` x ``width`` is stylized at: its own for ``--size full``, else
    scaled so that its long side is ``size``."""
    from pipeline.media.images import fit_long_side

    if isinstance(size, int):  # else FULL_SIZE, the one word the setting takes
        fitted_height, fitted_width = fit_long_side(height, width, size)
        return Size(width=fitted_width, height=fitted_height)
    return Size(width=width, height=height)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes: identifies a style image by content, not by name."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def job_fingerprint(job: JobConfig, **extra: Any) -> dict:
    """Everything that decides the result, as plain JSON: resumed work must match it exactly."""
    fingerprint = {
        "styles": [{"sha256": file_digest(Path(s.path)), "weight": s.weight} for s in job.styles],
        "style": dataclasses.asdict(job.style),
        # The device and precision change results only within float noise; the weights do not.
        "weights": job.engine.weights,
    }
    fingerprint.update(extra)
    return json.loads(json.dumps(fingerprint, default=str))


def check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (use {setting('overwrite')} to replace it)")
