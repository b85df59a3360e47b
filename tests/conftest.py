"""Shared fixtures: the real bundled VGG19 (loaded once) and small generated images."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# One torch thread here and, through OMP_NUM_THREADS, in every process a test starts (the scripts,
# Ray's workers): the tests' images are tiny (32-128 px), where a second thread gains nothing, and on a
# machine shared by several runs two OpenMP threads spin-wait on each other. Measured on 2 shared cores
# (load ~8): a folder of 4 photos through the CLI in this process took 39 s with 2 threads, 12 s with 1.
# A thread count given in OMP_NUM_THREADS is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def vgg_weights():
    from pipeline.engine.weights import load_weights

    return load_weights("original")


@pytest.fixture(scope="session")
def features(vgg_weights):
    from pipeline.config import CONTENT_LAYER, STYLE_LAYERS
    from pipeline.engine.features import VGGFeatures

    return VGGFeatures(vgg_weights, (*STYLE_LAYERS, CONTENT_LAYER))


def pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, colourful RGB uint8 picture with some structure (not noise, not flat)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy, phase = rng.uniform(0.05, 0.3, 3)
    r = 0.5 + 0.5 * np.sin(x * fx + phase)
    g = 0.5 + 0.5 * np.cos(y * fy + 2 * phase)
    b = 0.5 + 0.5 * np.sin((x + y) * (fx + fy) / 2)
    img = np.stack([r, g, b], -1)
    img[height // 4 : height // 2, width // 4 : width // 2] = rng.uniform(0, 1, 3)  # a block: an edge
    return (img * 255).astype(np.uint8)


def stripes(width: int, height: int) -> np.ndarray:
    """A 'painting': diagonal coloured stripes, a texture very unlike ``pattern``."""
    y, x = np.mgrid[0:height, 0:width]
    band = ((x + 2 * y) // 4) % 3
    palette = np.array([[230, 40, 30], [250, 220, 40], [20, 40, 200]], np.uint8)
    return palette[band]


def photos(folder: Path, n: int = 4) -> Path:
    """``n`` different 64x48 photos p0.png, p1.png, ... in ``folder`` (made if need be); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(pattern(64, 48, seed=i)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A folder job's input folder (made, empty) and output folder (only a path: the job makes it)."""
    src = tmp_path / "in"
    src.mkdir()
    return src, tmp_path / "out"


@pytest.fixture
def content_file(tmp_path: Path) -> Path:
    path = tmp_path / "content.png"
    Image.fromarray(pattern(64, 48)).save(path)
    return path


@pytest.fixture
def style_file(tmp_path: Path) -> Path:
    path = tmp_path / "style.png"
    Image.fromarray(stripes(64, 64)).save(path)
    return path


@pytest.fixture
def style_file2(tmp_path: Path) -> Path:
    path = tmp_path / "style2.png"
    Image.fromarray(pattern(64, 64, seed=7)).save(path)
    return path


# ------------------------------------------------------------------------------------ a small disk

PAGE = 4096  # tmpfs hands out space in pages


def used_bytes(root: Path) -> int:
    """Space the files under root take, counted like tmpfs does: whole pages per file."""
    return sum(-(-p.stat().st_size // PAGE) * PAGE for p in root.rglob("*") if p.is_file())


class SmallDisk:
    """A folder on a file system that really fills up: a 400 KiB tmpfs mounted for the test where the
    machine allows it (root), else a quota enforced on every file write under the folder (the
    "injected" kind: Python-level writes really fail part-way with ENOSPC; the video encoder, which
    writes from C, is checked when it closes its file)."""

    SIZE = 400 * 1024

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self.quota: int | None = None  # injected kind: bytes allowed in total under path

    def free(self) -> int:
        if self.kind == "tmpfs":
            st = os.statvfs(self.path)
            return st.f_bavail * st.f_frsize
        return (self.quota if self.quota is not None else self.SIZE) - used_bytes(self.path)

    def leave(self, free_bytes: int) -> None:
        """Fill the disk so that about ``free_bytes`` stay free."""
        if self.kind == "tmpfs":
            filler = self.path / "filler"
            filler.write_bytes(b"\0" * max(0, self.free() - free_bytes))
        else:
            self.quota = used_bytes(self.path) + free_bytes

    def free_up(self) -> None:
        if self.kind == "tmpfs":
            (self.path / "filler").unlink(missing_ok=True)
        self.quota = None

    def check(self, extra: int = 0) -> None:
        if self.quota is not None and used_bytes(self.path) + extra > self.quota:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")


def _limited_open(disk: SmallDisk, real_open):
    """``open`` whose files under the disk's folder fail with ENOSPC once the quota is used up."""

    def limited(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        inside = isinstance(file, (str, os.PathLike)) and Path(os.fspath(file)).resolve().is_relative_to(disk.path)
        if not inside or not any(c in mode for c in "wax+"):
            return fh
        real_write = fh.write

        def write(data):
            disk.check(len(data))
            return real_write(data)

        try:
            fh.write = write
        except AttributeError:  # C file objects do not take new attributes: wrap instead
            return _QuotaFile(fh, disk)
        return fh

    return limited


class _QuotaFile:
    def __init__(self, fh, disk):
        self._fh, self._disk = fh, disk

    def write(self, data):
        self._disk.check(len(data))
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __iter__(self):
        return iter(self._fh)


# The tmpfs kind mounts a file system for each test that asks (root only): the fast lane leaves it out.
@pytest.fixture(params=[pytest.param("tmpfs", marks=pytest.mark.slow), "injected"])
def small_disk(request, tmp_path, monkeypatch):
    import builtins
    import io
    import subprocess

    path = tmp_path / "disk"
    path.mkdir()
    if request.param == "tmpfs":
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SmallDisk.SIZE}", "tmpfs", str(path)],
                                 capture_output=True)
        if mounted.returncode != 0:
            # Not root (or no mount in this container): the "injected" variant of the test still runs.
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
        try:
            yield SmallDisk(path.resolve(), "tmpfs")
        finally:
            subprocess.run(["umount", str(path)], check=True)
        return
    disk = SmallDisk(path.resolve(), "injected")
    limited = _limited_open(disk, builtins.open)
    monkeypatch.setattr(builtins, "open", limited)
    monkeypatch.setattr(io, "open", limited)
    from pipeline.media.video import VideoWriter

    real_finish = VideoWriter.finish

    def finish(self, end_seconds):
        real_finish(self, end_seconds)
        disk.check()  # the encoder writes from C: its file is counted once it is complete

    monkeypatch.setattr(VideoWriter, "finish", finish)
    yield disk
