"""Tying video frames together: where each frame's optimisation starts, and what keeps it steady.

Stylizing frames independently lets each land in a different local optimum, which flickers. Ruder
et al.'s remedy, implemented here: start frame t from the stylized frame t-1 moved along the optical
flow of the INPUT frames, and penalise departures from it where the flow is trusted. By default,
where the flow cannot vouch for a pixel, what moves is the stylized frame's offset from its input,
added to frame t's input (``start_image``): a long chain then keeps its content (docs/video-drift.md).

``TemporalGuide`` is the one strategy object a video job needs:

* ``guide.annotate(previous_rgb, current_rgb)`` -> ``PairFlow | None``: pure and thread-safe, meant
  for the reader thread, so the flow of frame t+1 is ready before frame t is finished;
* ``guide.prepare(content, previous_stylized, pair_flow, previous_content=...)`` -> ``FramePlan(init,
  temporal, scene_cut, scales)``, whose fields go straight into ``Stylizer.stylize``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from pipeline.config import TemporalConfig
from pipeline.engine.optimize import TemporalTerm
from pipeline.media.flow import PairFlow, compute_pair_flow


class FramePlan(NamedTuple):
    """How to stylize one frame: pass ``init``, ``temporal`` and ``scales`` to ``Stylizer.stylize``."""

    init: torch.Tensor | None  # [1, 3, H, W] in [0, 1]; None = the stylizer's own init (the content)
    temporal: TemporalTerm | None
    scene_cut: bool
    # None = the configured coarse-to-fine schedule. A frame that starts from the previous result
    # already holds a full-resolution stylization; a coarse pass would only blur it away.
    scales: int | None = None


@dataclass(frozen=True)
class LongFlow:
    """With ``--long-term K``: the frame K back in the same shot, and the flow from it to this frame."""

    index: int
    flow: PairFlow
    content: np.ndarray  # its input frame, uint8 at the working size


@dataclass(frozen=True)
class EarlierFrame:
    """What ``prepare`` needs of the frame K back (``--long-term``): the flow from it, its result and its input."""

    flow: PairFlow
    stylized: np.ndarray | torch.Tensor
    content: np.ndarray | torch.Tensor


class GuideItem(Protocol):
    """A frame as the video job's hooks below see it (``video_work.FrameItem``)."""

    index: int  # its place in the video
    content: np.ndarray  # uint8 RGB [H, W, 3] at the working size
    extra: dict[str, Any]  # what the hooks store with it: its flows, whether it starts a shot


