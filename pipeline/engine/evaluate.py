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
from torch import nn

from pipeline.config import CONTENT_LAYER, STYLE_LAYERS
from pipeline.engine.features import RunResult, Stage, VGGFeatures
from pipeline.engine.losses import (
    LossAndGradient,
    content_loss,
    content_share,
    gram,
    gram_backward,
    style_loss,
    temporal_loss_and_gradient,
    tv_loss_and_gradient,
)
from pipeline.engine.tiling import Owned, Tile, Window, tiles

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
    if plan is None or is_untiled(plan):
        feats = net(x)
        terms = {
            "content": content_loss(feats[CONTENT_LAYER], targets.content),
            "style": style_loss([gram(feats[n], gram_dtype) for n in STYLE_LAYERS], targets.style, weights.layers),
        }
        (weights.content * terms["content"] + weights.style * terms["style"]).sum().backward()
    else:
        terms = _TiledEvaluation(net, gram_dtype, plan, x).run(targets, weights)
    # The per-pixel terms with their gradients in closed form, once the network's memory is free again:
    # through autograd they would keep image-sized maps alive across the whole evaluation.
    terms["tv"] = _add_gradient(x, weights.tv, tv_loss_and_gradient(x.detach()))
    if temporal is not None:
        terms["temporal"] = _add_gradient(
            x, temporal.weight, temporal_loss_and_gradient(x.detach(), temporal.warped, temporal.mask))
    return {name: value.detach() for name, value in terms.items()}


def _add_gradient(x: torch.Tensor, weight: float, term: LossAndGradient) -> torch.Tensor:
    """Adds ``weight`` times a term's gradient to ``x.grad``; returns the term's loss."""
    assert x.grad is not None  # the network's part of the gradient is already there
    x.grad.add_(term.gradient, alpha=weight)
    return term.loss


@dataclass
class FeatureStatistics:
    """What the style and content terms compare of an image."""

    grams: list[torch.Tensor]  # [B, C, C] fp32, one per STYLE_LAYERS entry
    maps: dict[str, torch.Tensor]  # the whole maps [B, C, h, w] of the layers asked for


@torch.no_grad()
def feature_statistics(net: VGGFeatures, image: torch.Tensor, gram_dtype: torch.dtype, plan: Plan | None = None,
                       keep: Sequence[str] = ()) -> FeatureStatistics:
    """Gram matrices of ``STYLE_LAYERS`` and the whole maps of the ``keep`` layers of ``image``, tile by
    tile where ``plan`` says so (a style image or a content image at full resolution)."""
    if plan is None or is_untiled(plan):
        feats = net(image)
        return FeatureStatistics(grams=[gram(feats[n], gram_dtype) for n in STYLE_LAYERS],
                                 maps={n: feats[n] for n in keep})
    return _TiledEvaluation(net, gram_dtype, plan, image).statistics(keep)


@dataclass
class StageRecord:
    """What pass 1 leaves of one stage for the loss and for pass 2."""

    # The stage's input as it ran. A whole stage after the first runs on a leaf cut from the stage
    # before, so that pass 2 finds the gradient with respect to its input in ``input.grad``.
    input: torch.Tensor
    output: torch.Tensor | None  # the whole output map (None: a tiled last stage, whose output nothing reads)
    # The whole image's Gram matrices of the stage's style layers: inside the graph for a whole stage;
    # for a tiled one, sums over its tiles made leaves, so that the loss's backward leaves dL/dG in their grad.
    grams: dict[str, torch.Tensor]
    maps: dict[str, torch.Tensor]  # whole maps: every wanted layer of a whole stage, the kept ones of a tiled one


@dataclass
class _TiledContent:
    """The content term of a tiled stage, added up tile by tile in pass 2."""

    target: torch.Tensor  # [B, C, h, w] the content's features (Targets.content)
    weight: float
    energy: torch.Tensor  # [B] mean squared target: the relative error's denominator
    loss: torch.Tensor  # [B] the shares of the tiles done so far

    def gradient(self, part: torch.Tensor, whole: Window) -> torch.Tensor:
        """Adds the share of a tile's owned positions ``part`` (at ``whole`` in the map) to ``loss``;
        returns the weighted gradient there (fp32)."""
        target = self.target[..., whole.rows, whole.cols].float()
        share = content_share(part, target, self.target[0].numel(), self.energy)
        self.loss += share.loss
        return self.weight * share.gradient


