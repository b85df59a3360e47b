"""Style targets: the Gram matrices of the style image(s), computed once per output size and style scale.

Several styles are blended by a weighted average of their Gram matrices (weights normalised to sum
to 1), so a blend with weights (1, 0) is exactly the first style alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from pipeline.engine.evaluate import Plan, feature_statistics
from pipeline.engine.features import VGGFeatures
from pipeline.media.images import resize_long_side


class StyleTarget:
    """Blended style Gram matrices for ``STYLE_LAYERS``, cached per output long side and style scale.

    The style scale is asked for with each call rather than kept from when the target was made: the
    caller's config says it (StyleConfig.style_scale), and a preview's tiles share one target at several.
    """

    def __init__(
        self,
        features: VGGFeatures,
        images: Sequence[torch.Tensor],
        weights: Sequence[float],
        plan_for: Callable[[int, int, int], Plan | None] = lambda _b, _h, _w: None,
    ):
        if not images:
            raise ValueError("at least one style image is needed")
        if len(images) != len(weights):
            raise ValueError(f"{len(images)} style images but {len(weights)} blend weights")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("style blend weights must be non-negative and not all zero")
        total = float(sum(weights))
        self.features = features
        self.images = [img.cpu() for img in images]  # full-size originals, resized per scale
        self.weights = [w / total for w in weights]
        self.plan_for = plan_for  # (batch, height, width) -> how to tile a style image that large
        self._cache: dict[tuple[int, float], list[torch.Tensor]] = {}
        self.computations = 0  # how many times Gram matrices were computed (tests check "once")

    @torch.no_grad()
    def grams(self, output_long_side: int, style_scale: float) -> list[torch.Tensor]:
        """``[1, C, C]`` fp32 Gram matrices, one per style layer, for an output of this long side, with the
        style images ``style_scale`` times its size."""
        key = (output_long_side, style_scale)
        if key not in self._cache:
            self._cache[key] = self._compute(output_long_side, style_scale)
        return self._cache[key]

    def _compute(self, output_long_side: int, style_scale: float) -> list[torch.Tensor]:
        self.computations += 1
        device = self.features.device
        long_side = round(output_long_side * style_scale)
        blended = None
        for image, weight in zip(self.images, self.weights):
            if weight == 0:
                continue
            h, w = image.shape[-2:]
            # A long, thin painting must still fit the pooling stack on its short side.
            side = max(long_side, math.ceil(self.features.min_size * max(h, w) / min(h, w)))
            x = resize_long_side(image, side).to(device)
            # fp32 products: the targets are computed once, their precision is worth the time.
            stats = feature_statistics(self.features, x, torch.float32, self.plan_for(1, *x.shape[-2:]))
            grams = [weight * g for g in stats.grams]
            blended = grams if blended is None else [a + b for a, b in zip(blended, grams)]
        assert blended is not None  # the weights were checked to add up to 1: one at least is positive
        return blended
