"""Executors: where a job's work runs. The jobs own their work; an executor only runs it.

    work.py      what a job hands an executor (a setup and a work function) and what comes back
    local.py     this process (the default; never imports Ray)
    ray_pool.py  Ray workers on this machine or a cluster (the optional ``stylize[ray]`` extra)
    cluster.py   joining or starting Ray, and how many workers of what shape a cluster holds

``executor_for(scale)`` makes the choice for the CLI: Ray only when workers or a cluster were asked for.
"""

from __future__ import annotations

from pipeline.config import ScaleConfig
from pipeline.scale.work import Executor


def executor_for(scale: ScaleConfig | None = None) -> Executor:
    """Ray workers when ``scale`` asks for workers or a cluster, else this process (Ray not imported)."""
    if scale is None or not scale.distributed:
        from pipeline.scale.local import LocalExecutor

        return LocalExecutor()
    from pipeline.scale.ray_pool import RayExecutor

    return RayExecutor(scale)
