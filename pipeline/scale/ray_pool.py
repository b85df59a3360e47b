"""Ray workers as an executor (``--workers N``, ``--ray-address``): one pool that serves any job.

The driver (the caller's process) keeps everything a job keeps in one process: its plan, resume,
records, events and report. Workers are long-lived Ray actors; each builds the job's Stylizer once
(``setup``), then runs whatever work function it is handed, one unit per call, and its results
stream back as they are made (a Ray streaming generator), each with the notices the work gave before
it (a stylizer going on in smaller tiles), which the driver passes on to the job's events. A job's
outputs are written by the workers straight into their final place under the output (atomic
renames), so every worker must see the input and the output at the same paths: the pool checks that
before any work.

Work is handed out as workers free up, at most ``in_flight`` units per worker, so a slow unit or a
slow GPU never holds the others back. A worker that dies (its process killed, its node lost) is
restarted by Ray; the units it had go back to the queue, and the work function, called again on a
unit, keeps what the dead worker had finished. This module and cluster.py are the only ones that
import Ray, and only once a job asks for workers.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from pipeline.config import ScaleConfig
from pipeline.errors import ConfigError, StylizeError, setting
from pipeline.events import Event, EventCallback, Notice, WorkerStarted, ignore
from pipeline.scale.cluster import WorkerShape, cluster_resources, connect, worker_shape
from pipeline.scale.work import Done, Finishes, GaveUp, Outcome, Setup, SharedPaths, WorkFunction

POLL = 0.5  # seconds between checks for Ctrl-C while waiting on workers


class WorkerState(Enum):
    STARTING = "starting"  # building its network
    READY = "ready"  # takes work
    RESTARTING = "restarting"  # its process died; Ray is starting a new one (a probe asks when it is back)
    DEAD = "dead"  # Ray gave up restarting it


@dataclass(frozen=True)
class Identity:
    """Where a worker runs: its answer to ``identity()``, given once its network is built."""

    host: str
    pid: int
    device: str


@dataclass(frozen=True)
class Reply:
    """What a worker sends back for each result of a work function: the result, and the notices the
    work gave since the previous one (``Notice`` events: a stylizer going on in smaller tiles). Only
    ``has_value=False`` on the last reply of a call, for notices given after its last result."""

    value: Any
    notices: tuple[Notice, ...] = ()
    has_value: bool = True


@dataclass
class InFlight:
    """One call of the work function on a worker (one unit), until its last reply has been read."""

    key: int  # the unit's place in the list handed to ``map``: deaths are counted per unit
    unit: Any
    worker: int  # index into the pool's actors
    finished: bool = False  # its last result has arrived: a death from now on loses nothing


class _Notices:
    """The ``emit`` a work function gets in a worker: it keeps the notices for the next reply and drops
    the progress events (the driver learns what was done from the results)."""

    def __init__(self) -> None:
        self.kept: list[Notice] = []

    def emit(self, event: Event) -> None:
        if isinstance(event, Notice):
            self.kept.append(event)

    def take(self) -> tuple[Notice, ...]:
        taken, self.kept = tuple(self.kept), []
        return taken


class Worker:
    """One worker process: builds the job's state once, then runs the work functions it is handed.

    A plain class; ``RayExecutor`` turns it into a Ray actor, so it can be tested without Ray.
    """

    def __init__(self, setup: Setup, threads: int):
        import torch

        # Ray pins each CPU worker to a share of the cores; torch would otherwise start one thread
        # per core in every worker, and the workers would fight over the cores.
        torch.set_num_threads(threads)
        # A user's problem in building the state (weights not found, a device that is not there) is
        # kept for identity() to raise. Raised here, Ray would report the actor's death with the
        # exception flattened to text, and the CLI could no longer name the setting by its flag.
        self.failure: StylizeError | None = None
        try:
            self.state = setup()
        except StylizeError as exc:
            self.failure = exc

    def identity(self) -> Identity:
        """Answered once the state is built, so it doubles as "ready"; raises the build's StylizeError."""
        if self.failure is not None:
            raise self.failure
        return Identity(host=socket.gethostname(), pid=os.getpid(), device=str(self.state.device))

    def check(self, shared: SharedPaths, probe: Path, token: str) -> str | None:
        return shared_paths_problem(shared, probe, token)

    def run(self, work: WorkFunction, units: list) -> Iterator[Reply]:
        """Each result of ``work`` with the notices given before it; those given after the last one
        follow on their own. Progress events stay here."""
        notices = _Notices()
        for value in work(self.state, units, notices.emit):
            yield Reply(value=value, notices=notices.take())
        if rest := notices.take():
            yield Reply(value=None, notices=rest, has_value=False)


