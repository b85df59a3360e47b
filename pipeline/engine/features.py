"""VGG19 as a frozen feature extractor.

The network is truncated after the deepest layer the losses need, its parameters never get
gradients (they would cost about a third of the backward pass), and the input normalisation of the
chosen weights lives inside, so callers pass RGB images in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from pipeline.engine.weights import VGG19_BLOCKS, VGGWeights, load_weights


def layer_names() -> list[str]:
    """All layer names of VGG19's feature stack in order: conv1_1, relu1_1, ..., pool5."""
    names = []
    for block, n_convs in VGG19_BLOCKS:
        for c in range(1, n_convs + 1):
            names += [f"conv{block}_{c}", f"relu{block}_{c}"]
        names.append(f"pool{block}")
    return names


LAYER_NAMES = tuple(layer_names())


class VGGFeatures(nn.Module):
    """Returns the named activations of an RGB [0, 1] batch ``[B, 3, H, W]``."""

    def __init__(self, weights: VGGWeights, layers: Iterable[str], pooling: str = "max"):
        super().__init__()
        self.layers = tuple(dict.fromkeys(layers))
        unknown = [name for name in self.layers if name not in LAYER_NAMES]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s): {', '.join(unknown)}")
        deepest = max(LAYER_NAMES.index(name) for name in self.layers)
        norm = weights.normalization
        self.register_buffer("channel_order", torch.tensor(norm.channel_order), persistent=False)
        self.register_buffer("mean", torch.tensor(norm.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(norm.std).view(1, 3, 1, 1), persistent=False)
        self.scale = norm.scale

        stack = nn.Sequential()
        for name in LAYER_NAMES[: deepest + 1]:
            if name.startswith("conv"):
                weight, bias = weights.convs[name]
                conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=3, padding=1)
                conv.weight.data.copy_(weight)
                conv.bias.data.copy_(bias)
                stack.add_module(name, conv)
            elif name.startswith("relu"):
                # Not in-place: the activation before the ReLU is never kept, but the output is.
                stack.add_module(name, nn.ReLU(inplace=False))
            else:
                pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
                stack.add_module(name, pool(kernel_size=2, stride=2))
        self.stack = stack
        self.n_pools = sum(1 for name in LAYER_NAMES[: deepest + 1] if name.startswith("pool"))
        self.eval()
        self.requires_grad_(False)

    @property
    def min_size(self) -> int:
        """Smallest image side the pooling stack can take (each pool halves the size)."""
        return 2**self.n_pools

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        x = image.index_select(1, self.channel_order) * self.scale
        return (x - self.mean) / self.std

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an RGB batch [B, 3, H, W], got shape {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if min(h, w) < self.min_size:
            raise ValueError(
                f"image of {w}x{h} px is too small: VGG19 up to {self.layers[-1]} needs at least "
                f"{self.min_size} px on each side"
            )
        x = self.normalize(image)
        wanted = set(self.layers)
        out = {}
        for name, module in self.stack.named_children():
            x = module(x)
            if name in wanted:
                out[name] = x
        return out


def build_features(
    layers: Iterable[str], weights: str | VGGWeights = "original", pooling: str = "max"
) -> VGGFeatures:
    if isinstance(weights, str):
        weights = load_weights(weights)
    return VGGFeatures(weights, layers, pooling)
