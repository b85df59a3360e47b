"""Tiled evaluation: the geometry of tiles and halos, and that a tiled loss and gradient are the untiled ones."""

import platform

import pytest
import torch

from pipeline.config import CONTENT_LAYER, EngineConfig, StyleConfig
from pipeline.engine import memory, optimize
from pipeline.engine.evaluate import Targets, TemporalTerm, Weights, evaluate, feature_statistics
from pipeline.engine.features import stage_reach
from pipeline.engine.optimize import Stylizer
from pipeline.engine.tiling import spans, tiles
from pipeline.media.images import from_uint8
from tests.conftest import pattern, stripes


def test_the_reach_of_a_stage_counts_convolutions_and_halves_at_each_pooling():
    assert stage_reach(["conv", "relu", "conv", "relu"]) == (2, 1)
    # blocks 1-2 of VGG19: 2 px after block 1, halved to 1 unit (2 px) by pool1, +2 units: 3 units
    # of 2 px = 6 px; pool2 makes it 2 units of 4 px = 8 px
    assert stage_reach(["conv", "relu", "conv", "relu", "pool"] + ["conv", "relu", "conv", "relu", "pool"]) == (8, 4)


def test_vgg_stages_have_aligned_halos_that_cover_their_reach(features):
    first, second = features.stages()
    assert (first.scale, first.halo, first.align) == (1, 8, 4)
    assert dict(first.layers) == {"relu1_1": 1, "relu2_1": 2}
    # blocks 3-4 up to relu4_2 on the quarter-size map: they see 8 units (32 px) past a tile's edge;
    # pool3 aligns them to 2
    assert (second.scale, second.halo, second.align) == (4, 8, 2)
    assert dict(second.layers) == {"relu3_1": 1, "relu4_1": 2, "relu4_2": 2}


