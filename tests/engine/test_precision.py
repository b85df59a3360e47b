"""Quality guard for the fast paths (bf16 autocast) and the out-of-memory message of the stylizer."""

import pytest
import torch

from bench.quality import Yardstick
from pipeline.config import EngineConfig, StyleConfig
from pipeline.engine import device as device_module
from pipeline.engine import optimize
from pipeline.engine.device import cpu_has_native_bf16
from pipeline.engine.optimize import Stylizer
from pipeline.errors import ConfigError, DeviceMemoryError
from pipeline.media.images import from_uint8
from tests.conftest import pattern, stripes

CONTENT = from_uint8(pattern(64, 48))
STYLE = from_uint8(stripes(64, 64))
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


def _bf16_against_fp32(features, device: str, fast: str) -> None:
    """Same inputs, same budget: the ``fast`` run's result, judged in fp32, is as good as the fp32 run's.

    One-sided: after 20 L-BFGS steps on a 64 px image the two runs' trajectories have parted (with
    the defaults, bf16 ended 5 % and 22 % below fp32 in two runs), so "as good" means no more than
    5 % worse; a broken fast path (wrong gradients, overflow) ends far above that."""
    results = {}
    for precision in ("fp32", fast):
        stylizer = Stylizer([(STYLE, 1.0)], StyleConfig(size=64, iterations=20, scales=1),
                            EngineConfig(device=device, precision=precision), features=features)
        assert stylizer.dtype == (torch.float32 if precision == "fp32" else torch.bfloat16)
        results[precision] = stylizer.stylize(CONTENT).image.cpu()
    yardstick = Yardstick(CONTENT, STYLE, 64, StyleConfig())
    fp32, bf16 = yardstick(results["fp32"]), yardstick(results[fast])
    start = yardstick(CONTENT)["total"]
    assert fp32["total"] < 0.5 * start  # the budget is enough to make real progress
    assert bf16["total"] <= 1.05 * fp32["total"]
    assert not torch.equal(results["fp32"], results[fast])  # the bf16 path really ran


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.slow
def test_bf16_reaches_the_fp32_loss(features, device):
    _bf16_against_fp32(features, device, "bf16")


@pytest.mark.slow
def test_default_cpu_path_reaches_the_fp32_loss(features, monkeypatch):
    """--precision auto on a CPU that computes bf16 natively (as the one the defaults were measured
    on): the very path users get by default. Detection is forced on, so that a CI machine without
    bf16 hardware runs this path too (slower there: emulated, but the same numbers)."""
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    stylizer = Stylizer([(STYLE, 1.0)], StyleConfig(size=64, iterations=1, scales=1), EngineConfig(device="cpu"),
                        features=features)
    assert stylizer.gram_dtype == torch.bfloat16  # the Gram products run in bf16 too on such a CPU
    _bf16_against_fp32(features, "cpu", "auto")


def test_auto_follows_this_cpus_bf16_support(features):
    stylizer = Stylizer([(STYLE, 1.0)], StyleConfig(size=64, iterations=1, scales=1),
                        EngineConfig(device="cpu"), features=features)
    assert stylizer.dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)


def _stylizer_that_fails(features, monkeypatch, exc):
    stylizer = Stylizer([(STYLE, 1.0)], StyleConfig(size=64, iterations=2, scales=1),
                        EngineConfig(device="cpu"), features=features)

    def boom(*_args, **_kwargs):
        raise exc

    monkeypatch.setattr(optimize, "evaluate", boom)
    return stylizer


@pytest.mark.parametrize("exc", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"),
])
def test_out_of_memory_even_in_the_smallest_tiles_becomes_one_clear_error(features, monkeypatch, exc):
    stylizer = _stylizer_that_fails(features, monkeypatch, exc)
    notices = []
    # The library names the setting; the CLI shows its flag (StylizeError.render).
    expected = (r"out of memory: stylizing 64x48 px .* even in 256 px tiles; use a smaller StyleConfig\.size "
                r"\(e\.g\. StyleConfig\.size 32\)")
    with pytest.raises(ConfigError, match=expected) as err:
        stylizer.stylize(CONTENT, on_notice=notices.append)
    assert isinstance(err.value, DeviceMemoryError)  # the type the folder job retries one image at a time
    assert err.value.render({"StyleConfig.size": "--size"}.get).endswith("use a smaller --size (e.g. --size 32)")
    assert len(notices) == 1 and "smaller tiles" in notices[0]  # it tried tiles first, and said so once


def test_other_runtime_errors_are_not_disguised(features, monkeypatch):
    stylizer = _stylizer_that_fails(features, monkeypatch, RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        stylizer.stylize(CONTENT)
