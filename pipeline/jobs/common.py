"""Jobs: sources -> stylizer -> sinks, reporting through events.

This module holds what every job shares (building the stylizer from a plain config, the options
fingerprint that guards resumed work) and the single-image job. The folder and video jobs live in
``folder.py`` and ``video.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from pipeline.config import JobConfig
from pipeline.errors import InputError, OutputExistsError
from pipeline.events import EventCallback, ItemDone, ItemStarted, Iteration, JobFinished, JobStarted, ignore
from pipeline.jobs.write_errors import output_write_error, refused_write

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
            raise InputError(f"{path}: the style is a folder; give one image file (more with --add-style)")
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


def build_stylizer(job: JobConfig):
    """A ready Stylizer (network on its device, style Gram matrices loaded) for this job."""
    from pipeline.engine.optimize import Stylizer

    for style in job.styles:
        if not Path(style.path).is_file():
            raise InputError(f"{style.path}: style image not found")
    return Stylizer(job.styles, job.style, job.engine)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes: identifies a style image by content, not by name."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def job_fingerprint(job: JobConfig, **extra) -> dict:
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
        raise OutputExistsError(f"{path}: already exists (use --overwrite to replace it)")


def stylize_image_file(
    input_path: Path,
    output_path: Path,
    job: JobConfig,
    *,
    overwrite: bool = False,
    quality: int = 95,
    on_event: EventCallback = ignore,
    stylizer=None,
) -> dict:
    """Stylize one image file into ``output_path`` (atomically). Returns the job summary."""
    from pipeline.media.images import fit_long_side, load_image, resize, save_format_for, save_image

    input_path, output_path = Path(input_path), Path(output_path)
    check_styles(job)
    # The input is read before the output is judged: a mistyped input name is a likelier mistake
    # than the output's type.
    image = load_image(input_path)
    check_output(output_path, overwrite)
    if output_path.resolve() == input_path.resolve():
        raise OutputExistsError(f"{output_path}: output would replace the input")
    fmt = save_format_for(output_path)
    stylizer = stylizer or build_stylizer(job)
    size = fit_long_side(image.rgb.shape[-2], image.rgb.shape[-1], job.style.size)
    content = resize(image.rgb, size)

    start = time.perf_counter()
    on_event(JobStarted("image", job.style.iterations, "it", input_path.name))
    on_event(ItemStarted(input_path.name, job.style.iterations))
    result = stylizer.stylize(content, on_progress=lambda d, t, loss: on_event(Iteration(d, t, loss)))
    alpha = image.alpha
    try:
        save_image(result.image.cpu(), output_path, alpha=alpha, info=image.info, quality=quality, fmt=fmt)
    except OSError as exc:
        if (code := refused_write(exc, output_path.parent)) is None:
            raise
        raise output_write_error(code, output_path.parent, f"{output_path.name} was not written") from exc
    seconds = time.perf_counter() - start
    on_event(ItemDone(input_path.name, output_path, seconds, result.losses))
    summary = {
        "output": str(output_path),
        "width": size[1],
        "height": size[0],
        "iterations": result.evaluations,
        "seconds": seconds,
        "seconds_per_iteration": seconds / max(1, result.evaluations),
        "device": str(stylizer.device),
        "losses": result.losses,
    }
    on_event(JobFinished(summary))
    return summary
