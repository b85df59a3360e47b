"""The photo-folder job: every image under INPUT_DIR stylized into a mirrored tree under OUTPUT_DIR.

The job is a list of work items (folder_plan.py: one image each, keyed by its relative path) and a
function that stylizes some of them (folder_work.py: ``stylize_images``). The executor it is handed
runs that function: in this process (the default) or on Ray workers (pipeline/scale/). Whichever it
is, this module keeps the plan, the manifest, resume, the records, the events and the report, so
both paths behave the same. An output is complete iff it exists under its final name; the manifest
makes sure a re-run resumes only when the options are the same.
"""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path

from pipeline.config import FolderConfig, JobConfig
from pipeline.errors import ConfigError, InputError, setting
from pipeline.events import EventCallback, ItemDone, ItemFailed, JobFinished, JobStarted, Notice, ignore
from pipeline.jobs.common import StylizerSetup, check_styles, job_fingerprint
from pipeline.jobs.folder_plan import (
    FolderPlan,
    WorkItem,
    finished_outputs,
    plan_folder,
    remove_stale_parts,
    write_manifest,
)
from pipeline.jobs.folder_report import counts, record, write_refused, write_report_if_possible
from pipeline.jobs.folder_work import ItemResult, resolve_batch_size, stylize_images
from pipeline.jobs.lock import job_lock
from pipeline.jobs.write_errors import refused_write
from pipeline.results import FolderSummary
from pipeline.scale.local import LocalExecutor
from pipeline.scale.work import Done, Executor, GaveUp, SharedPaths


class _Records:
    """One record per image, and the events that go with each change."""

    def __init__(self, plan: FolderPlan, finished: set[str], on_event: EventCallback):
        self.items = {item.rel: item for item in plan.items}
        self.records = {item.rel: record(item, "skipped" if item.rel in finished else "pending") for item in plan.items}
        self.on_event = on_event
        self.warned: set[str] = set()

    def take(self, outcome: Done | GaveUp) -> None:
        """One outcome from the executor: an image's result, or an image whose workers kept dying."""
        if isinstance(outcome, GaveUp):
            item = outcome.unit
            self.finish(item.rel, "failed", error=f"{item.source}: {outcome.attempts} workers died while "
                        "stylizing it (out of memory?)")
            return
        result: ItemResult = outcome.value
        if result.status == "refused":  # the output's device is full or read-only: stop the whole job
            raise OSError(result.refused, result.error)
        for warning in result.warnings:
            if warning.key is None:
                self.on_event(Notice(message=warning.message))
            elif warning.key not in self.warned:
                self.warned.add(warning.key)
                self.on_event(Notice(message=warning.message))
        self.finish(result.rel, result.status, seconds=result.seconds, error=result.error, worker=outcome.worker)

    def settle(self, since: float) -> None:
        """After the work stopped: an image still pending whose output was written since ``since``
        (wall clock) was finished, its result just never came back (the job was interrupted while it
        was on its way from the writer thread or from a worker). An output is complete iff it exists."""
        for rel, entry in self.records.items():
            output = self.items[rel].output
            if entry["status"] == "pending" and output.exists() and output.stat().st_mtime >= since:
                entry["status"] = "done"

    def finish(self, rel: str, status: str, seconds: float = 0.0, error: str | None = None,
               worker: str | None = None) -> None:
        entry = self.records[rel]
        entry.update(status=status, seconds=round(seconds, 3), error=error)
        if worker is not None:
            entry["worker"] = worker
        if status == "failed":
            assert error is not None  # a failed image always says why (ItemResult, or its workers' deaths)
            self.on_event(ItemFailed(name=rel, error=error))
        else:
            self.on_event(ItemDone(name=rel, output=self.items[rel].output, seconds=seconds, worker=worker))


