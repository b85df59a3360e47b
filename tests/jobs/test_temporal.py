"""TemporalGuide: what each init mode hands the stylizer, scene cuts, and steadier video in the end."""

import numpy as np
import pytest
import torch

from pipeline.config import StyleConfig, TemporalConfig
from pipeline.engine.losses import temporal_loss
from pipeline.engine.optimize import Stylizer
from pipeline.errors import ConfigError
from pipeline.jobs.stability import warping_errors
from pipeline.jobs.temporal import TemporalGuide
from pipeline.media.images import from_uint8, to_uint8
from tests.conftest import pattern, stripes
from tests.media.test_flow import SHIFT, panned, textured


def guide(**kwargs) -> TemporalGuide:
    return TemporalGuide(TemporalConfig(**kwargs))


def test_first_frame_and_frame_mode_use_the_stylizers_own_init():
    previous, current = panned()
    assert guide().prepare(current, None, None) == (None, None, False, None)
    g = guide(init="frame")
    assert g.annotate(previous, current) is None  # no flow is computed for nothing
    assert g.prepare(current, previous, None) == (None, None, False, None)


def test_previous_mode_starts_from_the_previous_result_unwarped():
    previous, current = panned()
    g = guide(init="previous")
    stylized = textured(64, 48, seed=3)
    plan = g.prepare(current, stylized, g.annotate(previous, current))
    assert plan.temporal is None and not plan.scene_cut
    torch.testing.assert_close(plan.init, from_uint8(stylized))


def test_warped_mode_moves_the_previous_result_along_the_flow():
    previous, current = panned()
    g = guide(init="warped", weight=7.0, carry="result", content_blend=0.0)
    # A "stylized" previous frame that moves with the scene: the pan of another picture.
    wide = textured(64 + SHIFT, 48, seed=5)
    stylized_prev, stylized_cur = wide[:, SHIFT:], wide[:, :64]
    plan = g.prepare(current, stylized_prev, g.annotate(previous, current))
    assert not plan.scene_cut and plan.temporal is not None
    assert plan.temporal.weight == 7.0
    assert plan.init.shape == plan.temporal.warped.shape == (1, 3, 48, 64)
    assert plan.temporal.mask.shape == (1, 1, 48, 64)
    target = from_uint8(stylized_cur)
    # A target that is exactly the moved previous result costs (almost) nothing...
    assert temporal_loss(target, plan.temporal.warped, plan.temporal.mask).item() < 2e-4
    # ...while the unmoved previous result would cost a lot.
    assert temporal_loss(from_uint8(stylized_prev), plan.temporal.warped, plan.temporal.mask).item() > 0.02
    # The start is the moved previous result; pixels that entered the frame are not held by the loss.
    assert plan.init is plan.temporal.warped
    assert plan.temporal.mask[..., :SHIFT].max() == 0
    assert plan.temporal.mask[..., 8:-8, 8:-8].mean() > 0.9


def test_temporal_loss_is_zero_for_a_perfectly_warped_target():
    warped = torch.rand(1, 3, 16, 16)
    mask = torch.rand(1, 1, 16, 16)
    assert temporal_loss(warped.clone(), warped, mask).item() == 0
    assert temporal_loss(warped + 0.1, warped, mask).item() > 0


def test_zero_weight_keeps_the_warped_init_but_drops_the_loss():
    previous, current = panned()
    g = guide(weight=0.0)
    plan = g.prepare(current, textured(64, 48, seed=3), g.annotate(previous, current), previous_content=previous)
    assert plan.init is not None and plan.temporal is None


def test_scene_cut_restarts_from_the_frames_own_content():
    g = guide()
    shot_a, shot_b = textured(64, 48, seed=1), textured(64, 48, seed=2)[::-1]
    flow = g.annotate(shot_a, shot_b)
    assert flow.agreement < g.config.scene_cut
    assert g.prepare(shot_b, textured(64, 48, seed=3), flow) == (None, None, True, None)
    previous, current = panned()
    assert not g.prepare(current, textured(64, 48, seed=3), g.annotate(previous, current),
                         previous_content=previous).scene_cut


def test_warped_mode_without_flow_is_a_programming_error():
    with pytest.raises(ValueError, match="annotate"):
        guide().prepare(textured(64, 48), textured(64, 48), None)


class Item:  # the shape of pipeline.jobs.video.FrameItem that the hooks rely on
    def __init__(self, index, content):
        self.index, self.content, self.extra = index, content, {}


def test_video_job_hooks_store_the_flow_and_report_cuts():
    previous, current = panned()
    g = guide()
    first, second = Item(0, previous), Item(1, current)
    g.annotate_item(None, first)
    g.annotate_item(first, second)
    assert first.extra["flow"] is None and second.extra["flow"].shape == (48, 64)
    plan = g.frame_init(second, first, textured(64, 48, seed=3))
    assert plan.init.shape == (1, 3, 48, 64) and plan.temporal is not None
    assert second.extra["scene_cut"] is False
    cut = Item(2, textured(64, 48, seed=2)[::-1])
    g.annotate_item(second, cut)
    plan = g.frame_init(cut, second, textured(64, 48, seed=3))
    assert (plan.init, plan.temporal, plan.scene_cut) == (None, None, True)
    assert cut.extra["scene_cut"] is True


