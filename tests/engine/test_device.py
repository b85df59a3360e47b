"""Precision detection: which CPUs and GPUs get bf16 under --precision auto (pure functions and faked
devices, no hardware needed), and the device's messages."""

from pathlib import Path

import pytest
import torch

from pipeline.engine import device as device_module
from pipeline.engine.device import (
    ARM_BF16_FLAGS,
    X86_BF16_FLAGS,
    cpu_bf16_flags,
    cpu_computes_bf16,
    cuda_computes_bf16,
    gram_dtype,
    has_native_bf16,
    network_dtype,
    resolve_device,
)
from pipeline.errors import ConfigError


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


@pytest.mark.parametrize(("major", "rocm", "expected"), [
    (9, False, True),  # H100
    (8, False, True),  # A100, RTX 30xx: the first with bf16 arithmetic
    (7, False, False),  # V100 (7.0), T4 and RTX 20xx (7.5): bf16 emulated at best
    (6, False, False),  # P100
    (9, True, True),  # ROCm: every AMD GPU torch runs on takes bf16
])
def test_native_bf16_on_gpus(major, rocm, expected):
    assert cuda_computes_bf16(major, rocm) is expected


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), torch.float32), ((8, 0), torch.bfloat16)])
def test_auto_precision_on_a_faked_gpu(monkeypatch, capability, expected):
    """A T4 (7.5) gets fp32 under --precision auto, an A100 (8.0) bf16: the capability is asked of the
    job's own device (cuda:1 here), not of the current one."""
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    monkeypatch.setattr(torch.version, "hip", None)
    gpu = torch.device("cuda", 1)
    native = has_native_bf16(gpu)
    assert asked == [gpu]
    assert network_dtype("auto", native) == expected
    assert network_dtype("bf16", native) == torch.bfloat16  # asked for explicitly: honoured, emulated or not
    assert gram_dtype(network_dtype("auto", native), "cuda", native) == torch.float32  # CUDA: fp32 products


def test_the_cpu_check_is_the_cpus(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert has_native_bf16(torch.device("cpu"))
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert not has_native_bf16(torch.device("cpu"))


@pytest.mark.parametrize(("precision", "native_bf16", "expected"), [
    ("auto", True, torch.bfloat16),
    ("auto", False, torch.float32),
    ("fp32", True, torch.float32),
    ("fp32", False, torch.float32),
    ("bf16", False, torch.bfloat16),  # asked for explicitly: honoured even where it is emulated
])
def test_network_dtype(precision, native_bf16, expected):
    assert network_dtype(precision, native_bf16) == expected


@pytest.mark.parametrize(("network", "device", "native_bf16", "expected"), [
    (torch.bfloat16, "cpu", True, torch.bfloat16),  # the default path on this kind of CPU
    (torch.bfloat16, "cpu", False, torch.float32),  # --precision bf16 forced on an emulating CPU
    (torch.float32, "cpu", True, torch.float32),  # --precision fp32: everything fp32
    (torch.bfloat16, "cuda", True, torch.float32),  # CUDA keeps fp32 products (not measured yet)
    (torch.bfloat16, "cuda", False, torch.float32),
])
def test_gram_dtype(network, device, native_bf16, expected):
    assert gram_dtype(network, device, native_bf16) == expected


def test_device_messages_name_the_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    flags = {"EngineConfig.device": "--device"}.get
    with pytest.raises(ConfigError) as err:
        resolve_device("cuda")
    assert str(err.value) == ("EngineConfig.device cuda: no CUDA GPU is available here "
                              "(use EngineConfig.device cpu or auto)")
    assert err.value.render(flags) == "--device cuda: no CUDA GPU is available here (use --device cpu or auto)"
    with pytest.raises(ConfigError) as err:
        resolve_device("tpu")
    assert err.value.render(flags) == "--device 'tpu': expected auto, cpu, cuda or cuda:N"
