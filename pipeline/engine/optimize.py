"""The per-image optimisation: only the target's pixels change, the network stays frozen.

``Stylizer`` is built once per job (network, style Gram matrices) and then stylizes any number of
images or frames. A coarse-to-fine schedule spends most evaluations at low resolution, where they
are cheap, and refines at full size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.config import CONTENT_LAYER, STYLE_LAYERS, EngineConfig, StyleConfig, StyleImage
from pipeline.engine.color import preserve_colors
from pipeline.engine.device import autocast_dtype, cpu_has_native_bf16, gram_dtype, resolve_device
from pipeline.engine.features import VGGFeatures, build_features
from pipeline.engine.losses import content_loss, gram, style_loss, temporal_loss, tv_loss
from pipeline.engine.style import StyleTarget
from pipeline.errors import DeviceMemoryError, InputError
from pipeline.media.images import fit_long_side, load_rgb, resize

# Called after every network evaluation: (evaluations done, evaluations planned, loss tensor).
# The loss is a tensor so that a caller who does not look at it costs no device synchronisation.
ProgressCallback = Callable[[int, int, torch.Tensor], None]

MIN_COARSE_SIDE = 64  # coarser levels than this carry too little structure to help


@dataclass
class TemporalTerm:
    """The previous stylized frame warped into this one, and where that warp can be trusted."""

    warped: torch.Tensor  # [B, 3, H, W] in [0, 1]
    mask: torch.Tensor  # [B, 1, H, W] in [0, 1]
    weight: float


@dataclass
class StylizeResult:
    image: torch.Tensor  # [B, 3, H, W] in [0, 1], on the stylizer's device
    losses: dict[str, float]  # terms at the last evaluation (summed over the batch), unweighted
    evaluations: int


def scale_schedule(height: int, width: int, scales: int, iterations: int) -> list[tuple[tuple[int, int], int]]:
    """Sizes from coarse to fine, each half the next, with evaluations per size.

    Each coarser level gets twice the evaluations of the next finer one (4/7, 2/7, 1/7 for three
    levels): at a quarter of the pixels they cost a quarter as much, and that is where the large
    structures of the style form. Levels whose short side would fall under ``MIN_COARSE_SIDE``
    are dropped.
    """
    long_side = max(height, width)
    sizes = []
    for level in range(scales - 1, -1, -1):
        side = round(long_side / 2**level)
        size = fit_long_side(height, width, side)
        if level == 0 or min(size) >= MIN_COARSE_SIDE:
            sizes.append(size)
    shares = [2 ** (len(sizes) - 1 - i) for i in range(len(sizes))]
    counts = [max(1, iterations * s // sum(shares)) for s in shares]
    counts[-1] += iterations - sum(counts)  # rounding goes to the finest level
    if counts[-1] < 1:  # fewer evaluations than levels: keep only the finest
        return [((height, width), iterations)]
    return list(zip(sizes, counts))


def _is_out_of_memory(exc: BaseException) -> bool:
    # CUDA raises torch.OutOfMemoryError; the CPU allocator a RuntimeError with this wording.
    return isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)


class Stylizer:
    """Holds the frozen network and the style targets; ``stylize`` optimises a batch of images."""

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
        cpu_bf16 = self.device.type == "cpu" and cpu_has_native_bf16()
        self.dtype = autocast_dtype(engine.precision, self.device.type, cpu_bf16)
        self.gram_dtype = gram_dtype(self.dtype, self.device.type, cpu_bf16)
        if features is None:
            features = build_features((*STYLE_LAYERS, CONTENT_LAYER), engine.weights, config.pooling)
        self.features = features.to(self.device)
        if self.device.type == "cuda":
            self.features = self.features.to(memory_format=torch.channels_last)
        images, weights = [], []
        for item in styles:
            if isinstance(item, StyleImage):
                images.append(load_rgb(item.path))
                weights.append(item.weight)
            else:
                images.append(item[0])
                weights.append(item[1])
        self.style = StyleTarget(self.features, images, weights, config.style_scale, self.dtype)

    def _features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.device.type == "cuda":
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            return self.features(image)

    def stylize(
        self,
        content: torch.Tensor,
        *,
        init: torch.Tensor | None = None,
        temporal: TemporalTerm | None = None,
        iterations: int | None = None,
        scales: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> StylizeResult:
        """Stylize ``content`` ``[B, 3, H, W]`` (RGB in [0, 1], already at the working size).

        ``init`` (same shape) overrides the configured initialisation, e.g. the previous frame.
        """
        cfg = self.config
        iterations = cfg.iterations if iterations is None else iterations
        scales = cfg.scales if scales is None else scales
        height, width = content.shape[-2:]
        if min(height, width) < self.features.min_size:
            raise InputError(
                f"image of {width}x{height} px is too small: at least {self.features.min_size} px "
                "on each side is needed"
            )
        try:
            content = content.to(self.device, non_blocking=True)
            schedule = scale_schedule(height, width, scales, iterations)
            x = self._initial(content, init, schedule[0][0])
            done, losses = 0, {}
            for size, count in schedule:
                x = resize(x.detach(), size) if tuple(x.shape[-2:]) != size else x.detach()
                x, losses = self._optimize_at(x, resize(content, size), temporal, count, done, iterations,
                                              on_progress)
                done += count
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_out_of_memory(exc):
                raise
            raise self._out_of_memory(content.shape[0], height, width) from None
        image = x.detach().clamp(0, 1)
        if cfg.preserve_colors:
            image = preserve_colors(image, content)
        return StylizeResult(image, {k: float(v) for k, v in losses.items()}, done)

    def _out_of_memory(self, batch: int, height: int, width: int) -> DeviceMemoryError:
        """A clear error for a frame too large for the device: the user can fix it with --size."""
        where = str(self.device)
        if self.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.device).total_memory / 2**30
            where = f"{torch.cuda.get_device_name(self.device)} ({total:.0f} GiB)"
            torch.cuda.empty_cache()  # give the memory back before the caller carries on or exits
        smaller = max(16, int(max(height, width) * 0.7) // 16 * 16)
        images = f"{batch} images of " if batch > 1 else ""
        return DeviceMemoryError(
            f"out of memory: stylizing {images}{width}x{height} px does not fit in the memory of {where}; "
            f"use a smaller --size (e.g. --size {smaller})"
        )

    def _initial(self, content: torch.Tensor, init: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if init is not None:
            return resize(init.to(self.device), size)
        mode = self.config.init
        if mode == "content":
            return resize(content, size)
        if mode == "noise":
            gen = torch.Generator(device="cpu").manual_seed(self.config.seed)
            noise = torch.randn((content.shape[0], 3, *size), generator=gen)
            return (0.5 + 0.1 * noise).clamp(0, 1).to(self.device)
        # A path: an image file, resized to the content's shape.
        image = load_rgb(mode).expand(content.shape[0], -1, -1, -1)
        return resize(image, size).to(self.device)

    def _terms(self, x: torch.Tensor, content_target: torch.Tensor, style_targets: list[torch.Tensor]):
        """The unweighted loss terms ``[B]`` of images ``x``: content, style, total variation."""
        feats = self._features(x)
        return {
            "content": content_loss(feats[CONTENT_LAYER], content_target),
            "style": style_loss([gram(feats[n], self.gram_dtype) for n in STYLE_LAYERS], style_targets,
                                self.config.style_layer_weights),
            "tv": tv_loss(x),
        }

    @torch.no_grad()
    def measure(self, image: torch.Tensor, content: torch.Tensor) -> dict[str, list[float]]:
        """The loss terms of finished images ``[B, 3, H, W]`` against their contents, per image.

        The same measure the optimisation minimises, at the images' own size, so results made in
        different ways (other inits, a temporal term, a resumed run) can be compared on one scale.
        """
        image, content = image.to(self.device), content.to(self.device)
        style_targets = self.style.grams(max(image.shape[-2:]))
        terms = self._terms(image, self._features(content)[CONTENT_LAYER], style_targets)
        return {name: value.float().cpu().tolist() for name, value in terms.items()}

    def _optimize_at(self, x, content, temporal, count, done, total, on_progress):
        cfg = self.config
        long_side = max(content.shape[-2:])
        style_targets = self.style.grams(long_side)
        with torch.no_grad():
            content_target = self._features(content)[CONTENT_LAYER].detach()
        warped = mask = None
        if temporal is not None and temporal.weight > 0:
            warped = resize(temporal.warped.to(self.device), tuple(content.shape[-2:]))
            mask = F.interpolate(temporal.mask.to(self.device), size=tuple(content.shape[-2:]), mode="bilinear",
                                 align_corners=False)
        x = x.clone(memory_format=torch.contiguous_format).requires_grad_(True)
        evaluations = 0
        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            nonlocal evaluations
            optimizer.zero_grad(set_to_none=True)
            terms = self._terms(x, content_target, style_targets)
            loss = (cfg.content_weight * terms["content"] + cfg.style_weight * terms["style"]
                    + cfg.tv_weight * terms["tv"])
            if warped is not None:
                terms["temporal"] = temporal_loss(x, warped, mask)
                loss = loss + temporal.weight * terms["temporal"]
            loss = loss.sum()  # independent images: the sum keeps their gradients independent
            loss.backward()
            evaluations += 1
            last.clear()
            last.update({k: v.detach().sum() for k, v in terms.items()}, total=loss.detach())
            if on_progress is not None:
                on_progress(done + evaluations, total, loss.detach())
            return loss

        if cfg.optimizer == "lbfgs":
            # One step() runs the whole budget; tolerances of 0 make it spend exactly `count`
            # evaluations, so "iterations" means the same for every optimiser and schedule.
            optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=count, max_eval=count, tolerance_grad=0.0,
                                          tolerance_change=0.0, history_size=50)
            optimizer.step(closure)
        else:
            optimizer = torch.optim.Adam([x], lr=cfg.learning_rate)
            for _ in range(count):
                optimizer.step(closure)
                with torch.no_grad():
                    x.clamp_(0, 1)  # Adam moves each pixel a little: keep it a valid colour
        return x.detach(), last
