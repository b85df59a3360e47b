"""A photo folder spread over Ray workers (``stylize-images IN STYLE OUT --workers N``).

The driver (the caller's process) keeps everything the one-process job keeps: the plan, the manifest,
resume, the records, the events and the report (pipeline/jobs/folder.py owns them and calls
``WorkerPool.run`` in place of its own stylizing loop). Workers are long-lived Ray actors: each builds
its Stylizer once, then takes one image at a time and writes the result straight to its final path
under OUT (atomic rename), so OUT must be one folder every worker reaches (a shared file system).

Work is handed out dynamically, at most ``in_flight`` images per worker, so a slow image or a slow GPU
never holds the others back and the driver's memory stays flat however big the folder. A worker that
dies (its process killed, its node lost) is restarted by Ray; the images it had in flight go back to
the queue and are counted once, when a worker reports them done.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import Counter, deque
from pathlib import Path

from pipeline.config import JobConfig, ScaleConfig
from pipeline.errors import ConfigError, StylizeError
from pipeline.events import Notice, WorkerStarted
from pipeline.jobs.folder_plan import FolderPlan, WorkItem, remove_stale_parts
from pipeline.scale.cluster import cluster_resources, connect, worker_shape

START_TIMEOUT = 300.0  # seconds for every worker to build its network; longer means the cluster is too small
POLL = 0.5  # seconds between checks for Ctrl-C while waiting on workers


class FolderWorker:
    """One worker process: builds its Stylizer once, then stylizes the images it is handed.

    A plain class; ``WorkerPool`` turns it into a Ray actor, so importing this module needs no Ray.
    """

    def __init__(self, job: JobConfig, threads: int):
        import torch

        from pipeline.jobs.common import build_stylizer

        # Ray pins each CPU worker to a share of the cores; torch would otherwise start one thread
        # per core in every worker, and the workers would fight over the cores.
        torch.set_num_threads(threads)
        self.stylizer = build_stylizer(job)

    def identity(self) -> tuple[str, int, str]:
        """(host, pid, device): answered once the Stylizer is built, so it doubles as "ready"."""
        return socket.gethostname(), os.getpid(), str(self.stylizer.device)

    def check(self, input_dir: Path, first_input: Path, probe: Path, token: str) -> str | None:
        return shared_folders_problem(input_dir, first_input, probe, token)

    def stylize(self, item: WorkItem, quality: int):
        from pipeline.jobs.folder import stylize_item

        return stylize_item(self.stylizer, item, quality)


def shared_folders_problem(input_dir: Path, first_input: Path, probe: Path, token: str) -> str | None:
    """Why this process cannot use IN and OUT as the driver does, or None when it can.

    ``probe`` is a file the driver just wrote into OUT holding ``token``: finding it proves that this
    process sees the driver's OUT (not a local folder of the same name on another machine).
    """
    if not input_dir.is_dir() or not first_input.is_file():
        return f"cannot see the input folder {input_dir}"
    try:
        seen = probe.read_text()
    except OSError:
        seen = None
    if seen != token:
        return f"cannot see the output folder {probe.parent} that the driver writes to"
    if not os.access(probe.parent, os.W_OK):
        return f"cannot write into the output folder {probe.parent}"
    return None


class WorkerPool:
    """Ray worker actors for one folder job: a context manager that always stops them on the way out."""

    def __init__(self, job: JobConfig, scale: ScaleConfig, plan: FolderPlan, quality: int, run):
        self.job, self.scale, self.plan, self.quality, self.run_state = job, scale, plan, quality, run
        self.actors: list = []
        self.names: list[str] = []
        self.in_flight: dict = {}  # ObjectRef -> (item, worker index)
        self.started_ray = False
        self.description = ""

    # ------------------------------------------------------------------------------ start and stop

    def __enter__(self) -> WorkerPool:
        self.started_ray = connect(self.scale)
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop()

    def _start(self) -> None:
        import ray

        cpus, gpus = cluster_resources()
        shape = worker_shape(self.scale, cpus, gpus, self.job.engine.device)
        actor = ray.remote(FolderWorker).options(
            num_cpus=shape.num_cpus, num_gpus=shape.num_gpus,
            # Ray restarts a dead worker (on another node if its node is gone); its tasks are not
            # retried by Ray but re-queued here, so that each image is counted exactly once.
            max_restarts=self.scale.max_restarts, max_task_retries=0,
        )
        self.actors = [actor.remote(self.job, shape.threads) for _ in range(shape.count)]
        self.names = [f"w{i + 1}" for i in range(shape.count)]
        identities = self._wait_ready()
        self._check_shared_folders()
        kind = "GPU" if shape.num_gpus else f"CPU, {shape.threads} thread{'s' * (shape.threads > 1)} each"
        self.description = f"ray: {shape.count} worker{'s' * (shape.count > 1)} ({kind})"
        for name, (host, pid, device) in zip(self.names, identities):
            self.run_state.emit(WorkerStarted(name, host, pid, device))

    def _wait_ready(self) -> list[tuple[str, int, str]]:
        import ray

        refs = [a.identity.remote() for a in self.actors]
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=POLL)
            if len(ready) == len(refs):
                break
            if time.monotonic() > deadline:
                raise ConfigError(f"only {len(ready)} of {len(refs)} Ray workers started within {START_TIMEOUT:.0f} s: "
                                  "the cluster lacks the CPUs/GPUs they ask for (try fewer --workers)")
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as exc:
            raise ConfigError(f"a Ray worker could not start: {_first_line(exc)}") from None

    def _check_shared_folders(self) -> None:
        import ray

        output_dir = self.plan.output_dir
        output_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        # A .part name: if the driver is killed right now, the next run's clean-up removes it.
        probe = output_dir / f".stylize-probe-{token}.part"
        probe.write_text(token)
        try:
            first = self.plan.items[0].source
            problems = ray.get([a.check.remote(self.plan.input_dir, first, probe, token) for a in self.actors])
        finally:
            probe.unlink(missing_ok=True)
        for name, problem in zip(self.names, problems):
            if problem is not None:
                raise ConfigError(f"worker {name} {problem}: every worker needs INPUT and OUTPUT at the same "
                                  "paths (a shared file system)")

    def _stop(self) -> None:
        """Kill every worker, wait until they are gone, then clear what a killed write left behind."""
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        if self.in_flight:
            # The refs resolve (to an error) once their worker is dead: after that nobody writes.
            ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=30)
            self.in_flight.clear()
            if self.plan.output_dir.is_dir():
                remove_stale_parts(self.plan.output_dir)
        self.actors = []
        if self.started_ray:
            ray.shutdown()

    # ------------------------------------------------------------------------------------ the work

    def run(self, todo: list[WorkItem]) -> int:
        """Stylize ``todo`` on the workers; returns how many images were re-queued after a worker died."""
        import ray

        run = self.run_state
        queue = deque(todo)
        state = ["ready"] * len(self.actors)  # ready | restarting | dead
        load = [0] * len(self.actors)
        probes: dict = {}  # ObjectRef of an identity() call -> worker index: "is it back?"
        lost = Counter()  # rel -> times its worker died under it
        retried = 0

        def submit() -> None:
            while queue:
                ready = [i for i, s in enumerate(state) if s == "ready" and load[i] < self.scale.in_flight]
                if not ready:
                    return
                i = min(ready, key=lambda k: load[k])  # the least busy worker
                item = queue.popleft()
                self.in_flight[self.actors[i].stylize.remote(item, self.quality)] = (item, i)
                load[i] += 1

        submit()
        while self.in_flight or queue:
            if not self.in_flight and not probes:  # work left, and no worker that runs or may come back
                raise StylizeError(f"all {len(state)} workers were lost; run the same command again to resume")
            done, _ = ray.wait([*self.in_flight, *probes], num_returns=1, timeout=POLL)
            for ref in done:
                if ref in probes:
                    self._probe_answered(ref, probes.pop(ref), state)
                    continue
                item, i = self.in_flight.pop(ref)
                load[i] -= 1
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    if state[i] == "ready":
                        state[i] = "restarting"
                        probes[self.actors[i].identity.remote()] = i
                        run.emit(Notice(f"worker {self.names[i]} was lost ({_first_line(exc)}); its images in "
                                        "flight go back to the queue"))
                    lost[item.rel] += 1
                    if lost[item.rel] >= self.scale.max_attempts:
                        run.finish(item, "failed", error=f"{item.source}: {lost[item.rel]} workers died while "
                                   "stylizing it (out of memory?)")
                    else:
                        queue.appendleft(item)
                        retried += 1
                    continue
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None  # a bug in a worker: stop, as one process would
                self._record(item, result, self.names[i])
            submit()
        return retried

    def _probe_answered(self, ref, i: int, state: list[str]) -> None:
        import ray

        try:
            host, pid, device = ray.get(ref)
        except ray.exceptions.RayActorError:
            state[i] = "dead"
            self.run_state.emit(Notice(f"worker {self.names[i]} could not be restarted; the others carry on"))
            return
        state[i] = "ready"
        self.run_state.emit(WorkerStarted(self.names[i], host, pid, device))

    def _record(self, item: WorkItem, result, worker: str) -> None:
        run = self.run_state
        if result.status == "refused":  # the output's device is full or read-only: stop the whole job
            raise OSError(result.refused, result.error)
        for key, message in result.warnings:
            if key is None:
                run.emit(Notice(message))
            else:
                run.warn_once(key, message)
        run.finish(item, result.status, result.seconds, result.error, worker=worker)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