def as_rgb_float(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 ``[H, W, 3]``, float ``[H, W, 3]`` in [0, 1], or a ``[1, 3, H, W]`` tensor -> float32 [H, W, 3]."""
    if isinstance(image, torch.Tensor):
        if image.dim() == 4:
            image = image[0]
        return image.detach().float().permute(1, 2, 0).cpu().numpy()
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32)


def as_tensor(image: np.ndarray) -> torch.Tensor:
    """float32 ``[H, W, C]`` -> ``[1, C, H, W]``."""
    if image.ndim == 2:
        image = image[..., None]
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).contiguous()


class TemporalGuide:
    """Chooses each frame's starting point and temporal term from the previous frame's result."""

    def __init__(self, config: TemporalConfig = TemporalConfig()):
        self.config = config
        # Long-term consistency needs the stylized frame K back: the video job points this at its
        # job folder (frame index -> uint8 [H, W, 3]), which holds every finished frame.
        self.styled_frame: Callable[[int], np.ndarray] | None = None
        # Reader thread: (index, uint8 content) of the last K input frames (the contents only: items
        # also carry their flow fields, which at 4K would cost gigabytes).
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=max(config.long_term, 1))
        self._shot_start = 0  # reader thread: index of the first frame of the current shot

    @property
    def needs_flow(self) -> bool:
        # "frame" treats every frame on its own and "previous" takes the previous result as it is: the
        # cheap modes compute no flow at all (so they see no scene cuts either); "warped" needs it.
        return self.config.init == "warped"

    def annotate(self, previous_rgb: np.ndarray | None, current_rgb: np.ndarray) -> PairFlow | None:
        """Flow from the previous INPUT frame to this one (uint8 RGB at the working size), or None.

        Pure and thread-safe: call it where frames are decoded, one frame ahead of the stylizer.
        """
        if previous_rgb is None or not self.needs_flow:
            return None
        return compute_pair_flow(previous_rgb, current_rgb, self.config.flow_preset)

    def is_scene_cut(self, pair_flow: PairFlow | None) -> bool:
        return pair_flow is not None and pair_flow.agreement < self.config.scene_cut

    def prepare(
        self,
        content: np.ndarray | torch.Tensor,
        previous_stylized: np.ndarray | torch.Tensor | None,
        pair_flow: PairFlow | None,
        long_term: EarlierFrame | None = None,
        previous_content: np.ndarray | torch.Tensor | None = None,
    ) -> FramePlan:
        """The plan for the current frame.

        ``content`` is the current frame at the working size (uint8 ``[H, W, 3]`` or a ``[1, 3, H, W]``
        tensor in [0, 1]); ``previous_stylized`` the previous frame's result at the same size (None for
        the first frame) and ``previous_content`` that frame's input (needed by ``carry="offset"``);
        ``pair_flow`` what ``annotate`` returned for this frame. ``long_term`` (``--long-term``): the flow
        from the frame K back to this one, that frame's stylized result and its input.
        """
        mode = self.config.init
        if previous_stylized is None or mode == "frame":
            return FramePlan(init=None, temporal=None, scene_cut=False)
        if self.is_scene_cut(pair_flow):
            # A new shot: anything carried over from the previous one would smear it into this one.
            return FramePlan(init=None, temporal=None, scene_cut=True)
        previous = as_rgb_float(previous_stylized)
        if mode == "previous":
            return FramePlan(init=as_tensor(previous), temporal=None, scene_cut=False, scales=1)
        if pair_flow is None:
            raise ValueError("init 'warped' needs the flow from TemporalGuide.annotate for every frame after the first")
        current = as_rgb_float(content)
        if previous.shape != current.shape or pair_flow.shape != current.shape[:2]:
            raise ValueError(f"sizes differ: content {current.shape}, previous result {previous.shape}, "
                             f"flow {pair_flow.shape}")
        offsets = self.config.carry == "offset"
        if offsets and previous_content is None:
            raise ValueError("carry 'offset' needs the previous frame's content")
        warped, confidence = pair_flow.warp(previous), pair_flow.confidence
        offset = None
        if offsets and previous_content is not None:  # (it is there with offsets: checked above)
            offset = pair_flow.warp(previous - as_rgb_float(previous_content))
        if long_term is not None:
            earlier = as_rgb_float(long_term.stylized)
            if offset is not None:  # the same fold for the offsets: the weights depend on the masks only
                offset, _ = with_long_term(offset, confidence, long_term.flow,
                                           earlier - as_rgb_float(long_term.content))
            warped, confidence = with_long_term(warped, confidence, long_term.flow, earlier)
        start = as_tensor(start_image(warped, current, self.config.content_blend, offset, confidence))
        # Where the flow cannot explain a pixel (newly visible, motion boundary, entering the frame)
        # the warp holds a smear of stylized neighbours. With --carry result that smear is the start;
        # filling those pixels from the frame's plain content instead measured worse (warping error
        # 0.0019 vs 0.0012 on carphone, same style loss): DIS leaves large flat areas unconfirmed, and
        # restarting them from unstylized content made them flicker. --carry offset puts the
        # neighbours' stylization on top of the frame's own content there (see start_image). The
        # temporal term does not hold such pixels (confidence 0): the optimiser may repaint them.
        temporal = None
        if self.config.weight > 0:
            temporal = TemporalTerm(warped=start, mask=as_tensor(confidence), weight=self.config.weight)
        return FramePlan(init=start, temporal=temporal, scene_cut=False, scales=1)

    # The video job's two hooks (pipeline/jobs/video_work.py), for its frames (GuideItem).

    def annotate_item(self, previous_item: GuideItem | None, item: GuideItem) -> None:
        """Reader-thread hook: store the flow from the previous input frame in ``item.extra["flow"]``,
        and with ``--long-term K`` the flow from the frame K back in ``item.extra["long_flow"]`` (a
        ``LongFlow``, only when that frame belongs to the same shot).

        Called for every frame in order, also for frames a resumed job takes from its job folder,
        so the history it keeps is the same in a resumed run.
        """
        previous = None if previous_item is None else previous_item.content
        flow = item.extra["flow"] = self.annotate(previous, item.content)
        if previous_item is None or self.is_scene_cut(flow):
            self._shot_start = item.index
        k = self.config.long_term
        if k and self.config.init == "warped" and len(self._recent) == k:
            index, content = self._recent[0]
            if index >= self._shot_start:
                flow_k = compute_pair_flow(content, item.content, self.config.flow_preset)
                item.extra["long_flow"] = LongFlow(index=index, flow=flow_k, content=content)
        self._recent.append((item.index, item.content))

    def frame_init(self, item: GuideItem, previous_item: GuideItem, previous_styled: np.ndarray) -> FramePlan:
        """Stylizer-thread hook: the plan of a frame after the first; ``item.extra`` gets ``scene_cut``
        so the job can give a new shot the first frame's iterations."""
        long_term = None
        if (found := item.extra.get("long_flow")) is not None and self.styled_frame is not None:
            long_term = EarlierFrame(flow=found.flow, stylized=self.styled_frame(found.index), content=found.content)
        plan = self.prepare(item.content, previous_styled, item.extra.get("flow"), long_term, previous_item.content)
        item.extra["scene_cut"] = plan.scene_cut
        return plan


