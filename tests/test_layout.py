"""Project layout: benchmarks import as a package, and test modules do not import each other."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_benchmarks_are_a_package_without_sys_path_edits() -> None:
    assert (ROOT / "benchmarks" / "__init__.py").is_file()
    local = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} | {p.stem for p in (ROOT / "scripts").glob("*.py")}
    for path in _python_files("benchmarks"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                pytest.fail(f"{path.name} edits sys.path")
            if isinstance(node, ast.Import):
                bare = [a.name for a in node.names if a.name in local]
                assert not bare, f"{path.name} imports {bare} by bare name; use benchmarks.<name> or scripts.<name>"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in local:
                pytest.fail(f"{path.name} imports from {node.module!r} by bare name")


def test_tests_import_helpers_not_each_other() -> None:
    offenders = []
    for folder in ("tests", "integrations"):
        for path in _python_files(folder):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for name in names:
                    last = name.split(".")[-1]
                    if last.startswith("test_") or last == "conftest":
                        offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


@pytest.mark.slow
def test_every_benchmark_runs_as_a_module() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for path in sorted((ROOT / "benchmarks").glob("[a-z]*.py")):
        out = subprocess.run([sys.executable, "-m", f"benchmarks.{path.stem}", "--help"], check=False, cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and "usage" in out.stdout, f"benchmarks.{path.stem}: {out.stderr[-2000:]}"
