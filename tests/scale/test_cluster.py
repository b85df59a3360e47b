"""Worker shapes and the shared-folder check: pure functions, no Ray cluster needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from pipeline.config import ScaleConfig
from pipeline.errors import ConfigError
from pipeline.scale.cluster import worker_shape
from pipeline.scale.ray_pool import shared_paths_problem
from pipeline.scale.work import SharedPaths
from tests.conftest import pattern, stripes


def test_cpu_only_cluster_gets_cpu_workers_that_share_the_cores():
    shape = worker_shape(ScaleConfig(workers=2), cpus=2, gpus=0)
    assert (shape.count, shape.num_cpus, shape.num_gpus, shape.threads) == (2, 1.0, 0.0, 1)
    shape = worker_shape(ScaleConfig(workers=3), cpus=16, gpus=0)
    assert (shape.count, shape.num_cpus, shape.num_gpus, shape.threads) == (3, 5.0, 0.0, 5)
    # More workers than cores: they all start (fractional CPUs) and run one thread each.
    shape = worker_shape(ScaleConfig(workers=4), cpus=2, gpus=0)
    assert (shape.num_cpus, shape.threads) == (0.5, 1)
    assert worker_shape(ScaleConfig(workers="auto"), cpus=16, gpus=0).count == 4  # one per 4 cores
    assert worker_shape(ScaleConfig(workers="auto"), cpus=2, gpus=0).count == 1


def test_gpus_are_requested_only_where_gpus_exist_and_the_job_may_use_them():
    shape = worker_shape(ScaleConfig(workers="auto"), cpus=32, gpus=8)
    assert (shape.count, shape.num_gpus) == (8, 1.0)
    assert worker_shape(ScaleConfig(workers=16), cpus=32, gpus=8).num_gpus == 0.5  # two workers per GPU
    assert worker_shape(ScaleConfig(workers="auto"), cpus=32, gpus=8, device="cpu").num_gpus == 0.0
    assert worker_shape(ScaleConfig(workers=2, threads=1), cpus=8, gpus=0).threads == 1


def test_scale_config_refuses_nonsense():
    for bad in (0, -1, "many"):
        with pytest.raises(ConfigError, match="workers must be 'auto' or a positive whole number"):
            ScaleConfig(workers=bad)


def test_shared_folder_check_names_what_a_worker_cannot_see(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "a.png").write_bytes(b"x")
    probe = out / ".probe.part"
    probe.write_text("token")
    shared = SharedPaths((src, src / "a.png"), out)
    assert shared_paths_problem(shared, probe, "token") is None
    elsewhere = SharedPaths((tmp_path / "elsewhere", src / "a.png"), out)
    assert "cannot see the input" in shared_paths_problem(elsewhere, probe, "token")
    # Another machine's local folder of the same name: the driver's probe is not there (or not the same).
    assert "output folder" in shared_paths_problem(shared, probe, "other")
    assert "output folder" in shared_paths_problem(shared, out / "missing.part", "token")


@pytest.mark.slow
def test_without_workers_ray_is_never_imported(tmp_path):
    """The one-process path (library and CLI) runs a folder without loading Ray."""
    (tmp_path / "in").mkdir()
    Image.fromarray(pattern(40, 32)).save(tmp_path / "in" / "a.png")
    Image.fromarray(stripes(32, 32)).save(tmp_path / "style.png")
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from cli.images import app
        from typer.testing import CliRunner
        root = Path({str(tmp_path)!r})
        result = CliRunner().invoke(app, [str(root / "in"), str(root / "style.png"), str(root / "out"),
                                          "--size", "32", "--iterations", "1", "--scales", "1", "--quiet"])
        assert result.exit_code == 0, result.output
        assert (root / "out" / "a.png").is_file()
        assert "ray" not in sys.modules, "ray was imported"
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
