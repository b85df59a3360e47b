"""The video job's stability report: warping error, loss terms and content drift of the frames
kept in the job folder, measured before the folder goes (``stylize-video --report``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import TemporalConfig
from pipeline.jobs import stability
from pipeline.jobs.stability import StabilityReport
from pipeline.jobs.video import LONG_TERM_STRIDE, to_work_size
from pipeline.jobs.video_resume import JobFolder
from pipeline.media.images import from_uint8, to_uint8
from pipeline.media.video import VideoInfo, decode_frames


def stability_report(info: VideoInfo, folder: JobFolder, work_size: tuple[int, int], temporal: TemporalConfig,
                     stylizer) -> StabilityReport:
    """Warping error (Lai et al.) of the stylized frames as saved, at the working size, with flow and
    occlusions from the input frames at the same size: what the optimisation actually produced,
    before the encoder's resizing and compression. Also each frame's loss terms, measured the same
    way whatever the init, so a steadier video can be checked for being as stylized."""
    def inputs():  # decoded again for each pass rather than held: a long video does not fit in memory
        return (to_work_size(frame.rgb, work_size) for frame in decode_frames(info))

    def outputs():
        return (folder.load(i, (*work_size, 3)) for i in range(info.frames))

    names = (str(info.path), "the stylized frames")
    report = stability.warping_errors(inputs(), outputs(), temporal.flow_preset, names)
    if info.frames > LONG_TERM_STRIDE:
        far = stability.warping_errors(inputs(), outputs(), temporal.flow_preset, names, stride=LONG_TERM_STRIDE)
        report.long_term = {"stride": LONG_TERM_STRIDE, "per_frame": far.per_frame,
                            "warping_error": far.warping_error}
    per_frame: dict[str, list[float]] = {}
    for content, styled in zip(inputs(), outputs()):
        for name, values in stylizer.measure(from_uint8(styled), from_uint8(content)).items():
            per_frame.setdefault(name, []).extend(values)
    report.per_frame_losses = per_frame
    report.losses = {name: float(np.mean(values)) for name, values in per_frame.items()}
    return report


def drift_report(info: VideoInfo, folder: JobFolder, work_size: tuple[int, int], stylizer, iterations: int,
                 scales: int) -> dict:
    """Content drift of sampled frames: each chained result against the same frame stylized on its
    own from its content, as the first frame was (same budget, coarse-to-fine). Neighbouring sampled
    frames also give the measure's floor (stability.drift_summary)."""
    frames = stability.drift_frames(info.frames)
    wanted, per_frame, neighbours, previous = set(frames), [], {}, None
    for index, frame in enumerate(decode_frames(info)):
        if index not in wanted:
            continue
        content = to_work_size(frame.rgb, work_size)
        alone = to_uint8(stylizer.stylize(from_uint8(content), iterations=iterations, scales=scales).image)
        per_frame.append(stability.content_drift(folder.load(index, (*work_size, 3)), alone))
        if previous is not None and previous[0] == index - 1:
            neighbours[index] = stability.content_drift(previous[1], alone)
        previous = (index, alone)
    return stability.drift_summary(frames[:len(per_frame)], per_frame, info.frames, neighbours=neighbours)


def write_stability(report: StabilityReport, path: Path) -> None:
    stability.write_report(report, path)
    below = None
    if report.drift:  # drift per frame under the warping error, each on its own scale
        curves = {"drift from the frame stylized on its own": stability.drift_curve(report.drift, report.frames),
                  "floor: frames alone vs their neighbour": stability.drift_curve(report.drift, report.frames, True)}
        below = (curves, {"title": "content drift per frame (luminance, 1/4 size)", "x_label": "frame"})
    stability.write_plot(report.per_frame, path.with_suffix(".png"), below=below)
