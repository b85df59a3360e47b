"""One evaluation of the loss and its gradient with respect to the image: whole, or tile by tile.

This is the one function the optimiser calls (pipeline/engine/optimize.py), whatever the image's
size. Untiled, it is plain autograd. Tiled, it follows Galerne et al., "Scaling Painting Style
Transfer" (2022): the style loss depends on the image only through Gram matrices, which are sums
over positions, and the content, total-variation and temporal terms are sums over positions too, so

* pass 1 runs each tile (with the halo of pipeline/engine/features.py ``Stage``) without a graph and
  adds up the whole image's Gram matrices;
* the loss and its gradient with respect to each Gram matrix (``dL/dG``, global) follow from them;
* pass 2 runs each tile again with a graph and backpropagates ``dL/dF = (dL/dG + dL/dG^T) F`` of its
  own positions (local) into its pixels, which add up to the whole image's gradient.

Loss and gradient are the untiled ones (the halo makes each tile's owned features exact; only the
order of floating-point sums differs), and memory is bounded by a tile. The network is cut into
stages (``VGGFeatures.stages``); each is tiled or run whole on its own, so that the memory-heavy
first blocks can be tiled while the compute-heavy deep blocks, whose maps are 16 times smaller, run
whole and are never recomputed. A stage run whole keeps its graph from pass 1 to the backward, as in
the untiled evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pipeline.config import CONTENT_LAYER, STYLE_LAYERS
from pipeline.engine.features import Stage, VGGFeatures
from pipeline.engine.losses import (
    content_loss,
    content_share,
    gram,
    gram_backward,
    style_loss,
    temporal_loss_and_gradient,
    tv_loss_and_gradient,
)
from pipeline.engine.tiling import Tile, tiles

# One entry per stage of VGGFeatures.stages(): the tile core side in units of the stage's input, or
# None to run the stage whole. All None is the plain untiled evaluation.
Plan = tuple[int | None, ...]


@dataclass
class Targets:
    """What an image is compared with, at the size of the image being evaluated."""

    content: torch.Tensor  # [B, C, h, w] content features at CONTENT_LAYER (the network's dtype)
    style: list[torch.Tensor]  # [1 or B, C, C] fp32 Gram matrices, one per STYLE_LAYERS entry


@dataclass(frozen=True)
class Weights:
    content: float
    style: float
    tv: float
    layers: tuple[float, ...]  # one per STYLE_LAYERS entry


@dataclass
class TemporalTerm:
    """The previous stylized frame warped into this one, and where that warp can be trusted."""

    warped: torch.Tensor  # [B, 3, H, W] in [0, 1]
    mask: torch.Tensor  # [B, 1, H, W] in [0, 1]
    weight: float


def is_untiled(plan: Plan | None) -> bool:
    return plan is None or all(core is None for core in plan)


def evaluate(net: VGGFeatures, x: torch.Tensor, targets: Targets, weights: Weights, gram_dtype: torch.dtype,
             plan: Plan | None = None, temporal: TemporalTerm | None = None) -> dict[str, torch.Tensor]:
    """The loss terms ``[B]`` (unweighted, detached) of images ``x`` ``[B, 3, H, W]``; adds the gradient of
    the weighted total, summed over the batch, to ``x.grad``."""
    if is_untiled(plan):
        feats = net(x)
        terms = {
            "content": content_loss(feats[CONTENT_LAYER], targets.content),
            "style": style_loss([gram(feats[n], gram_dtype) for n in STYLE_LAYERS], targets.style, weights.layers),
        }
        (weights.content * terms["content"] + weights.style * terms["style"]).sum().backward()
    else:
        terms = _TiledEvaluation(net, targets, weights, gram_dtype, plan).run(x)
    # The per-pixel terms with their gradients in closed form, once the network's memory is free again:
    # through autograd they would keep image-sized maps alive across the whole evaluation.
    terms["tv"] = _add_gradient(x, weights.tv, *tv_loss_and_gradient(x.detach()))
    if temporal is not None:
        terms["temporal"] = _add_gradient(
            x, temporal.weight, *temporal_loss_and_gradient(x.detach(), temporal.warped, temporal.mask))
    return {name: value.detach() for name, value in terms.items()}


def _add_gradient(x: torch.Tensor, weight: float, loss: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Adds ``weight`` times a term's gradient to ``x.grad``; returns the term's loss."""
    x.grad.add_(grad, alpha=weight)
    return loss


