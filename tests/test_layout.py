"""The library's layout: no module imports its way into a circle, counting imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline

ROOT = Path(pipeline.__file__).parent


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Modules of ``pipeline`` that ``path`` imports anywhere: at the top, in a function, under a
    condition. ``from pipeline.x import y`` counts as ``pipeline.x.y`` when that is a module, else as
    ``pipeline.x``; relative imports are resolved against the module's package."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
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


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: imported_modules(path, set(modules)) - {name} for name, path in modules.items()}


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
    importers = sorted(_module_name(p) for p in ROOT.rglob("*.py")
                       if any(isinstance(n, (ast.Import, ast.ImportFrom)) and
                              any((a.name if isinstance(n, ast.Import) else (n.module or "")).split(".")[0] == "ray"
                                  for a in n.names)
                              for n in ast.walk(ast.parse(p.read_text()))))
    assert importers == ["pipeline.scale.cluster", "pipeline.scale.ray_pool"]


def test_every_module_sits_in_a_sub_package_or_is_shared_vocabulary():
    flat = sorted(p.stem for p in ROOT.glob("*.py") if p.stem != "__init__")
    assert flat == ["config", "errors", "events", "results"]
