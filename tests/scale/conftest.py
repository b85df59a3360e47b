"""What the scale-out tests share: one local Ray per module that asks for it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs, started for the first test of a module that asks for it and shut down after
    its last: the modules that run no Ray worker start none."""
    ray = pytest.importorskip("ray", reason="the scale-out tests need the ray extra (make test installs it)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()
