"""VGG19 as a frozen feature extractor, whole or in stages.

The network is truncated after the deepest layer the losses need, its parameters never get
gradients (they would cost about a third of the backward pass), and the input normalisation of the
chosen weights lives inside, so callers pass RGB images in [0, 1].

For images too large to evaluate at once, the stack is cut into **stages** at pooling layers
(``stages``); pipeline/engine/tiling.py runs a stage tile by tile. Each stage knows its **halo**: how
far the zero padding at a tile's edge reaches into the tile's outputs, so that a tile read with that
margin computes exactly the features of the whole image at the positions it owns.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from pipeline.engine.weights import VGG19_BLOCKS, VGGWeights, load_weights


def layer_names() -> list[str]:
    """All layer names of VGG19's feature stack in order: conv1_1, relu1_1, ..., pool5."""
    names = []
    for block in VGG19_BLOCKS:
        for c in range(1, block.convs + 1):
            names += [f"conv{block.number}_{c}", f"relu{block.number}_{c}"]
        names.append(f"pool{block.number}")
    return names


LAYER_NAMES = tuple(layer_names())

# Where the stack is cut for tiled evaluation (pipeline/engine/tiling.py). After pool2 the maps have a
# sixteenth of the image's positions: blocks 1-2 hold about two thirds of an evaluation's memory but
# only a quarter of its arithmetic, blocks 3-5 the rest. Cutting there lets a large image tile the
# memory-heavy part with a halo of 8 px while the compute-heavy part often runs whole (no recomputation).
STAGE_CUTS = ("pool2",)


class StageLayer(NamedTuple):
    """A wanted layer computed in a stage, and its downsampling relative to the stage's input."""

    name: str
    scale: int


@dataclass(frozen=True)
class Stage:
    """Modules ``[start, stop)`` of the stack, run on a map ``scale`` times smaller than the image.

    ``halo``: margin, in units of the stage's input, that makes a tile's owned outputs exact (the
    reach of the convolutions' zero padding, rounded up to ``align``). ``align``: the stage's total
    downsampling; tile edges sit on multiples of it so that every pooling window is the whole
    image's. ``layers``: the wanted layers computed here, each with its downsampling relative to the
    stage's input.
    """

    start: int
    stop: int
    scale: int
    halo: int
    align: int
    layers: tuple[StageLayer, ...]


def stage_reach(kinds: Iterable[str]) -> tuple[int, int]:
    """``(halo before alignment, total downsampling)`` of a run of ``conv``/``pool`` layers (3x3, pad 1; 2x2, stride 2).

    A tile's border zeros spoil one more position per 3x3 convolution; a 2x2 pooling aligned to the
    tile halves the spoiled band (rounding up). The reach is the widest band over all outputs, in
    units of the input. Pure, so the arithmetic is tested on its own.
    """
    band, scale, reach = 0, 1, 0
    for kind in kinds:
        if kind == "conv":
            band += 1
        elif kind == "pool":
            band, scale = math.ceil(band / 2), scale * 2
        reach = max(reach, band * scale)
    return reach, scale


@dataclass
class RunResult:
    """What ``VGGFeatures.run`` computed: the last module's output and the wanted layers' activations."""

    output: torch.Tensor
    activations: dict[str, torch.Tensor]


