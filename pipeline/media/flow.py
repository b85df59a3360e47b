"""Optical flow between consecutive input frames, warping, and where the flow can be trusted.

Direction conventions (the usual source of sign bugs, so they are spelled out once, here):

* ``PairFlow.backward`` lives on the CURRENT frame's pixel grid and points into the PREVIOUS frame:
  ``current(x) ~ previous(x + backward(x))``. It is the flow that warps anything defined on the
  previous frame (its stylized output) into the current one.
* ``PairFlow.forward`` lives on the PREVIOUS frame's grid and points into the current one:
  ``previous(y) ~ current(y + forward(y))``. It is only used to check ``backward``.

OpenCV's DIS ``calc(a, b)`` returns a flow on ``a``'s grid such that ``a(x) ~ b(x + flow(x))``, so
``backward = calc(current, previous)`` and ``forward = calc(previous, current)``.

The confidence mask follows Ruder et al.: a pixel of the current frame is unreliable where the
two flows disagree (disocclusion), at motion boundaries, or where it comes from outside the previous
frame. Everything here is a pure function of numpy arrays, so a reader thread can compute the flow
of frame t+1 while frame t is being stylized.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FLOW_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# A pixel counts as "the same colour" after warping when its mean absolute RGB difference is below
# this (in [0, 1]); only used to tell a scene cut from a well-explained frame.
COLOUR_TOLERANCE = 0.1


@dataclass
class PairFlow:
    """Flow between a previous and a current frame (same size), and the trust in it.

    ``reliable`` is the hard mask of the consistency check; ``confidence`` is the same mask shrunk
    and feathered, so that a loss or a blend weighted by it draws no seams. ``agreement`` is the
    fraction of pixels that are reliable AND keep their colour when the previous frame is warped:
    it collapses at a scene cut.
    """

    backward: np.ndarray  # [H, W, 2] float32, current -> previous
    forward: np.ndarray  # [H, W, 2] float32, previous -> current
    reliable: np.ndarray  # [H, W] bool, on the current frame's grid
    confidence: np.ndarray  # [H, W] float32 in [0, 1]
    agreement: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.backward.shape[:2]

    def warp(self, previous: np.ndarray) -> np.ndarray:
        """Bring ``previous`` (``[H, W]`` or ``[H, W, C]`` on the previous grid) onto the current grid."""
        return warp(previous, self.backward)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB frames, got {rgb.dtype}")
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def dis_flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """DIS flow ``[H, W, 2]`` on ``a``'s grid with ``a(x) ~ b(x + flow(x))``; uint8 RGB or gray inputs.

    A fresh DIS instance per call: creating one costs microseconds, and OpenCV's instances keep state
    and must not be shared between threads.
    """
    if preset not in FLOW_PRESETS:
        raise ValueError(f"unknown flow preset {preset!r}: choose from {', '.join(FLOW_PRESETS)}")
    dis = cv2.DISOpticalFlow.create(FLOW_PRESETS[preset])
    # OpenCV allocates the output when it is None; its stubs do not allow None there.
    return dis.calc(to_gray(a), to_gray(b), None)  # type: ignore[call-overload]


def _sample_map(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    map_x = flow[..., 0] + np.arange(w, dtype=np.float32)[None, :]
    map_y = flow[..., 1] + np.arange(h, dtype=np.float32)[:, None]
    return map_x, map_y


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = image(x + flow(x))``, bilinear; keeps the dtype (warp float images to avoid rounding).

    Samples that fall outside the frame repeat the border: they are marked unreliable anyway, and a
    repeated border is a gentler starting point than black.
    """
    map_x, map_y = _sample_map(flow)
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def reliable_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s checks, on the current frame's grid: ``True`` where ``backward`` can be trusted.

    With ``b = backward(x)`` and ``f = forward(x + b)`` (the forward flow brought back to x):
    disoccluded where ``|b + f|^2 > 0.01 (|b|^2 + |f|^2) + 0.5``, a motion boundary where
    ``|grad b|^2 > 0.01 |b|^2 + 0.002`` (the gradient of the flow that does the warping, as in the
    paper), and out of frame where ``x + b`` leaves the previous frame.
    """
    h, w = backward.shape[:2]
    map_x, map_y = _sample_map(backward)
    f = cv2.remap(forward, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    b2 = (backward**2).sum(-1)
    consistent = ((backward + f) ** 2).sum(-1) <= 0.01 * (b2 + (f**2).sum(-1)) + 0.5
    du_dy, du_dx = np.gradient(backward[..., 0])
    dv_dy, dv_dx = np.gradient(backward[..., 1])
    grad2 = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2
    smooth = grad2 <= 0.01 * b2 + 0.002
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return consistent & smooth & inside


def feather(reliable: np.ndarray) -> np.ndarray:
    """A soft version of a hard mask: shrink the trusted area, then blur, then keep untrusted at 0.

    Shrinking first means the blur's ramp lies inside the trusted area, so unreliable pixels stay at
    (almost exactly) zero and the temporal loss fades in over a few pixels instead of switching on at
    a hard edge, which would print the mask's outline into the stylized frame.
    """
    h, w = reliable.shape
    sigma = max(1.0, max(h, w) / 400)
    radius = int(round(2 * sigma))
    mask = reliable.astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    # The frame's edge is not a boundary of the trusted area: do not erode from outside the image.
    shrunk = cv2.erode(mask, kernel, borderType=cv2.BORDER_REPLICATE)
    soft = cv2.GaussianBlur(shrunk, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return (soft * mask).clip(0, 1)


def colour_agreement(previous: np.ndarray, current: np.ndarray, backward: np.ndarray,
                     reliable: np.ndarray) -> float:
    """Fraction of pixels that are reliable and keep their colour (within ``COLOUR_TOLERANCE``)."""
    warped = warp(previous.astype(np.float32), backward)
    diff = np.abs(warped - current.astype(np.float32)).reshape(*current.shape[:2], -1).mean(-1) / 255.0
    return float((reliable & (diff < COLOUR_TOLERANCE)).mean())


def compute_pair_flow(previous: np.ndarray, current: np.ndarray, preset: str = "medium") -> PairFlow:
    """Flow, masks and agreement between two uint8 RGB frames ``[H, W, 3]`` of the same size.

    Pure and thread-safe: call it from a reader thread for frame t+1 while frame t is stylized.
    """
    if previous.shape != current.shape:
        raise ValueError(f"frames differ in size: {previous.shape} vs {current.shape}")
    backward = dis_flow(current, previous, preset)
    forward = dis_flow(previous, current, preset)
    reliable = reliable_mask(backward, forward)
    return PairFlow(
        backward=backward,
        forward=forward,
        reliable=reliable,
        confidence=feather(reliable),
        agreement=colour_agreement(previous, current, backward, reliable),
    )
