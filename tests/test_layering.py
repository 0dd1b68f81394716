"""The package's layers: no import cycle, no lower layer importing a higher one.

Every import counts, those inside functions and under ``TYPE_CHECKING`` included (the style
guide calls them cycles too). Read with ``ast``, nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tierlake

ROOT = Path(tierlake.__file__).parent
# layer -> the layers it must never import
FORBIDDEN = {
    "events": {"data", "app", "web", "lake", "analytics", "pipeline", "fleet", "seed", "cli"},
    "data": {"app", "web", "lake", "analytics", "pipeline", "fleet", "seed", "cli"},
    "lake": {"app", "web", "pipeline", "fleet", "seed", "cli"},
    "analytics": {"app", "web", "pipeline", "fleet", "seed", "cli"},
    "web": {"data", "app", "lake", "analytics", "pipeline", "seed", "cli"},
    "app": {"web", "lake", "analytics", "pipeline", "fleet", "seed", "cli"},
    # The BI tier reads the lake (and the pipeline's status), never the store's database.
    "bi": {"data", "app", "web", "fleet", "seed", "cli"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ["tierlake", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        if "migrations" not in parts:  # Alembic's scripts are run by Alembic, not imported
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The tierlake modules ``name`` imports (a ``from package import module`` names the
    module; parent packages are not counted)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                      for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_lower_layer_imports_a_higher_one() -> None:
    wrong = sorted(f"{m} imports {i}" for m, imports in GRAPH.items() for i in imports
                   if _layer(i) in FORBIDDEN.get(_layer(m), set()))
    assert not wrong, "forbidden imports:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for nxt in sorted(GRAPH[module]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_see_the_package() -> None:
    # the graph is read right: known edges are there (a parse that found nothing passes)
    assert "tierlake.lake.current" in GRAPH["tierlake.lake.store"]
    assert "tierlake.events" in GRAPH["tierlake.web.clickstream"]
    assert "tierlake.data.db" in GRAPH["tierlake.seed.store"]
