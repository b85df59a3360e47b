"""How steady is a stylized video? The warping error of Lai et al. (2018), a JSON report and a plot.

For each pair of consecutive frames t, t+1, the optical flow and the occlusion mask come from the
INPUT frames (the output's own flow would reward a video that smears everything), and

    E_t = sum(M * |O_t - warp(O_t+1)|^2) / sum(M)

with RGB in [0, 1], ``|.|^2`` summed over the three channels, ``warp(O_t+1)`` the next output frame
brought onto frame t's grid, and ``M`` the hard consistency mask of pipeline/media/flow.py. The video's
warping error is the mean of E_t. Lower is steadier; the input video's own error (pass the input as
the output) is the floor a stylization can hope for. With a stride k, frames t and t+k are compared
the same way (flow computed directly between the two input frames).

Content drift (``content_drift``) is the other half: a chained video can be perfectly steady and
still wander away from what its frames look like. It compares a chained frame with the same frame
stylized on its own, by the mean absolute difference of their luminance at a quarter of the size.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.media.flow import compute_pair_flow
from pipeline.media.images import atomic_write


@dataclass
class StabilityReport:
    """Warping error per pair of frames (``per_frame[t]`` is between frames t and t+1) and overall."""

    frames: int
    width: int
    height: int
    per_frame: list[float | None]  # None where no pixel of the pair could be trusted
    warping_error: float | None  # mean over the pairs that had trusted pixels
    seconds_per_frame: float | None = None  # filled in by a job that timed its frames
    # Filled in by a job that has the stylizer: the unweighted loss terms (content, style, tv) of each
    # stylized FRAME (not pair), and their means. Lower style loss = stronger style.
    per_frame_losses: dict[str, list[float]] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    # Filled in by a job: the same error between frames ``stride`` apart (``stride``, ``per_frame``,
    # ``warping_error``), which shows drift that neighbouring frames hide.
    long_term: dict = field(default_factory=dict)
    # Filled in by a job asked for it (--report-drift): ``content_drift`` of sampled frames against
    # the same frames stylized on their own: ``frames``, ``per_frame`` (same order), ``first`` and
    # ``last`` (means over the first and last DRIFT_WINDOW frames), ``ratio`` = last / first.
    drift: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def pair_warping_error(earlier_in: np.ndarray, later_in: np.ndarray, earlier_out: np.ndarray,
                       later_out: np.ndarray, preset: str = "medium") -> float | None:
    """E_t for one pair: uint8 RGB input frames and output frames, all of one size."""
    # compute_pair_flow(previous, current) warps "previous" onto "current": here the later frame is
    # warped back onto the earlier one, exactly as in the definition.
    flow = compute_pair_flow(later_in, earlier_in, preset)
    mask = flow.reliable
    total = int(mask.sum())
    if total == 0:
        return None
    warped = flow.warp(later_out.astype(np.float32) / 255.0)
    diff = ((earlier_out.astype(np.float32) / 255.0 - warped) ** 2).sum(-1)
    return float(diff[mask].sum() / total)


def _fit(frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An input frame at the output's size (a stylized video may be smaller than its source)."""
    if frame.shape == shape:
        return frame
    return cv2.resize(frame, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def warping_errors(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray], preset: str = "medium",
                   names: tuple[str, str] = ("the input", "the output"), stride: int = 1) -> StabilityReport:
    """The report for a sequence of output frames given the input frames (uint8 RGB ``[H, W, 3]``).

    ``stride`` k compares frames t and t+k instead of neighbours (long-term consistency: does a
    wall look the same after the actor walked past it?). Streams: only k+1 frames of each sequence
    are held at a time, so whole videos fit. Input frames are resized to the output's size when
    they differ. Both sequences must have the same length; ``names`` say which is which in that error.
    """
    if stride < 1:
        raise ValueError(f"stride must be at least 1 (got {stride})")
    per_frame: list[float | None] = []
    held: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=stride)  # the last k (input, output) pairs
    prev_out = None
    count = 0
    in_iter, out_iter = iter(inputs), iter(outputs)
    while True:
        cur_in, cur_out = next(in_iter, None), next(out_iter, None)
        if cur_in is None or cur_out is None:
            if cur_in is not None or cur_out is not None:
                longer, shorter = names if cur_in is not None else names[::-1]
                raise InputError(f"{shorter} has only {count} frames, {longer} has more")
            break
        cur_in = _fit(cur_in, cur_out.shape)
        if len(held) == stride:
            earlier_in, earlier_out = held[0]
            per_frame.append(pair_warping_error(earlier_in, cur_in, earlier_out, cur_out, preset))
        held.append((cur_in, cur_out))
        prev_out = cur_out
        count += 1
    if prev_out is None:  # no frame was read (count is 0)
        raise InputError("no frames to compare")
    valid = [e for e in per_frame if e is not None]
    mean = float(np.mean(valid)) if valid else None
    height, width = prev_out.shape[:2]
    return StabilityReport(frames=count, width=width, height=height, per_frame=per_frame, warping_error=mean)


