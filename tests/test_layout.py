"""The layout of the code: imports point down through the layers, no module imports its way into a circle
(imports inside functions count), only the Ray modules import Ray."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
LIBRARY = CHECKOUT / "pipeline"
PACKAGES = ("pipeline", "cli", "bench")  # the library, its commands, the benchmarks (tests/ may import anything)

# The layers, highest first (docs/design.md). A module may import its own layer and any layer of a LOWER
# rank: never one above it, nor another layer of the same rank.
RANKS = {
    # The programs: the commands and the benchmarks. The library imports neither, nor they each other.
    "cli": 5,
    "bench": 5,
    "pipeline.jobs": 4,
    # The method, and the executors that the jobs plug in (they run a job's work function and know
    # no job and no engine): beside each other, so neither imports the other.
    "pipeline.engine": 3,
    "pipeline.scale": 3,
    # Below the engine, which resizes with media/images.py.
    "pipeline.media": 2,
    # The shared vocabulary: config's checks raise errors, events carry results.
    "pipeline.config": 1,
    "pipeline.events": 1,
    "pipeline.errors": 0,
    "pipeline.results": 0,
    "pipeline": 0,  # the package's __init__.py: its docstring, no imports
}


def _module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``path`` (module ``name``) imports anywhere: at the top, in a function,
    under a condition. ``from pipeline.x import y`` counts as ``pipeline.x.y`` when that is a module, else
    as ``pipeline.x``; relative imports are resolved against the module's package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name in known}


def import_graph(root: Path = CHECKOUT) -> dict[str, set[str]]:
    """Each module of ``PACKAGES`` under ``root`` -> the modules of ``PACKAGES`` it imports."""
    modules = {_module_name(p, root): p for top in PACKAGES for p in (root / top).rglob("*.py")}
    return {name: imported_modules(path, name, set(modules)) - {name} for name, path in modules.items()}


def layer(module: str) -> str:
    """``pipeline.engine.optimize`` -> ``pipeline.engine``, ``pipeline.config`` -> itself, ``cli.video`` -> ``cli``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "pipeline" else parts[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that does not point down: into a layer of the same rank or higher."""
    return [f"{module} (rank {RANKS[layer(module)]}) imports {dep} (rank {RANKS[layer(dep)]})"
            for module, deps in sorted(graph.items()) for dep in sorted(deps)
            if layer(dep) != layer(module) and RANKS[layer(dep)] >= RANKS[layer(module)]]


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # pipeline/scale/__init__.py imports the Ray executor only inside executor_for().
    assert "pipeline.scale.ray_pool" in graph["pipeline.scale"]
    assert "pipeline.jobs.video_report" in graph["pipeline.jobs.video"]  # inside _VideoRun._report


def test_no_import_circles():
    graph = import_graph()

    def visit(name, trail):
        assert name not in trail, "import circle: " + " -> ".join([*trail, name])
        for dep in sorted(graph[name]):
            visit(dep, [*trail, name])

    for name in graph:
        visit(name, [])


def test_only_the_ray_executor_and_the_cluster_module_import_ray():
    importers = sorted(_module_name(p, CHECKOUT) for p in LIBRARY.rglob("*.py")
                       if any(isinstance(n, (ast.Import, ast.ImportFrom)) and
                              any((a.name if isinstance(n, ast.Import) else (n.module or "")).split(".")[0] == "ray"
                                  for a in n.names)
                              for n in ast.walk(ast.parse(p.read_text()))))
    assert importers == ["pipeline.scale.cluster", "pipeline.scale.ray_pool"]


def test_every_module_sits_in_a_sub_package_or_is_shared_vocabulary():
    flat = sorted(p.stem for p in LIBRARY.glob("*.py") if p.stem != "__init__")
    assert flat == ["config", "errors", "events", "results"]


def test_the_shared_vocabulary_loads_without_torch():
    """Settings, errors, events and results are plain data: reading them (a config file, a job's
    events, a summary) must not cost torch's import."""
    code = ("import sys; import pipeline.config, pipeline.errors, pipeline.events, pipeline.results; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    out = subprocess.run([sys.executable, "-P", "-c", code], cwd=CHECKOUT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(CHECKOUT)}, check=True).stdout
    assert out.strip() == "[]"


def test_every_layer_has_a_rank():
    assert {layer(module) for module in import_graph()} <= set(RANKS), "give the new layer a rank in RANKS"


def test_imports_point_down():
    assert upward_imports(import_graph()) == []


# A tiny checkout with one module per layer that matters; every import in it points down.
TINY_CHECKOUT = {
    "pipeline/__init__.py": "",
    "pipeline/errors.py": "",
    "pipeline/config.py": "from pipeline.errors import ConfigError\n",
    "pipeline/engine/__init__.py": "",
    "pipeline/engine/optimize.py": "from pipeline.config import StyleConfig\n",
    "pipeline/scale/__init__.py": "",
    "pipeline/scale/local.py": "",
    "pipeline/jobs/__init__.py": "",
    "pipeline/jobs/video.py": "from pipeline.engine import optimize\nfrom pipeline.scale import local\n",
    "cli/__init__.py": "",
    "cli/video.py": "from pipeline.jobs.video import stylize_video\n",
    "bench/__init__.py": "",
    "bench/measures.py": "from pipeline.engine.optimize import gram\n",
}


@pytest.mark.parametrize(("path", "added", "upward"), [
    ("pipeline/engine/optimize.py", "def f():\n    from pipeline.jobs import video\n", "pipeline.jobs.video"),
    ("pipeline/engine/optimize.py", "from ..scale import local\n", "pipeline.scale.local"),  # beside, not below
    ("pipeline/jobs/video.py", "import bench.measures\n", "bench.measures"),  # the library never imports bench
    ("cli/video.py", "from bench import measures\n", "bench.measures"),  # nor the programs each other
    ("pipeline/errors.py", "from pipeline import config\n", "pipeline.config"),
])
def test_the_direction_check_catches_an_import_that_points_up(tmp_path, path, added, upward):
    for name, source in TINY_CHECKOUT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    graph = import_graph(tmp_path)
    assert graph["pipeline.jobs.video"] == {"pipeline.engine.optimize", "pipeline.scale.local"}
    assert upward_imports(graph) == []
    (tmp_path / path).write_text(TINY_CHECKOUT[path] + added)
    module = _module_name(tmp_path / path, tmp_path)
    assert upward_imports(import_graph(tmp_path)) == [
        f"{module} (rank {RANKS[layer(module)]}) imports {upward} (rank {RANKS[layer(upward)]})"]
