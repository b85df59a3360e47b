"""The warping-error metric (Lai et al.), the JSON report and the plot."""

import json

import av
import numpy as np
import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.jobs.stability import compare_videos, plot_image, warping_errors, write_plot, write_report
from tests.media.test_flow import textured

FLICKER = 20  # grey levels added to every other output frame


def pan(frames=5, step=2, width=64, height=48, seed=0):
    """A camera pan over a textured picture, kept to mid-range so that adding FLICKER never clips."""
    wide = (textured(width + step * frames, height, seed) // 2 + 64).astype(np.uint8)
    return [wide[:, step * (frames - i) : step * (frames - i) + width] for i in range(frames)]


def flickering(frames):
    return [(f.astype(int) + FLICKER * (i % 2)).astype(np.uint8) for i, f in enumerate(frames)]


def write_video(path, frames, fps=10):
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"qp": "0"}  # lossless: the test measures the metric, not the codec
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_video_that_follows_its_input_has_almost_no_error():
    frames = pan()
    report = warping_errors(frames, frames)
    assert report.frames == 5 and len(report.per_frame) == 4
    assert (report.width, report.height) == (64, 48)
    assert report.warping_error < 2e-4


def test_flicker_gives_the_error_the_definition_predicts():
    frames = pan()
    report = warping_errors(frames, flickering(frames))
    # Every trusted pixel differs by FLICKER in each of the three channels after warping.
    expected = 3 * (FLICKER / 255) ** 2
    assert report.warping_error == pytest.approx(expected, rel=0.1)
    assert all(e == pytest.approx(expected, rel=0.15) for e in report.per_frame)


def test_a_stride_compares_frames_further_apart():
    frames = pan(frames=7)
    # Flicker every other frame: frames two apart agree again, neighbours do not.
    assert warping_errors(frames, flickering(frames), stride=2).warping_error < 2e-4
    # A slow drift (+6 grey levels a frame) is small between neighbours and adds up over 3 frames.
    drift = [(f.astype(int) + 6 * i).astype(np.uint8) for i, f in enumerate(frames)]
    near, far = warping_errors(frames, drift), warping_errors(frames, drift, stride=3)
    assert len(near.per_frame) == 6 and len(far.per_frame) == 4
    assert far.warping_error == pytest.approx(9 * near.warping_error, rel=0.2)
    with pytest.raises(ValueError, match="stride"):
        warping_errors(frames, frames, stride=0)


def test_inputs_are_compared_at_the_outputs_size():
    big = pan(width=128, height=96, step=4)
    small = [np.asarray(Image.fromarray(f).resize((64, 48), Image.Resampling.BOX)) for f in big]
    steady = warping_errors(big, small)
    assert (steady.width, steady.height) == (64, 48)
    assert steady.warping_error < 0.1 * warping_errors(big, flickering(small)).warping_error


def test_sequences_of_different_lengths_are_an_input_error():
    frames = pan()
    with pytest.raises(InputError, match="the output has only 4 frames"):
        warping_errors(frames, frames[:4])