def video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """A video's frames (or a folder of numbered frames) as uint8 RGB, one at a time, upright.

    Read by the job's own reader (pipeline/media/video.py), so a file it cannot read fails here with
    the same message as in a job."""
    from pipeline.media.video import decode_frames, probe

    for frame in decode_frames(probe(path)):
        yield frame.rgb


def compare_videos(input_path: str | Path, output_path: str | Path, preset: str = "medium",
                   stride: int = 1) -> StabilityReport:
    """Warping error of ``output_path`` with flow and occlusions from ``input_path`` (frames
    ``stride`` apart)."""
    report = warping_errors(video_frames(input_path), video_frames(output_path), preset,
                            names=(str(input_path), str(output_path)), stride=stride)
    report.extra.update(input=str(input_path), output=str(output_path), flow_preset=preset, stride=stride)
    return report


# Drift is compared at a quarter of the working size (each side): fine enough to see the bunny's
# shape, coarse enough that the style's brush strokes, which two stylizations never place alike,
# average out.
DRIFT_SCALE = 4
DRIFT_WINDOW = 20  # frames at each end of the chain whose drift is compared
DRIFT_EVERY = 10  # between the two windows, one frame in this many is measured (for the plot)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of uint8 or float RGB ``[H, W, 3]`` -> float32 ``[H, W]`` in [0, 1]."""
    scale = 255.0 if rgb.dtype == np.uint8 else 1.0
    return (rgb.astype(np.float32) / scale) @ np.array([0.299, 0.587, 0.114], np.float32)


