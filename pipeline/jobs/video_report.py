"""The video job's stability report (``--report``, ``--report-drift``): warping error, loss terms and
content drift of the output frames, measured from the job folder before it goes.

The parts that need the network run on the job's executor like the frames did (work functions:
``measure_frames``, ``drift_frames``); the flow-based measures run in the driver.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.events import EventCallback
from pipeline.jobs import stability
from pipeline.jobs.stability import StabilityReport
from pipeline.jobs.video_chunks import Chunk, output_frame
from pipeline.jobs.video_work import VideoWork

if TYPE_CHECKING:  # the engine is imported when a Stylizer is needed, not with this module
    from pipeline.engine.optimize import Stylizer

# The report's long-term warping error compares frames this far apart (0.4 s at 25 fps): far enough
# for an occluded background to reappear, near enough for the flow between them to be reliable.
LONG_TERM_STRIDE = 10


def warping_report(work: VideoWork, chunks: list[Chunk]) -> StabilityReport:
    """Warping error (Lai et al.) of the output frames as saved, at the working size, with flow and
    occlusions from the input frames at the same size: what the optimisation actually produced,
    before the encoder's resizing and compression."""
    info = work.info

    # Decoded again for each pass rather than held: a long video does not fit in memory.
    def inputs() -> Iterator[np.ndarray]:
        return work.frames(0, info.frames)

    def outputs() -> Iterator[np.ndarray]:
        return (output_frame(work.folder, chunks, i, work.shape) for i in range(info.frames))

    names = (str(info.path), "the stylized frames")
    preset = work.temporal.flow_preset
    report = stability.warping_errors(inputs(), outputs(), preset, names)
    if info.frames > LONG_TERM_STRIDE:
        far = stability.warping_errors(inputs(), outputs(), preset, names, stride=LONG_TERM_STRIDE)
        report.long_term = {"stride": LONG_TERM_STRIDE, "per_frame": far.per_frame,
                            "warping_error": far.warping_error}
    return report


@dataclass(frozen=True)
class FrameLosses:
    """One output frame's loss terms against its input frame (what ``measure_frames`` yields)."""

    index: int
    losses: dict[str, float]


@dataclass(frozen=True)
class FrameAlone:
    """One sampled frame stylized on its own (what ``drift_frames`` yields)."""

    index: int
    rgb: np.ndarray  # [H, W, 3] uint8 at the working size


def measure_frames(stylizer: Stylizer, ranges: list[range], emit: EventCallback, *, work: VideoWork,
                   chunks: list[Chunk]) -> Generator[FrameLosses, None, None]:
    """Work function: each output frame's loss terms against its input frame, for the frames of each
    range. Measured the same way whatever the init, so a steadier video can be checked for being as
    stylized."""
    from pipeline.media.images import from_uint8

    for frames in ranges:
        for index, content in enumerate(work.frames(frames.start, frames.stop), start=frames.start):
            styled = output_frame(work.folder, chunks, index, work.shape)
            losses = stylizer.measure(from_uint8(styled), from_uint8(content))
            yield FrameLosses(index=index, losses={name: float(values[0]) for name, values in losses.items()})


def drift_frames(stylizer: Stylizer, indices: list[int], emit: EventCallback, *,
                 work: VideoWork) -> Generator[FrameAlone, None, None]:
    """Work function: each sampled frame stylized on its own from its content, as a chain's first frame
    is (same budget, coarse-to-fine): what content drift compares the chained frames with."""
    from pipeline.media.images import from_uint8, to_uint8

    for index in indices:
        content = next(work.frames(index, index + 1))
        result = stylizer.stylize(from_uint8(content), iterations=work.first_iterations, scales=work.scales)
        yield FrameAlone(index=index, rgb=to_uint8(result.image))


def drift_report(work: VideoWork, chunks: list[Chunk], alone: dict[int, np.ndarray]) -> dict:
    """Content drift of the sampled frames (``alone``: index -> that frame stylized on its own) against
    the output frames; neighbouring sampled frames also give the measure's floor (stability.drift_summary)."""
    frames = sorted(alone)
    per_frame = [stability.content_drift(output_frame(work.folder, chunks, i, work.shape), alone[i]) for i in frames]
    neighbours = {i: stability.content_drift(alone[i - 1], alone[i]) for i in frames if i - 1 in alone}
    return stability.drift_summary(frames, per_frame, work.info.frames, neighbours=neighbours)


def losses_summary(report: StabilityReport, per_frame: dict[int, dict[str, float]]) -> None:
    """Fill the report's per-frame loss terms (in frame order) and their means."""
    curves: dict[str, list[float]] = {}
    for index in sorted(per_frame):
        for name, value in per_frame[index].items():
            curves.setdefault(name, []).append(value)
    report.per_frame_losses = curves
    report.losses = {name: float(np.mean(values)) for name, values in curves.items()}


def write_stability(report: StabilityReport, path: Path) -> None:
    stability.write_report(report, path)
    below = None
    if report.drift:  # drift per frame under the warping error, each on its own scale
        curves = {"drift from the frame stylized on its own": stability.drift_curve(report.drift, report.frames),
                  "floor: frames alone vs their neighbour": stability.drift_curve(report.drift, report.frames, True)}
        below = (curves, {"title": "content drift per frame (luminance, 1/4 size)", "x_label": "frame"})
    stability.write_plot(report.per_frame, path.with_suffix(".png"), below=below)
