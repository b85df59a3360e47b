"""End-to-end: `stylize-images INPUT_DIR STYLE OUTPUT_DIR` as a user runs it overnight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from tests.conftest import pattern
from tests.jobs.test_folder import BAD, GOOD, make_photo_tree

BIN = Path(sys.executable).parent
FAST = ["--size", "32", "--iterations", "2", "--scales", "1", "--device", "cpu"]
# One thread per job process: on a machine shared by several test runs, two OpenMP threads per
# process spin-wait on each other and made these tiny runs about 30 times slower (measured).
ENV = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}


def command(*args):
    return [str(BIN / "stylize-images"), *map(str, args)]


def run(*args):
    return subprocess.run(command(*args), capture_output=True, text=True, env=ENV)


def tree_outputs(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_photo_tree_exit_code_summary_report_and_rerun(tmp_path, style_file):
    src = make_photo_tree(tmp_path / "photos")
    dst, report = tmp_path / "styled", tmp_path / "report.json"
    proc = run(src, style_file, dst, *FAST, "--report", report)
    assert proc.returncode == 3, proc.stderr  # some files failed
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


def test_kill_midway_then_resume(tmp_path, style_file):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(4):
        Image.fromarray(pattern(64, 48, seed=i)).save(src / f"p{i}.png")
    # The kill lands within ~50 ms of the first output; the three other images take far longer.
    slow = ["--size", "32", "--iterations", "12", "--scales", "1", "--device", "cpu", "--quiet"]
    proc = subprocess.Popen(command(src, style_file, dst, *slow), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
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
