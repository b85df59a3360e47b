"""The library's layout: no module imports its way into a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline

ROOT = Path(pipeline.__file__).parent


def _top_level_imports(path: Path) -> set[str]:
    """Modules of ``pipeline`` that ``path`` imports at module level (imports inside functions are lazy)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("pipeline"))
    return names


def test_no_import_circles():
    modules = {".".join(p.relative_to(ROOT.parent).with_suffix("").parts): p for p in ROOT.rglob("*.py")}
    modules = {name.removesuffix(".__init__"): path for name, path in modules.items()}
    graph = {name: {m for m in _top_level_imports(path) if m in modules and m != name}
             for name, path in modules.items()}

    def visit(name, trail):
        assert name not in trail, "import circle: " + " -> ".join([*trail, name])
        for dep in graph[name]:
            visit(dep, [*trail, name])

    for name in graph:
        visit(name, [])


def test_every_module_sits_in_a_sub_package_or_is_shared_vocabulary():
    flat = sorted(p.stem for p in ROOT.glob("*.py") if p.stem != "__init__")
    assert flat == ["config", "errors", "events"]