def test_compare_videos_writes_a_json_report_and_a_plot(tmp_path):
    frames = pan(frames=6)
    write_video(tmp_path / "in.mp4", frames)
    write_video(tmp_path / "steady.mp4", frames)
    write_video(tmp_path / "flicker.mp4", flickering(frames))
    steady = compare_videos(tmp_path / "in.mp4", tmp_path / "steady.mp4")
    flicker = compare_videos(tmp_path / "in.mp4", tmp_path / "flicker.mp4")
    assert steady.frames == flicker.frames == 6
    assert steady.warping_error < 0.05 * flicker.warping_error
    # Two frames apart the flicker (every other frame) cancels out.
    assert compare_videos(tmp_path / "in.mp4", tmp_path / "flicker.mp4", stride=2).warping_error < \
        0.05 * flicker.warping_error

    write_report(flicker, tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["warping_error"] == pytest.approx(flicker.warping_error)
    assert len(data["per_frame"]) == 5 and data["extra"]["output"].endswith("flicker.mp4")
    assert not list(tmp_path.glob(".*.part"))  # written atomically, nothing left behind

    write_plot(flicker.per_frame, tmp_path / "plot.png")
    with Image.open(tmp_path / "plot.png") as plot:
        assert plot.size == (640, 240)


def test_the_plot_draws_the_curve():
    flat = plot_image([0.01, 0.01, 0.01])
    rising = plot_image([0.0, 0.005, 0.01])
    assert flat.shape == (240, 640, 3)
    assert (flat != rising).any()
    assert plot_image([None, None]).shape == (240, 640, 3)  # nothing to draw is not an error


def test_the_plot_draws_several_labelled_curves_in_their_own_colours():
    from pipeline.jobs.stability import CURVE_COLOURS

    both = plot_image({"frame": [0.02, 0.03, 0.02], "warped": [0.002, 0.003, 0.002]})
    one = plot_image({"frame": [0.02, 0.03, 0.02]})
    for colour in CURVE_COLOURS[:2]:
        assert (both == colour).all(-1).sum() > 50  # each curve (and its legend line) is drawn
    assert (one == CURVE_COLOURS[1]).all(-1).sum() == 0


def test_missing_or_broken_videos_are_input_errors(tmp_path):
    frames = pan()
    write_video(tmp_path / "in.mp4", frames)
    # The same messages as a video job gives (one reader for both: pipeline/media/video.py).
    with pytest.raises(InputError, match="missing.mp4: no such file"):
        compare_videos(tmp_path / "in.mp4", tmp_path / "missing.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(InputError, match="broken.mp4: not a readable video"):
        compare_videos(tmp_path / "in.mp4", tmp_path / "broken.mp4")
    with pytest.raises(InputError, match="PNG"):
        write_plot([0.1], tmp_path / "plot.jpg")


def test_content_drift_is_the_mean_luminance_difference_at_a_quarter_size():
    from pipeline.jobs.stability import content_drift

    grey = np.full((32, 48, 3), 100, np.uint8)
    assert content_drift(grey, grey) == 0.0
    # A uniform shift of 20 grey levels changes the luminance by 20/255 everywhere.
    assert content_drift(grey, grey + 20) == pytest.approx(20 / 255, abs=1e-6)
    # Float input in [0, 1] is read on the same scale; only luminance counts (a colour change of equal
    # luma, red against its grey, is no drift).
    red = np.zeros((32, 48, 3), np.float32)
    red[..., 0] = 1.0
    assert content_drift(red, np.full_like(red, 0.299)) == pytest.approx(0.0, abs=1e-6)
    # Texture finer than 4 px (brush strokes) averages out; a shape-sized change does not.
    checker = np.indices((32, 48)).sum(0) % 2 * 200
    strokes = np.repeat(checker[..., None], 3, axis=2).astype(np.uint8)
    assert content_drift(strokes, np.full_like(strokes, 100)) < 1e-6
    blob = grey.copy()
    blob[8:24, 12:36] = 0  # a dark blob over a quarter of the frame
    assert content_drift(blob, grey) == pytest.approx(0.25 * 100 / 255, rel=0.02)
    with pytest.raises(ValueError, match="sizes differ"):
        content_drift(grey, grey[:16])


def test_drift_frames_sample_both_ends_of_the_chain():
    from pipeline.jobs.stability import drift_curve, drift_frames, drift_summary

    assert drift_frames(1) == [] and drift_frames(4) == [1, 2, 3]
    chosen = drift_frames(100)
    assert chosen == [*range(1, 21), 30, 40, 50, 60, 70, *range(80, 100)]
    summary = drift_summary([1, 2, 50, 98, 99], [0.02, 0.04, 0.5, 0.06, 0.06], total=100, window=2)
    assert summary["first"] == pytest.approx(0.03) and summary["last"] == pytest.approx(0.06)
    assert summary["ratio"] == pytest.approx(2.0) and summary["scale"] == 4
    assert summary["floor_first"] is None and summary["floor_frames"] == []
    # The floor averages the neighbour differences of frames alone over the same two windows.
    summary = drift_summary([1, 2, 50, 98, 99], [0.02, 0.04, 0.5, 0.06, 0.06], total=100, window=2,
                            neighbours={2: 0.01, 99: 0.03})
    assert summary["floor_first"] == pytest.approx(0.01) and summary["floor_last"] == pytest.approx(0.03)
    assert summary["floor_frames"] == [2, 99] and summary["floor_per_frame"] == [0.01, 0.03]
    curve = drift_curve(summary, 100, floor=True)
    assert curve[2] == 0.01 and curve[99] == 0.03 and curve[1] is None


def test_a_second_chart_goes_under_the_first(tmp_path):
    path = tmp_path / "plot.png"
    write_plot([0.1, 0.2], path, width=200, height=100,
               below=({"drift": [None, 0.03, None, 0.05]}, {"title": "drift", "x_label": "frame"}))
    assert Image.open(path).size == (200, 200)
