"""The per-image optimisation: only the target's pixels change, the network stays frozen.

``Stylizer`` is built once per job (network, style Gram matrices) and then stylizes any number of
images or frames. A coarse-to-fine schedule spends most evaluations at low resolution, where they
are cheap and where the large structures of the style form, and refines at the finer levels up to
the output's size with fewer evaluations each. Each evaluation is pipeline/engine/evaluate.py's,
whole or tile by tile as the memory allows (pipeline/engine/memory.py); when one runs out of memory
anyway, the stylizer retries it with smaller tiles; a batch that does not fit even then raises
DeviceMemoryError, and the folder job stylizes its images one at a time (pipeline/jobs/folder.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

import torch
import torch.nn.functional as F

from pipeline.config import CONTENT_LAYER, STYLE_LAYERS, EngineConfig, StyleConfig, StyleImage
from pipeline.engine import memory
from pipeline.engine.color import preserve_colors
from pipeline.engine.device import gram_dtype, has_native_bf16, network_dtype, resolve_device
from pipeline.engine.evaluate import (
    FeatureStatistics,
    Plan,
    Targets,
    TemporalTerm,
    Weights,
    evaluate,
    feature_statistics,
)
from pipeline.engine.features import VGGFeatures, build_features
from pipeline.engine.losses import content_loss, style_loss, tv_loss
from pipeline.engine.style import StyleTarget
from pipeline.errors import DeviceMemoryError, InputError, setting
from pipeline.media.images import fit_long_side, load_rgb, resize

__all__ = ["Level", "ProgressCallback", "Stylizer", "StylizeResult", "TemporalTerm", "loss_weights", "scale_schedule"]

# Called after every network evaluation: (evaluations done, evaluations planned, loss tensor).
# The loss is a tensor so that a caller who does not look at it costs no device synchronisation.
ProgressCallback = Callable[[int, int, torch.Tensor], None]
NoticeCallback = Callable[[str], None]

MIN_COARSE_SIDE = 64  # coarser levels than this carry too little structure to help
# The long side up to which the coarse levels form the picture (the default --size): finer levels
# only refine it, with fewer evaluations each (StyleConfig.refine_iterations).
BASE_SIDE = 512
MIN_REFINE = 10  # evaluations at a refining level: L-BFGS needs a few to build its curvature estimate
# L-BFGS keeps 2 vectors of the image's size per remembered step: at 12 MP that is 290 MB a step,
# so the history shrinks with the image (pipeline/engine/memory.py's budget), never below this.
MIN_HISTORY, MAX_HISTORY = 5, 50
# From this many pixels on, the memory an evaluation freed is handed back to the system after it
# (memory.give_back_freed): it then takes seconds, the hand-back under a millisecond or two.
TRIM_PIXELS = 2**20
# Every layer is channels_last: measured faster than NCHW or equal on every CPU path here (AMX bf16,
# AVX512-BF16 bf16, AVX-512 fp32) once the Gram products read that layout as it is, and the layout
# cuDNN prefers (docs/performance.md).
CHANNELS_LAST = True


T = TypeVar("T")


@dataclass
class StylizeResult:
    image: torch.Tensor  # [B, 3, H, W] in [0, 1], on the stylizer's device
    losses: dict[str, float]  # terms at the last evaluation (summed over the batch), unweighted
    evaluations: int


class Level(NamedTuple):
    """One level of the coarse-to-fine schedule."""

    size: tuple[int, int]  # (height, width)
    iterations: int  # evaluations spent at this size


def scale_schedule(height: int, width: int, scales: int, iterations: int,
                   refine_iterations: int = 0) -> list[Level]:
    """Sizes from coarse to fine, each half the next, with evaluations per size.

    ``scales`` coarse levels end at the largest level whose long side is at most ``BASE_SIDE`` (the
    output itself when it is that small) and share ``iterations``: each coarser level gets twice the
    evaluations of the next finer one (4/7, 2/7, 1/7 for three levels). At a quarter of the pixels
    they cost a quarter as much, and that is where the large structures of the style form. Levels
    whose short side would fall under ``MIN_COARSE_SIDE`` are dropped. Above them, each level up to
    the output's size refines: ``refine_iterations`` at the first, half as many at each next one (at
    least ``MIN_REFINE``), so a 12 MP output costs a few evaluations at full size, not hundreds.
    ``scales=1`` is a single level: all ``iterations`` at the output's size.
    """
    long_side = max(height, width)
    if scales <= 1:
        return [Level(size=(height, width), iterations=iterations)]
    top = 0  # the finest coarse level: long_side / 2**top
    while long_side / 2**top > BASE_SIDE:
        top += 1
    sizes = []
    for level in range(top + scales - 1, top - 1, -1):
        size = fit_long_side(height, width, round(long_side / 2**level)) if level else (height, width)
        if level == top or min(size) >= MIN_COARSE_SIDE:
            sizes.append(size)
    shares = [2 ** (len(sizes) - 1 - i) for i in range(len(sizes))]
    counts = [max(1, iterations * s // sum(shares)) for s in shares]
    counts[-1] += iterations - sum(counts)  # rounding goes to the finest coarse level
    if counts[-1] < 1:  # fewer evaluations than levels: keep only the finest coarse level
        sizes, counts = sizes[-1:], [iterations]
    schedule = [Level(size=size, iterations=count) for size, count in zip(sizes, counts)]
    for step, level in enumerate(range(top - 1, -1, -1)):
        size = fit_long_side(height, width, round(long_side / 2**level)) if level else (height, width)
        schedule.append(Level(size=size, iterations=max(MIN_REFINE, refine_iterations >> step)))
    return schedule


def loss_weights(config: StyleConfig) -> Weights:
    """The weights of the loss terms, as ``config`` sets them."""
    return Weights(content=config.content_weight, style=config.style_weight, tv=config.tv_weight,
                   layers=tuple(config.style_layer_weights))


@dataclass
class _Fitted(Generic[T]):
    """A computation that fitted in memory, and the plan it ran with (kept for the next ones of its size)."""

    result: T
    plan: Plan | None


def _is_out_of_memory(exc: BaseException) -> bool:
    # CUDA raises torch.OutOfMemoryError; the CPU allocator a RuntimeError with this wording.
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in text or "bad_alloc" in text


class Stylizer:
    """Holds the frozen network and the style targets; ``stylize`` optimises a batch of images.

    Every style setting (loss weights, style scale, iterations, ...) is read from ``config`` when it
    is used, never copied when the stylizer is built: ``with_config`` gives the same network and
    style images other settings. Only the network (``engine``, ``config.pooling``) is fixed when built.
    """

    def __init__(
        self,
        styles: Sequence[StyleImage] | Sequence[tuple[torch.Tensor, float]],
        config: StyleConfig = StyleConfig(),
        engine: EngineConfig = EngineConfig(),
        features: VGGFeatures | None = None,
    ):
        self.config = config
        self.engine = engine
        self.device = resolve_device(engine.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes per job: let cuDNN pick its kernels
        native_bf16 = has_native_bf16(self.device)
        self.dtype = network_dtype(engine.precision, native_bf16)
        self.gram_dtype = gram_dtype(self.dtype, self.device.type, native_bf16)
        if features is None:
            features = build_features((*STYLE_LAYERS, CONTENT_LAYER), engine.weights, config.pooling)
        self.features = features.variant(self.device, self.dtype, CHANNELS_LAST)
        self.memory_cap: float | None = None  # bytes, lowered when an evaluation ran out of memory
        self._told_tiles = False
        images, weights = [], []
        for item in styles:
            if isinstance(item, StyleImage):
                images.append(load_rgb(item.path))
                weights.append(item.weight)
            else:  # an image already in memory: (RGB [1, 3, H, W] in [0, 1], blend weight)
                image, weight = item
                images.append(image)
                weights.append(weight)
        self.style = StyleTarget(self.features, images, weights, plan_for=self.plan)

    def with_config(self, config: StyleConfig) -> Stylizer:
        """This stylizer with other style settings: it shares the network and the style images' Gram
        matrices (cached per size and style scale), so each setting of a preview costs no new set-up."""
        if config.pooling != self.features.pooling:
            raise ValueError(f"the network pools with {self.features.pooling}, the config with {config.pooling}")
        other = copy.copy(self)
        other.config = config
        return other

    def _style_grams(self, long_side: int) -> list[torch.Tensor]:
        """The style targets for an output of this long side, at the config's style scale."""
        return self.style.grams(long_side, self.config.style_scale)

    # ------------------------------------------------------------------ memory

    def budget(self, batch: int) -> float:
        """Bytes an evaluation may use: ``--tile N``'s tile, or a share of the memory free now (``auto``,
        ``off``), never more than what ran out of memory before."""
        tile = self.engine.tile
        if isinstance(tile, int):
            budget = memory.tile_budget(self.features, batch, tile)
        else:
            budget = memory.AUTO_SHARE * memory.available_bytes(self.device)
        return budget if self.memory_cap is None else min(budget, self.memory_cap)

    def plan(self, batch: int, height: int, width: int) -> Plan | None:
        """How to tile an evaluation of ``batch`` images of ``height x width`` (None: untiled)."""
        tile = self.engine.tile
        if tile == "off" and self.memory_cap is None:
            return None
        if isinstance(tile, int) and self.memory_cap is None:  # --tile N: the first stage's tiles as asked
            return memory.choose_plan(self.features, batch, height, width, self.budget(batch),
                                      min(tile, memory.MIN_TILE), first_tile=tile)
        return memory.choose_plan(self.features, batch, height, width, self.budget(batch))

    def _history(self, x: torch.Tensor) -> int:
        """L-BFGS steps to remember: as many as half the evaluation's budget holds, within the bounds."""
        pair = 2 * x.numel() * x.element_size()
        return max(MIN_HISTORY, min(MAX_HISTORY, int(self.budget(x.shape[0]) / 2 // pair)))

    def _retry_smaller(self, plan: Plan | None, batch: int, height: int, width: int,
                       on_notice: NoticeCallback | None) -> Plan:
        """After an evaluation ran out of memory: the next smaller plan, said once per stylizer."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        smaller = memory.smaller(self.features, batch, height, width, plan)
        if smaller is None:
            raise self._out_of_memory(batch, height, width)
        self.memory_cap = memory.plan_bytes(self.features, batch, height, width, smaller)
        first_core = smaller[0]
        assert first_core is not None  # every plan but the untiled one tiles the first stage
        if on_notice is not None and not self._told_tiles:
            on_notice(f"out of memory evaluating {width}x{height} px; continuing in smaller tiles "
                      f"({first_core * self.features.stages()[0].scale} px)")
        self._told_tiles = True
        return smaller

    def _out_of_memory(self, batch: int, height: int, width: int) -> DeviceMemoryError:
        """A clear error for images too large for the device even in the smallest tiles."""
        where = str(self.device)
        if self.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.device).total_memory / 2**30
            where = f"{torch.cuda.get_device_name(self.device)} ({total:.0f} GiB)"
            torch.cuda.empty_cache()  # give the memory back before the caller carries on or exits
        smaller = max(16, int(max(height, width) * 0.7) // 16 * 16)
        images = f"{batch} images of " if batch > 1 else ""
        size = setting("StyleConfig.size")
        return DeviceMemoryError(
            f"out of memory: stylizing {images}{width}x{height} px does not fit in the memory of {where} even in "
            f"{memory.MIN_TILE} px tiles; use a smaller {size} (e.g. {size} {smaller})"
        )

    def _retrying(self, compute: Callable[[Plan | None], T], plan: Plan | None, batch: int, height: int,
                  width: int, on_notice: NoticeCallback | None) -> _Fitted[T]:
        """``compute(plan)`` and the plan it ran with, retried with smaller plans while it runs out of memory."""
        while True:
            try:
                return _Fitted(result=compute(plan), plan=plan)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not _is_out_of_memory(exc):
                    raise
                plan = self._retry_smaller(plan, batch, height, width, on_notice)

    def _fitting(self, compute: Callable[[Plan | None], T], batch: int, height: int, width: int,
                 on_notice: NoticeCallback | None) -> T:
        """``compute(plan)`` with the plan for this size, retried with smaller plans while it runs out of memory."""
        return self._retrying(compute, self.plan(batch, height, width), batch, height, width, on_notice).result

    # ------------------------------------------------------------------ stylize

    def stylize(
        self,
        content: torch.Tensor,
        *,
        init: torch.Tensor | None = None,
        temporal: TemporalTerm | None = None,
        iterations: int | None = None,
        scales: int | None = None,
        on_progress: ProgressCallback | None = None,
        on_notice: NoticeCallback | None = None,
    ) -> StylizeResult:
        """Stylize ``content`` ``[B, 3, H, W]`` (RGB in [0, 1], already at the output's size).

        ``init`` (same shape) overrides the configured initialisation, e.g. the previous frame.
        ``on_notice`` hears, once, that the stylizer went on in smaller tiles after running out of memory.
        """
        height, width = content.shape[-2:]
        if min(height, width) < self.features.min_size:
            raise InputError(
                f"image of {width}x{height} px is too small: at least {self.features.min_size} px "
                "on each side is needed"
            )
        cfg = self.config
        iterations = cfg.iterations if iterations is None else iterations
        scales = cfg.scales if scales is None else scales
        content = content.to(self.device, non_blocking=True)
        schedule = scale_schedule(height, width, scales, iterations, cfg.refine_iterations)
        total = sum(level.iterations for level in schedule)
        x = self._initial(content, init, schedule[0].size)
        done, losses = 0, {}
        for level in schedule:
            # Each level's start is a new tensor that the level optimises in place: at 12 MP a copy
            # kept beside it would be one more 144 MB image.
            x = resize(x, level.size)
            x, losses = self._optimize_at(x, resize(content, level.size), temporal, level.iterations, done, total,
                                          on_progress, on_notice)
            memory.give_back_freed(self.device)  # the level's optimiser state, before the next, larger level
            done += level.iterations
        image = x.detach().clamp(0, 1)
        if cfg.preserve_colors:
            image = preserve_colors(image, content)
        return StylizeResult(image=image, losses={k: float(v) for k, v in losses.items()}, evaluations=done)

    def _initial(self, content: torch.Tensor, init: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        """The starting image at ``size``: a tensor of its own (the optimiser changes it in place)."""
        if init is not None:
            start = resize(init.to(self.device), size)
        elif self.config.init == "content":
            start = resize(content, size)
        elif self.config.init == "noise":
            gen = torch.Generator(device="cpu").manual_seed(self.config.seed)
            noise = torch.randn((content.shape[0], 3, *size), generator=gen)
            start = (0.5 + 0.1 * noise).clamp(0, 1).to(self.device)
        else:  # a path: an image file, resized to the content's shape
            image = load_rgb(self.config.init).expand(content.shape[0], -1, -1, -1)
            start = resize(image, size).to(self.device)
        return start.clone(memory_format=torch.contiguous_format)

    def _content_target(self, content: torch.Tensor, on_notice: NoticeCallback | None) -> torch.Tensor:
        batch, (height, width) = content.shape[0], content.shape[-2:]

        def compute(plan: Plan | None) -> torch.Tensor:
            stats = feature_statistics(self.features, content, self.gram_dtype, plan, keep=(CONTENT_LAYER,))
            return stats.maps[CONTENT_LAYER]

        return self._fitting(compute, batch, height, width, on_notice).detach()

    @torch.no_grad()
    def measure(self, image: torch.Tensor, content: torch.Tensor) -> dict[str, list[float]]:
        """The loss terms of finished images ``[B, 3, H, W]`` against their contents, per image.

        The same measure the optimisation minimises, at the images' own size, so results made in
        different ways (other inits, a temporal term, a resumed run) can be compared on one scale.
        """
        image, content = image.to(self.device), content.to(self.device)
        batch, (height, width) = image.shape[0], image.shape[-2:]
        style_targets = self._style_grams(max(height, width))
        target = self._content_target(content, None)

        def compute(plan: Plan | None) -> FeatureStatistics:
            return feature_statistics(self.features, image, self.gram_dtype, plan, keep=(CONTENT_LAYER,))

        stats = self._fitting(compute, batch, height, width, None)
        terms = {
            "content": content_loss(stats.maps[CONTENT_LAYER], target),
            "style": style_loss(stats.grams, style_targets, loss_weights(self.config).layers),
            "tv": tv_loss(image),
        }
        return {name: value.float().cpu().tolist() for name, value in terms.items()}

    def _optimize_at(self, x, content, temporal, count, done, total, on_progress, on_notice):
        cfg = self.config
        # The loss's weights and its gradient's come from one place: the config this level optimises with.
        weights = loss_weights(cfg)
        batch, (height, width) = content.shape[0], content.shape[-2:]
        targets = Targets(content=self._content_target(content, on_notice),
                          style=self._style_grams(max(height, width)))
        term = None
        if temporal is not None and temporal.weight > 0:
            warped = resize(temporal.warped.to(self.device), (height, width))
            mask = F.interpolate(temporal.mask.to(self.device), size=(height, width), mode="bilinear",
                                 align_corners=False)
            term = TemporalTerm(warped=warped, mask=mask, weight=temporal.weight)
        x = x.detach().contiguous().requires_grad_(True)
        plan = self.plan(batch, height, width)
        evaluations = 0
        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            nonlocal evaluations, plan

            def attempt(tiles: Plan | None) -> dict[str, torch.Tensor]:
                optimizer.zero_grad(set_to_none=True)  # a failed attempt may have left part of a gradient
                return evaluate(self.features, x, targets, weights, self.gram_dtype, tiles, term)

            fitted = self._retrying(attempt, plan, batch, height, width, on_notice)
            terms, plan = fitted.result, fitted.plan  # the plan that worked is kept for the next evaluations
            if height * width >= TRIM_PIXELS:
                memory.give_back_freed(self.device)  # the evaluation's freed tiles and maps
            loss = (weights.content * terms["content"] + weights.style * terms["style"]
                    + weights.tv * terms["tv"])
            if term is not None:
                loss = loss + term.weight * terms["temporal"]
            loss = loss.sum()  # independent images: the sum keeps their gradients independent
            evaluations += 1
            last.clear()
            last.update({k: v.sum() for k, v in terms.items()}, total=loss)
            if on_progress is not None:
                on_progress(done + evaluations, total, loss)
            return loss

        optimizer: torch.optim.Optimizer
        if cfg.optimizer == "lbfgs":
            # One step() runs the whole budget; tolerances of 0 make it spend exactly `count`
            # evaluations, so "iterations" means the same for every optimiser and schedule.
            optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=count, max_eval=count, tolerance_grad=0.0,
                                          tolerance_change=0.0, history_size=self._history(x))
            optimizer.step(closure)
        else:
            optimizer = torch.optim.Adam([x], lr=cfg.learning_rate)
            for _ in range(count):
                optimizer.step(closure)
                with torch.no_grad():
                    x.clamp_(0, 1)  # Adam moves each pixel a little: keep it a valid colour
        return x.detach(), last
