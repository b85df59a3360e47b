"""Optical flow, warping and the confidence mask, checked against motions we know exactly."""

import numpy as np
import pytest

from pipeline.media.flow import compute_pair_flow, dis_flow, feather, reliable_mask, warp
from tests.conftest import pattern

SHIFT = 3  # pixels the scene moves to the right between the two frames


def textured(width, height, seed=0):
    """A picture DIS can lock onto: the smooth pattern plus fine random texture."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-40, 40, ((height + 1) // 2, (width + 1) // 2, 3))
    noise = np.kron(noise, np.ones((2, 2, 1), int))[:height, :width]  # 2-px grains: sharp, not aliasing
    return np.clip(pattern(width, height, seed).astype(int) + noise, 0, 255).astype(np.uint8)


def panned(shift=SHIFT, width=64, height=48):
    """Two frames of a camera pan: the scene moves ``shift`` px right, new content enters at the left."""
    wide = textured(width + shift, height)
    previous = wide[:, shift:]
    current = wide[:, :width]
    return previous, current


def constant_flow(height, width, dx, dy=0.0):
    flow = np.zeros((height, width, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def test_warping_with_a_known_flow_recovers_the_shifted_image():
    previous, current = panned()
    # current(x) = previous(x - SHIFT): the backward flow is -SHIFT everywhere.
    warped = warp(previous, constant_flow(48, 64, -SHIFT))
    np.testing.assert_array_equal(warped[:, SHIFT:], current[:, SHIFT:])
    # The opposite sign is a different picture: the convention is really tested.
    assert np.abs(warp(previous, constant_flow(48, 64, SHIFT))[:, SHIFT:].astype(int)
                  - current[:, SHIFT:]).mean() > 10


def test_dis_finds_the_pan_in_both_directions():
    previous, current = panned()
    backward = dis_flow(current, previous)
    forward = dis_flow(previous, current)
    inner = (slice(8, -8), slice(8, -8))
    assert np.median(backward[inner][..., 0]) == pytest.approx(-SHIFT, abs=0.3)
    assert np.median(forward[inner][..., 0]) == pytest.approx(SHIFT, abs=0.3)
    assert np.abs(np.median(backward[inner][..., 1])) < 0.3


def test_pair_flow_warps_the_previous_frame_onto_the_current_one():
    previous, current = panned()
    pair = compute_pair_flow(previous, current)
    error = np.abs(pair.warp(previous).astype(int) - current.astype(int))
    assert error[pair.reliable].mean() < 4  # of 255; without warping it is far larger:
    assert np.abs(previous.astype(int) - current.astype(int))[pair.reliable].mean() > 20
    assert pair.agreement > 0.8


def test_mask_marks_the_uncovered_border():
    backward = constant_flow(48, 64, -SHIFT)
    forward = constant_flow(48, 64, SHIFT)
    mask = reliable_mask(backward, forward)
    assert not mask[:, :SHIFT].any()  # these pixels came from outside the previous frame
    assert mask[:, SHIFT:].all()


def test_mask_marks_the_uncovered_border_with_real_flow():
    previous, current = panned()
    pair = compute_pair_flow(previous, current)
    assert pair.reliable[:, : SHIFT - 1].mean() < 0.1
    assert pair.reliable[8:-8, 8:-8].mean() > 0.9


def test_mask_marks_disoccluded_pixels_and_motion_boundaries():
    # A square at columns 20..29 of the previous frame moves 4 px right over a still background.
    h, w, move = 48, 64, 4
    rows = slice(16, 32)
    backward = constant_flow(h, w, 0.0)
    backward[rows, 20 + move : 30 + move, 0] = -move
    forward = constant_flow(h, w, 0.0)
    forward[rows, 20:30, 0] = move
    mask = reliable_mask(backward, forward)
    assert not mask[rows, 20 : 20 + move].any()  # background the square just uncovered
    assert not mask[rows, 30 + move - 1 : 30 + move + 1].any()  # the square's leading edge: a boundary
    assert mask[:10].all() and mask[40:].all()  # still background far from the square
    assert mask[20:28, 26:31].all()  # the square's inside moves consistently


def test_feathered_confidence_is_zero_where_unreliable_and_has_no_seams():
    reliable = np.ones((48, 64), bool)
    reliable[10:30, 20:40] = False
    soft = feather(reliable)
    assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
    assert (soft[~reliable] == 0).all()
    assert soft[:4].min() > 0.99  # far from the hole (the frame's edge is not a hole)
    steps = max(np.abs(np.diff(soft, axis=0)).max(), np.abs(np.diff(soft, axis=1)).max())
    assert steps < 0.5  # a hard mask steps by 1 at its edge


def test_frames_of_different_sizes_are_rejected():
    with pytest.raises(ValueError, match="differ in size"):
        compute_pair_flow(textured(64, 48), textured(48, 64))


def test_unknown_preset_is_rejected():
    a = textured(64, 48)
    with pytest.raises(ValueError, match="preset"):
        dis_flow(a, a, "slow")