@torch.no_grad()
def feature_statistics(net: VGGFeatures, image: torch.Tensor, gram_dtype: torch.dtype, plan: Plan | None = None,
                       keep: Sequence[str] = ()) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Gram matrices ``[B, C, C]`` of ``STYLE_LAYERS`` and the whole maps of the ``keep`` layers of ``image``,
    tile by tile where ``plan`` says so (a style image or a content image at full resolution)."""
    if is_untiled(plan):
        feats = net(image)
        return [gram(feats[n], gram_dtype) for n in STYLE_LAYERS], {n: feats[n] for n in keep}
    run = _TiledEvaluation(net, None, None, gram_dtype, plan)
    return run.forward_only(image, keep)


class _TiledEvaluation:
    """One tiled evaluation: pass 1 over the stages, the loss, then pass 2 from the last stage back."""

    def __init__(self, net: VGGFeatures, targets: Targets | None, weights: Weights | None,
                 gram_dtype: torch.dtype, plan: Plan):
        self.net, self.targets, self.weights, self.gram_dtype = net, targets, weights, gram_dtype
        self.stages = net.stages()
        if len(plan) != len(self.stages):
            raise ValueError(f"a tile plan needs {len(self.stages)} entries, got {len(plan)}")
        self.plan = plan

    # ------------------------------------------------------------------ helpers

    def _run(self, stage: Stage, inp: torch.Tensor, first: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if first:
            h = self.net.normalize(inp)
        else:
            h = inp.contiguous(memory_format=torch.channels_last if self.net.channels_last else torch.contiguous_format)
        wanted = {name for name, _ in stage.layers}
        return self.net.run(h, stage.start, stage.stop, wanted)

    def _tiles(self, stage: Stage, height: int, width: int, core: int) -> list[Tile]:
        return tiles(height, width, core, stage.halo, stage.align)

    @staticmethod
    def _map_size(image: torch.Tensor, stage: Stage) -> tuple[int, int]:
        return image.shape[-2] // stage.scale, image.shape[-1] // stage.scale

    def _empty_like_output(self, out: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
        fmt = torch.channels_last if self.net.channels_last else torch.contiguous_format
        return torch.empty((batch, out.shape[1], height, width), dtype=out.dtype, device=out.device,
                           memory_format=fmt)

    def _part(self, tensor: torch.Tensor, local: tuple[slice, slice]) -> torch.Tensor:
        """A tile's owned positions of a layer, in the network's layout (the Gram products read it as one matrix)."""
        part = tensor[..., local[0], local[1]]
        fmt = torch.channels_last if self.net.channels_last else torch.contiguous_format
        return part.contiguous(memory_format=fmt)

    def _owned(self, tensor: torch.Tensor, tile: Tile, scale: int, height: int, width: int):
        """(the tile's owned part of a layer, the slices of the whole layer it fills)."""
        whole, local = tile.owned(scale, height, width)
        return self._part(tensor, local), whole

    def _denominators(self, image: torch.Tensor) -> dict[str, float]:
        """C*h*w of every wanted layer of the whole image: the Gram matrices' normalisation."""
        result, (h, w) = {}, image.shape[-2:]
        channels = {name: m.out_channels for name, m in self.net.stack.named_children() if name.startswith("conv")}
        for stage in self.stages:
            sh, sw = h // stage.scale, w // stage.scale
            for name, scale in stage.layers:
                result[name] = channels[name.replace("relu", "conv")] * (sh // scale) * (sw // scale)
        return result

    # ------------------------------------------------------------------ pass 1

    def _forward(self, image: torch.Tensor, keep: Sequence[str] = ()):
        """Pass 1: each stage whole (with a graph, when grads are enabled) or tiled (without).

        Returns per stage: (its input as run, its output, its Gram matrices by layer, kept maps)."""
        self.denominators = denominators = self._denominators(image)
        records, inp = [], image
        batch = image.shape[0]
        for index, (stage, core) in enumerate(zip(self.stages, self.plan)):
            first, height, width = index == 0, *self._map_size(image, stage)
            grams, maps = {}, {}
            if core is None:
                if not first and torch.is_grad_enabled():
                    inp = inp.detach().requires_grad_(True)  # its grad: the gradient w.r.t. this stage's input
                out, feats = self._run(stage, inp, first)
                for name, _ in stage.layers:
                    if name in STYLE_LAYERS:
                        grams[name] = gram(feats[name], self.gram_dtype, denominators[name])
                    maps[name] = feats[name]
            else:
                with torch.no_grad():
                    out_full = None
                    full_maps = {}
                    for tile in self._tiles(stage, height, width, core):
                        rows, cols = tile.read()
                        out, feats = self._run(stage, inp.detach()[..., rows, cols], first)
                        for name, scale in stage.layers:
                            part, whole = self._owned(feats[name], tile, scale, height, width)
                            if name in STYLE_LAYERS:
                                g = gram(part, self.gram_dtype, denominators[name])
                                grams[name] = g if name not in grams else grams[name] + g
                            if name in keep:
                                if name not in full_maps:
                                    full_maps[name] = self._empty_like_output(
                                        feats[name], batch, height // scale, width // scale)
                                full_maps[name][..., whole[0], whole[1]] = part
                        if index + 1 < len(self.stages):
                            part, whole = self._owned(out, tile, stage.align, height, width)
                            if out_full is None:
                                out_full = self._empty_like_output(out, batch, height // stage.align,
                                                                   width // stage.align)
                            out_full[..., whole[0], whole[1]] = part
                    out = out_full
                    maps = full_maps
                grams = {name: g.requires_grad_(torch.is_grad_enabled()) for name, g in grams.items()}
            records.append((inp, out, grams, maps))
            inp = out
        return records

    def forward_only(self, image: torch.Tensor, keep: Sequence[str]):
        records = self._forward(image, keep)
        grams = {name: g for _, _, stage_grams, _ in records for name, g in stage_grams.items()}
        maps = {name: m for _, _, _, stage_maps in records for name, m in stage_maps.items() if name in keep}
        return [grams[name] for name in STYLE_LAYERS], maps

    # ------------------------------------------------------------------ the evaluation

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        targets, weights = self.targets, self.weights
        records = self._forward(x)
        grams = {name: g for _, _, stage_grams, _ in records for name, g in stage_grams.items()}
        style = style_loss([grams[name] for name in STYLE_LAYERS], targets.style, weights.layers)
        content_stage = next(i for i, s in enumerate(self.stages) if CONTENT_LAYER in dict(s.layers))
        content = None
        total = weights.style * style
        if self.plan[content_stage] is None:
            content = content_loss(records[content_stage][3][CONTENT_LAYER], targets.content)
            total = total + weights.content * content
        # Whole stages followed by a tiled one still need their graph for pass 2's gradient.
        retain = any(core is None and later is not None for core, later in zip(self.plan, self.plan[1:]))
        total.sum().backward(retain_graph=retain)

        grad_out = None  # gradient w.r.t. the output of the stage being processed (None for the last)
        content_sum = torch.zeros(x.shape[0], device=x.device)
        energy = targets.content.float().pow(2).flatten(1).mean(1).clamp_min(1e-12)
        for index in range(len(self.stages) - 1, -1, -1):
            stage, core = self.stages[index], self.plan[index]
            # Each stage's record is let go once its pass 2 is done: at 12 MP the whole-image buffer
            # between the stages is 192 MB that the first stage's pass 2 no longer needs.
            inp, out, stage_grams, _ = records[index]
            records[index] = None
            first = index == 0
            if core is None:
                if grad_out is not None:
                    torch.autograd.backward(out, grad_out)  # through this stage's kept graph
                grad_out = None if first else inp.grad
                continue
            del out
            height, width = self._map_size(x, stage)
            grad_in = x.grad if first else torch.zeros(inp.shape, dtype=torch.float32, device=inp.device)
            if grad_in is None:
                grad_in = x.grad = torch.zeros_like(x)
            for tile in self._tiles(stage, height, width, core):
                rows, cols = tile.read()
                piece = inp.detach()[..., rows, cols].requires_grad_(True)
                tile_out, feats = self._run(stage, piece, first)
                outputs, grads = [], []
                for name, scale in stage.layers:
                    layer = feats[name]
                    whole, local = tile.owned(scale, height, width)
                    # Gradients are laid into a whole-tile tensor of the layer's own layout: slicing the
                    # layer inside the graph would hand autograd a gradient of the other layout.
                    grad = None
                    if name in STYLE_LAYERS and stage_grams[name].grad is not None:
                        part = self._part(layer, local)
                        grad = torch.zeros_like(layer)
                        grad[..., local[0], local[1]] = gram_backward(part, stage_grams[name].grad, self.gram_dtype,
                                                                      self.denominators[name])
                    if name == CONTENT_LAYER:
                        part = self._part(layer, local).float()
                        target = targets.content[..., whole[0], whole[1]].float()
                        share, slope = content_share(part, target, targets.content[0].numel(), energy)
                        content_sum += share
                        grad = torch.zeros_like(layer) if grad is None else grad
                        grad[..., local[0], local[1]] += (weights.content * slope).to(layer.dtype)
                    if grad is not None:
                        outputs.append(layer)
                        grads.append(grad)
                if grad_out is not None:
                    whole, local = tile.owned(stage.align, height, width)
                    grad = torch.zeros_like(tile_out)
                    grad[..., local[0], local[1]] = grad_out[..., whole[0], whole[1]]
                    outputs.append(tile_out)
                    grads.append(grad)
                torch.autograd.backward(outputs, grads)
                grad_in[..., rows, cols] += piece.grad
            # The next stage lays this gradient into tiles of the network's dtype: kept in that dtype,
            # the same values take half the memory (the fp32 sum was for the halos' overlaps).
            grad_out = None if first else grad_in.to(self.net.dtype)
            del grad_in
        return {"content": content if content is not None else content_sum, "style": style}
