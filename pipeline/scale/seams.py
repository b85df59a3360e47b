"""How visible the chunk boundaries of a distributed video are: warping error at seams vs inside.

The warping error of a frame pair (pipeline/jobs/stability.py: flow and occlusions from the INPUT,
so only real changes of the output count) is split into the pairs a chunk boundary touches (the
hand-over frames: the lead's cross-fade and the first frame of the new chain) and all other pairs
inside shots. Pairs across a shot cut are left out: a cut is meant to change everything.
"""

from __future__ import annotations

import numpy as np

from pipeline.scale.video import Chunk


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
    at_seams, inside = [], []
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
