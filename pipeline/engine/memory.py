"""How much memory an evaluation takes, how much there is, and the tile plan that fits.

The estimate counts what autograd keeps for the backward pass, layer by layer (ReLU outputs, pooling
indices and outputs), plus the gradients alive during the backward, in the network's dtype. It was
checked against the peak resident memory of evaluations on the CPU (docs/performance.md: 1.1-1.3 KB
per pixel untiled in bf16, against 1.27 KB estimated). The optimiser's own vectors (the image, its
gradient, L-BFGS's history) are counted apart, by the optimiser.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.engine.evaluate import Plan
from pipeline.engine.features import Stage, VGGFeatures

# Gradients alive at once during a backward pass, in units of the stage's largest layer: the one
# flowing in, the one flowing out, and one being accumulated where a layer feeds two consumers.
BACKWARD_LIVE = 3
# The smallest tile the plan goes down to, in image pixels: below it the halo costs more than the tile.
MIN_TILE = 256
# Share of the memory found free that the plan may use: the rest is left to the optimiser's vectors,
# the decoded frames and everything else in the process, and to estimates that run a little short.
AUTO_SHARE = 0.5


@dataclass(frozen=True)
class StageCost:
    """Bytes per position of a stage's input map, for one image."""

    saved: float  # kept by autograd from the forward to the backward
    largest: float  # the largest single activation (the unit of the backward's live gradients)
    output: float  # the stage's output (a whole-image buffer when the stage is tiled)
    channels_in: int


def stage_cost(net: VGGFeatures, stage: Stage) -> StageCost:
    element = torch.finfo(net.dtype).bits // 8
    saved, largest, scale, channels, output = 0.0, 0.0, 1, 3, 0.0
    channels_in = 3 if stage.start == 0 else next(
        m.in_channels for m in net.stack[stage.start:stage.stop] if isinstance(m, torch.nn.Conv2d))
    for name, module in zip(net.names[stage.start:stage.stop], net.stack[stage.start:stage.stop]):
        if isinstance(module, torch.nn.Conv2d):
            channels = module.out_channels
            largest = max(largest, channels / scale**2 * element)
        elif name.startswith("relu"):
            saved += channels / scale**2 * element
        else:  # pooling: its output (the next convolution's input) and, for max pooling, int64 indices
            scale *= 2
            output = channels / scale**2 * element
            saved += output + (channels / scale**2 * 8 if net.pooling == "max" else 0)
    return StageCost(saved=saved, largest=largest, output=output, channels_in=channels_in)


def read_area(core: int, halo: int, length: tuple[int, int]) -> int:
    """Positions a tile with this core reads at most (core plus halo on both sides, within the map)."""
    return min(core + 2 * halo, length[0]) * min(core + 2 * halo, length[1])


@dataclass(frozen=True)
class PlanBytes:
    """The memory one evaluation takes under a plan, in bytes."""

    working: float  # the peak of the network's working set
    buffers: float  # the whole-image buffers between tiled stages


