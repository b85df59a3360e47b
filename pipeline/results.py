"""Typed job results: what each job returns (and sends in its ``JobFinished`` event).

The CLI reads these by attribute; the same classes come back whichever executor ran the job, so a
field the CLI prints cannot go missing on one path. ``as_dict()`` gives the plain-JSON form that the
folder job's ``--report`` writes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class _Result:
    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ImageSummary(_Result):
    """One image file (``stylize_image_file``)."""

    output: str
    width: int
    height: int
    iterations: int  # network evaluations, over all scales
    seconds: float
    seconds_per_iteration: float
    device: str
    losses: dict[str, float]


@dataclass
class FolderSummary(_Result):
    """A photo folder (``stylize_folder``); ``files`` holds one record per file, as in the report."""

    input: str
    output: str
    dry_run: bool
    images: int  # images selected under the input folder
    done: int = 0  # stylized by this run
    skipped: int = 0  # complete from an earlier run
    failed: list[dict] = field(default_factory=list)  # {"input", "error"} for each image that failed
    pending: int = 0  # not reached: a dry run, or an interrupted one
    ignored: int = 0  # files that are not images
    ignored_types: dict[str, int] = field(default_factory=dict)
    excluded: int = 0  # images left out by the include / exclude patterns
    seconds: float = 0.0  # the stylizing, not the network loading (that is setup_seconds)
    images_per_minute: float | None = None
    device: str | None = None  # "cpu", "cuda:0", or the workers ("ray: 2 workers (CPU, 1 thread each)")
    batch_size: int | None = None
    setup_seconds: float | None = None  # building the network(s), and starting the workers if any
    retried: int = 0  # images re-queued because their worker died
    files: list[dict] = field(default_factory=list)


@dataclass
class VideoSummary(_Result):
    """A video (``stylize_video``), in one process or over workers."""

    output: str
    frames: int
    resumed_frames: int  # found in the job folder from an earlier, interrupted run
    stylized_frames: int  # stylized by this run
    width: int  # of the output video
    height: int
    work_width: int  # frames are stylized at this size
    work_height: int
    fps: float
    seconds: float
    seconds_per_frame: float  # stylizing time per stylized frame (0 when every frame was resumed)
    output_bytes: int
    device: str
    shots: list[int] = field(default_factory=list)  # first frame of each shot (when the shots were looked for)
    chunks: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, lead) of each chunk
    retried: int = 0  # chunks re-queued because their worker died
    report: str | None = None  # the stability report's path, with --report
    warping_error: float | None = None
    style_loss: float | None = None
    drift: dict | None = None  # first / last / ratio / floor_first / floor_last, with --report-drift


@dataclass
class PreviewSummary(_Result):
    """A preview sheet (``preview_images`` / ``preview_video``)."""

    sheet: str
    commands: str  # the .txt beside the sheet: one command per tile
    tiles: list[dict]  # {"tile", "input", "options", "style_weight", "style_scale", "style", "command"}
    columns: int
    width: int
    height: int
    size: int
    iterations: int
    device: str
    seconds: float = 0.0  # sampling and set-up included: what the user waits
    skipped: list[dict] = field(default_factory=list)  # samples that could not be read: {"input", "error"}


Summary = ImageSummary | FolderSummary | VideoSummary | PreviewSummary