def shared_paths_problem(shared: SharedPaths, probe: Path, token: str) -> str | None:
    """Why this process cannot use the job's paths as the driver does, or None when it can.

    ``probe`` is a file the driver just wrote into ``shared.writes`` holding ``token``: finding it
    proves that this process sees the driver's output folder, not a local one of the same name.
    """
    for path in shared.reads:
        if not path.exists():
            return f"cannot see the input {path}"
    try:
        seen = probe.read_text()
    except OSError:
        seen = None
    if seen != token:
        return f"cannot see the output folder {probe.parent} that the driver writes to"
    if not os.access(probe.parent, os.W_OK):
        return f"cannot write into the output folder {probe.parent}"
    return None


class RayExecutor:
    """Ray workers, shaped by ``scale`` (how many, threads, GPUs; pipeline/scale/cluster.py)."""

    def __init__(self, scale: ScaleConfig):
        self.scale = scale
        self.max_chunk = scale.max_chunk
        self.overlap = scale.overlap

    @contextmanager
    def start(self, setup: Setup, *, on_event: EventCallback = ignore,
              shared: SharedPaths | None = None) -> Iterator[RayPool]:
        import ray

        started_ray = connect(self.scale)
        pool = None
        try:
            total = cluster_resources()
            shape = worker_shape(self.scale, cpus=total.cpus, gpus=total.gpus, device=setup.device)
            actor = ray.remote(Worker).options(
                num_cpus=shape.num_cpus, num_gpus=shape.num_gpus,
                # Ray restarts a dead worker (on another node if its node is gone); its calls are not
                # retried by Ray but given back to the queue here, so that each unit counts once.
                max_restarts=self.scale.max_restarts, max_task_retries=0,
            )
            pool = RayPool([actor.remote(setup, shape.threads) for _ in range(shape.count)], shape, self.scale,
                           on_event)
            pool.wait_ready()
            if shared is not None:
                pool.check_shared(shared)
            yield pool
        finally:
            if pool is not None:
                pool.stop()
            if started_ray:
                ray.shutdown()


