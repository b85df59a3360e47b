"""Joining Ray and shaping the workers: how many, how many threads, GPUs or not.

Ray is imported inside the functions: the one-process path never pays for it (or needs it installed).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from pipeline.config import ScaleConfig
from pipeline.errors import ConfigError, setting

# --workers auto on a cluster without GPUs: one worker per this many cores. Several threads per
# worker keep the per-worker memory (the network, the style targets) in proportion to the work.
CPU_CORES_PER_WORKER = 4


@dataclass(frozen=True)
class WorkerShape:
    """What each worker actor asks Ray for, and how it runs."""

    count: int
    num_cpus: float  # Ray's CPU resource per worker (fractional when workers outnumber cores)
    num_gpus: float  # 0 on CPU-only clusters or with --device cpu: CPU workers never wait for a GPU
    threads: int  # torch intra-op threads in each worker


def worker_shape(scale: ScaleConfig, cpus: float, gpus: float, device: str = "auto") -> WorkerShape:
    """Workers for a cluster of ``cpus`` cores and ``gpus`` GPUs (Ray's resource totals).

    One worker per GPU when there are GPUs and the job may use them; otherwise single- or few-threaded
    CPU workers that share the cores evenly (a pure function, so it is tested without a cluster).
    """
    use_gpus = gpus >= 1 and device != "cpu"
    if scale.workers in ("auto", None):  # None: a cluster was named (--ray-address) without a count
        count = int(gpus) if use_gpus else max(1, int(cpus) // CPU_CORES_PER_WORKER)
    else:
        count = int(scale.workers)
    share = max(cpus, 1.0) / count
    threads = scale.threads or max(1, int(share))
    # More workers than cores still all start (fractional CPUs), they just share the cores.
    num_cpus = min(float(threads), share)
    num_gpus = min(1.0, gpus / count) if use_gpus else 0.0
    return WorkerShape(count=count, num_cpus=num_cpus, num_gpus=num_gpus, threads=threads)


def connect(scale: ScaleConfig) -> bool:
    """Join the cluster at ``scale.address`` or start a local Ray; True when this call started it.

    A Ray the caller already started (ray.init in a test, a notebook) is used as it is.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{setting('ScaleConfig.workers')} and {setting('ScaleConfig.address')} need Ray: "
                          "pip install 'stylize[ray]'") from None
    if ray.is_initialized():
        return False
    # Our library never prints; Ray's own start-up chatter stays out of the user's terminal too.
    # (Typed Any: ray.init's keywords each have their own type, which a dict of them cannot say.)
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if scale.address:
        _check_reachable(scale.address)
        try:
            ray.init(address=scale.address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{setting('ScaleConfig.address')} {scale.address}: cannot join a Ray cluster there "
                              f"({exc}); start one with `ray start --head`") from None
    else:
        # Ray runs its workers at niceness +15 by default, so that its own daemons stay responsive.
        # Here the workers do the job's work while the driver waits: at +15 they would lose the cores
        # to any other program on the machine, which the one-process job does not; 0 keeps the
        # command's own priority (`nice stylize-images ...` still applies to them).
        ray.init(num_cpus=usable_cpus(), include_dashboard=False, _system_config={"worker_niceness": 0}, **quiet)
    return True


def usable_cpus() -> int:
    """The cores this process may run on: fewer than the machine's under taskset, a cgroup cpuset or a
    Slurm allocation, and those are the ones the workers share (os.cpu_count() counts them all)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


def _check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody answers at: Ray itself retries for minutes before giving up."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return  # "auto" reads the address `ray start` left on this machine; ray:// is Ray Client
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        flag = setting("ScaleConfig.address")
        raise ConfigError(f"{flag} {address}: no Ray cluster answers there ({exc}); start one with "
                          f"`ray start --head`, or use {flag} auto on its head node") from None


@dataclass(frozen=True)
class ClusterResources:
    """What the cluster Ray is connected to holds in all (Ray's resource totals)."""

    cpus: float
    gpus: float


def cluster_resources() -> ClusterResources:
    import ray

    total = ray.cluster_resources()
    return ClusterResources(cpus=float(total.get("CPU", 1.0)), gpus=float(total.get("GPU", 0.0)))