@pytest.mark.parametrize("length, core, halo, align", [(203, 48, 8, 4), (37, 16, 16, 4), (64, 64, 8, 4), (10, 3, 2, 2)])
def test_spans_cover_the_axis_once_on_the_alignment_grid(length, core, halo, align):
    cut = spans(length, core, halo, align)
    owned = [i for s in cut for i in range(s.start, s.stop)]
    assert owned == list(range(length))  # every position owned exactly once, in order
    for s in cut:
        assert s.start % align == 0 and s.read_start % align == 0  # pooling windows are the whole map's
        assert s.read_start == max(0, s.start - halo) and s.read_stop == min(length, s.stop + halo)
        assert s.stop - s.start <= max(core // align * align, align) or len(cut) == 1


def test_owned_slices_of_a_deeper_layer_line_up_with_the_whole_layer():
    height, width = 150, 203
    rows = set()
    for tile in tiles(height, width, 48, 8, 4):
        owned = tile.owned(4, height, width)
        assert owned.local.rows.start >= 0 and owned.local.cols.start >= 0
        rows.update((r, c) for r in range(owned.whole.rows.start, owned.whole.rows.stop)
                    for c in range(owned.whole.cols.start, owned.whole.cols.stop))
    assert rows == {(r, c) for r in range(height // 4) for c in range(width // 4)}


# ------------------------------------------------------------------------------------ exactness

WEIGHTS = Weights(content=1.0, style=3.0, tv=5.0, layers=(1.0, 0.5, 1.0, 2.0, 1.0))


def _setup(features, dtype, height, width, batch=2):
    net = features.variant(torch.device("cpu"), dtype, True)
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(batch, 3, height, width, generator=gen)
    style = feature_statistics(net, torch.rand(1, 3, 96, 96, generator=gen), torch.float32)
    maps = feature_statistics(net, content, torch.float32, keep=(CONTENT_LAYER,)).maps
    x0 = (content + 0.1 * torch.randn(content.shape, generator=gen)).clamp(0, 1)
    warped = torch.rand(content.shape, generator=gen)
    mask = (torch.rand((batch, 1, height, width), generator=gen) > 0.3).float()
    return net, Targets(content=maps[CONTENT_LAYER], style=style.grams), x0, TemporalTerm(warped, mask, 7.0)


def _evaluate(net, targets, x0, plan, temporal):
    x = x0.clone().requires_grad_(True)
    terms = evaluate(net, x, targets, WEIGHTS, torch.float32, plan, temporal)
    return terms, x.grad


@pytest.mark.parametrize("height, width, plan, batch", [
    (128, 160, (48, 12), 2),  # both stages tiled, a batch of two
    (150, 203, (64, None), 1),  # sizes off the pooling grid; the deep stage whole
    (256, 192, (None, 16), 1),  # only the deep stage tiled
    (256, 192, (64, 12), 1),
])
@pytest.mark.slow
def test_tiled_loss_and_gradient_equal_the_untiled_ones_in_fp32(features, height, width, plan, batch):
    """48-64 px tiles of the first stage, 48-64 px (12-16 units) of the second, with the halos the stages chose."""
    net, targets, x0, temporal = _setup(features, torch.float32, height, width, batch)
    untiled_terms, untiled_grad = _evaluate(net, targets, x0, None, temporal)
    tiled_terms, tiled_grad = _evaluate(net, targets, x0, plan, temporal)
    for name, value in untiled_terms.items():
        torch.testing.assert_close(tiled_terms[name], value, rtol=1e-4, atol=0)
    worst = (tiled_grad - untiled_grad).abs().max() / untiled_grad.abs().max()
    assert worst <= 1e-4
    assert untiled_grad.abs().max() > 0


@pytest.mark.slow
def test_tiled_statistics_equal_the_untiled_ones(features):
    net, _, x0, _ = _setup(features, torch.float32, 150, 203, batch=1)
    whole = feature_statistics(net, x0, torch.float32, keep=(CONTENT_LAYER,))
    tiled = feature_statistics(net, x0, torch.float32, (48, 12), keep=(CONTENT_LAYER,))
    for tiled_gram, whole_gram in zip(tiled.grams, whole.grams, strict=True):
        # Rounding only: each entry within a millionth of the matrix's largest (a halo too small is off
        # by a percent or more). An entry near 0 may differ by more than 1e-4 of itself.
        torch.testing.assert_close(tiled_gram, whole_gram, rtol=1e-4, atol=1e-6 * whole_gram.abs().max().item())
    whole_map = whole.maps[CONTENT_LAYER]  # values up to about 1e4: rounding is about 1e-3 there
    scale = whole_map.abs().max().item()
    torch.testing.assert_close(tiled.maps[CONTENT_LAYER], whole_map, rtol=1e-5, atol=1e-6 * scale)


CONTENT = from_uint8(pattern(128, 96))
STYLE = from_uint8(stripes(96, 96))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.slow
def test_a_short_stylization_tiled_looks_like_the_untiled_one(features, precision):
    """Rounding differs between the two, and L-BFGS amplifies it step by step: in bf16 with the
    defaults at 128x96, 6 steps drift 0.7/255 apart while the picture changes by 20/255, 8 steps
    3/255 against 62/255 (about what stylizing the same image alone or beside another one in a
    batch changes, docs/performance.md), so the run is kept short."""
    results = {}
    for tile in ("off", 64):
        stylizer = Stylizer([(STYLE, 1.0)], StyleConfig(size=128, iterations=6, scales=1),
                            EngineConfig(device="cpu", precision=precision, tile=tile), features=features)
        plan = stylizer.plan(1, 96, 128)
        assert (plan is None) == (tile == "off")
        results[tile] = stylizer.stylize(CONTENT).image
    difference = (results["off"] - results[64]).abs().mean()
    assert difference <= 1 / 255
    assert (results["off"] - CONTENT).abs().mean() > 4 / 255  # the picture really changed, 5x more than that


# ------------------------------------------------------------------------------------ memory


def test_the_plan_is_untiled_when_it_fits_and_within_the_budget_when_not(features):
    net = features.variant(torch.device("cpu"), torch.bfloat16, True)
    whole = memory.plan_bytes(net, 1, 1536, 1152, None)
    assert memory.choose_plan(net, 1, 1536, 1152, whole * 1.01) is None
    for share in (0.5, 0.25, 0.1):
        plan = memory.choose_plan(net, 1, 1536, 1152, whole * share)
        assert plan is not None and plan[0] is not None  # the memory-heavy first stage is tiled first
        assert memory.plan_bytes(net, 1, 1536, 1152, plan) <= whole * share
    # with room for the deep stage whole, it is not tiled (no recomputation of the costly part)
    assert memory.choose_plan(net, 1, 1536, 1152, whole * 0.5)[1] is None


def test_estimates_grow_with_the_image_and_the_batch(features):
    net = features.variant(torch.device("cpu"), torch.bfloat16, True)
    small, large = (memory.plan_bytes(net, 1, s, s, None) for s in (512, 1024))
    assert large == pytest.approx(4 * small, rel=0.01)
    assert memory.plan_bytes(net, 2, 512, 512, None) == pytest.approx(2 * small)
    tiled = (256, None)
    assert memory.plan_bytes(net, 1, 2048, 2048, tiled) < memory.plan_bytes(net, 1, 2048, 2048, None) / 2


@pytest.mark.slow
def test_an_evaluation_out_of_memory_goes_on_in_smaller_tiles_and_says_so_once(features, monkeypatch):
    """Only tiles of at most 64 px fit: the stylizer steps down to them and finishes the image."""
    real = optimize.evaluate
    plans = []

    def tight(net, x, targets, weights, gram_dtype, plan=None, temporal=None):
        plans.append(plan)
        if plan is None or plan[0] > 64:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
        return real(net, x, targets, weights, gram_dtype, plan, temporal)

    monkeypatch.setattr(optimize, "evaluate", tight)
    monkeypatch.setattr(memory, "MIN_TILE", 64)
    stylizer = Stylizer([(STYLE, 1.0)], StyleConfig(size=128, iterations=8, scales=1),
                        EngineConfig(device="cpu", precision="fp32", tile="off"), features=features)
    notices = []
    result = stylizer.stylize(CONTENT, on_notice=notices.append)
    assert result.evaluations == 8 and torch.isfinite(result.image).all()
    assert plans[0] is None and any(p is not None and p[0] <= 64 for p in plans)
    assert len(notices) == 1 and "smaller tiles" in notices[0]
    monkeypatch.setattr(optimize, "evaluate", real)
    reference = Stylizer([(STYLE, 1.0)], StyleConfig(size=128, iterations=8, scales=1),
                         EngineConfig(device="cpu", precision="fp32", tile="off"), features=features)
    assert (reference.stylize(CONTENT).image - result.image).abs().mean() <= 1 / 255


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_memory_is_handed_back_where_glibc_keeps_it():
    # Without the hand-back the process grew by each coarse level's freed L-BFGS state (a silent no-op
    # here would bring that back, so the function must be found where glibc is the C library).
    assert memory._malloc_trim() is not None
    memory.give_back_freed(torch.device("cpu"))
