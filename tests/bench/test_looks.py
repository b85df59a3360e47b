"""`make bench-quality` (bench/looks.py) on tiny generated pictures: what it runs, measures and writes."""

import json

import pytest
from PIL import Image

from bench import looks
from tests.conftest import pattern, stripes


@pytest.fixture
def shared(tmp_path):
    """A stand-in for ../shared: one photo, the two paintings, one 'published' result."""
    root = tmp_path / "shared"
    for folder in ("media/content", "media/styles", "reference/peer-outputs"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(pattern(80, 60)).save(root / "media/content/golden_gate.jpg")
    Image.fromarray(stripes(64, 64)).save(root / "media/styles/the_scream.jpg")
    Image.fromarray(pattern(56, 72, seed=3)).save(root / "media/styles/vg_self.jpg")
    Image.fromarray(pattern(64, 48, seed=5)).save(root / "reference/peer-outputs/golden_gate_scream.png")
    return root


@pytest.mark.slow
def test_bench_quality_stylizes_measures_and_writes_one_sheet_per_pair(shared, tmp_path, capsys):
    out, sheets = tmp_path / "out", tmp_path / "sheets"
    assert looks.main(["--shared", str(shared), "--only", "golden_gate:the_scream", "golden_gate:vg_self",
                       "--size", "64", "--iterations", "4", "--device", "cpu", "--threads", "1",
                       "--out", str(out), "--sheets", str(sheets)]) == 0
    report = json.loads((out / "bench-quality.json").read_text())
    published, portrait = report["pairs"]
    assert [published["pair"], portrait["pair"]] == ["golden_gate_the_scream", "golden_gate_vg_self"]
    for row in (published, portrait):
        assert row["command"][1:] == [row["photo"], row["painting"], row["image"], "--size", "64", "--overwrite",
                                      "--quiet", "--device", "cpu", "--iterations", "4"]
        assert Image.open(row["image"]).size == (64, 48)  # ours, at full size, beside the JSON
        assert row["wall_s"] > 0 and len(row["load"]) == 2
        m = row["ours"]
        assert m["size"] == [64, 48] and m["style"] == pytest.approx(sum(m["style_per_layer"].values()))
        assert 0 < m["deep_median"] <= m["deep_p99"] and m["content"] > 0 and m["texture"] > 0
    # The peer's picture is measured at its own size; the portrait pair has none.
    assert published["peer"]["size"] == [64, 48] and portrait["peer"] is None and portrait["verdict"] is None
    v = published["verdict"]
    assert v["style_ratio"] == pytest.approx(published["ours"]["style"] / published["peer"]["style"])
    assert v["deep_met"] == (published["ours"]["deep_p99"] <= 1.2 * published["peer"]["deep_p99"])
    # Sheets: JPEG, ours | peer | photo | painting where published, else three tiles (cells of 64 px + gaps).
    with Image.open(sheets / "quality_golden_gate_the_scream.jpg") as img:
        assert img.format == "JPEG" and img.width == 4 * (64 + 4) + 4
    with Image.open(sheets / "quality_golden_gate_vg_self.jpg") as img:
        assert img.width == 3 * (64 + 4) + 4
    table = capsys.readouterr().out
    assert table.count("| golden_gate_the_scream |") == 2 and table.count("| golden_gate_vg_self |") == 1
    assert "golden_gate_the_scream: style distance" in table and "threads 1" in table


def test_verdict_needs_both_targets():
    def row(style, p99, peer_style=1.0, peer_p99=2.0):
        return {"ours": {"style": style, "deep_p99": p99}, "peer": {"style": peer_style, "deep_p99": peer_p99}}

    assert looks.verdict(row(1.0, 2.4)) == {"style_ratio": 1.0, "deep_p99_ratio": 1.2, "style_met": True,
                                            "deep_met": True}
    assert not looks.verdict(row(1.01, 1.0))["style_met"]
    assert not looks.verdict(row(0.5, 2.5))["deep_met"]
    assert looks.verdict({"ours": {}, "peer": None}) is None


def test_missing_media_and_unknown_pairs_are_named(shared):
    with pytest.raises(SystemExit, match="unknown pair"):
        looks.find_pairs(shared, ["golden_gate:starry_night"])
    with pytest.raises(SystemExit, match="mona_lisa.jpg: not found"):
        looks.find_pairs(shared, ["golden_gate:mona_lisa"])
    with pytest.raises(SystemExit, match="tubingen.jpg: not found"):
        looks.find_pairs(shared, ["tubingen:vg_self"])
    assert [p.name for p in looks.find_pairs(shared, ["golden_gate:vg_self"])] == ["golden_gate_vg_self"]


def test_the_pairs_are_the_four_published_and_three_portraits_on_three_photos(shared):
    for photo in ("tubingen", "hoovertowernight"):
        Image.fromarray(pattern(80, 60)).save(shared / f"media/content/{photo}.jpg")
    for painting in ("starry_night", "shipwreck", "mona_lisa", "creation_of_adam"):
        Image.fromarray(stripes(64, 64)).save(shared / f"media/styles/{painting}.jpg")
    for peer in ("tubingen_starry", "tubingen_scream", "tubingen_shipwreck"):
        Image.fromarray(pattern(64, 48)).save(shared / f"reference/peer-outputs/{peer}.png")
    pairs = looks.find_pairs(shared)
    assert [p.name for p in pairs if p.peer] == ["golden_gate_the_scream", "tubingen_starry_night",
                                                 "tubingen_the_scream", "tubingen_shipwreck"]
    portraits = {p.name for p in pairs if p.peer is None}
    assert portraits == {f"{photo}_{painting}" for photo in ("golden_gate", "tubingen", "hoovertowernight")
                         for painting in ("vg_self", "mona_lisa", "creation_of_adam")}