class _TiledEvaluation:
    """One tiled evaluation of ``image``: pass 1 over the stages, the loss, then pass 2 from the last stage back."""

    def __init__(self, net: VGGFeatures, gram_dtype: torch.dtype, plan: Plan, image: torch.Tensor):
        self.net, self.gram_dtype, self.image = net, gram_dtype, image
        self.stages = net.stages()
        if len(plan) != len(self.stages):
            raise ValueError(f"a tile plan needs {len(self.stages)} entries, got {len(plan)}")
        self.plan = plan
        self.memory_format = torch.channels_last if net.channels_last else torch.contiguous_format
        self.denominators = self._denominators()

    # ------------------------------------------------------------------ helpers

    def _run(self, stage: Stage, inp: torch.Tensor) -> RunResult:
        if stage.start == 0:
            h = self.net.normalize(inp)
        else:
            h = inp.contiguous(memory_format=self.memory_format)
        return self.net.run(h, stage.start, stage.stop, {layer.name for layer in stage.layers})

    def _map_size(self, stage: Stage) -> tuple[int, int]:
        """Height and width of the stage's input map."""
        return self.image.shape[-2] // stage.scale, self.image.shape[-1] // stage.scale

    def _tiles(self, stage: Stage, core: int) -> list[Tile]:
        return tiles(*self._map_size(stage), core, stage.halo, stage.align)

    def _owned(self, tile: Tile, stage: Stage, scale: int) -> Owned:
        """The tile's owned positions of a layer ``scale`` times smaller than the stage's input."""
        return tile.owned(scale, *self._map_size(stage))

    def _part(self, tensor: torch.Tensor, local: Window) -> torch.Tensor:
        """A tile's owned positions of a layer, in the network's layout (the Gram products read it as one matrix)."""
        return tensor[..., local.rows, local.cols].contiguous(memory_format=self.memory_format)

    def _laid(self, whole_map: torch.Tensor | None, part: torch.Tensor, whole: Window, like: torch.Tensor,
              stage: Stage, scale: int) -> torch.Tensor:
        """``part`` laid at ``whole`` into a layer's whole map (made on first use, of ``like``'s channels,
        dtype and device, ``scale`` times smaller than the stage's input)."""
        if whole_map is None:
            height, width = self._map_size(stage)
            whole_map = torch.empty((self.image.shape[0], like.shape[1], height // scale, width // scale),
                                    dtype=like.dtype, device=like.device, memory_format=self.memory_format)
        whole_map[..., whole.rows, whole.cols] = part
        return whole_map

    def _denominators(self) -> dict[str, int]:
        """C*h*w of every wanted layer of the whole image: the Gram matrices' normalisation."""
        result = {}
        channels = {name: m.out_channels for name, m in self.net.stack.named_children() if isinstance(m, nn.Conv2d)}
        for stage in self.stages:
            sh, sw = self._map_size(stage)
            for layer in stage.layers:
                conv = layer.name.replace("relu", "conv")
                result[layer.name] = channels[conv] * (sh // layer.scale) * (sw // layer.scale)
        return result

    # ------------------------------------------------------------------ pass 1

    def _forward(self, keep: Sequence[str] = ()) -> list[StageRecord]:
        """Pass 1: each stage whole (with a graph, when grads are enabled) or tiled (without)."""
        records: list[StageRecord] = []
        inp: torch.Tensor | None = self.image
        for index, (stage, core) in enumerate(zip(self.stages, self.plan)):
            assert inp is not None  # only the last stage's output may be left out
            if core is None:
                record = self._forward_whole(stage, inp)
            else:
                record = self._forward_tiled(stage, core, inp, keep, last=index + 1 == len(self.stages))
                for g in record.grams.values():
                    g.requires_grad_(torch.is_grad_enabled())
            records.append(record)
            inp = record.output
        return records

    def _forward_whole(self, stage: Stage, inp: torch.Tensor) -> StageRecord:
        """A stage run whole; its graph (when grads are enabled) is kept for pass 2."""
        if stage.start > 0 and torch.is_grad_enabled():
            inp = inp.detach().requires_grad_(True)  # its grad: the gradient w.r.t. this stage's input
        run = self._run(stage, inp)
        grams = {layer.name: gram(run.activations[layer.name], self.gram_dtype, self.denominators[layer.name])
                 for layer in stage.layers if layer.name in STYLE_LAYERS}
        maps = {layer.name: run.activations[layer.name] for layer in stage.layers}
        return StageRecord(input=inp, output=run.output, grams=grams, maps=maps)

    @torch.no_grad()
    def _forward_tiled(self, stage: Stage, core: int, inp: torch.Tensor, keep: Sequence[str],
                       last: bool) -> StageRecord:
        """A stage run tile by tile without a graph: the whole image's Gram matrices as sums of the tiles'
        (in tile order), and the output and the ``keep`` layers laid into whole maps."""
        grams: dict[str, torch.Tensor] = {}
        maps: dict[str, torch.Tensor] = {}
        output = None
        for tile in self._tiles(stage, core):
            window = tile.read()
            run = self._run(stage, inp.detach()[..., window.rows, window.cols])
            for layer in stage.layers:
                if layer.name not in STYLE_LAYERS and layer.name not in keep:
                    continue
                activation = run.activations[layer.name]
                owned = self._owned(tile, stage, layer.scale)
                part = self._part(activation, owned.local)
                if layer.name in STYLE_LAYERS:
                    g = gram(part, self.gram_dtype, self.denominators[layer.name])
                    grams[layer.name] = g if layer.name not in grams else grams[layer.name] + g
                if layer.name in keep:
                    maps[layer.name] = self._laid(maps.get(layer.name), part, owned.whole, activation, stage,
                                                  layer.scale)
            if not last:
                owned = self._owned(tile, stage, stage.align)
                output = self._laid(output, self._part(run.output, owned.local), owned.whole, run.output, stage,
                                    stage.align)
        return StageRecord(input=inp, output=output, grams=grams, maps=maps)

    def statistics(self, keep: Sequence[str]) -> FeatureStatistics:
        """``feature_statistics`` of the image: pass 1 alone."""
        records = self._forward(keep)
        grams = {name: g for record in records for name, g in record.grams.items()}
        maps = {name: m for record in records for name, m in record.maps.items() if name in keep}
        return FeatureStatistics(grams=[grams[name] for name in STYLE_LAYERS], maps=maps)

    # ------------------------------------------------------------------ the evaluation

    def run(self, targets: Targets, weights: Weights) -> dict[str, torch.Tensor]:
        """The content and style terms ``[B]``; their weighted gradient goes into the image's grad."""
        records = self._forward()
        style, content = self._loss_from_pass_1(records, targets, weights)
        energy = targets.content.float().pow(2).flatten(1).mean(1).clamp_min(1e-12)
        tiled_content = _TiledContent(target=targets.content, weight=weights.content, energy=energy,
                                      loss=torch.zeros(self.image.shape[0], device=self.image.device))
        # The list itself, whose entries pass 2 takes off one by one (a copy would keep them all alive).
        self._pass_2(records, tiled_content)
        return {"content": content if content is not None else tiled_content.loss, "style": style}

    def _loss_from_pass_1(self, records: list[StageRecord], targets: Targets,
                          weights: Weights) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The style loss, and the content loss when its stage ran whole (else None: pass 2 adds it up),
        backpropagated into the tiled stages' Gram matrices and through the whole stages' graphs."""
        grams = {name: g for record in records for name, g in record.grams.items()}
        style = style_loss([grams[name] for name in STYLE_LAYERS], targets.style, weights.layers)
        content_stage = next(i for i, s in enumerate(self.stages)
                             if any(layer.name == CONTENT_LAYER for layer in s.layers))
        content = None
        total = weights.style * style
        if self.plan[content_stage] is None:
            content = content_loss(records[content_stage].maps[CONTENT_LAYER], targets.content)
            total = total + weights.content * content
        # Whole stages followed by a tiled one still need their graph for pass 2's gradient.
        retain = any(core is None and later is not None for core, later in zip(self.plan, self.plan[1:]))
        total.sum().backward(retain_graph=retain)
        return style, content

    # ------------------------------------------------------------------ pass 2

    def _pass_2(self, records: list[StageRecord], content: _TiledContent) -> None:
        """From the last stage back, each stage's gradient with respect to its input, down to the image's.
        Takes the records out of ``records`` as it goes."""
        grad_out = None  # gradient w.r.t. the output of the stage being processed (None for the last)
        for index in range(len(self.stages) - 1, -1, -1):
            stage, core = self.stages[index], self.plan[index]
            # Each stage's record is let go once its pass 2 is done: at 12 MP the whole-image buffer
            # between the stages is 192 MB that the first stage's pass 2 no longer needs.
            record = records.pop()
            if core is None:
                grad_out = self._backward_whole(stage, record, grad_out)
            else:
                inp, grams = record.input, record.grams
                del record  # its output: a whole-image buffer this stage's pass 2 does not read
                grad_out = self._backward_tiled(stage, core, inp, grams, grad_out, content)

    @staticmethod
    def _backward_whole(stage: Stage, record: StageRecord, grad_out: torch.Tensor | None) -> torch.Tensor | None:
        """A whole stage's pass 2, through the graph kept from pass 1 (the loss's own backward already went
        through it): the gradient w.r.t. its input, or None for the first (it went into the image's grad)."""
        if grad_out is not None:
            assert record.output is not None  # a stage before another keeps its output
            torch.autograd.backward(record.output, grad_out)
        return None if stage.start == 0 else record.input.grad

    def _backward_tiled(self, stage: Stage, core: int, inp: torch.Tensor, grams: dict[str, torch.Tensor],
                        grad_out: torch.Tensor | None, content: _TiledContent) -> torch.Tensor | None:
        """A tiled stage's pass 2, tile by tile: the gradient w.r.t. its input, or None for the first
        (whose gradient goes into the image's grad)."""
        first = stage.start == 0
        grad_in = self.image.grad if first else torch.zeros(inp.shape, dtype=torch.float32, device=inp.device)
        if grad_in is None:
            grad_in = self.image.grad = torch.zeros_like(self.image)
        for tile in self._tiles(stage, core):
            window = tile.read()
            piece = inp.detach()[..., window.rows, window.cols].requires_grad_(True)
            self._backward_tile(stage, tile, piece, grams, grad_out, content)
            assert piece.grad is not None  # every tile reaches some owned position the loss reads
            grad_in[..., window.rows, window.cols] += piece.grad
        # The next stage lays this gradient into tiles of the network's dtype: kept in that dtype,
        # the same values take half the memory (the fp32 sum was for the halos' overlaps).
        return None if first else grad_in.to(self.net.dtype)

    def _backward_tile(self, stage: Stage, tile: Tile, piece: torch.Tensor, grams: dict[str, torch.Tensor],
                       grad_out: torch.Tensor | None, content: _TiledContent) -> None:
        """One tile run again with a graph: the loss's gradient w.r.t. the features it owns, and ``grad_out``
        at the outputs it owns, backpropagated into ``piece.grad``."""
        run = self._run(stage, piece)
        outputs, grads = [], []
        for layer in stage.layers:
            activation = run.activations[layer.name]
            grad = self._layer_gradient(layer.name, activation, self._owned(tile, stage, layer.scale), grams,
                                        content)
            if grad is not None:
                outputs.append(activation)
                grads.append(grad)
        if grad_out is not None:
            owned = self._owned(tile, stage, stage.align)
            grad = torch.zeros_like(run.output)
            grad[..., owned.local.rows, owned.local.cols] = grad_out[..., owned.whole.rows, owned.whole.cols]
            outputs.append(run.output)
            grads.append(grad)
        torch.autograd.backward(outputs, grads)

    def _layer_gradient(self, name: str, layer: torch.Tensor, owned: Owned, grams: dict[str, torch.Tensor],
                        content: _TiledContent) -> torch.Tensor | None:
        """The loss's gradient w.r.t. a tile's map of layer ``name``: at its owned positions, zero in its halo;
        None where the loss does not read the layer."""
        local = owned.local
        # Gradients are laid into a whole-tile tensor of the layer's own layout: slicing the layer
        # inside the graph would hand autograd a gradient of the other layout.
        grad = None
        gram_grad = grams[name].grad if name in STYLE_LAYERS else None  # dL/dG, left by the loss's backward
        if gram_grad is not None:
            grad = torch.zeros_like(layer)
            grad[..., local.rows, local.cols] = gram_backward(self._part(layer, local), gram_grad, self.gram_dtype,
                                                              self.denominators[name])
        if name == CONTENT_LAYER:
            grad = torch.zeros_like(layer) if grad is None else grad
            grad[..., local.rows, local.cols] += content.gradient(self._part(layer, local).float(),
                                                                  owned.whole).to(layer.dtype)
        return grad
