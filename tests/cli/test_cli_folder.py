"""`stylize-images INPUT_DIR STYLE OUTPUT_DIR` as a user runs it overnight: in its own process where
the process is what is checked (the exit code a cron job sees, kill -9), else the same app in this
process (tests/cli/conftest.py)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from cli.images import app
from tests.cli.conftest import invoke, script, start
from tests.conftest import photos
from tests.jobs.test_folder import BAD, GOOD, make_photo_tree

FAST = ["--size", "32", "--iterations", "2", "--scales", "1", "--device", "cpu"]


def run(*args):
    return invoke(app, *args)


def tree_outputs(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


@pytest.mark.slow
def test_photo_tree_exit_code_summary_report_and_rerun(tmp_path, style_file):
    src = make_photo_tree(tmp_path / "photos")
    dst, report = tmp_path / "styled", tmp_path / "report.json"
    proc = script("stylize-images", src, style_file, dst, *FAST, "--report", report)
    assert proc.returncode == 3, proc.stderr  # some files failed: what a cron job sees
    assert "Traceback" not in proc.stderr
    assert set(tree_outputs(dst)) == set(GOOD)
    assert f"{len(GOOD)} stylized, 0 already done, {len(BAD)} failed" in proc.stderr
    assert "3 other files skipped (.txt: 1, .xmp: 1, hidden: 1)" in proc.stderr
    summary_part = proc.stderr.split(f"{len(BAD)} files failed:")[1]
    for rel, reason in BAD.items():  # the morning list: one line per failed file, with its reason
        line = next(x for x in summary_part.splitlines() if rel.split("/")[-1] in x)
        assert reason in line
    files = {f["input"]: f for f in json.loads(report.read_text())["files"]}
    assert {k for k, f in files.items() if f["status"] == "done"} == set(GOOD)
    assert {k for k, f in files.items() if f["status"] == "failed"} == set(BAD)

    first = tree_outputs(dst)
    proc = run(src, style_file, dst, *FAST, "--quiet")
    assert proc.returncode == 3
    assert f"0 stylized, {len(GOOD)} already done, {len(BAD)} failed" not in proc.stderr  # --quiet: no summary
    assert tree_outputs(dst) == first  # nothing redone
    assert all(rel.split("/")[-1] in proc.stderr for rel in BAD)  # failures are shown even with --quiet

    proc = run(src, style_file, dst, *FAST, "--style-weight", "9")
    assert proc.returncode == 1
    assert "other options" in proc.stderr and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_kill_midway_then_resume(folders, style_file):
    src, dst = folders
    photos(src, 4)
    # The kill lands within ~50 ms of the first output; the three other images take far longer.
    slow = ["--size", "32", "--iterations", "12", "--scales", "1", "--device", "cpu", "--quiet"]
    proc = start("stylize-images", src, style_file, dst, *slow)
    try:
        deadline = time.monotonic() + 300  # a safety net for a hung job, not a speed requirement
        while not (dst.exists() and tree_outputs(dst)):
            assert proc.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: like a power cut
        proc.wait()
    done = tree_outputs(dst)
    assert 1 <= len(done) < 4
    for rel in done:  # whatever is under a final name is a complete image
        Image.open(dst / rel).verify()

    proc = run(src, style_file, dst, *slow)
    assert proc.returncode == 0, proc.stderr
    after = tree_outputs(dst)
    assert set(after) == {f"p{i}.png" for i in range(4)}
    assert all(after[rel] == mtime for rel, mtime in done.items())  # finished work was not redone
    assert not [p for p in dst.rglob("*.part")]


def test_dry_run_and_bad_layouts(tmp_path, style_file):
    src = make_photo_tree(tmp_path / "photos")
    proc = run(src, style_file, tmp_path / "out", *FAST, "--dry-run", "--format", "png", "--no-recursive")
    assert proc.returncode == 0, proc.stderr
    assert "stylize: a.jpg -> " in proc.stdout and str(tmp_path / "out" / "a.png") in proc.stdout
    assert "sub/" not in proc.stdout  # --no-recursive
    assert not (tmp_path / "out").exists()

    lines = [x for x in run(src, style_file, src / "styled", *FAST).stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "outside the input folder" in lines[0]
    proc = run(src, style_file, tmp_path / "o", *FAST, "--format", "gif")
    assert proc.returncode != 0 and "--format must be one of" in proc.stderr


def test_help_lists_folder_options():
    proc = run("--help")
    assert proc.returncode == 0
    for option in ("--no-recursive", "--include", "--exclude", "--format", "--batch-size", "--dry-run", "--report"):
        assert option in proc.stdout


def test_progress_names_the_current_image_from_the_first_one():
    from cli.common import EventRenderer
    from cli.images import OPTIONS
    from pipeline import events as ev

    renderer = EventRenderer(OPTIONS, quiet=True)
    renderer(ev.JobStarted("folder", 2, "image", "out"))
    renderer(ev.ItemStarted("holiday/IMG_0001.jpg", 30))
    task = renderer.progress.tasks[renderer.item_task]
    assert task.description.strip() == "holiday/IMG_0001.jpg" and task.total == 30
