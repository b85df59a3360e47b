"""Notices and errors from Ray workers reach the driver as they do in one process (a local Ray, 2 CPUs,
started once for this module).

A worker's Stylizer says "continuing in smaller tiles" when an evaluation ran out of memory; in one
process that notice goes straight to the job's events. Here a stand-in stylizer says it the same way
(once per stylizer, through ``on_notice``), inside the folder job's real work function.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from pipeline import events as ev
from pipeline.config import FULL_SIZE, ScaleConfig
from pipeline.errors import WeightsError, setting
from pipeline.jobs.folder_plan import plan_folder
from pipeline.jobs.folder_work import stylize_images
from pipeline.scale.local import LocalExecutor
from pipeline.scale.work import Done
from tests.conftest import pattern

ray = pytest.importorskip("ray", reason="the scale-out tests need the ray extra (make test installs it)")
from pipeline.scale.ray_pool import RayExecutor  # noqa: E402  (needs Ray)

TILES = "out of memory evaluating 40x30 px; continuing in smaller tiles (64 px)"


pytestmark = pytest.mark.slow  # starts a Ray cluster


@pytest.fixture(scope="module")
def by_value(local_ray):
    """The stand-ins below live in this test module, which Ray workers cannot import by name: they
    travel by value instead."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


class OutOfMemoryOnce:
    """Gives back its content unchanged, and like the real Stylizer after its first out-of-memory
    retry says once that it went on in smaller tiles."""

    device = torch.device("cpu")
    config = SimpleNamespace(size=FULL_SIZE, iterations=1)
    features = SimpleNamespace(min_size=16)

    def __init__(self):
        self.told = False

    def stylize(self, content, *, on_progress=None, on_notice=None):
        if on_notice is not None and not self.told:
            on_notice(TILES)
        self.told = True
        return SimpleNamespace(image=content, losses={})


@dataclass(frozen=True)
class OutOfMemoryOnceSetup:
    """The pool's ``setup``: each worker builds its own stand-in."""

    device: str = "cpu"

    def __call__(self) -> OutOfMemoryOnce:
        return OutOfMemoryOnce()


def said_after_its_result(stylizer, units: list, emit):
    """A work function whose notice comes after its last result."""
    yield from units
    emit(ev.Notice(f"done with {units}"))


@pytest.fixture
def items(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(4):
        Image.fromarray(pattern(40, 30, seed=i)).save(tmp_path / "in" / f"p{i}.png")
    return plan_folder(tmp_path / "in", tmp_path / "out").items


def notices_of(executor, setup, work, units) -> tuple[list, list]:
    events: list = []
    with executor.start(setup) as pool:
        outcomes = list(pool.map(work, units, events.append))
    return outcomes, [e for e in events if isinstance(e, ev.Notice)]


def test_a_workers_notice_reaches_the_driver_once_as_in_one_process(by_value, items):
    """Both workers' stylizers say it (each ran out of memory once); the user hears it once, the
    same Notice that one process gives."""
    work = functools.partial(stylize_images, batch_size=1, read_ahead=1)
    local, alone = notices_of(LocalExecutor(OutOfMemoryOnce()), OutOfMemoryOnceSetup(), work, items)
    spread, heard = notices_of(RayExecutor(ScaleConfig(workers=2, threads=1)), OutOfMemoryOnceSetup(), work, items)
    assert alone == [ev.Notice(TILES)]
    assert heard == alone
    assert {o.worker for o in spread} == {"w1", "w2"}  # both workers stylized, so both had their say
    assert sorted(o.value.rel for o in spread) == sorted(o.value.rel for o in local) == [i.rel for i in items]
    assert all(o.value.status == "done" for o in spread)


def test_a_notice_after_the_last_result_is_not_lost(by_value):
    outcomes, heard = notices_of(RayExecutor(ScaleConfig(workers=1, threads=1)), OutOfMemoryOnceSetup(),
                                 said_after_its_result, ["a", "b"])
    # One unit per call on workers: each call ends with its own notice, and no result is made up for it.
    assert sorted(outcomes, key=lambda o: o.value) == [Done("a", "w1"), Done("b", "w1")]
    assert sorted(heard, key=lambda n: n.message) == [ev.Notice("done with ['a']"), ev.Notice("done with ['b']")]


@dataclass(frozen=True)
class NoWeightsSetup:
    """A worker whose state cannot be built, as when the weights file is missing on that node."""

    device: str = "cpu"

    def __call__(self):
        raise WeightsError(f"{setting('StyleConfig.weights')} /nowhere/vgg19.pth: no such file")


def test_a_worker_that_cannot_build_its_state_raises_the_users_error_as_itself(by_value):
    """The error keeps its class and its marked setting, so the CLI says "--weights", as in one process,
    not Ray's actor-death text with the setting's internal name."""
    with pytest.raises(WeightsError) as caught:
        with RayExecutor(ScaleConfig(workers=1, threads=1)).start(NoWeightsSetup()):
            pass
    assert type(caught.value) is WeightsError
    flags = {"StyleConfig.weights": "--weights"}
    assert caught.value.render(flags.get) == "--weights /nowhere/vgg19.pth: no such file"