def plan_parts(net: VGGFeatures, batch: int, height: int, width: int, plan: Plan | None) -> PlanBytes:
    """The memory of one evaluation of ``batch`` images of ``height x width`` under ``plan``."""
    stages = net.stages()
    plan = plan or (None,) * len(stages)
    retained, peak, buffers = 0.0, 0.0, 0.0
    for index, (stage, core) in enumerate(zip(stages, plan)):
        cost = stage_cost(net, stage)
        size = (height // stage.scale, width // stage.scale)
        if core is None:
            whole = size[0] * size[1] * batch
            retained += cost.saved * whole
            peak = max(peak, retained + BACKWARD_LIVE * cost.largest * whole)
        else:
            area = read_area(core, stage.halo, size) * batch
            peak = max(peak, retained + (cost.saved + BACKWARD_LIVE * cost.largest) * area)
            # The tiled stage's whole output, and the fp32 gradient of its input when that is a map.
            buffers += cost.output * size[0] * size[1] * batch
            if index > 0:
                buffers += 4 * cost.channels_in * size[0] * size[1] * batch
    return PlanBytes(working=peak, buffers=buffers)


def plan_bytes(net: VGGFeatures, batch: int, height: int, width: int, plan: Plan | None) -> float:
    """Estimated peak bytes of one evaluation of ``batch`` images of ``height x width`` under ``plan``."""
    parts = plan_parts(net, batch, height, width, plan)
    return parts.working + parts.buffers


def _cores(net: VGGFeatures, stage: Stage, batch: int, size: tuple[int, int], budget: float,
           min_tile: int) -> int | None:
    """The largest aligned tile core of ``stage`` whose working set fits ``budget``; None if not even the smallest."""
    cost = stage_cost(net, stage)
    per_position = (cost.saved + BACKWARD_LIVE * cost.largest) * batch
    side = math.isqrt(max(0, int(budget / per_position))) - 2 * stage.halo
    core = side // stage.align * stage.align
    if core < _smallest_core(stage, min_tile):
        return None
    return min(core, max(size))


def _smallest_core(stage: Stage, min_tile: int) -> int:
    return max(stage.align, min_tile // stage.scale // stage.align * stage.align)


def choose_plan(net: VGGFeatures, batch: int, height: int, width: int, budget: float,
                min_tile: int | None = None, first_tile: int | None = None) -> Plan | None:
    """The plan that recomputes least within ``budget`` bytes: untiled if it fits, else the shallow
    stages tiled (they hold most of the memory and little of the arithmetic) and the deep ones whole
    while they fit, else every stage tiled. None means untiled. When nothing fits, the smallest tiles.

    ``first_tile`` (``--tile N``): the first stage's tiles are N pixels as asked, ``budget`` bounds the
    working set of every stage, and the whole-image buffers between tiled stages come on top.
    """
    stages = net.stages()
    min_tile = MIN_TILE if min_tile is None else min_tile
    if plan_bytes(net, batch, height, width, None) <= budget:
        return None
    for tiled in range(1, len(stages) + 1):
        trial = tuple(1 if index < tiled else None for index in range(len(stages)))
        buffers = plan_parts(net, batch, height, width, trial).buffers
        room = budget if first_tile is not None else budget - buffers
        plan: list[int | None] = []
        for index, stage in enumerate(stages):
            size = (height // stage.scale, width // stage.scale)
            if index >= tiled:
                plan.append(None)
            elif index == 0 and first_tile is not None:
                plan.append(max(stage.align, first_tile // stage.align * stage.align))
            else:
                plan.append(_cores(net, stage, batch, size, room, min_tile))
        if None in plan[:tiled]:
            continue
        if plan_parts(net, batch, height, width, tuple(plan)).working <= room:
            return tuple(plan)
    return smallest_plan(net, min_tile)


def smallest_plan(net: VGGFeatures, min_tile: int | None = None) -> tuple[int, ...]:
    """Every stage tiled in tiles of ``min_tile`` image pixels (``MIN_TILE``): the last resort before giving up."""
    min_tile = MIN_TILE if min_tile is None else min_tile
    return tuple(_smallest_core(stage, min_tile) for stage in net.stages())


def tile_budget(net: VGGFeatures, batch: int, tile: int) -> float:
    """The bytes a ``tile x tile`` pixel tile of the first stage works in: ``--tile N`` bounds every stage by it."""
    stage = net.stages()[0]
    cost = stage_cost(net, stage)
    return (cost.saved + BACKWARD_LIVE * cost.largest) * (tile + 2 * stage.halo) ** 2 * batch


def smaller(net: VGGFeatures, batch: int, height: int, width: int, plan: Plan | None) -> Plan | None:
    """The next plan to try after ``plan`` ran out of memory: half its estimated memory; None when
    it is already the smallest."""
    smallest = smallest_plan(net)
    if plan is not None and all(core is not None and core <= least for core, least in zip(plan, smallest)):
        return None
    target = plan_bytes(net, batch, height, width, plan) / 2
    candidate = choose_plan(net, batch, height, width, target)
    return candidate if candidate != plan else smallest


def available_bytes(device: torch.device) -> int:
    """Memory free for this process now: CUDA's free memory plus what torch caches, or the machine's
    available RAM (MemAvailable: free plus reclaimable caches)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other Unixes
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30  # unknown: assume a modest machine rather than an unbounded one


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None under another C library."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def give_back_freed(device: torch.device) -> None:
    """Hands the memory this process has freed back to the system (CPU, glibc).

    glibc keeps freed blocks under its mmap threshold (which grows up to 32 MB) in its heaps for
    reuse. Each level of the coarse-to-fine schedule frees its L-BFGS history and the next level's
    blocks, four times larger, are mapped anew, so the old ones were never reused and the process
    grew level after level: measured at 1414x1060, 2.0 GB resident after the last level against 0.8
    GB after a trim (docs/performance.md). CUDA's caching allocator reuses its own blocks.
    """
    if device.type == "cpu" and (trim := _malloc_trim()) is not None:
        trim(0)
