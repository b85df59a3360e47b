"""A disk that fills up mid-job (a real tmpfs where the machine allows it): the job stops with one line,
leaves nothing half-written, and the same command finishes every output once space is freed."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
from PIL import Image

from pipeline.config import EncodeConfig, VideoJobConfig
from pipeline.errors import OutputWriteError
from pipeline.jobs.folder import stylize_folder
from pipeline.jobs.folder_plan import MANIFEST_NAME
from pipeline.jobs.video import stylize_video
from pipeline.jobs.video_resume import JobFolder
from pipeline.jobs.write_errors import output_write_error, refused_write
from pipeline.scale.local import LocalExecutor
from tests.conftest import PAGE, pattern, photos
from tests.jobs.test_folder import FakeStylizer
from tests.jobs.test_folder import job as folder_job  # noqa: F401  (the folder tests' job fixture)
from tests.jobs.test_video_job import FAST, PREVIOUS, EchoStylizer, decoded
from tests.jobs.test_video_job import job as video_job  # noqa: F401
from tests.media.test_video import make_video

LOSSLESS = EncodeConfig(codec="ffv1")  # decoded frames compare exactly between two runs
LOSSLESS_JOB = VideoJobConfig(video=FAST, encode=LOSSLESS, temporal=PREVIOUS)


def leftovers(root) -> list[str]:
    """Temporary files anywhere under root: none may survive a failed write."""
    return [p.name for p in root.rglob("*") if p.name.endswith(".part")]


def pages(n_bytes: int) -> int:
    return -(-n_bytes // PAGE) * PAGE


def test_folder_job_stops_on_a_full_disk_and_the_rerun_completes(tmp_path, small_disk, folder_job):  # noqa: F811
    src = photos(tmp_path / "in", 6)
    reference = tmp_path / "reference"
    stylize_folder(src, reference, folder_job, executor=LocalExecutor(FakeStylizer()))
    sizes = sorted(pages(p.stat().st_size) for p in reference.glob("*.png"))
    dst = small_disk.path / "out"
    # Room for the lock file, the manifest and two or three results, not six.
    small_disk.leave(2 * PAGE + sum(sizes[:3]) - PAGE // 2)

    with pytest.raises(OutputWriteError) as caught:
        stylize_folder(src, dst, folder_job, executor=LocalExecutor(FakeStylizer()), report=tmp_path / "report.json")
    done = sorted(p.name for p in dst.glob("*.png"))
    assert 0 < len(done) < 6
    assert str(caught.value) == (f"no space left on the device holding {dst}: {len(done)} of 6 images done, the "
                                 "rest not written; free space and run the same command again")
    assert caught.value.errno == errno.ENOSPC
    assert leftovers(small_disk.path) == []
    for name in done:  # whatever carries a final name is the complete, correct result
        assert (dst / name).read_bytes() == (reference / name).read_bytes()
    assert json.loads((dst / MANIFEST_NAME).read_text())["kind"] == "folder"
    statuses = {f["input"]: f["status"] for f in json.loads((tmp_path / "report.json").read_text())["files"]}
    assert sorted(k for k, v in statuses.items() if v == "done") == done  # no file marked failed for the disk
    assert "failed" not in statuses.values()

    small_disk.free_up()
    summary = stylize_folder(src, dst, folder_job, executor=LocalExecutor(FakeStylizer()))
    assert summary.skipped == len(done) and summary.done == 6 - len(done) and not summary.failed
    for i in range(6):
        assert (dst / f"p{i}.png").read_bytes() == (reference / f"p{i}.png").read_bytes()
    assert leftovers(small_disk.path) == []


def _clip(tmp_path):
    clip = tmp_path / "in.mp4"
    make_video(clip, frames=12)
    return clip


def test_video_job_stops_on_a_full_disk_while_saving_frames(tmp_path, small_disk, video_job):  # noqa: F811
    clip = _clip(tmp_path)
    whole = tmp_path / "whole.mkv"
    stylize_video(clip, whole, video_job, LOSSLESS_JOB, executor=LocalExecutor(EchoStylizer()))
    out = small_disk.path / "out.mkv"
    folder = JobFolder(out)
    small_disk.leave(9 * PAGE)  # lock, state, the encoder's file and a few frames, not twelve

    with pytest.raises(OutputWriteError) as caught:
        stylize_video(clip, out, video_job, LOSSLESS_JOB, executor=LocalExecutor(EchoStylizer()))
    kept = len(list(folder.frames.glob("*.png")))
    assert 0 < kept < 12 and folder.count_done() == kept
    assert str(caught.value) == (f"no space left on the device holding {small_disk.path}: {kept} of 12 frames "
                                 f"stylized and kept in {folder.path}, the rest not written; free space and run "
                                 "the same command again")
    assert leftovers(small_disk.path) == [] and not out.exists()
    assert not (folder.path / "output.mkv").exists()  # the half-encoded file is gone

    small_disk.free_up()
    second = EchoStylizer()
    summary = stylize_video(clip, out, video_job, LOSSLESS_JOB, executor=LocalExecutor(second))
    assert summary.resumed_frames == kept and len(second.calls) == 12 - kept
    assert all(np.array_equal(a, b) for a, b in zip(decoded(whole), decoded(out)))
    assert len(decoded(out)) == 12 and not folder.path.exists()


def test_video_job_stops_on_a_full_disk_in_the_final_encode(tmp_path, small_disk, video_job):  # noqa: F811
    clip = _clip(tmp_path)
    whole = tmp_path / "whole.mkv"
    stylize_video(clip, whole, video_job, LOSSLESS_JOB, executor=LocalExecutor(EchoStylizer()))
    out = small_disk.path / "out.mkv"
    folder = JobFolder(out)
    with pytest.raises(KeyboardInterrupt):  # an earlier run stylized all but the last frame
        stylize_video(clip, out, video_job, LOSSLESS_JOB, executor=LocalExecutor(EchoStylizer(fail_at=11)))
    frame = max(pages(p.stat().st_size) for p in folder.frames.glob("*.png"))
    small_disk.leave(frame + PAGE)  # the last frame fits, the lossless encode of all twelve does not

    with pytest.raises(OutputWriteError) as caught:
        stylize_video(clip, out, video_job, LOSSLESS_JOB, executor=LocalExecutor(EchoStylizer()))
    assert folder.count_done() == 12  # every frame is safe in the job folder
    assert "12 of 12 frames stylized and kept" in str(caught.value)
    assert leftovers(small_disk.path) == [] and not out.exists() and not (folder.path / "output.mkv").exists()

    small_disk.free_up()
    second = EchoStylizer()
    summary = stylize_video(clip, out, video_job, LOSSLESS_JOB, executor=LocalExecutor(second))
    assert summary.resumed_frames == 12 and second.calls == []
    assert all(np.array_equal(a, b) for a, b in zip(decoded(whole), decoded(out)))
    assert len(decoded(out)) == 12


@pytest.mark.parametrize("code, start", [(errno.EROFS, "{out} is on a read-only file system"),
                                         (errno.EACCES, "{out} is not writable (permission denied)"),
                                         (errno.EDQUOT, "disk quota exceeded on the device holding {out}")])
def test_every_refusing_errno_gets_its_own_advice(tmp_path, code, start):
    wrapped = RuntimeError("while writing")
    wrapped.__cause__ = OSError(code, "refused")
    assert refused_write(wrapped) == code  # found under the exception a library raised from it
    assert refused_write(OSError(errno.EIO, "I/O error")) is None  # a broken disk is not "full"
    # A file elsewhere that cannot be read (weights, a style) is not the output's device refusing writes.
    assert refused_write(OSError(errno.EACCES, "denied", "/opt/weights/vgg19.pth"), tmp_path) is None
    assert refused_write(OSError(errno.EACCES, "denied", str(tmp_path / "out" / "a.jpg")), tmp_path) == errno.EACCES
    message = str(output_write_error(code, tmp_path, "3 of 9 images done"))
    assert message.startswith(start.format(out=tmp_path) + ": 3 of 9 images done; ")
    assert message.endswith("and run the same command again")


def test_a_single_image_on_a_full_disk_is_one_error_and_no_file(tmp_path, small_disk, folder_job):  # noqa: F811
    from pipeline.jobs.image import stylize_image_file

    source = tmp_path / "photo.png"
    Image.fromarray(pattern(64, 48)).save(source)
    small_disk.leave(0)
    out = small_disk.path / "photo.png"
    with pytest.raises(OutputWriteError, match=f"no space left on the device holding {small_disk.path}: "
                                               "photo.png was not written; free space"):
        stylize_image_file(source, out, folder_job, stylizer=FakeStylizer())
    assert not out.exists() and leftovers(small_disk.path) == []
