"""What every benchmark's command shares (bench/common.py): its options, and its main once they are read."""

import json

import pytest
import torch

from bench.common import ROOT, bench_parser, run_main
from pipeline.errors import InputError


def test_the_shared_options_are_declared_once_and_can_be_left_out():
    args = bench_parser("python -m bench.x", "Summary.\n\nMore.", precision=True).parse_args([])
    assert (args.out, args.threads, args.device, args.precision) == (ROOT / "bench-results", None, "auto", "auto")
    bare = bench_parser("python -m bench.x", "Summary.", threads=False, device=False).parse_args([])
    assert vars(bare) == {"out": ROOT / "bench-results"}
    assert bench_parser("x", "Summary.", device_default="cuda").parse_args([]).device == "cuda"
    with pytest.raises(SystemExit):
        bench_parser("x", "Summary.", threads=False).parse_args(["--threads", "1"])


def test_run_main_sets_threads_writes_the_report_then_prints_the_summary(tmp_path, capsys):
    args = bench_parser("x", "Summary.").parse_args(["--out", str(tmp_path), "--threads", "1"])
    before = torch.get_num_threads()
    seen = []
    try:
        code = run_main(args, lambda a: seen.append(torch.get_num_threads()) or {"table": "a table", "n": 1},
                        lambda report: f"bench-{report['n']}.json", lambda report: [report["table"]])
    finally:
        torch.set_num_threads(before)
    assert code == 0 and seen == [1]
    assert json.loads((tmp_path / "bench-1.json").read_text()) == {"table": "a table", "n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["bench-1.json"]  # written whole: no .part left
    assert capsys.readouterr().out.splitlines() == ["a table", f"JSON: {tmp_path / 'bench-1.json'}"]


def test_run_main_tells_a_refused_input_in_one_line_and_writes_nothing(tmp_path, capsys):
    args = bench_parser("x", "Summary.").parse_args(["--out", str(tmp_path / "out")])

    def run(_args):
        raise InputError("clip.mp4: not found")

    assert run_main(args, run, "bench.json") == 2
    assert capsys.readouterr().err == "error: clip.mp4: not found\n"
    assert not (tmp_path / "out").exists()
