"""The folder job's records and report: one record per file, the summary counts, the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import OutputWriteError
from pipeline.jobs.folder_plan import FolderPlan, WorkItem
from pipeline.jobs.write_errors import output_write_error, refused_write


def record(item: WorkItem, status: str) -> dict:
    return {"input": item.rel, "output": str(item.output), "status": status, "seconds": 0.0, "error": None}


def write_report(path: Path, summary: dict) -> None:
    """The machine-readable report: the summary and one record per file (written atomically)."""
    from pipeline.media.images import atomic_write

    body = json.dumps(summary, indent=2, default=str)
    atomic_write(Path(path), lambda tmp: tmp.write_text(body + "\n"))


def counts(plan: FolderPlan, records: dict[str, dict], seconds: float) -> dict:
    by_status: dict[str, int] = {}
    for entry in records.values():
        by_status[entry["status"]] = by_status.get(entry["status"], 0) + 1
    ignored_types: dict[str, int] = {}
    for ignored in plan.ignored:
        rel = ignored.rel
        suffix = "hidden" if rel.rsplit("/", 1)[-1].startswith(".") else (Path(rel).suffix.lower() or "no extension")
        ignored_types[suffix] = ignored_types.get(suffix, 0) + 1
    done = by_status.get("done", 0)
    files = list(records.values()) + [
        {"input": f.rel, "output": None, "status": "ignored", "seconds": 0.0, "error": f.why} for f in plan.ignored
    ]
    return {
        "done": done,
        "skipped": by_status.get("skipped", 0),  # complete from an earlier run
        "failed": [{"input": r["input"], "error": r["error"]} for r in records.values() if r["status"] == "failed"],
        "pending": by_status.get("pending", 0),  # not reached: a dry run, or an interrupted one
        "ignored": len(plan.ignored),
        "ignored_types": ignored_types,
        "excluded": plan.excluded,
        "seconds": round(seconds, 3),
        "images_per_minute": round(done / seconds * 60, 3) if done and seconds > 0 else None,
        "files": files,
    }


def write_refused(code: int, output_dir: Path, records: dict[str, dict]) -> OutputWriteError:
    """The one line for a job stopped by a full or read-only output device, with how far it got."""
    done = sum(entry["status"] in ("done", "skipped") for entry in records.values())
    return output_write_error(code, output_dir, f"{done} of {len(records)} images done, the rest not written")


def write_report_if_possible(report: Path, summary: dict) -> None:
    """The report, unless its own device refuses it while the job is already stopping for that reason:
    the error that says why the job stopped must not be replaced by this one."""
    import sys

    stopping = sys.exc_info()[1] is not None  # set here, in the job's `finally`, when it is raising
    try:
        write_report(report, summary)
    except OSError as exc:
        if (code := refused_write(exc, Path(report).parent)) is None:
            raise
        if not stopping:
            raise output_write_error(code, Path(report).parent, f"the job ran to its end but the report {report} "
                                     "was not written") from exc
