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


def _imports(path: Path, *, module_level: bool = False) -> set[str]:
    """The mmgr_qdrant modules ``path`` imports: all of them, or (``module_level``) those run at import time.

    Imports inside functions and under ``if TYPE_CHECKING:`` are late or type-only; the import-time
    graph leaves them out, the layer graph does not.
    """
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    if module_level:
        nodes: list[ast.AST] = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        nodes += [n for t in tree.body if isinstance(t, ast.Try) for n in t.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
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


def _graph(*, module_level: bool = False) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {t for t in _imports(path, module_level=module_level) if t in modules and t != name}
    return graph


def _layer(module: str) -> str:
    """The part a module belongs to: ``mmgr_qdrant.setops.syntax`` -> ``setops``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges between modules; a package's ``__init__`` re-exports its children and is not a layer of its own."""
    packages = {m for m in graph if any(o.startswith(m + ".") for o in graph)}
    return {m: {t for t in ts if t not in packages} for m, ts in graph.items() if m not in packages}


def test_no_module_imports_itself_at_import_time() -> None:
    assert _cycles(_without_package_inits(_graph(module_level=True))) == []


def test_the_parts_import_one_way_even_counting_late_imports() -> None:
    """A late import inside one part (``setops.expr`` parsing through ``setops.syntax``) is fine;
    two parts that import each other, however late (``admin`` and ``retriever``), are not."""
    layers: dict[str, set[str]] = {}
    for module, targets in _without_package_inits(_graph()).items():
        layers.setdefault(_layer(module), set()).update(_layer(t) for t in targets if _layer(t) != _layer(module))
    assert _cycles(layers) == []


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