class RayPool:
    """Started worker actors: ``map`` runs a work function over units; ``stop`` kills every worker."""

    spread = True
    device = "ray"

    def __init__(self, actors: list, shape: WorkerShape, scale: ScaleConfig, on_event: EventCallback):
        self.actors, self.shape, self.scale, self.on_event = actors, shape, scale, on_event
        self.names = [f"w{i + 1}" for i in range(len(actors))]
        self.state = [WorkerState.STARTING] * len(actors)
        self.in_flight: dict[Any, InFlight] = {}  # a call's streaming generator -> what it runs
        self.probes: dict = {}  # ObjectRef of an identity() call -> worker index: "is it back?"
        self.told: set[str] = set()  # notices already passed on: each worker's stylizer says its own once
        self.retried = 0
        kind = "GPU" if shape.num_gpus else f"CPU, {shape.threads} thread{'s' * (shape.threads > 1)} each"
        self.description = f"ray: {shape.count} worker{'s' * (shape.count > 1)} ({kind})"

    # ------------------------------------------------------------------------------ start and stop

    def wait_ready(self) -> None:
        """Every worker's identity (its network is built by then), within the start timeout."""
        import ray

        refs = [a.identity.remote() for a in self.actors]
        deadline = time.monotonic() + self.scale.start_timeout
        while True:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=POLL)
            if len(ready) == len(refs):
                break
            if time.monotonic() > deadline:
                raise ConfigError(f"only {len(ready)} of {len(refs)} Ray workers started within "
                                  f"{self.scale.start_timeout:.0f} s: {self._not_enough()} (try fewer "
                                  f"{setting('ScaleConfig.workers')})")
        try:
            identities = ray.get(refs)
        except ray.exceptions.RayTaskError as exc:  # Worker.identity raised what building the state raised
            _raise_as_in_one_process(exc)
        except ray.exceptions.RayActorError as exc:
            raise ConfigError(f"a Ray worker could not start: {_first_line(exc)}") from None
        for i, identity in enumerate(identities):
            self._ready(i, identity)

    def _not_enough(self) -> str:
        """What each worker asks for against what the cluster has free (other jobs may hold the rest)."""
        import ray

        free = ray.available_resources()
        asks = f"each asks for {self.shape.num_cpus:g} CPU"
        has = f"the cluster has {free.get('CPU', 0):g} CPU"
        if self.shape.num_gpus:
            asks += f" and {self.shape.num_gpus:g} GPU"
            has += f" and {free.get('GPU', 0):g} GPU"
        return f"not enough free CPUs/GPUs: {asks}, {has} free"

    def check_shared(self, shared: SharedPaths) -> None:
        import ray

        shared.writes.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        # A .part name: if the driver is killed right now, the job's clean-up of stale parts removes it.
        probe = shared.writes / f".stylize-probe-{token}.part"
        probe.write_text(token)
        try:
            problems = ray.get([a.check.remote(shared, probe, token) for a in self.actors])
        finally:
            probe.unlink(missing_ok=True)
        for name, problem in zip(self.names, problems):
            if problem is not None:
                raise ConfigError(f"worker {name} {problem}: every worker needs the input and the output at the "
                                  "same paths (a shared file system)")

    def stop(self) -> None:
        """Kill every worker and wait until they are gone: after this, no worker writes anything."""
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        if self.in_flight:
            # The calls resolve (to an error) once their worker is dead.
            ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=30)
            self.in_flight.clear()
        self.actors = []

    # ------------------------------------------------------------------------------------ the work

    def map(self, work: WorkFunction, units: Sequence, emit: EventCallback = ignore, *,
            finishes: Finishes | None = None) -> Generator[Outcome, None, None]:
        """Run ``work`` on the workers, one unit per call; yields each result as it arrives.

        ``emit`` hears the work's notices, which travel back with its results (each message once,
        however many workers give it); its progress events stay in the workers (the results say what
        was done). ``finishes(unit, result)``: whether ``result`` is the unit's last, so that a worker
        that dies between its last result and the end of the call does not get the unit redone.
        """
        calls = _Calls(self, work, units)
        calls.submit()
        while calls.pending():
            for ref in self._answered():
                if ref in self.probes:
                    self._probe_answered(ref, self.probes.pop(ref))
                else:
                    yield from calls.take(ref, emit, finishes)
            calls.submit()

    def _answered(self) -> list:
        """The calls or probes that have something to read (none after POLL: a chance for Ctrl-C)."""
        import ray

        if not self.in_flight and not self.probes:  # work left, and no worker that runs or may come back
            raise StylizeError(f"all {len(self.actors)} workers were lost; run the same command again to resume")
        done, _ = ray.wait([*self.in_flight, *self.probes], num_returns=1, timeout=POLL)
        return done

    def tell(self, notices: tuple[Notice, ...], emit: EventCallback) -> None:
        """Pass a worker's notices on to the job, each message once."""
        for notice in notices:
            if notice.message not in self.told:
                self.told.add(notice.message)
                emit(notice)

    def _ready(self, i: int, identity: Identity) -> None:
        self.state[i] = WorkerState.READY
        self.on_event(WorkerStarted(name=self.names[i], host=identity.host, pid=identity.pid, device=identity.device))

    def lost(self, i: int, exc: BaseException) -> None:
        """Worker ``i``'s process died: Ray restarts it, and a probe tells when it is back."""
        if self.state[i] is not WorkerState.READY:
            return
        self.state[i] = WorkerState.RESTARTING
        self.probes[self.actors[i].identity.remote()] = i
        self.on_event(Notice(message=f"worker {self.names[i]} was lost ({_first_line(exc)}); its unfinished work goes "
                             "back to the queue"))

    def _probe_answered(self, ref, i: int) -> None:
        import ray

        try:
            identity = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError):  # died again, or its state failed
            self.state[i] = WorkerState.DEAD
            self.on_event(Notice(message=f"worker {self.names[i]} could not be restarted; the others carry on"))
            return
        self._ready(i, identity)


