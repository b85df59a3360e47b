"""Precision detection: which CPUs get bf16 under --precision auto (pure functions, no hardware needed)."""

from pathlib import Path

import pytest
import torch

from pipeline.engine.device import (
    ARM_BF16_FLAGS,
    X86_BF16_FLAGS,
    cpu_bf16_flags,
    cpu_computes_bf16,
    gram_dtype,
    network_dtype,
)


@pytest.mark.parametrize(("machine", "flags", "expected"), [
    ("x86_64", {"avx512f", "avx512_bf16"}, True),  # AMD Zen 4/5, Intel Cooper Lake
    ("x86_64", {"amx_bf16", "amx_tile"}, True),  # Intel Sapphire Rapids and later
    ("AMD64", {"avx512_bf16"}, True),  # Windows spells the architecture so
    ("x86_64", {"avx512f", "avx512bw", "avx2"}, False),  # AVX-512 without BF16 (Skylake-SP): emulated only
    ("x86_64", {"bf16"}, False),  # an Arm flag name means nothing on x86
    ("aarch64", {"asimd", "bf16", "sve"}, True),  # Graviton 3, Neoverse V1
    ("arm64", {"bf16"}, True),
    ("aarch64", {"asimd", "sve"}, False),  # Graviton 2
    ("aarch64", {"avx512_bf16"}, False),
    ("ppc64le", {"bf16"}, False),  # unknown architectures stay fp32
])
def test_native_bf16_detection(machine, flags, expected):
    assert cpu_computes_bf16(machine, frozenset(flags)) is expected


def test_flags_of_this_cpu_agree_with_proc_cpuinfo():
    flags = cpu_bf16_flags()
    assert flags <= X86_BF16_FLAGS | ARM_BF16_FLAGS
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # what the file lists is found (torch's checks may add, never remove)
        listed = set(cpuinfo.read_text(errors="replace").split())
        assert (listed & (X86_BF16_FLAGS | ARM_BF16_FLAGS)) <= flags


@pytest.mark.parametrize(("precision", "device", "cpu_bf16", "expected"), [
    ("auto", "cpu", True, torch.bfloat16),
    ("auto", "cpu", False, torch.float32),
    ("auto", "cuda", False, torch.bfloat16),
    ("fp32", "cpu", True, torch.float32),
    ("fp32", "cuda", False, torch.float32),
    ("bf16", "cpu", False, torch.bfloat16),  # asked for explicitly: honoured even where it is emulated
])
def test_network_dtype(precision, device, cpu_bf16, expected):
    assert network_dtype(precision, device, cpu_bf16) == expected


@pytest.mark.parametrize(("network", "device", "cpu_bf16", "expected"), [
    (torch.bfloat16, "cpu", True, torch.bfloat16),  # the default path on this kind of CPU
    (torch.bfloat16, "cpu", False, torch.float32),  # --precision bf16 forced on an emulating CPU
    (torch.float32, "cpu", True, torch.float32),  # --precision fp32: everything fp32
    (torch.bfloat16, "cuda", False, torch.float32),  # CUDA keeps fp32 products (not measured yet)
])
def test_gram_dtype(network, device, cpu_bf16, expected):
    assert gram_dtype(network, device, cpu_bf16) == expected
