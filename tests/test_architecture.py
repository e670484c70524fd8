"""The package's import graph: no cycles, and the layers import one way (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mmgr_qdrant"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every mmgr_qdrant module ``path`` imports, at any depth (lazy imports in functions count)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("mmgr_qdrant"):
                found.add(target)
                for alias in node.names:  # `from . import x` imports the submodule x
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mmgr_qdrant"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {t for t in _imports(path) if t in modules and t != name}
    return graph


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges between modules; a package's ``__init__`` re-exports its children and is not a layer of its own."""
    packages = {m for m in graph if any(o.startswith(m + ".") for o in graph)}
    return {m: {t for t in ts if t not in packages} for m, ts in graph.items() if m not in packages}


def test_the_import_graph_has_no_cycles() -> None:
    graph = _without_package_inits(_graph())
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize(
    "lower",
    ["mmgr_qdrant.types", "mmgr_qdrant.payload", "mmgr_qdrant.config", "mmgr_qdrant.store", "mmgr_qdrant.docids", "mmgr_qdrant.decoder",
     "mmgr_qdrant.setops", "mmgr_qdrant.encoders", "mmgr_qdrant.generative", "mmgr_qdrant.admin", "mmgr_qdrant.artifacts"],
)
def test_lower_layers_never_import_the_retriever_cli_or_service(lower: str) -> None:
    graph = _graph()
    upper = ("mmgr_qdrant.retriever", "mmgr_qdrant.cli", "mmgr_qdrant.service")
    offenders = {m: sorted(t for t in ts if t.startswith(upper)) for m, ts in graph.items() if m == lower or m.startswith(lower + ".")}
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def test_the_cli_uses_only_the_public_retriever() -> None:
    graph = _graph()
    for module, targets in graph.items():
        if module.startswith("mmgr_qdrant.cli"):
            private = sorted(t for t in targets if t.startswith(("mmgr_qdrant.retriever.", "mmgr_qdrant.generative")))
            assert private == [], module
