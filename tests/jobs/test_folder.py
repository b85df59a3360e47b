"""The folder job (library level): walking, mirroring, failures, resume, manifest, batching."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import events as ev
from pipeline.config import EngineConfig, FolderConfig, JobConfig, StyleConfig, StyleImage
from pipeline.errors import ConfigError, DeviceMemoryError, InputError
from pipeline.jobs.folder import stylize_folder
from pipeline.jobs.folder_plan import MANIFEST_NAME, OptionsChangedError, plan_folder
from pipeline.scale.local import LocalExecutor
from tests.conftest import pattern, photos

SIZE = 32

# Every image the tree holds, relative path -> expected output (size, upright: width, height).
GOOD = {
    "a.jpg": (32, 24),
    "rotated.jpg": (24, 32),
    "photo.tiff": (32, 24),
    "pic.bmp": (32, 24),
    "sub/b.png": (24, 32),
    "sub/alpha.png": (32, 24),
    "sub/deeper/gray.webp": (32, 24),
    "sub/deeper/gray16.png": (32, 24),
}
BAD = {"bad/truncated.jpg": "unreadable", "bad/zero.png": "empty file", "bad/text.jpg": "not an image",
       "bad/tiny.png": "too small"}
IGNORED = {"notes.txt", ".DS_Store", "sub/IMG_0001.xmp"}


def alpha_ramp() -> np.ndarray:
    return np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))


def make_photo_tree(root: Path) -> Path:
    """A photo folder with the usual mess: nested folders, mixed formats and modes, bad files."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "bad").mkdir()
    (root / ".thumbnails").mkdir()
    Image.fromarray(pattern(64, 48)).save(root / "a.jpg", quality=95)
    # Stored 64x48 with EXIF orientation 6 (turn 90 degrees clockwise): upright it is 48x64 with the
    # bright stored-left-hand side on top.
    stored = pattern(64, 48, seed=3)
    stored[:, :32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(root / "rotated.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(pattern(64, 48, seed=1)).save(root / "photo.tiff")
    Image.fromarray(pattern(64, 48, seed=2)).save(root / "pic.bmp")
    Image.fromarray(pattern(48, 64, seed=4)).save(root / "sub" / "b.png")
    Image.fromarray(np.dstack([pattern(64, 48, seed=5), alpha_ramp()]), "RGBA").save(root / "sub" / "alpha.png")
    Image.fromarray(pattern(64, 48, seed=6)[..., 0]).save(root / "sub" / "deeper" / "gray.webp")
    deep = (pattern(64, 48, seed=7)[..., 1].astype(np.uint16) * 257)
    Image.fromarray(deep).save(root / "sub" / "deeper" / "gray16.png")
    data = io.BytesIO()
    Image.fromarray(pattern(64, 48)).save(data, "JPEG")
    (root / "bad" / "truncated.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (root / "bad" / "zero.png").write_bytes(b"")
    (root / "bad" / "text.jpg").write_text("this is a text file with a .jpg name")
    Image.fromarray(pattern(64, 6)).save(root / "bad" / "tiny.png")  # 32x3 at --size 32: too small
    (root / "notes.txt").write_text("holiday 2024")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "sub" / "IMG_0001.xmp").write_text("<x:xmpmeta/>")
    Image.fromarray(pattern(64, 48)).save(root / ".thumbnails" / "a.jpg")  # hidden folder: not walked
    return root


@pytest.fixture
def job(style_file) -> JobConfig:
    return JobConfig(styles=(StyleImage(style_file),), style=StyleConfig(size=SIZE, iterations=2, scales=1),
                     engine=EngineConfig(device="cpu"))


@pytest.fixture
def stylizer(job, features):
    from pipeline.engine.optimize import Stylizer

    return Stylizer(job.styles, job.style, job.engine, features=features)


class FakeStylizer:
    """Stands in for the network where only the folder logic is under test: inverts the colours."""

    def __init__(self, size=SIZE, fail_with: BaseException | None = None):
        self.config = StyleConfig(size=size, iterations=3, scales=1)
        self.features = SimpleNamespace(min_size=16)
        self.device = torch.device("cpu")
        self.batches: list[int] = []
        self.fail_with = fail_with

    def stylize(self, content, on_progress=None, on_notice=None):
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append(content.shape[0])
        for i in range(3):
            if on_progress:
                on_progress(i + 1, 3, torch.tensor(1.0))
        return SimpleNamespace(image=1 - content, losses={}, evaluations=3)


def run_folder(src, dst, job, stylizer, **kwargs):
    events = []
    config = kwargs.pop("config", FolderConfig())
    summary = stylize_folder(src, dst, job, config, on_event=events.append, executor=LocalExecutor(stylizer), **kwargs)
    return summary, events


def outputs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}


@pytest.mark.slow
def test_photo_tree_end_to_end(tmp_path, job, stylizer):
    src = make_photo_tree(tmp_path / "photos")
    dst = tmp_path / "styled"
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    summary, events = run_folder(src, dst, job, stylizer, report=tmp_path / "report.json")

    assert outputs(dst) == set(GOOD)  # mirrored, same names and formats, nothing else
    for rel, size in GOOD.items():
        with Image.open(dst / rel) as img:
            assert img.size == size, rel
            assert img.format == Image.open(src / rel).format
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # inputs untouched

    with Image.open(dst / "sub" / "alpha.png") as img:
        assert img.mode == "RGBA"
        expected = np.asarray(Image.fromarray(alpha_ramp()).resize((32, 24), Image.Resampling.BICUBIC))
        np.testing.assert_allclose(np.asarray(img)[..., 3], expected, atol=1)
    upright = np.asarray(Image.open(dst / "rotated.jpg").convert("L"), np.float32)
    assert upright[:12].mean() > upright[12:].mean() + 40  # the bright side ended up on top

    failed = {f["input"]: f["error"] for f in summary.failed}
    assert set(failed) == set(BAD)
    for rel, reason in BAD.items():
        assert reason in failed[rel] and rel.split("/")[-1] in failed[rel]
    assert {e.name for e in events if isinstance(e, ev.ItemFailed)} == set(BAD)
    assert summary.done == len(GOOD) and summary.ignored == len(IGNORED)
    assert summary.ignored_types == {".txt": 1, ".xmp": 1, "hidden": 1}
    assert stylizer.style.computations == 1  # the style's Gram matrices: once for the whole job

    report = json.loads((tmp_path / "report.json").read_text())
    by_input = {f["input"]: f for f in report["files"]}
    assert by_input["a.jpg"]["status"] == "done" and by_input["a.jpg"]["seconds"] > 0
    assert by_input["a.jpg"]["output"] == str(dst / "a.jpg")
    assert by_input["bad/zero.png"]["status"] == "failed" and "empty file" in by_input["bad/zero.png"]["error"]
    assert by_input["notes.txt"]["status"] == "ignored"


def test_size_full_keeps_each_photos_own_size(tmp_path, folders, job):
    src, dst = folders
    (src / "sub").mkdir()
    Image.fromarray(pattern(64, 48)).save(src / "wide.jpg", quality=95)
    Image.fromarray(pattern(48, 90, seed=1)).save(src / "sub" / "tall.png")
    full = JobConfig(job.styles, job.style.replace(size="full"), job.engine)
    fake = FakeStylizer(size="full")
    summary, _ = run_folder(src, dst, full, fake)
    assert summary.done == 2 and sum(fake.batches) == 2
    with Image.open(dst / "wide.jpg") as wide, Image.open(dst / "sub" / "tall.png") as tall:
        assert (wide.size, tall.size) == ((64, 48), (48, 90))  # neither shrunk nor grown
    # The same photos at --size 32 come out at 32 px: the size decides, not the files.
    run_folder(src, tmp_path / "small", job, FakeStylizer())
    assert Image.open(tmp_path / "small" / "sub" / "tall.png").size == (17, 32)


def test_interrupted_run_resumes_without_redoing_or_half_files(tmp_path, folders, job, monkeypatch):
    src, dst = folders
    photos(src, 4)
    real_save = Image.Image.save
    saves = []

    def crashing_save(self, fp, *args, **kwargs):
        saves.append(fp)
        if len(saves) == 2:  # the power goes out in the middle of writing the second image
            Path(fp).write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        run_folder(src, dst, job, FakeStylizer(), report=tmp_path / "r.json")
    monkeypatch.setattr(Image.Image, "save", real_save)

    assert outputs(dst) == {"p0.png"}  # no half-written file under a final (or temporary) name
    Image.open(dst / "p0.png").verify()
    first = (dst / "p0.png").stat().st_mtime_ns
    statuses = {f["input"]: f["status"] for f in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert statuses == {"p0.png": "done", "p1.png": "pending", "p2.png": "pending", "p3.png": "pending"}
    assert threading.active_count() == 1  # reader and writer were shut down

    fake = FakeStylizer()
    summary, events = run_folder(src, dst, job, fake)
    assert summary.done == 3 and summary.skipped == 1 and sum(fake.batches) == 3
    assert (dst / "p0.png").stat().st_mtime_ns == first  # finished work is not redone
    assert outputs(dst) == {f"p{i}.png" for i in range(4)}
    started = [e for e in events if isinstance(e, ev.JobStarted)]
    assert started[0].total == 4 and started[0].done == 1


def test_stale_temporary_files_are_cleaned(folders, job):
    src, dst = folders
    Image.fromarray(pattern(64, 48)).save(src / "p.png")
    (dst / "sub").mkdir(parents=True)
    (dst / "sub" / ".p.png.abc123.part").write_bytes(b"half")  # what a `kill -9` leaves
    summary, events = run_folder(src, dst, job, FakeStylizer())
    assert outputs(dst) == {"p.png"}
    assert any(isinstance(e, ev.Notice) and "half-written" in e.message for e in events)


def test_changed_options_are_refused_then_overwritten(folders, job):
    src, dst = folders
    photos(src, 3)
    run_folder(src, dst, job, FakeStylizer())
    changed = JobConfig(job.styles, job.style.replace(style_weight=10.0), job.engine)
    with pytest.raises(OptionsChangedError, match=r"style\.style_weight.*overwrite"):
        run_folder(src, dst, changed, FakeStylizer())
    with pytest.raises(OptionsChangedError, match="output.format"):
        run_folder(src, dst, job, FakeStylizer(), config=FolderConfig(format="jpg"))

    # An interrupted --overwrite run must not leave old results that a plain re-run takes as done.
    fake = FakeStylizer(fail_with=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_folder(src, dst, changed, fake, config=FolderConfig(overwrite=True))
    assert outputs(dst) == set()
    summary, _ = run_folder(src, dst, changed, FakeStylizer())
    assert summary.done == 3 and summary.skipped == 0
    manifest = json.loads((dst / MANIFEST_NAME).read_text())
    assert manifest["fingerprint"]["style"]["style_weight"] == 10.0


def test_results_from_another_input_folder_are_not_taken_as_done(tmp_path, job, monkeypatch):
    first, second, dst = tmp_path / "trip", tmp_path / "wedding", tmp_path / "out"
    for folder, seed in ((first, 1), (second, 2)):
        folder.mkdir()
        Image.fromarray(pattern(64, 48, seed=seed)).save(folder / "IMG_0001.png")  # cameras reuse names
    run_folder(first, dst, job, FakeStylizer())
    made = (dst / "IMG_0001.png").read_bytes()
    with pytest.raises(OptionsChangedError, match=r"another input folder .*trip"):
        run_folder(second, dst, job, FakeStylizer())
    assert (dst / "IMG_0001.png").read_bytes() == made
    summary, _ = run_folder(second, dst, job, FakeStylizer(), config=FolderConfig(overwrite=True))
    assert summary.done == 1 and summary.skipped == 0
    # The same folder reached by another spelling of its path resumes as usual.
    monkeypatch.chdir(tmp_path)
    summary, _ = run_folder(Path("wedding"), Path("out"), job, FakeStylizer())
    assert summary.skipped == 1 and summary.done == 0


def test_foreign_files_without_manifest_are_refused(folders, job):
    src, dst = folders
    dst.mkdir()
    Image.fromarray(pattern(64, 48)).save(src / "p.png")
    (dst / "p.png").write_bytes(b"somebody's file")
    with pytest.raises(OptionsChangedError, match="no .stylize-manifest.json"):
        run_folder(src, dst, job, FakeStylizer())
    assert (dst / "p.png").read_bytes() == b"somebody's file"


@pytest.mark.parametrize("layout", ["same", "inside", "around"])
def test_overlapping_folders_are_refused(tmp_path, job, layout):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(pattern(64, 48)).save(src / "p.png")
    dst = {"same": src, "inside": src / "styled", "around": tmp_path}[layout]
    with pytest.raises(ConfigError, match="outside the input folder"):
        run_folder(src, dst, job, FakeStylizer())
    assert sorted(p.name for p in src.iterdir()) == ["p.png"]


def test_batches_group_equal_working_sizes(folders, job):
    src, dst = folders
    for i in range(5):
        Image.fromarray(pattern(64, 48, seed=i)).save(src / f"land{i}.png")
    Image.fromarray(pattern(48, 64)).save(src / "portrait.png")
    fake = FakeStylizer()
    summary, events = run_folder(src, dst, job, fake, config=FolderConfig(batch_size=2))
    assert summary.done == 6 and summary.batch_size == 2
    assert sorted(fake.batches) == [1, 1, 2, 2]  # 5 landscapes -> 2 + 2 + 1, the portrait alone
    for i in range(5):  # each image of a batch went to its own file
        out = np.asarray(Image.open(dst / f"land{i}.png"), np.float32)
        src_small = np.asarray(Image.open(src / f"land{i}.png").resize((32, 24), Image.Resampling.BICUBIC), np.float32)
        assert np.abs(out - (255 - src_small)).mean() < 8


def test_unexpected_errors_propagate_and_threads_stop(folders, job):
    src, dst = folders
    photos(src, 8)  # more than the read-ahead queue holds: the reader is blocked on put
    with pytest.raises(RuntimeError, match="a bug"):
        run_folder(src, dst, job, FakeStylizer(fail_with=RuntimeError("a bug")))
    assert threading.active_count() == 1


def test_plan_selection_and_name_collisions(tmp_path):
    src = tmp_path / "in"
    (src / "2024").mkdir(parents=True)
    for name in ("a.png", "a.jpg", "2024/b.jpg", "2024/c.gif", "skip_me.jpg"):
        Image.fromarray(pattern(32, 32)).save(src / name)
    plan = plan_folder(src, tmp_path / "out", FolderConfig(format="jpg"))
    assert {i.rel: i.output.relative_to(tmp_path / "out").as_posix() for i in plan.items} == {
        "a.jpg": "a.jpg", "a.png": "a.png.jpg", "2024/b.jpg": "2024/b.jpg", "2024/c.gif": "2024/c.jpg",
        "skip_me.jpg": "skip_me.jpg"}
    plan = plan_folder(src, tmp_path / "out", FolderConfig(include=("*.JPG",), exclude=("skip_*",)))
    assert [i.rel for i in plan.items] == ["a.jpg", "2024/b.jpg"] and plan.excluded == 3
    plan = plan_folder(src, tmp_path / "out", FolderConfig(recursive=False))
    assert [i.rel for i in plan.items] == ["a.jpg", "a.png", "skip_me.jpg"]
    outputs_by_rel = {i.rel: i.output.name for i in plan_folder(src, tmp_path / "out").items}
    assert outputs_by_rel["2024/c.gif"] == "c.png"  # GIF -> PNG by default


def test_dry_run_writes_nothing_and_empty_folder_fails(tmp_path, job):
    src = make_photo_tree(tmp_path / "photos")
    dst = tmp_path / "out"
    summary, events = run_folder(src, dst, job, None, dry_run=True)
    assert not dst.exists() and events == []
    assert summary.pending == len(GOOD) + len(BAD)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no images found"):
        run_folder(empty, tmp_path / "out2", job, FakeStylizer())


def test_auto_batch_size_per_device_and_size():
    from pipeline.jobs.folder_work import resolve_batch_size

    cpu, cuda = "cpu", "cuda:0"
    assert resolve_batch_size("auto", cpu, 256) == 1
    assert [resolve_batch_size("auto", cuda, s) for s in (256, 512, 1024, 2048)] == [4, 4, 2, 1]
    assert resolve_batch_size(3, cpu, 256) == 3


def test_a_decoder_crash_fails_only_that_file(folders, job, monkeypatch):
    from PIL import ImageFile

    src, dst = folders
    for name in ("good.png", "weird.png"):
        Image.fromarray(pattern(64, 48)).save(src / name)
    real_load = ImageFile.ImageFile.load

    def load(self):
        if Path(self.filename).name == "weird.png":
            raise IndexError("tile out of range")  # what some PIL plugins raise on damaged files
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    summary, _ = run_folder(src, dst, job, FakeStylizer())
    assert summary.done == 1
    assert summary.failed == [{"input": "weird.png",
                                  "error": f"{src / 'weird.png'}: unreadable image (IndexError: tile out of range)"}]


def test_animated_gif_first_frame_with_a_warning(folders, job):
    src, dst = folders
    frames = [Image.fromarray(pattern(64, 48, seed=i)) for i in range(3)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    summary, events = run_folder(src, dst, job, FakeStylizer())
    assert summary.done == 1 and outputs(dst) == {"anim.png"}
    notices = [e.message for e in events if isinstance(e, ev.Notice)]
    assert notices == ["anim.gif: animated (3 frames); only the first is stylized"]


def test_alpha_dropped_for_jpeg_output_with_one_warning(folders, job):
    src, dst = folders
    for i in range(2):
        Image.fromarray(np.dstack([pattern(64, 48, seed=i), alpha_ramp()]), "RGBA").save(src / f"t{i}.png")
    summary, events = run_folder(src, dst, job, FakeStylizer(), config=FolderConfig(format="jpg", quality=80))
    assert outputs(dst) == {"t0.jpg", "t1.jpg"} and Image.open(dst / "t0.jpg").mode == "RGB"
    notices = [e.message for e in events if isinstance(e, ev.Notice)]
    assert len(notices) == 1 and "alpha channels are dropped" in notices[0]


def test_out_of_memory_retries_singly_then_fails_alone(folders, job):
    src, dst = folders
    for i in range(2):
        Image.fromarray(pattern(64, 48, seed=i)).save(src / f"small{i}.png")
    Image.fromarray(pattern(48, 64)).save(src / "huge.png")  # stands for the one photo that does not fit

    class TightMemory(FakeStylizer):
        def stylize(self, content, on_progress=None, on_notice=None):
            if content.shape[0] > 1 or content.shape[-2] > content.shape[-1]:
                # What the real Stylizer raises when torch runs out of memory (tests/test_precision.py).
                raise DeviceMemoryError("out of memory: stylizing 64x48 px does not fit in the memory of cuda:0")
            return super().stylize(content, on_progress)

    fake = TightMemory()
    summary, events = run_folder(src, dst, job, fake, config=FolderConfig(batch_size=2))
    assert summary.done == 2 and fake.batches == [1, 1]
    assert [f["input"] for f in summary.failed] == ["huge.png"]
    assert "out of GPU memory" in summary.failed[0]["error"]
    assert any(isinstance(e, ev.Notice) and "one image at a time" in e.message for e in events)


def test_the_real_stylizers_out_of_memory_reaches_the_batch_retry(folders, job, stylizer, monkeypatch):
    src, dst = folders
    photos(src, 2)
    from pipeline.engine import optimize

    def tight(net, x, *args, **kwargs):  # a GPU with room for one image, not two, even in tiles
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return evaluate(net, x, *args, **kwargs)

    evaluate = optimize.evaluate
    monkeypatch.setattr(optimize, "evaluate", tight)
    summary, events = run_folder(src, dst, job, stylizer, config=FolderConfig(batch_size=2))
    assert summary.done == 2 and not summary.failed
    assert any(isinstance(e, ev.Notice) and "one image at a time" in e.message for e in events)
