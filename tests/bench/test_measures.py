"""The benchmark's fixed yardsticks (bench/measures.py) on tiny tensors."""

import numpy as np
import pytest
import torch

from bench.measures import (
    deep_content_distance,
    gram_style_distances,
    median_and_p99,
    relative_error,
    sliced_wasserstein,
    sliced_wasserstein_ratio,
)
from pipeline.engine.losses import gram


def test_deep_content_distance_is_per_position_and_relative_to_the_photos_mean():
    content = torch.zeros(1, 2, 2, 2)
    content[0, 0] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    content[0, 1] = torch.tensor([[0.0, 0.0], [0.0, 2.0]])  # |F_c|^2 per position: 1, 1, 1, 5 -> mean 2
    out = content.clone()
    out[0, :, 0, 1] += torch.tensor([3.0, 4.0])  # one position off by a vector of norm 5
    d = deep_content_distance(out, content)
    assert d.shape == (4,)
    assert torch.allclose(d, torch.tensor([0.0, 25 / 2, 0.0, 0.0], dtype=torch.float64))


def test_deep_content_distance_is_zero_for_the_photo_and_scale_free():
    content = torch.rand(1, 8, 5, 6)
    assert deep_content_distance(content, content).abs().max() == 0
    out = torch.rand(1, 8, 5, 6)
    assert torch.allclose(deep_content_distance(10 * out, 10 * content), deep_content_distance(out, content))


def test_deep_content_distance_needs_one_picture_of_one_shape():
    with pytest.raises(ValueError, match="one shape"):
        deep_content_distance(torch.rand(1, 8, 5, 6), torch.rand(1, 8, 5, 5))
    with pytest.raises(ValueError):
        deep_content_distance(torch.rand(2, 8, 5, 6), torch.rand(2, 8, 5, 6))


def test_median_and_p99_agree_with_numpy():
    values = torch.rand(1001, generator=torch.Generator().manual_seed(1))
    median, p99 = median_and_p99(values)
    assert median == pytest.approx(np.median(values.numpy()))
    assert p99 == pytest.approx(np.percentile(values.numpy(), 99))


def test_gram_style_distance_is_zero_for_the_painting_and_positive_for_another_picture():
    painting = [torch.rand(1, 4, 6, 6), torch.rand(1, 8, 3, 3)]
    targets = [gram(f) for f in painting]
    assert gram_style_distances(painting, targets) == [0.0, 0.0]
    other = [torch.rand(1, 4, 6, 6) * 2, torch.rand(1, 8, 3, 3)]
    assert all(d > 0 for d in gram_style_distances(other, targets))
    # The relative error, written out for the first layer.
    g, t = gram(other[0]).double(), targets[0].double()
    assert gram_style_distances(other, targets)[0] == pytest.approx(float(((g - t) ** 2).mean() / (t**2).mean()))
    assert relative_error(torch.ones(3), torch.full((3,), 2.0)) == pytest.approx(0.25)


def test_sliced_wasserstein_sees_distributions_not_places():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 6, 8, 8, generator=gen)
    shuffled = x.flatten(2)[..., torch.randperm(64, generator=gen)].reshape(1, 6, 8, 8)
    assert sliced_wasserstein(x, shuffled) == pytest.approx(0.0, abs=1e-12)  # same samples, other places
    wider = 3 * torch.randn(1, 6, 8, 8, generator=gen)
    assert sliced_wasserstein(x, wider) > 0.1
    # Sample counts may differ (a 512x384 picture against a 419x512 painting): compared at common quantiles.
    tiled = x.repeat(1, 1, 2, 1)
    assert sliced_wasserstein(x, tiled) == pytest.approx(0.0, abs=1e-3)


def test_sliced_wasserstein_ratio_is_one_for_the_photo_and_zero_for_the_painting():
    gen = torch.Generator().manual_seed(2)
    photo, painting = torch.randn(1, 6, 8, 8, generator=gen), 2 + torch.randn(1, 6, 8, 8, generator=gen)
    assert sliced_wasserstein_ratio(photo, photo, painting) == pytest.approx(1.0)
    assert sliced_wasserstein_ratio(painting, photo, painting) == pytest.approx(0.0, abs=1e-12)
    halfway = 0.5 * (photo + painting)
    assert 0 < sliced_wasserstein_ratio(halfway, photo, painting) < 1
