"""Device selection (``auto`` = CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N``) and the
network's precision on it (``EngineConfig.precision`` auto: bf16 where the hardware computes it natively)."""

from __future__ import annotations

import functools
import platform

import torch

from pipeline.errors import ConfigError, setting

DEVICE = setting("EngineConfig.device")  # messages name the setting; the CLI shows its flag


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"{DEVICE} {name!r}: expected auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{DEVICE} {name}: no CUDA GPU is available here (use {DEVICE} cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{DEVICE} {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise ConfigError(f"{DEVICE} {name!r}: expected auto, cpu, cuda or cuda:N")
    return device


# CPU features that mean "bf16 dot products in hardware", as /proc/cpuinfo spells them. Without
# them oneDNN still accepts bf16 on any AVX-512 CPU, but emulates it (converting to fp32 and back),
# so there is no speed to gain for the precision given up: that is why torch's mkldnn bf16 check,
# true on every AVX-512 CPU, is not the test on x86.
X86_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
ARM_BF16_FLAGS = frozenset({"bf16"})  # Armv8.6 BFDOT/BFMMLA (Graviton 3/4, Neoverse V1/V2/N2, ...)


def cpu_computes_bf16(machine: str, flags: frozenset[str]) -> bool:
    """Whether a CPU of architecture ``machine`` (``platform.machine()``) with these feature flags
    computes bf16 natively. Pure: the caller gathers the flags (see ``cpu_bf16_flags``)."""
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        return bool(flags & X86_BF16_FLAGS)
    if machine in ("aarch64", "arm64"):
        return bool(flags & ARM_BF16_FLAGS)
    return False


def cpu_bf16_flags() -> frozenset[str]:
    """The bf16-related feature flags of this CPU: from /proc/cpuinfo (Linux), and from torch's
    cpuinfo-based checks where the file is missing (Windows, macOS) or hides a feature."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):  # x86 / Arm spelling
                    flags.update(value.split())
                    break  # every core lists the same set
    except OSError:
        pass
    # torch's checks are private helpers: use them when present, never depend on them.
    cpu = getattr(torch, "cpu", None)
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        flags.add("avx512_bf16")
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        flags.add("amx_bf16")  # every AMX CPU so far (Sapphire Rapids on) has AMX-BF16
    if platform.machine().lower() in ("aarch64", "arm64"):
        try:  # on Arm this check is cpuinfo's own BF16 feature bit
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                flags.add("bf16")
        except (AttributeError, RuntimeError):  # a build without oneDNN: fp32, as before
            pass
    return frozenset(flags & (X86_BF16_FLAGS | ARM_BF16_FLAGS))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """``cpu_computes_bf16`` for this machine, detected once per process."""
    return cpu_computes_bf16(platform.machine(), cpu_bf16_flags())


# The first CUDA compute capability with bf16 arithmetic (Ampere: A100, RTX 30xx; Hopper, Ada, ...).
# Older GPUs (V100 7.0, T4 7.5) take bf16 tensors, but emulate their arithmetic or reject kernels.
CUDA_BF16_MAJOR = 8


def cuda_computes_bf16(major: int, rocm: bool) -> bool:
    """Whether a GPU of compute capability ``major``.x computes bf16 natively: Ampere (8.0) and later,
    and every GPU under ROCm (as torch itself judges). Pure: the caller asks the device.

    ``torch.cuda.is_bf16_supported()`` is not the test: by default it also says yes where bf16 is
    only emulated, and it asks about the current device rather than the one the job runs on.
    """
    return rocm or major >= CUDA_BF16_MAJOR


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (detected on the device itself)."""
    if device.type == "cuda":
        major, _minor = torch.cuda.get_device_capability(device)
        return cuda_computes_bf16(major, rocm=torch.version.hip is not None)
    return device.type == "cpu" and cpu_has_native_bf16()


def network_dtype(precision: str, native_bf16: bool) -> torch.dtype:
    """The dtype of the network's weights and activations for ``EngineConfig.precision`` on a device.

    ``auto``: bf16 where the device computes it natively (``native_bf16``: a CPU with the
    instructions, a GPU from Ampere on), else fp32. ``bf16`` is honoured anywhere, emulated or not.
    The image being optimised, the losses and the optimiser's state always stay fp32.
    """
    if precision == "bf16" or (precision == "auto" and native_bf16):
        return torch.bfloat16
    return torch.float32


def gram_dtype(network: torch.dtype, device_type: str, native_bf16: bool) -> torch.dtype:
    """The dtype the Gram matrix products take their inputs in (they always accumulate in fp32).

    bf16 only on CPUs that compute it natively and where the network already runs in bf16: its
    features hold bf16 values, so promoting them first adds no information, only a 4.5x slower
    fp32 GEMM (measured on an AVX512-BF16 EPYC). CUDA keeps fp32 products whatever the GPU: cuBLAS
    may reduce bf16 in reduced precision there, and it is not measured yet.
    """
    if network == torch.bfloat16 and device_type == "cpu" and native_bf16:
        return torch.bfloat16
    return torch.float32