def stylize_folder(
    input_dir: Path,
    output_dir: Path,
    job: JobConfig,
    config: FolderConfig = FolderConfig(),
    *,
    dry_run: bool = False,
    report: Path | None = None,
    on_event: EventCallback = ignore,
    executor: Executor | None = None,
) -> FolderSummary:
    """Stylize every image under ``input_dir`` into ``output_dir``; returns the summary.

    One bad file never stops the job: it is reported (ItemFailed) and listed in the summary. Options
    that contradict earlier outputs, or unusable folders, raise before any work. On an interrupt, the
    outputs finished so far stay, the report (if asked for) is still written, and the exception goes on.
    ``executor``: where the images are stylized (default: this process, pipeline/scale/local.py).
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_styles(job)  # a bad style image is one line now, not after the network has loaded
    plan = plan_folder(input_dir, output_dir, config)
    if report is not None and Path(report).resolve().is_relative_to(input_dir.resolve()):
        raise ConfigError(f"{report}: the {setting('report')} must not be written inside the input folder {input_dir}")
    fingerprint = job_fingerprint(job, output={"format": config.format, "quality": config.quality})
    # One job per output folder, held from before it decides what is done until the report is out; with
    # workers the driver holds it for all of them.
    with contextlib.nullcontext() if dry_run else job_lock(output_dir, on_event=on_event):
        run = _FolderRun(plan, job, config, fingerprint, executor or LocalExecutor(), on_event)
        return run.run(dry_run, report)


class _FolderRun:
    """One locked run of the folder job: what is done, the stylizing (on the executor), the summary and
    the report."""

    def __init__(self, plan: FolderPlan, job: JobConfig, config: FolderConfig, fingerprint: dict,
                 executor: Executor, on_event: EventCallback):
        self.plan, self.job, self.config, self.fingerprint = plan, job, config, fingerprint
        self.executor, self.on_event = executor, on_event

    def run(self, dry_run: bool, report: Path | None) -> FolderSummary:
        plan, on_event = self.plan, self.on_event
        input_dir, output_dir = plan.input_dir, plan.output_dir
        finished = finished_outputs(plan, self.fingerprint, self.config.overwrite, dry_run=dry_run, on_event=on_event)
        records = _Records(plan, finished, on_event)
        todo = [item for item in plan.items if item.rel not in finished]
        summary = FolderSummary(input=str(input_dir), output=str(output_dir), dry_run=dry_run, images=len(plan.items))
        start, began = time.perf_counter(), time.time()
        try:
            if not dry_run:
                if not plan.items:
                    raise InputError(f"{input_dir}: no images found ({len(plan.ignored)} other files; images are "
                                     "read from .jpg .jpeg .png .webp .tif .tiff .bmp .gif)")
                self._stylize(todo, records, summary)
        except OSError as exc:  # the manifest or an image could not be written: the device is full or read-only
            if (code := refused_write(exc, output_dir)) is None:
                raise
            raise write_refused(code, output_dir, records.records) from exc
        finally:
            if not dry_run:
                records.settle(began)
            # The rate is the stylizing's, not the network loading's.
            seconds = time.perf_counter() - start - (summary.setup_seconds or 0.0)
            for name, value in counts(plan, records.records, seconds).items():
                setattr(summary, name, value)
            if report is not None:
                write_report_if_possible(report, summary.as_dict())
        if not dry_run:
            on_event(JobFinished(summary=summary))
        return summary

    def _stylize(self, todo: list[WorkItem], records: _Records, summary: FolderSummary) -> None:
        """Start the executor, write the manifest, run the work, filling in ``summary``'s set-up fields."""
        plan, config, on_event = self.plan, self.config, self.on_event
        output_dir = plan.output_dir
        started = time.perf_counter()
        shared = SharedPaths(reads=(plan.input_dir, plan.items[0].source), writes=output_dir)
        try:
            with self.executor.start(StylizerSetup(job=self.job), on_event=on_event, shared=shared) as pool:
                summary.device = pool.description
                if pool.spread:  # each call gets one image, so there is nothing to batch
                    summary.batch_size = 1
                    if config.batch_size not in ("auto", 1):
                        on_event(Notice(message=f"{setting('FolderConfig.batch_size')} {config.batch_size} is "
                                                f"ignored with {setting('ScaleConfig.workers')}: each worker takes "
                                                "one image at a time"))
                else:
                    summary.batch_size = resolve_batch_size(config.batch_size, pool.device, self.job.style.size)
                summary.setup_seconds = round(time.perf_counter() - started, 3)
                output_dir.mkdir(parents=True, exist_ok=True)
                if removed := remove_stale_parts(output_dir):
                    on_event(Notice(message=f"removed {removed} half-written temporary files left by an "
                                            "interrupted run"))
                write_manifest(output_dir, self.fingerprint, plan.input_dir)
                on_event(JobStarted(kind="folder", total=len(plan.items), unit="image",
                                    description=output_dir.name or str(output_dir), done=len(plan.items) - len(todo)))
                work = functools.partial(stylize_images, quality=config.quality, batch_size=summary.batch_size,
                                         read_ahead=config.read_ahead)
                try:
                    one_result = lambda item, result: True  # noqa: E731  (an image gives one result)
                    with contextlib.closing(pool.map(work, todo, on_event, finishes=one_result)) as outcomes:
                        for outcome in outcomes:
                            records.take(outcome)
                finally:
                    summary.retried = pool.retried
        except BaseException:
            # Workers killed mid-write leave temporary files (nothing else writes here: the job holds the lock).
            if output_dir.is_dir():
                remove_stale_parts(output_dir)
            raise
