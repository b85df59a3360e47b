"""The video job's folder beside the output: what makes a killed job resumable.

``OUTPUT.stylize-job/`` holds ``state.json`` (the fingerprint of everything that decides the frames)
and ``frames/NNNNNN.png``: each stylized frame, lossless at the working size, written atomically
(temporary name, fsync, rename), so a frame on disk is always whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import ConfigError, InputError, setting
from pipeline.jobs.write_errors import output_write_error, refused_write


class JobFolder:
    """``OUTPUT.stylize-job/``: the options' fingerprint and every stylized frame so far."""

    def __init__(self, output: Path):
        self.path = output.with_name(output.name + ".stylize-job")
        self.frames = self.path / "frames"
        self.state = self.path / "state.json"

    def frame_path(self, index: int, kind: str = "") -> Path:
        """``kind`` names a second copy of a frame: ".lead" for a chunk's overlap (video_chunks.py)."""
        return self.frames / f"{index:06d}{kind}.png"

    def open(self, fingerprint: dict, overwrite: bool) -> int:
        """Prepare the folder; return how many frames an earlier run already finished."""
        if self.path.exists():
            saved = self._saved_state()
            if saved == fingerprint:
                return self.count_done()
            if saved is not None and not overwrite:
                changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
                raise ConfigError(
                    f"{self.path}: holds an interrupted job whose {', '.join(changed)} differ from this one: run the "
                    f"same command to resume it, or add {setting('overwrite')} to discard it and start over"
                )
            self._clear()
        self.frames.mkdir(parents=True)
        _write_atomically(self.state, json.dumps(fingerprint, indent=1).encode())
        return 0

    def _saved_state(self) -> dict | None:
        try:
            return json.loads(self.state.read_text())
        except (OSError, ValueError):
            return None  # killed before the state was written: nothing to keep

    def count_done(self) -> int:
        """How many frames from 0 on are saved (a frame on disk is always whole: see _write_atomically)."""
        done = 0
        while self.frame_path(done).exists():
            done += 1
        return done

    def save(self, index: int, rgb: np.ndarray, kind: str = "") -> None:
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise RuntimeError(f"could not encode frame {index} as PNG")
        _write_atomically(self.frame_path(index, kind), data.tobytes())

    def load(self, index: int, shape: tuple[int, ...], kind: str = "") -> np.ndarray:
        path = self.frame_path(index, kind)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape != shape:
            raise InputError(f"{path}: damaged saved frame; delete {self.path} (or use {setting('overwrite')}) to "
                             "start over")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _clear(self) -> None:
        """Empty the folder but keep its lock file: deleting that would let a second run take the lock."""
        from pipeline.jobs.lock import LOCK_NAME

        for entry in self.path.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a frame behind, even hidden
        raise


@contextmanager
def stop_on_refused_write(output: Path, folder: JobFolder, frames: int) -> Iterator[None]:
    """Inside: a full or read-only device under OUTPUT's folder becomes one OutputWriteError that says how
    many frames are kept in the job folder (the same command resumes from them)."""
    try:
        yield
    except OSError as exc:
        if (code := refused_write(exc, output.parent)) is None:
            raise
        raise output_write_error(code, output.parent, f"{folder.count_done()} of {frames} frames stylized and kept "
                                 f"in {folder.path}, the rest not written") from exc


def publish(partial: Path, output: Path, folder: JobFolder) -> None:
    """Move the finished result into place; the old output (with --overwrite) goes only now."""
    if partial.is_file():
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, output)
        return
    if output.exists():  # a folder cannot be replaced in one rename: move the old one aside first
        aside = folder.path / "replaced"
        os.replace(output, aside)
    os.replace(partial, output)


def output_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size


def input_identity(path: Path) -> dict:
    """Size and a hash of the first MiB: cheap, and survives copying the file elsewhere."""
    if path.is_dir():  # a frame folder: its file names and sizes
        listing = "\n".join(f"{p.name}:{p.stat().st_size}" for p in sorted(path.iterdir()))
        return {"frames_sha256": hashlib.sha256(listing.encode()).hexdigest()}
    with open(path, "rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()
    return {"bytes": path.stat().st_size, "sha256_first_mib": head}