def test_long_term_gives_back_what_the_previous_frame_could_not_see():
    """A static wall with a strip (columns 20-30) that was hidden in the previous frame and visible K
    frames back: there, and only there, the earlier stylized wall becomes the start and the target,
    with the earlier frame's trust; elsewhere the previous frame's warp is unchanged."""
    from pipeline.jobs.temporal import with_long_term
    from pipeline.media.flow import PairFlow

    h, w = 48, 64
    still = np.zeros((h, w, 2), np.float32)  # a static camera: warping is the identity

    def pair(confidence):
        return PairFlow(still, still, confidence > 0.5, confidence, 1.0)

    hidden = np.ones((h, w), np.float32)
    hidden[:, 20:30] = 0.0  # the previous frame cannot vouch for these pixels
    earlier_trust = np.full((h, w), 0.9, np.float32)
    previous_result = np.full((h, w, 3), 0.2, np.float32)  # its smear in the hidden strip too
    earlier_result = np.full((h, w, 3), 204, np.uint8)  # 0.8: the wall's look K frames ago

    blended, confidence = with_long_term(previous_result, hidden, pair(earlier_trust), earlier_result)
    np.testing.assert_allclose(blended[:, 20:30], 0.8, atol=1e-6)
    np.testing.assert_allclose(confidence[:, 20:30], 0.9, atol=1e-6)
    np.testing.assert_allclose(blended[:, 30:], 0.2, atol=1e-6)  # the previous frame vouches: unchanged
    np.testing.assert_allclose(confidence[:, 30:], 1.0, atol=1e-6)
    # Half trust in both: the target is their trust-weighted mean, the weight their union.
    blended, confidence = with_long_term(previous_result, np.full((h, w), 0.25, np.float32),
                                         pair(np.full((h, w), 0.75, np.float32)), earlier_result)
    np.testing.assert_allclose(blended, (0.25 * 0.2 + 0.5 * 0.8) / 0.75, atol=1e-6)
    np.testing.assert_allclose(confidence, 0.75, atol=1e-6)
    # Trusted by neither: the previous result's smear stays the start, held by nothing.
    blended, confidence = with_long_term(previous_result, np.zeros((h, w), np.float32),
                                         pair(np.zeros((h, w), np.float32)), earlier_result)
    np.testing.assert_allclose(blended, 0.2, atol=1e-6)
    assert confidence.max() == 0


def test_long_term_hooks_use_the_frame_k_back_within_the_shot_only():
    g = guide(long_term=2)
    stored = {}
    g.styled_frame = lambda index: stored[index]
    frames = pan_clip(frames=5)
    frames[3] = textured(64, 48, seed=2)[::-1].copy()  # a cut at frame 3
    items = [Item(i, f) for i, f in enumerate(frames)]
    for previous, item in zip([None, *items], items):
        g.annotate_item(previous, item)
    assert [("long_flow" in it.extra) for it in items] == [False, False, True, False, False]
    assert items[2].extra["long_flow"].index == 0
    stored[0] = textured(64, 48, seed=4)
    plan = g.frame_init(items[2], items[1], textured(64, 48, seed=3))
    assert plan.init.shape == (1, 3, 48, 64) and plan.temporal.mask.max() <= 1.0
    # Off by default, and frame / previous modes never compute the extra flow.
    assert TemporalConfig().long_term == 0
    g = guide(init="previous", long_term=2)
    for previous, item in zip([None, *items], [Item(i, f) for i, f in enumerate(frames)]):
        g.annotate_item(previous, item)
        assert "long_flow" not in item.extra


@pytest.mark.parametrize("change", [{"init": "nearest"}, {"weight": -1.0}, {"scene_cut": 1.5},
                                    {"flow_preset": "slow"}, {"long_term": 1}, {"long_term": -3}])
def test_bad_temporal_options_are_config_errors(change):
    with pytest.raises(ConfigError):
        TemporalConfig(**change)


def pan_clip(frames=4, step=2, width=64, height=48):
    """A camera panning right over a wide picture, ``step`` px per frame."""
    wide = pattern(width + step * frames, height, seed=4)
    return [wide[:, step * (frames - i) : step * (frames - i) + width] for i in range(frames)]


def stylize_clip(stylizer, frames, first, mode, iterations):
    g = guide(init=mode)
    outputs = [first]
    styles = []
    for previous, current in zip(frames, frames[1:]):
        plan = g.prepare(current, outputs[-1], g.annotate(previous, current), previous_content=previous)
        result = stylizer.stylize(from_uint8(current), init=plan.init, temporal=plan.temporal, scales=plan.scales,
                                  iterations=iterations)
        outputs.append(to_uint8(result.image))
        styles.append(result.losses["style"])
    return warping_errors(frames, outputs).warping_error, float(np.mean(styles))


