"""The benchmark: FLOP counting, a tiny end-to-end run on CPU, and the helpers of its quality modes."""

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import speed
from bench.common import save_report
from bench.quality import (
    Yardstick,
    _ours_seconds_per_iteration,
    _pastiche_loop_seconds,
    full_size_cost,
    pastiche_verdict,
)
from pipeline.config import CONTENT_LAYER, STYLE_LAYERS
from pipeline.engine.losses import gram
from pipeline.media.images import from_uint8
from tests.conftest import pattern, stripes


@pytest.mark.slow
def test_flop_count_agrees_with_torchs_counter(features):
    x = torch.rand(1, 3, 64, 48, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        feats = features(x)
        loss = sum(gram(feats[n]).sum() for n in STYLE_LAYERS) + feats[CONTENT_LAYER].sum()
        loss.backward()
    ours = speed.iteration_flops(features, 64, 48)
    assert ours["total"] == counter.get_total_flops()
    assert ours["forward"] == ours["backward"]


def test_flop_count_at_512_is_what_the_issue_says(features):
    # About 146 GFLOP forward to conv4_2 at 512x512: the 190 to conv5_1 of the network before issue 25
    # less conv4_3, conv4_4 and conv5_1.
    flops = speed.iteration_flops(features, 512, 512)
    assert 143e9 < flops["forward"] < 149e9
    assert [s[0] for s in speed.conv_shapes(features, 512, 512)][-1] == "conv4_2"


@pytest.mark.slow
def test_benchmark_runs_at_tiny_size_on_cpu(features, tmp_path, monkeypatch):
    monkeypatch.setattr(speed, "bench_images", lambda: (from_uint8(pattern(80, 64)), from_uint8(stripes(64, 64))))
    # bf16 named explicitly: the bf16 path and its fp32 baseline run whatever this CPU's auto would pick.
    args = speed.parse_args(["--device", "cpu", "--precision", "bf16", "--sizes", "64", "--iterations", "2",
                             "--repeats", "1", "--warmup", "1", "--video-frames", "0", "--out", str(tmp_path)])
    report = speed.run_benchmark(args, features=features)
    path = save_report(report, tmp_path, "bench.json")
    saved = json.loads(path.read_text())
    (row,) = saved["sizes"]
    assert (row["name"], row["height"], row["width"]) == ("64", 64, 64)
    assert row["gflop_per_iteration"] == speed.iteration_flops(features, 64, 64)["total"] / 1e9
    for loop in ("fast", "reference", "fp32"):
        assert row[loop]["ms_per_iteration"] > 0
        assert len(row[loop]["repeats_ms"]) == 1
        assert row[loop]["tflops"] > 0
    assert row["speedup"] == row["reference"]["ms_per_iteration"] / row["fast"]["ms_per_iteration"]
    assert row["vs_fp32"] == row["fast"]["ms_per_iteration"] / row["fp32"]["ms_per_iteration"]
    assert saved["precision"] == "bf16"
    assert "speed-up" in report["table"] and "vs fp32" in report["table"]
    # Header, rule, one row per size, then one verdict line per target.
    lines = report["table"].splitlines()
    rows, (share, verdict) = lines[2:3], lines[3:]
    assert [line.split()[0] for line in rows] == ["64"]
    assert share.startswith(f"64: one evaluation (bf16) at {row['fast']['tflops']:.2f} TFLOP/s")
    assert verdict.startswith(f"64: default path (bf16) takes {row['vs_fp32']:.2f}x the time of the fp32")
    assert verdict.endswith(": met" if row["vs_fp32"] <= 0.6 else ": NOT met")


@pytest.mark.slow
def test_benchmark_has_no_fp32_baseline_when_the_default_is_fp32(features, tmp_path, monkeypatch):
    monkeypatch.setattr(speed, "bench_images", lambda: (from_uint8(pattern(80, 64)), from_uint8(stripes(64, 64))))
    args = speed.parse_args(["--device", "cpu", "--precision", "fp32", "--sizes", "64", "--iterations", "2",
                             "--repeats", "1", "--warmup", "1", "--no-reference", "--out", str(tmp_path)])
    (row,) = speed.run_benchmark(args, features=features)["sizes"]
    assert row["fp32"] is None and row["vs_fp32"] is None and row["fast"]["ms_per_iteration"] > 0


@pytest.mark.slow
def test_reference_loop_lowers_the_loss_like_the_stylizer(features):
    style = from_uint8(stripes(64, 64))
    reference = speed.ReferenceLoop(features, style, speed.StyleConfig(), torch.device("cpu"))
    marks = []
    first = reference.run(from_uint8(pattern(64, 48)), 1, marks.append)
    last = reference.run(from_uint8(pattern(64, 48)), 8, marks.append)
    assert last < first
    assert marks[-1] == 8
    assert all(p.requires_grad for p in reference.net.parameters())  # it pays for weight gradients
    assert not any(p.requires_grad for p in features.parameters())  # and leaves the shared network frozen


def test_video_figure_is_skipped_with_a_reason_when_no_clip(tmp_path):
    result = speed.video_fps(tmp_path / "missing.mp4", 2, "cpu", tmp_path / "style.png")
    assert "skipped" in result


def test_yardstick_ranks_the_style_image_itself_as_strongest_style():
    content, style = from_uint8(pattern(64, 64)), from_uint8(stripes(64, 64))
    yardstick = Yardstick(content, style, 64)
    assert yardstick(style)["style"] < 0.01 * yardstick(content)["style"]
    assert yardstick(content)["content"] < 1e-6


def test_progress_lines_of_both_tools_are_parsed():
    pastiche = "size: 256x192\n\nstep elapsed loss\n---- ------- ----\n0    3.1     56001.20\n60   95.6    2882.55\n"
    assert abs(_pastiche_loop_seconds(pastiche, 60) - 92.5) < 1e-9
    assert _pastiche_loop_seconds(pastiche, 100) is None
    ours = "Wrote out.png (256x192) in 1m 2s: 60 iterations, 0.731 s/iteration on cpu"
    assert _ours_seconds_per_iteration(ours) == 0.731


def test_pastiche_verdict_needs_both_losses_and_the_time():
    def tool(wall, style, content):
        return {"median_wall_s": wall, "median_cpu_s": wall, "yardstick": {"style": style, "content": content}}

    met = pastiche_verdict({"ours": tool(30, 0.9, 1.0), "pastiche": tool(100, 1.0, 1.0)})
    assert met["quality_reached"] and met["time_met"] and met["ratio_wall"] == 0.3
    weaker_style = pastiche_verdict({"ours": tool(30, 1.1, 0.5), "pastiche": tool(100, 1.0, 1.0)})
    assert not weaker_style["quality_reached"] and weaker_style["ratio_style_loss"] == 1.1
    slow = pastiche_verdict({"ours": tool(34, 0.5, 0.5), "pastiche": tool(100, 1.0, 1.0)})
    assert slow["quality_reached"] and not slow["time_met"]


def test_schedule_cost_counts_coarse_evaluations_at_their_pixel_share():
    assert full_size_cost(128, 128, 1, 30) == 30
    assert full_size_cost(128, 128, 2, 30) == 20 / 4 + 10  # 20 at 64x64, 10 at 128x128


@pytest.mark.slow
def test_temporal_benchmark_runs_every_init_on_a_tiny_clip(features, style_file, tmp_path, monkeypatch, capsys):
    from bench import temporal as bench_temporal
    from pipeline.config import StyleImage
    from pipeline.engine.optimize import Stylizer
    from tests.jobs.test_video_job import make_pan

    clip = tmp_path / "pan.mkv"
    make_pan(clip, frames=4)
    monkeypatch.setattr(bench_temporal, "build_stylizer",
                        lambda job: Stylizer([StyleImage(style_file)], job.style, job.engine, features=features))
    assert bench_temporal.main(["--clip", f"{clip}@0", "--frames", "3", "--first-iterations", "3",
                                "--iterations", "2", "--device", "cpu", "--style", str(style_file),
                                "--long-term", "2", "--drift", "--no-content-blend", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench-temporal-cpu.json").read_text())
    (clip_report,) = report["clips"]
    assert [r["init"] for r in clip_report["runs"]] == ["frame", "previous", "warped", "warped, long-term 2",
                                                        "warped, no content blend"]
    # Content drift is measured on the warped runs, on every frame after the first of so short a clip.
    assert [r["drift"].get("frames") for r in clip_report["runs"]] == [None, None, [1, 2], [1, 2], [1, 2]]
    assert all(r["frames"] == 3 and r["style_loss"] > 0 and r["seconds_per_frame"] > 0 for r in clip_report["runs"])
    assert clip_report["work_size"] == [64, 48] and clip_report["input_warping_error"] > 0
    assert all(len(r["per_frame"]) == 2 for r in clip_report["runs"])
    assert Path(clip_report["plot"]).stat().st_size > 0
    table = capsys.readouterr().out
    assert table.count("| pan.mkv (64x48) |") == 6 and "input video itself" in table


def test_temporal_benchmark_reports_a_missing_file_in_one_line(tmp_path, capsys):
    from bench import temporal as bench_temporal

    assert bench_temporal.main(["--style", str(tmp_path / "nothere.jpg"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nothere.jpg'}: style image not found"