def content_drift(chained: np.ndarray, independent: np.ndarray, factor: int = DRIFT_SCALE) -> float:
    """How far a chained frame moved from the same frame stylized on its own: the mean absolute
    difference of their luminance, both shrunk to ``1/factor`` of each side (area average), on a
    0-1 scale. ``chained``/``independent``: RGB ``[H, W, 3]`` of one size, uint8 or float in [0, 1]."""
    if chained.shape != independent.shape:
        raise ValueError(f"sizes differ: {chained.shape} and {independent.shape}")
    height, width = chained.shape[:2]
    size = (max(1, width // factor), max(1, height // factor))
    small = [cv2.resize(luminance(image), size, interpolation=cv2.INTER_AREA) for image in (chained, independent)]
    return float(np.abs(small[0] - small[1]).mean())


def drift_frames(frames: int, window: int = DRIFT_WINDOW, every: int = DRIFT_EVERY) -> list[int]:
    """Which frames of a chain of ``frames`` to measure: 1..window, the last ``window``, and every
    ``every``-th frame between. Frame 0 starts the chain from its content, so it has no drift."""
    chosen = set(range(1, min(window, frames - 1) + 1))
    chosen |= set(range(max(1, frames - window), frames))
    chosen |= set(range(every, frames, every))
    return sorted(chosen)


def drift_summary(frames: list[int], per_frame: list[float], total: int, window: int = DRIFT_WINDOW,
                  neighbours: dict[int, float] | None = None) -> dict:
    """The report's ``drift`` entry from the measured frames (indices into a chain of ``total``).

    ``neighbours``: {frame t: content_drift(frame t-1 alone, frame t alone)} for the measured frames
    whose predecessor was measured too. Frames stylized on their own flicker, and a steady chain
    cannot follow those jumps, so its drift does not come down to this: the measure's floor, kept
    beside the drift so that a painting and size with a high floor are not mistaken for a drifting
    chain (docs/video-drift.md)."""
    def window_means(values: dict[int, float]) -> tuple[float | None, float | None]:
        first = [d for f, d in values.items() if 1 <= f <= window]
        last = [d for f, d in values.items() if f >= total - window]
        return (float(np.mean(first)) if first else None), (float(np.mean(last)) if last else None)

    mean_first, mean_last = window_means(dict(zip(frames, per_frame)))
    neighbours = neighbours or {}
    floor_first, floor_last = window_means(neighbours)
    ratio = mean_last / mean_first if mean_first and mean_last is not None else None
    return {"frames": frames, "per_frame": per_frame, "scale": DRIFT_SCALE, "window": window,
            "first": mean_first, "last": mean_last, "ratio": ratio,
            "floor_first": floor_first, "floor_last": floor_last,
            "floor_frames": sorted(neighbours), "floor_per_frame": [neighbours[f] for f in sorted(neighbours)]}


def drift_curve(drift: dict, frames: int, floor: bool = False) -> list[float | None]:
    """A report's sampled drift (or with ``floor``, its floor) as one value per frame of ``frames``
    (None where not measured)."""
    curve: list[float | None] = [None] * frames
    if floor:  # reports written before the floor was measured have none
        indices, values = drift.get("floor_frames", []), drift.get("floor_per_frame", [])
    else:
        indices, values = drift["frames"], drift["per_frame"]
    for index, value in zip(indices, values):
        curve[index] = value
    return curve


def write_report(report: StabilityReport, path: str | Path) -> None:
    """The report as JSON, written atomically."""
    text = json.dumps(report.to_json(), indent=2, default=str)
    atomic_write(Path(path), lambda tmp: tmp.write_text(text + "\n"))


# Curve colours (RGB), in order: blue, orange, green, red, purple; distinct also in greyscale print.
CURVE_COLOURS = ((31, 90, 200), (230, 120, 20), (40, 150, 60), (200, 40, 40), (120, 60, 170))


def plot_image(errors: list[float | None] | dict[str, list[float | None]], width: int = 640, height: int = 240,
               title: str = "warping error per frame", x_label: str = "frame pair") -> np.ndarray:
    """A line chart of per-frame errors as uint8 RGB ``[height, width, 3]`` (drawn with OpenCV).

    ``errors`` is one curve, or several as ``{label: values}`` (drawn with a legend, on one scale);
    ``None`` values are gaps that the line bridges (e.g. frames that were not measured).
    """
    curves = errors if isinstance(errors, dict) else {"": errors}
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 12, 24, 28
    values = [e for c in curves.values() for e in c if e is not None and math.isfinite(e)]
    top_value = max(values) * 1.1 if values and max(values) > 0 else 1.0
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    grey, black = (200, 200, 200), (0, 0, 0)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(5):  # horizontal grid lines with their values
        y = round(y1 - (y1 - y0) * i / 4)
        cv2.line(image, (x0, y), (x1, y), grey, 1)
        cv2.putText(image, f"{top_value * i / 4:.4f}", (4, y + 4), font, 0.35, black, 1, cv2.LINE_AA)
    cv2.rectangle(image, (x0, y0), (x1, y1), black, 1)
    cv2.putText(image, title, (x0, 16), font, 0.45, black, 1, cv2.LINE_AA)
    longest = max((len(c) for c in curves.values()), default=0)
    cv2.putText(image, f"{x_label} (0..{max(longest - 1, 0)})", (x0, height - 8), font, 0.4, black, 1,
                cv2.LINE_AA)
    n = max(longest - 1, 1)
    # The legend sits in the top right corner, as wide as its longest label.
    text_width = max((cv2.getTextSize(label, font, 0.4, 1)[0][0] for label in curves), default=0)
    legend_x = x1 - text_width - 40
    for k, (label, curve) in enumerate(curves.items()):
        colour = CURVE_COLOURS[k % len(CURVE_COLOURS)]
        points = [(round(x0 + (x1 - x0) * i / n), round(y1 - (y1 - y0) * e / top_value))
                  for i, e in enumerate(curve) if e is not None and math.isfinite(e)]
        if len(points) > 1:
            cv2.polylines(image, [np.array(points, np.int32)], False, colour, 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(image, p, 2, colour, -1, cv2.LINE_AA)
        if label:  # legend, top right, one line per curve
            y = y0 + 14 + 14 * k
            cv2.line(image, (legend_x, y - 4), (legend_x + 20, y - 4), colour, 2, cv2.LINE_AA)
            cv2.putText(image, label, (legend_x + 25, y), font, 0.4, black, 1, cv2.LINE_AA)
    return image


def write_plot(errors: list[float | None] | dict[str, list[float | None]], path: str | Path, *,
               below: tuple[dict, dict] | None = None, **kwargs: Any) -> None:
    """Save ``plot_image`` as a PNG, atomically. ``below``: ``(curves, plot_image keywords)`` of a
    second chart drawn under the first, on its own scale (drift under the warping error)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: the plot is a PNG file, name it *.png")
    image = plot_image(errors, **kwargs)
    if below is not None:
        curves, options = below
        options = {"width": image.shape[1], "height": image.shape[0], **options}
        image = np.vstack([image, plot_image(curves, **options)])
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError("OpenCV could not encode the plot")
    atomic_write(path, lambda tmp: tmp.write_bytes(data.tobytes()))