def start_image(warped: np.ndarray, content: np.ndarray, let_go: float, offset: np.ndarray | None = None,
                trust: np.ndarray | None = None) -> np.ndarray:
    """The start (and the temporal term's target) of a chained frame, float ``[H, W, 3]`` in [0, 1].

    ``warped`` is the previous result moved along the flow, ``content`` this frame's input.

    * ``--carry result`` (``offset`` None, Ruder et al.): the moved result, with ``let_go`` of this
      frame's content mixed in.
    * ``--carry offset`` (default): ``offset`` is the previous result's difference from its own input,
      moved along the flow. Where the flow cannot vouch for a pixel (``trust`` ``[H, W]`` near 0: newly
      visible, a motion boundary, a change the flow does not explain) the start is this frame's
      content plus ``(1 - let_go)`` of that offset, so a bunny stepping out of his dark burrow gets
      the light of this frame with his neighbours' stylization on top, instead of the burrow's dark
      pixels carried along with him. Where the flow is trusted the start is the moved result as with
      ``--carry result``; in between, their mix by ``trust``. (Adding the offset everywhere measured
      as steady as the input itself on Big Buck Bunny but brought a noisy clip's own flicker in: 1.9x
      the input's warping error on carphone, against 1.4x this way; docs/video-drift.md.)

    ``let_go`` (``--content-blend``): a chained frame is the previous result plus a few more
    iterations, so frame t carries the optimisation of every frame before it, many times the budget
    a frame stylized on its own gets. That long optimisation walks away from the content, and the
    temporal term keeps whatever it reached. Letting go of a share each frame makes the chain forget
    its start geometrically (after k frames (1 - let_go)^k of it is left).
    """
    start = (1.0 - let_go) * warped + let_go * content
    if offset is not None:
        if trust is None:
            raise ValueError("start_image: an offset needs the flow's trust to be mixed in by")
        from_offset = content + (1.0 - let_go) * offset
        start = trust[..., None] * start + (1.0 - trust[..., None]) * from_offset
    return np.clip(start, 0.0, 1.0).astype(np.float32)


def with_long_term(warped: np.ndarray, confidence: np.ndarray, long_flow: PairFlow,
                   earlier_stylized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold the stylized frame K back into the start image and the temporal term (Ruder et al.).

    ``warped``/``confidence``: what is carried from the previous frame (its result, or with carry
    "offset" also the result's offset from its input), moved into this frame, and the trust in it;
    ``earlier_stylized`` the same for the frame K back, not yet moved. The
    earlier frame counts only where the previous frame cannot vouch for a pixel but the earlier one
    can: ``c_long = max(c_earlier - c_previous, 0)``, so a wall that reappears after an actor walked
    past gets back the look it had. Two weighted squared distances, ``c_p |x - a|^2 + c_l |x - b|^2``,
    are one distance to their weighted mean with weight ``c_p + c_l`` (up to a constant), so the
    optimiser keeps a single temporal term. Returns (what is carried, its confidence).
    """
    earlier = long_flow.warp(as_rgb_float(earlier_stylized))
    c_prev = confidence[..., None]
    c_long = np.clip(long_flow.confidence - confidence, 0.0, 1.0)[..., None]
    total = c_prev + c_long
    blended = np.where(total > 0, (c_prev * warped + c_long * earlier) / np.maximum(total, 1e-6), warped)
    # Where neither vouches for a pixel, the previous result's smear stays the start (see prepare).
    return blended.astype(np.float32), total[..., 0].astype(np.float32)