@pytest.mark.slow
def test_warped_init_is_steadier_than_independent_frames(features):
    stylizer = Stylizer([(from_uint8(stripes(64, 64)), 1.0)], StyleConfig(size=64, iterations=12, scales=1),
                        features=features)
    frames = pan_clip()
    first = to_uint8(stylizer.stylize(from_uint8(frames[0])).image)
    frame_error, frame_style = stylize_clip(stylizer, frames, first, "frame", 6)
    warped_error, warped_style = stylize_clip(stylizer, frames, first, "warped", 6)
    input_error = warping_errors(frames, frames).warping_error
    print(f"warping error: input {input_error:.5f}, frame {frame_error:.5f}, warped {warped_error:.5f}; "
          f"style loss: frame {frame_style:.4f}, warped {warped_style:.4f}")
    assert warped_error < 0.5 * frame_error
    # Steadier, yet as stylized: the warped start already carries the style.
    assert warped_style < 1.5 * frame_style


def test_content_blend_mixes_the_frames_content_into_the_warped_start():
    previous, current = panned()
    stylized = textured(64, 48, seed=5)
    flow = guide().annotate(previous, current)
    plain = guide(carry="result", content_blend=0.0).prepare(current, stylized, flow)
    mixed = guide(carry="result", content_blend=0.25).prepare(current, stylized, flow)
    expected = 0.75 * plain.init + 0.25 * from_uint8(current)
    torch.testing.assert_close(mixed.init, expected, atol=1e-6, rtol=0)
    # The mix is also what the temporal term holds the frame to, with the same trust.
    assert mixed.temporal.warped is mixed.init
    torch.testing.assert_close(mixed.temporal.mask, plain.temporal.mask)
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="TemporalConfig.content_blend"):
            TemporalConfig(content_blend=bad)


def test_offset_carry_takes_what_the_flow_cannot_explain_from_the_frame():
    """A still camera; a patch the flow cannot vouch for (the bunny stepping out of his dark burrow)
    is 0.3 brighter in this frame. Carrying the result keeps the patch as dark as it was; carrying
    the offset brings the new light in, with the stylization on top. Where the flow is trusted both
    starts are the moved result; at half trust, their mean."""
    from pipeline.media.flow import PairFlow

    h, w = 48, 64
    still = np.zeros((h, w, 2), np.float32)
    trust = np.ones((h, w), np.float32)
    trust[16:32, 24:40] = 0.0  # the patch
    trust[:, :8] = 0.5
    flow = PairFlow(still, still, trust > 0.5, trust, 1.0)
    previous = np.full((h, w, 3), 0.2, np.float32)
    current = previous.copy()
    current[16:32, 24:40] += 0.3
    stylized = np.random.default_rng(0).uniform(0.1, 0.5, (h, w, 3)).astype(np.float32)
    result = guide(carry="result", content_blend=0.0).prepare(current, stylized, flow)
    offset = guide(content_blend=0.0).prepare(current, stylized, flow, previous_content=previous)
    gained = (offset.init - result.init)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(gained[16:32, 24:40], 0.3, atol=1e-6)  # the new light, on the stylization
    np.testing.assert_allclose(gained[:, 8:24], 0.0, atol=1e-6)  # trusted: the moved result
    np.testing.assert_allclose(gained[:, :8], 0.0, atol=1e-6)  # half trust, but no change of light
    assert offset.temporal.warped is offset.init  # the start is also the temporal target
    # The offset shrinks by --content-blend: (1 - blend) of it is carried over into the patch.
    half = guide(content_blend=0.5).prepare(current, stylized, flow, previous_content=previous)
    offset_in_patch = (half.init[0].permute(1, 2, 0).numpy() - current)[16:32, 24:40]
    np.testing.assert_allclose(offset_in_patch, 0.5 * (stylized - previous)[16:32, 24:40], atol=1e-6)
    # At half trust the start is the mean of the two ways.
    lit = current.copy()
    lit[:, :8] += 0.2
    mixed = guide(content_blend=0.0).prepare(lit, stylized, flow, previous_content=previous)
    np.testing.assert_allclose((mixed.init - result.init)[0].permute(1, 2, 0).numpy()[:, :8], 0.1, atol=1e-6)


def test_offset_carry_needs_the_previous_content_and_is_the_default():
    previous, current = panned()
    flow = guide().annotate(previous, current)
    with pytest.raises(ValueError, match="previous frame's content"):
        guide().prepare(current, textured(64, 48, seed=3), flow)
    assert (TemporalConfig().carry, TemporalConfig().content_blend) == ("offset", 0.1)
    with pytest.raises(ConfigError, match="TemporalConfig.carry"):
        TemporalConfig(carry="style")
