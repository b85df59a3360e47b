"""The single-image job: one image file in, one stylized image file out (atomically)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import JobConfig
from pipeline.errors import OutputExistsError
from pipeline.events import EventCallback, ItemDone, ItemStarted, Iteration, JobFinished, JobStarted, Notice, ignore
from pipeline.jobs.common import build_stylizer, check_output, check_styles, working_size
from pipeline.jobs.write_errors import output_write_error, refused_write
from pipeline.results import ImageSummary

if TYPE_CHECKING:  # the engine is imported when a Stylizer is needed, not with this module
    from pipeline.engine.optimize import Stylizer


def stylize_image_file(
    input_path: Path,
    output_path: Path,
    job: JobConfig,
    *,
    overwrite: bool = False,
    quality: int = 95,
    on_event: EventCallback = ignore,
    stylizer: Stylizer | None = None,
) -> ImageSummary:
    """Stylize one image file into ``output_path`` (atomically). Returns the job summary."""
    from pipeline.media.images import load_image, resize, save_format_for, save_image

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
    size = working_size(image.rgb.shape[-2], image.rgb.shape[-1], job.style.size)
    content = resize(image.rgb, size.hw)

    start = time.perf_counter()
    on_event(JobStarted(kind="image", total=job.style.iterations, unit="it", description=input_path.name))
    on_event(ItemStarted(name=input_path.name, total_iterations=job.style.iterations))
    result = stylizer.stylize(content, on_progress=lambda d, t, loss: on_event(Iteration(done=d, total=t, loss=loss)),
                              on_notice=lambda message: on_event(Notice(message=message)))
    alpha = image.alpha
    try:
        save_image(result.image.cpu(), output_path, alpha=alpha, info=image.info, quality=quality, fmt=fmt)
    except OSError as exc:
        if (code := refused_write(exc, output_path.parent)) is None:
            raise
        raise output_write_error(code, output_path.parent, f"{output_path.name} was not written") from exc
    seconds = time.perf_counter() - start
    on_event(ItemDone(name=input_path.name, output=output_path, seconds=seconds, losses=result.losses))
    summary = ImageSummary(output=str(output_path), width=size.width, height=size.height,
                           iterations=result.evaluations, seconds=seconds,
                           seconds_per_iteration=seconds / max(1, result.evaluations), device=str(stylizer.device),
                           losses=result.losses)
    on_event(JobFinished(summary=summary))
    return summary
