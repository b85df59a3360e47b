"""What the CLI tests share: a command run in this process (`invoke`) or as the installed console script
in its own process (`script`, `start`), and the check that a refusal is one clear line.

A new process costs 3-4 s of importing torch before the command does anything, so a test runs the
Typer app in this process unless the process itself is what it checks: its exit on a signal, a lock
held by another process, or the console script's entry point (each command keeps at least one such
end-to-end run). `invoke` reports what a process would have shown: the exit code, stdout and stderr
apart, what C libraries (FFmpeg, torch) write straight to the file descriptors, and the warnings a
fresh interpreter prints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
# The width the help and error lines are laid out for, in this process and in a real one.
COLUMNS = "200"


def invoke(app, *args) -> subprocess.CompletedProcess:
    """Run a command's Typer app here, on ``args`` as the command line; the result reads like the
    console script's process (what went to the file descriptors themselves and the warnings come at
    the end of stdout and stderr). An exception the CLI lets through is raised (a process would print
    a traceback), so a test cannot mistake a crash for a refusal."""
    from typer.testing import CliRunner

    # Click lays help out 2 columns narrower than the terminal, at most 78 wide; its test runner would
    # force 80 columns.
    width = max(min(int(COLUMNS), 80) - 2, 50)
    with _raw_output() as raw, _fresh_interpreter_warnings() as shown:
        result = CliRunner(env={"COLUMNS": COLUMNS}).invoke(app, [str(a) for a in args], catch_exceptions=False,
                                                            terminal_width=width)
    printed = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in shown)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout + raw["stdout"],
                                       result.stderr + raw["stderr"] + printed)


@contextmanager
def _raw_output() -> Iterator[dict[str, str]]:
    """What is written to file descriptors 1 and 2 themselves during the block (C code bypasses
    sys.stdout and sys.stderr), filled in when the block ends."""
    raw = {}
    saved = {name: (fd, os.dup(fd), tempfile.TemporaryFile()) for name, fd in (("stdout", 1), ("stderr", 2))}
    try:
        for fd, _, file in saved.values():
            os.dup2(file.fileno(), fd)
        yield raw
    finally:
        for name, (fd, original, file) in saved.items():
            os.dup2(original, fd)
            os.close(original)
            file.seek(0)
            raw[name] = file.read().decode(errors="replace")
            file.close()


@contextmanager
def _fresh_interpreter_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """The warnings that Python's own filters would print during the block (pytest records them all
    instead, for its summary): the command's stderr gets them, as on a user's terminal."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        yield shown


def script(name: str, *args) -> subprocess.CompletedProcess:
    """The installed console script ``name`` in its own process, exactly as a user runs it."""
    return subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": COLUMNS})


def _as_in_a_terminal() -> None:
    # A suite started under `nohup` passes an ignored SIGHUP on to its children, and the CLI rightly
    # keeps an ignored signal ignored: start the job as from a plain terminal.
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def start(name: str, *args) -> subprocess.Popen:
    """The console script ``name`` started in the background (stdout and stderr piped), for a test
    that signals or kills it."""
    return subprocess.Popen([str(BIN / name), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": COLUMNS}, preexec_fn=_as_in_a_terminal)


def one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with exactly one line on stderr, no traceback, holding each fragment; returns it."""
    lines = proc.stderr.splitlines()  # blank lines count: an empty line above the error is a defect too
    assert proc.returncode not in (0, None)
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