class _Calls:
    """One ``RayPool.map``: the units waiting for a worker, how many calls each worker has, and how
    often each unit's worker died under it."""

    def __init__(self, pool: RayPool, work: WorkFunction, units: Sequence):
        self.pool, self.work = pool, work
        self.queue: deque[tuple[int, Any]] = deque(enumerate(units))  # (key, unit)
        self.load = [0] * len(pool.actors)
        self.lost: Counter[int] = Counter()  # unit's key -> times its worker died under it

    def pending(self) -> bool:
        return bool(self.queue or self.pool.in_flight)

    def submit(self) -> None:
        """Hand waiting units to ready workers, the least busy first."""
        pool = self.pool
        while self.queue:
            # A worker gets a second unit to have ready only while more units wait than there are
            # workers: near the end the last units go to whichever worker frees up first, instead of
            # queueing behind a busy one while another has nothing left to do.
            limit = pool.scale.in_flight if len(self.queue) > len(pool.actors) else 1
            ready = [i for i, s in enumerate(pool.state) if s is WorkerState.READY and self.load[i] < limit]
            if not ready:
                return
            i = min(ready, key=lambda k: self.load[k])  # the least busy worker
            key, unit = self.queue.popleft()
            pool.in_flight[pool.actors[i].run.remote(self.work, [unit])] = InFlight(key=key, unit=unit, worker=i)
            self.load[i] += 1

    def take(self, ref, emit: EventCallback, finishes: Finishes | None) -> Iterator[Outcome]:
        """The next reply of the call ``ref``: its result (after its notices), or what its end or its
        worker's death means."""
        import ray

        call = self.pool.in_flight[ref]
        try:
            reply: Reply = ray.get(next(ref))
        except StopIteration:  # the call is over: every reply of it has been read
            self._ended(ref)
            return
        except ray.exceptions.RayActorError as exc:
            yield from self._worker_died(ref, exc)
            return
        except ray.exceptions.RayTaskError as exc:
            _raise_as_in_one_process(exc)
        self.pool.tell(reply.notices, emit)
        if not reply.has_value:
            return
        if finishes is not None and finishes(call.unit, reply.value):
            call.finished = True
        yield Done(value=reply.value, worker=self.pool.names[call.worker])

    def _ended(self, ref) -> None:
        call = self.pool.in_flight.pop(ref)
        self.load[call.worker] -= 1

    def _worker_died(self, ref, exc: BaseException) -> Iterator[Outcome]:
        """The call's worker died: its unit goes back to the queue (unless it was finished), or is given
        up after ``max_attempts`` deaths."""
        call = self.pool.in_flight.pop(ref)
        self.load[call.worker] -= 1
        self.pool.lost(call.worker, exc)
        if call.finished:
            return
        self.lost[call.key] += 1
        if self.lost[call.key] >= self.pool.scale.max_attempts:
            yield GaveUp(unit=call.unit, attempts=self.lost[call.key])
        else:
            self.queue.appendleft((call.key, call.unit))
            self.pool.retried += 1


def _raise_as_in_one_process(exc) -> NoReturn:
    """What a worker raised (``exc``, Ray's RayTaskError), raised here as one process would raise it: the
    user's problem (a damaged input, missing weights) as its StylizeError itself, settings still marked
    so that the CLI names their flags; a bug as its own class, which stops the job."""
    if isinstance(exc.cause, StylizeError):
        raise exc.cause from None
    raise exc.as_instanceof_cause() from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