class VGGFeatures(nn.Module):
    """Returns the named activations of an RGB [0, 1] batch ``[B, 3, H, W]``."""

    # Buffers (register_buffer below): the weight source's input convention.
    channel_order: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

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
        self.pooling = pooling

        stack = nn.Sequential()
        for name in LAYER_NAMES[: deepest + 1]:
            if name.startswith("conv"):
                source = weights.convs[name]
                conv = nn.Conv2d(source.weight.shape[1], source.weight.shape[0], kernel_size=3, padding=1)
                assert conv.bias is not None  # Conv2d has a bias unless told otherwise
                conv.weight.data.copy_(source.weight)
                conv.bias.data.copy_(source.bias)
                stack.add_module(name, conv)
            elif name.startswith("relu"):
                # Not in-place: the activation before the ReLU is never kept, but the output is.
                stack.add_module(name, nn.ReLU(inplace=False))
            else:
                pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
                stack.add_module(name, pool(kernel_size=2, stride=2))
        self.stack = stack
        self.names = tuple(name for name, _ in stack.named_children())
        self.n_pools = sum(1 for name in self.names if name.startswith("pool"))
        self.channels_last = False
        self._variants: dict[tuple, VGGFeatures] = {}  # a plain dict: not registered as submodules
        self.eval()
        self.requires_grad_(False)

    @property
    def min_size(self) -> int:
        """Smallest image side the pooling stack can take (each pool halves the size)."""
        return 2**self.n_pools

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype  # every weight has the same

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def variant(self, device: torch.device, dtype: torch.dtype, channels_last: bool) -> VGGFeatures:
        """This network on ``device`` with weights in ``dtype`` and the given memory layout.

        A copy when anything differs (cached), so that several stylizers sharing one network (the
        preview, the benchmark's fp32 comparison) each get the form they run fastest in.
        """
        if (self.device, self.dtype, self.channels_last) == (torch.device(device), dtype, channels_last):
            return self
        key = (str(device), dtype, channels_last)
        if key not in self._variants:
            net = copy.deepcopy(self)
            net._variants = {}
            net.to(device=device, dtype=dtype)
            if channels_last:
                net.to(memory_format=torch.channels_last)
            net.channels_last = channels_last
            self._variants[key] = net
        return self._variants[key]

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] -> the network's input, in its dtype and memory layout (normalised in fp32)."""
        x = image.float().index_select(1, self.channel_order.to(image.device)) * self.scale
        x = ((x - self.mean.float()) / self.std.float()).to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def check_size(self, height: int, width: int) -> None:
        if min(height, width) < self.min_size:
            raise ValueError(
                f"image of {width}x{height} px is too small: VGG19 up to {self.layers[-1]} needs at least "
                f"{self.min_size} px on each side"
            )

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an RGB batch [B, 3, H, W], got shape {tuple(image.shape)}")
        self.check_size(*image.shape[-2:])
        return self.run(self.normalize(image), 0, len(self.names), set(self.layers)).activations

    def run(self, x: torch.Tensor, start: int, stop: int, wanted: set[str]) -> RunResult:
        """Modules ``[start, stop)`` on a normalised map: the last output and the wanted activations."""
        out = {}
        for name, module in zip(self.names[start:stop], self.stack[start:stop]):
            x = module(x)
            if name in wanted:
                out[name] = x
        return RunResult(output=x, activations=out)

    def stages(self, cuts: Iterable[str] = STAGE_CUTS) -> list[Stage]:
        """The stack cut after each pooling layer in ``cuts`` (those it has), with each stage's halo."""
        bounds = [0, *sorted(self.names.index(c) + 1 for c in cuts if c in self.names[:-1]), len(self.names)]
        stages, scale = [], 1
        for start, stop in zip(bounds, bounds[1:]):
            names = self.names[start:stop]
            kinds = [n[:4] for n in names]
            reach, align = stage_reach(kinds)
            layers, local = [], 1
            for name, kind in zip(names, kinds):
                local *= 2 if kind == "pool" else 1
                if name in self.layers:
                    layers.append(StageLayer(name=name, scale=local))
            halo = math.ceil(reach / align) * align
            stages.append(Stage(start=start, stop=stop, scale=scale, halo=halo, align=align, layers=tuple(layers)))
            scale *= align
        return stages


def build_features(
    layers: Iterable[str], weights: str | VGGWeights = "original", pooling: str = "max"
) -> VGGFeatures:
    if isinstance(weights, str):
        weights = load_weights(weights)
    return VGGFeatures(weights, layers, pooling)
