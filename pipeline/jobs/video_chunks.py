"""A video job's units of work: chunks of shots, the hand-over between chunks, and how visible it is.

Within a shot every frame starts from the previous stylized frame (a chain), so shots are
independent: a fast pass over the decoded frames finds the cuts (``shot_starts``: the scene-cut test
of pipeline/jobs/temporal.py, the one the chain itself uses). A shot longer than ``max_chunk``
frames is cut into chunks so that several workers can share it; each chunk after the first in its
shot also renders ``overlap`` "lead" frames before its own, starting a fresh chain there, and the
output cross-fades from the earlier chain to the new one over those frames, so that the new chain
has settled before it takes over and no seam shows in one frame.

In one process nothing is gained by cutting, so the whole clip is one chunk (``whole_clip``): its
chain starts afresh at every cut, exactly as a chunk starting there would, without the extra pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import TemporalConfig
from pipeline.errors import ConfigError, setting
from pipeline.jobs.video_resume import JobFolder
from pipeline.media.common import Size

if TYPE_CHECKING:
    from pipeline.media.video import VideoInfo

LEAD = ".lead"  # job-folder name of a chunk's own copy of the frames it shares with the chunk before


@dataclass(frozen=True)
class Chunk:
    """Frames [start, end) are this chunk's; [start - lead, start) it renders only to hand over."""

    start: int
    end: int
    lead: int = 0

    @property
    def first(self) -> int:
        return self.start - self.lead

    def kind(self, index: int) -> str:
        """The job-folder kind of this chunk's frame ``index``: "" for its own, LEAD in its lead."""
        return LEAD if index < self.start else ""


def whole_clip(frames: int) -> list[Chunk]:
    return [Chunk(start=0, end=frames)]


def plan_chunks(shot_starts: list[int], frames: int, max_chunk: int, overlap: int) -> list[Chunk]:
    """Cut each shot into chunks of at most ``max_chunk`` own frames; chunks inside a shot get a lead.

    ``shot_starts`` are the first frame of each shot (0 first, sorted). Every frame belongs to exactly
    one chunk; the lead never reaches back over a cut (a shot's first chunk has none).
    """
    if max_chunk < 1 or overlap < 0:
        raise ConfigError(f"{setting('ScaleConfig.max_chunk')} must be at least 1 and {setting('ScaleConfig.overlap')} "
                          f"at least 0 (got {max_chunk}, {overlap})")
    bounds = [*sorted(set(shot_starts) | {0}), frames]
    chunks = []
    for shot_start, shot_end in zip(bounds, bounds[1:]):
        for start in range(shot_start, shot_end, max_chunk):
            lead = min(overlap, start - shot_start)
            chunks.append(Chunk(start=start, end=min(start + max_chunk, shot_end), lead=lead))
    return chunks


def shot_starts(info: VideoInfo, work_size: Size, temporal: TemporalConfig) -> list[int]:
    """The first frame of each shot: one pass over the decoded frames with the chain's scene-cut test."""
    from pipeline.jobs.temporal import TemporalGuide
    from pipeline.media.images import resize_frame
    from pipeline.media.video import decode_frames

    guide = TemporalGuide(temporal)
    starts, previous = [0], None
    for index, frame in enumerate(decode_frames(info)):
        rgb = resize_frame(frame.rgb, work_size.hw)
        if previous is not None and guide.is_scene_cut(guide.annotate(previous, rgb)):
            starts.append(index)
        previous = rgb
    return starts


def handing_over(chunks: list[Chunk], index: int) -> Chunk | None:
    """The chunk whose lead covers frame ``index`` (the frame is a cross-fade there), or None."""
    return next((c for c in chunks if c.lead and c.first <= index < c.start), None)


def fade_weight(index: int, chunk: Chunk) -> float:
    """Share of ``chunk``'s chain in frame ``index`` of its lead: rises linearly over the lead, so the
    earlier chain fades out and this one in (frames at and after ``start`` are all this chain's)."""
    return (index - chunk.first + 1) / (chunk.lead + 1)


def output_frame(folder: JobFolder, chunks: list[Chunk], index: int, shape: tuple[int, ...]) -> np.ndarray:
    """Frame ``index`` as it goes into the video: its chunk's own frame, or a cross-fade in a lead.

    The cross-fade is of pixels, not along the flow. Measured on the shared clips at 96 px (starry
    night, chunks of 30, docs/scale-out.md): a blend that moves the earlier chain's frames along the
    flow gave a lower warping error across hand-overs, but blurred those frames (their high-frequency
    energy fell by a fifth to a third, against a tenth for the pixel blend), and hand-over frames optimised from
    such a start and held by the temporal loss changed more from frame to frame than the pixel blend.
    What keeps the hand-over steady is the length of the overlap.
    """
    rgb = folder.load(index, shape)
    if (chunk := handing_over(chunks, index)) is None:
        return rgb
    a = fade_weight(index, chunk)
    lead = folder.load(index, shape, LEAD).astype(np.float32)
    return np.clip((1 - a) * rgb.astype(np.float32) + a * lead + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------- seam measurement
# How visible the hand-overs are: the warping error of a frame pair (pipeline/jobs/stability.py: flow
# and occlusions from the INPUT, so only real changes of the output count), split into the pairs a
# chunk boundary touches (the lead's cross-fade and the first frame of the new chain) and all other
# pairs inside shots. Pairs across a shot cut are left out: a cut is meant to change everything.


def seam_pairs(chunks: list[Chunk], shot_starts: list[int]) -> set[int]:
    """Indices j of the pairs (j - 1, j) that a chunk boundary inside a shot touches."""
    cuts = set(shot_starts)
    pairs: set[int] = set()
    for chunk in chunks:
        if chunk.start > 0 and chunk.start not in cuts:
            pairs.update(range(max(chunk.first, 1), chunk.start + 1))
    return pairs


def seam_figures(per_pair: list[float | None], chunks: list[Chunk], shot_starts: list[int]) -> dict:
    """``per_pair[k]``: the warping error of frames (k, k + 1), None where no pixel was trusted.

    Returns the mean error over seam pairs and over the other pairs inside shots, their ratio, and
    how many pairs each mean has (so a figure from two pairs is read as such).
    """
    seams, cuts = seam_pairs(chunks, shot_starts), set(shot_starts)
    at_seams: list[float] = []
    inside: list[float] = []
    for k, error in enumerate(per_pair):
        j = k + 1
        if error is None or j in cuts:
            continue
        (at_seams if j in seams else inside).append(error)
    seam_mean = float(np.mean(at_seams)) if at_seams else None
    inside_mean = float(np.mean(inside)) if inside else None
    ratio = seam_mean / inside_mean if seam_mean is not None and inside_mean else None
    return {"seam": seam_mean, "inside": inside_mean, "ratio": ratio, "seam_pairs": len(at_seams),
            "inside_pairs": len(inside)}
