"""`make bench-budget`'s video half (bench/budget_video.py): each checkout's own stylize-video, the
cost of a later frame from outside, the yardsticks on its frames, the drift run."""

import json
import textwrap

import numpy as np
import pytest
from PIL import Image

from bench import budget_video
from tests.conftest import stripes
from tests.jobs.test_stability import pan, write_video

GREY = 90


@pytest.fixture
def fake_checkout(tmp_path):
    """A checkout whose stylize-video writes grey frames and a report of its own: proof that its code ran."""
    root = tmp_path / "old"
    (root / "cli").mkdir(parents=True)
    (root / "cli/__init__.py").write_text("")
    (root / "cli/video.py").write_text(textwrap.dedent(f"""
        import json, sys
        import av, numpy as np

        def main():
            args = sys.argv[1:]
            clip, output = args[0], args[2]
            value = lambda flag: args[args.index(flag) + 1]
            frames, side = int(value("--max-frames")), int(value("--size"))
            with av.open(clip) as source:
                width, height = source.streams.video[0].width, source.streams.video[0].height
            scale = side / max(width, height)
            width, height = 2 * round(width * scale / 2), 2 * round(height * scale / 2)
            with av.open(output, "w") as out:
                stream = out.add_stream("libx264", rate=25)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
                stream.options = {{"qp": "0"}}
                for _ in range(frames):
                    grey = np.full((height, width, 3), {GREY}, np.uint8)
                    out.mux(stream.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")))
                out.mux(stream.encode())
            report = {{"frames": frames, "width": width, "height": height, "warping_error": 0.5,
                      "drift": {{"ratio": 1.5}} if "--report-drift" in args else {{}}}}
            open(value("--report"), "w").write(json.dumps(report))
            return 0
    """))
    return root


@pytest.fixture
def media(tmp_path):
    clip, style = tmp_path / "in.mp4", tmp_path / "style.png"
    write_video(clip, pan(frames=4, width=48, height=32))  # a pan: one shot, so frames 2-4 are later frames
    Image.fromarray(stripes(48, 48)).save(style)
    return clip, style


@pytest.mark.slow
def test_each_checkout_runs_its_own_stylize_video_and_its_frames_are_judged(media, fake_checkout, tmp_path, capsys):
    clip, style = media
    out = tmp_path / "out"
    assert budget_video.main(["--clip", f"{clip}@32", "--style", str(style), "--frames", "3", "--budgets", "2", "4",
                              "--first-iterations", "4",
                              "--old", str(fake_checkout), "--drift", "--device", "cpu", "--threads", "1",
                              "--out", str(out)]) == 0
    report = json.loads((out / "bench-budget-video.json").read_text())
    # Budget by budget, the methods in turn; the old checkout has its default only.
    assert [(r["method"], r["budget"]) for r in report["rows"]] == [("new", 2), ("old", None), ("new", 4)]
    new, old, new_at_4 = report["rows"]
    assert new_at_4["texture"] != new["texture"]  # --iterations reached the later frames
    # Each budget keeps its own clip and last frame: the sheet shows three pictures, not one twice.
    assert len({r["video"] for r in report["rows"]} | {r["image"] for r in report["rows"]}) == 6
    assert not np.array_equal(np.asarray(Image.open(new["image"])), np.asarray(Image.open(new_at_4["image"])))
    assert old["warping_error"] == 0.5 and old["drift_ratio"] == 1.5  # its own report, from its own code
    grey = np.unique(np.asarray(Image.open(old["image"])).reshape(-1, 3), axis=0)
    assert np.abs(grey.astype(int) - GREY).max() <= 2  # its last frame, read back from its video
    assert new["size"] == [32, 21] and new["frames"] == 3  # the working size, from the report
    assert Image.open(new["image"]).size == (48, 32)  # the output keeps the input's size,
    assert new["judged_size"] == [32, 21]  # and is judged at the size it was stylized at
    assert new["warping_error"] is not None and new["drift"]["frames"]  # our report, with drift measured
    for row in report["rows"]:
        # A later frame's cost: the 3-frame run less the 1-frame run of the same method, over 2 frames.
        assert row["wall_s"] == pytest.approx((row["run_s"] - row["one_frame_s"]) / 2)
        assert row["cpu_s"] == pytest.approx((row["run_cpu_s"] - row["one_frame_cpu_s"]) / 2)
        assert row["judged_frames"] == [1, 2] and row["texture"] > 0 and row["content"] > 0
    # The grey frames are far from the painting's texture and from the photo's content: the judge saw them.
    assert old["texture"] > new["texture"] and old["content"] > new["content"]
    with Image.open(report["plots"][0]) as plot:
        assert plot.format == "PNG"
    assert (out / "budget_video/budget_in.32.jpg").is_file()
    assert "| in@32 | old | default |" in capsys.readouterr().out


def test_clip_specs_name_the_size_or_leave_the_default():
    assert budget_video.parse_clip("a/b.mp4@160") == (budget_video.Path("a/b.mp4"), 160)
    assert budget_video.parse_clip("b.mp4") == (budget_video.Path("b.mp4"), None)
    assert budget_video.clip_name(budget_video.Path("a/b.mp4"), None) == "b@default"


def test_a_missing_clip_is_one_line_before_any_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        budget_video.main(["--clip", str(tmp_path / "nope.mp4@32"), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert f"{tmp_path / 'nope.mp4'}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing ran
