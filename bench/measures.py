"""Fixed yardsticks for finished pictures: how far from the painting's style, how far from the photo's content.

These are the benchmark's measures, not the optimiser's loss, and they stay as written here when the
loss changes (they do not call ``pipeline.engine.losses`` beyond the Gram matrix itself), so results
made before and after a change of the method, or by another tool, are judged on one scale:

* ``gram_style_distances``: per style layer, the relative squared error of the Gram matrices,
  ``mean((G - A)^2) / mean(A^2)``; the *style distance* is their sum with equal weights over
  relu1_1..relu5_1, the measure the project used until issue 18 (its loss then). It counts
  statistics, so a picture can lower it by painting the painting's objects: read it beside
  ``deep_content_distance``.
* ``deep_content_distance``: per position of relu5_1 (where VGG19 encodes whole objects), how far
  the picture's feature vector is from the photo's, relative to the photo's mean. A face pasted
  into the sky shows as a tail of large values, hence the 99th percentile.
* ``sliced_wasserstein_ratio``: a texture distance neither tool minimises: the sliced Wasserstein
  distance between the picture's and the painting's feature distributions at one layer (random
  fixed projections, sorted; Heitz et al., CVPR 2021), as a share of the photo's own.
"""

from __future__ import annotations

import torch

from pipeline.engine.losses import gram

# The yardsticks' layers, fixed here whatever layers the loss uses: the style distance sums the Gram
# errors of all five (the loss until issue 18), the texture distance reads the first four, and
# relu5_1 is where VGG19 encodes whole objects (the deep-content distance).
MEASURE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def relative_error(x: torch.Tensor, target: torch.Tensor) -> float:
    """``mean((x - target)^2) / mean(target^2)`` over all values of two same-shape tensors, in float64."""
    x, target = x.double(), target.double()
    return float((x - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-24))


def gram_style_distances(features: list[torch.Tensor], style_grams: list[torch.Tensor]) -> list[float]:
    """Relative Gram error per layer of one picture's ``[1, C, H, W]`` features against ``[1, C, C]`` targets."""
    return [relative_error(gram(f.float()), t) for f, t in zip(features, style_grams)]


def deep_content_distance(features: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Per-position distance ``[H*W]`` of ``[1, C, H, W]`` features from the photo's (same shape).

    ``|F_out(p) - F_content(p)|^2 / mean_q |F_content(q)|^2``, squared norms over the channels: 0
    where the picture encodes what the photo does, about 1 where it is as far off as the photo's
    features are large on average.
    """
    if features.shape != content.shape or features.shape[0] != 1:
        raise ValueError(f"need two [1, C, H, W] tensors of one shape, got {tuple(features.shape)} and "
                         f"{tuple(content.shape)}")
    f, c = features[0].double().flatten(1), content[0].double().flatten(1)
    return (f - c).pow(2).sum(0) / c.pow(2).sum(0).mean().clamp_min(1e-24)


def median_and_p99(values: torch.Tensor) -> tuple[float, float]:
    """The median and the 99th percentile of a 1-D tensor (linear interpolation, as numpy's default)."""
    q = torch.quantile(values.double(), torch.tensor([0.5, 0.99], dtype=torch.float64))
    return float(q[0]), float(q[1])


def _quantiles(sorted_rows: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` evenly spaced quantiles of each row of an ascending ``[K, M]`` tensor (linear interpolation)."""
    pos = torch.linspace(0, sorted_rows.shape[1] - 1, n, dtype=sorted_rows.dtype)
    lo = pos.floor().long()
    hi = torch.clamp(lo + 1, max=sorted_rows.shape[1] - 1)
    t = pos - lo
    return sorted_rows[:, lo] * (1 - t) + sorted_rows[:, hi] * t


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, projections: int = 64, seed: int = 0) -> float:
    """Squared sliced Wasserstein distance between the positions of ``[1, C, H, W]`` and ``[1, C, H', W']``.

    Each position's C-vector is a sample; both sets are projected on the same ``projections`` random
    unit directions (fixed by ``seed``), sorted, compared at ``min(H*W, H'*W')`` common quantiles, and
    the mean squared difference is divided by the mean square of ``y``'s projections (dimensionless).
    """
    c = x.shape[1]
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(c, projections, generator=gen, dtype=torch.float64)
    directions /= directions.norm(dim=0, keepdim=True)
    px = (x[0].double().flatten(1).T @ directions).T.sort(dim=1).values
    py = (y[0].double().flatten(1).T @ directions).T.sort(dim=1).values
    n = min(px.shape[1], py.shape[1])
    return float((_quantiles(px, n) - _quantiles(py, n)).pow(2).mean() / py.pow(2).mean().clamp_min(1e-24))


def sliced_wasserstein_ratio(picture: torch.Tensor, photo: torch.Tensor, painting: torch.Tensor) -> float:
    """The picture's sliced Wasserstein distance to the painting as a share of the photo's own (1 = the photo)."""
    return sliced_wasserstein(picture, painting) / max(sliced_wasserstein(photo, painting), 1e-24)
