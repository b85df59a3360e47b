"""Photo folders over real Ray workers (a local Ray, 2 CPUs, started once for this module).

The reference is the one-process job at one torch thread: workers run one thread each here, and
results are pixel-identical only at equal thread counts (float sums in another order, which the
optimisation then amplifies).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import events as ev
from pipeline.config import EngineConfig, FolderConfig, JobConfig, ScaleConfig, StyleConfig, StyleImage
from pipeline.jobs.folder import stylize_folder
from tests.conftest import pattern, stripes

ray = pytest.importorskip("ray", reason="the scale-out tests need the ray extra (make test installs it)")
from pipeline.scale.ray_pool import RayExecutor  # noqa: E402  (needs Ray)

pytestmark = pytest.mark.slow  # a Ray cluster and real stylizing (make test-fast leaves these out)

# Enough images that when the first is done each worker still has another one in flight (the pool
# keeps two per worker while more wait than there are workers): the kill test needs that.
GOOD = [f"p{i}.png" if i % 2 else f"sub/p{i}.jpg" for i in range(9)]
ONE_THREAD = ScaleConfig(workers=2, threads=1)


def workers(scale: ScaleConfig = ONE_THREAD) -> RayExecutor:
    return RayExecutor(scale)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scale")
    (root / "in" / "sub").mkdir(parents=True)
    for i, rel in enumerate(GOOD):
        Image.fromarray(pattern(48, 36, seed=i)).save(root / "in" / rel)
    (root / "in" / "broken.png").write_text("not an image")  # one bad file: listed, the job goes on
    Image.fromarray(stripes(48, 48)).save(root / "style.png")
    return root


@pytest.fixture(scope="module")
def job(folder) -> JobConfig:
    # Enough iterations that an image takes a noticeable time: the kill test hits work in flight.
    return JobConfig(styles=(StyleImage(folder / "style.png"),),
                     style=StyleConfig(size=40, iterations=8, scales=1), engine=EngineConfig(device="cpu"))


@pytest.fixture(scope="module")
def reference(folder, job) -> dict[str, np.ndarray]:
    """The one-process job's outputs (one torch thread, batch size 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = stylize_folder(folder / "in", folder / "one-process", job, FolderConfig(batch_size=1))
    finally:
        torch.set_num_threads(threads)
    assert summary.done == len(GOOD) and len(summary.failed) == 1
    return outputs(folder / "one-process")


def outputs(out: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out).as_posix(): np.asarray(Image.open(p)) for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def assert_same_pixels(out: Path, reference: dict[str, np.ndarray]) -> None:
    got = outputs(out)
    assert sorted(got) == sorted(reference)
    for rel, pixels in reference.items():
        assert np.array_equal(got[rel], pixels), f"{rel} differs from the one-process result"


@pytest.mark.parametrize("count", [1, 2])
def test_workers_give_the_one_process_results(local_ray, folder, job, reference, count):
    events = []
    out = folder / f"workers-{count}"
    summary = stylize_folder(folder / "in", out, job, executor=workers(ScaleConfig(workers=count, threads=1)),
                             on_event=events.append)
    assert_same_pixels(out, reference)
    assert summary.done == len(GOOD) and summary.retried == 0
    assert [f["input"] for f in summary.failed] == ["broken.png"]
    assert summary.device.startswith(f"ray: {count} worker")
    done = [e for e in events if isinstance(e, ev.ItemDone)]
    assert sorted(e.name for e in done) == sorted(GOOD)
    assert {e.worker for e in done} == {f"w{i + 1}" for i in range(count)}  # every worker took images
    assert len([e for e in events if isinstance(e, ev.WorkerStarted)]) == count


def test_a_worker_killed_mid_job_costs_only_its_images_in_flight(local_ray, folder, job, reference):
    pids, events, killed = {}, [], []

    def on_event(event):
        events.append(event)
        if isinstance(event, ev.WorkerStarted):
            pids[event.name] = event.pid
        if isinstance(event, ev.ItemDone) and not killed:
            # The worker that just finished still holds its next image (two in flight each): a real
            # kill -9 of its process, as when a machine dies.
            killed.append(pids[event.worker])
            os.kill(pids[event.worker], signal.SIGKILL)

    out = folder / "killed"
    summary = stylize_folder(folder / "in", out, job, executor=workers(), on_event=on_event)
    assert killed and summary.retried >= 1
    assert any("was lost" in e.message for e in events if isinstance(e, ev.Notice))
    # (Ray restarts the killed worker in a new process; the other one may well finish the job first.)
    assert all(e.pid != killed[0] for e in [e for e in events if isinstance(e, ev.WorkerStarted)][2:])
    assert summary.done == len(GOOD) and [f["input"] for f in summary.failed] == ["broken.png"]
    assert Counter(e.name for e in events if isinstance(e, ev.ItemDone)) == Counter(GOOD)  # each counted once
    assert_same_pixels(out, reference)


def test_interrupt_stops_every_worker_and_a_rerun_resumes(local_ray, folder, job, reference):
    pids = {}

    def on_event(event):
        if isinstance(event, ev.WorkerStarted):
            pids[event.name] = event.pid
        if isinstance(event, ev.ItemDone):
            raise KeyboardInterrupt  # what Ctrl-C raises in the driver

    out = folder / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        stylize_folder(folder / "in", out, job, executor=workers(), on_event=on_event)
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids.values()), "a worker outlived the interrupt"
    assert not [p for p in out.rglob("*.part")], "half-written files left behind"
    summary = stylize_folder(folder / "in", out, job, executor=workers())
    assert summary.skipped >= 1 and summary.done + summary.skipped == len(GOOD)
    assert_same_pixels(out, reference)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_workers_that_cannot_start_are_an_error_naming_what_they_lack(local_ray, folder, job):
    """Another job holds every CPU of the cluster: the workers never start, and the job says why
    after the start timeout instead of waiting forever."""
    from pipeline.errors import ConfigError

    @ray.remote(num_cpus=2)
    class Hog:
        def ready(self):
            return True

    hog = Hog.remote()
    ray.get(hog.ready.remote())
    try:
        with pytest.raises(ConfigError) as caught:
            stylize_folder(folder / "in", folder / "starved", job,
                           executor=workers(ScaleConfig(workers=1, threads=1, start_timeout=2)))
    finally:
        ray.kill(hog)
    message = str(caught.value)
    assert "only 0 of 1 Ray workers started within 2 s" in message
    assert "each asks for 1 CPU, the cluster has 0 CPU free" in message and "ScaleConfig.workers" in message
