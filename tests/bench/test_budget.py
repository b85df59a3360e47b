"""`make bench-budget` (bench/budget.py): methods taking turns, each checkout's own code, the report."""

import json
import textwrap

import numpy as np
import pytest
from PIL import Image

from bench import budget
from tests.bench.test_looks import shared  # noqa: F401  (the fixture: a stand-in for ../shared)


@pytest.fixture
def fake_checkout(tmp_path):
    """A checkout whose stylize-images paints every picture one grey: proof that its code is what ran."""
    root = tmp_path / "old"
    (root / "cli").mkdir(parents=True)
    (root / "cli/__init__.py").write_text("")
    (root / "cli/images.py").write_text(textwrap.dedent("""
        import sys
        from PIL import Image

        def main():
            photo, painting, output = sys.argv[1:4]
            side = int(sys.argv[sys.argv.index("--size") + 1])
            width, height = Image.open(photo).size
            scale = side / max(width, height)
            Image.new("RGB", (round(width * scale), round(height * scale)), (90, 90, 90)).save(output)
            return 0
    """))
    return root


@pytest.mark.slow
def test_methods_take_turns_each_with_its_own_code_and_budgets(shared, fake_checkout, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    assert budget.main(["--shared", str(shared), "--only", "golden_gate:the_scream", "--size", "64",
                        "--budgets", "3", "6", "--old", str(fake_checkout), "--old-budgets", "5",
                        "--method", "one-level=--scales 1", "--device", "cpu", "--threads", "1",
                        "--out", str(out)]) == 0
    report = json.loads((out / "bench-budget.json").read_text())
    order = [(r["method"], r["budget"]) for r in report["rows"]]
    # Budget by budget, the methods in turn; the old checkout has one budget only.
    assert order == [("new", 3), ("old", 5), ("one-level", 3), ("new", 6), ("one-level", 6)]
    for row in report["rows"]:
        grey = row["method"] == "old"
        pixels = np.unique(np.asarray(Image.open(row["image"])).reshape(-1, 3), axis=0)
        assert (pixels.tolist() == [[90, 90, 90]]) == grey  # the old checkout's code made its picture, ours the others
        assert row["wall_s"] > 0 and row["style"] > 0 and row["texture"] > 0 and row["deep_p99"] > 0
    assert {(m["method"], m["budget"]) for m in report["means"]} == set(order)
    new_at_3 = next(m for m in report["means"] if (m["method"], m["budget"]) == ("new", 3))
    assert new_at_3["style"] == report["rows"][0]["style"] and new_at_3["pairs"] == 1
    with Image.open(report["plot"]) as plot:
        assert plot.format == "PNG" and plot.width > 400
    with Image.open(out / "budget/budget_golden_gate_the_scream.jpg") as sheet:
        assert sheet.width == 3 * (64 + 4) + 4  # three pictures a row
    table = capsys.readouterr().out
    assert "| golden_gate_the_scream | old | 5 |" in table and "| mean of 1 | new | 6 |" in table


def test_means_are_over_the_pairs_of_one_method_and_budget():
    rows = [{"pair": p, "method": "new", "budget": 10, "wall_s": w, "style": s, "texture": 0.1, "deep_p99": 1.0,
             "content": 0.5} for p, w, s in (("a", 10, 0.2), ("b", 30, 0.4))]
    rows.append({**rows[0], "method": "old", "wall_s": 50.0})
    means = {(m["method"], m["budget"]): m for m in budget.means(rows)}
    assert means["new", 10]["wall_s"] == 20 and means["new", 10]["style"] == pytest.approx(0.3)
    assert means["new", 10]["pairs"] == 2 and means["old", 10]["pairs"] == 1


def test_a_yardstick_no_run_measured_gets_no_panels(tmp_path):
    rows = [{"method": "new", "budget": b, "wall_s": 2.0 * b, "style": 0.5, "texture": 0.1, "deep_p99": 1.0,
             "content": 0.4, "drift": None} for b in (15, 30)]
    yardsticks = (*budget.YARDSTICKS, ("drift", "drift ratio"))
    budget.write_plot(rows, tmp_path / "without.png", yardsticks)
    budget.write_plot([{**r, "drift": 1.2} for r in rows], tmp_path / "with.png", yardsticks)
    with Image.open(tmp_path / "without.png") as without, Image.open(tmp_path / "with.png") as with_drift:
        # One row of panels per yardstick: the unmeasured drift ratio's row is left out, not drawn empty.
        assert without.height == pytest.approx(with_drift.height * len(budget.YARDSTICKS) / len(yardsticks), abs=2)
