"""Packaging: the stated Python floor, declared dependencies, install hints and the encoder registry."""

from __future__ import annotations

import ast
import importlib.abc
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mmgr_qdrant.errors import MissingDependencyError, missing_dependency

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mmgr_qdrant"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_stated_python_floor_is_the_one_tested() -> None:
    floor = re.fullmatch(r">=(\d+)\.(\d+)", PROJECT["requires-python"])
    assert floor is not None
    assert sys.version_info[:2] >= (int(floor.group(1)), int(floor.group(2)))
    assert PROJECT["requires-python"] == ">=3.11"  # typing.Self and tomllib are 3.11+
    versions = {c.rsplit("::", 1)[1].strip() for c in PROJECT["classifiers"] if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert versions and all(tuple(map(int, v.split("."))) >= (3, 11) for v in versions)
    for path in _modules():  # no syntax newer than the floor
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 11))


def test_license_is_an_spdx_string_without_license_classifiers() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]
    assert any(r.startswith("setuptools>=77") for r in PYPROJECT["build-system"]["requires"])  # SPDX strings need 77


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # module level only: lazy imports inside functions are optional by design
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_module_level_import_is_declared() -> None:
    declared = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("-", "_") for d in PROJECT["dependencies"]}
    import_names = {"pil": "pillow", "qdrant_edge": "qdrant_edge_py", "yaml": "pyyaml"}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    # An optional part whose package imports nothing at import time may import its extra's packages
    # (and what they are built on) at module level: mmgr_qdrant.service needs the `serve` extra.
    optional = {"service": ("serve", {"starlette", "pydantic"})}
    undeclared = {}
    for path in _modules():
        part = path.relative_to(ROOT / "mmgr_qdrant").parts[0]
        allowed = set(declared)
        if part in optional:
            extra, built_on = optional[part]
            allowed |= {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("-", "_") for d in PROJECT["optional-dependencies"][extra]}
            allowed |= built_on
        for name in _top_level_imports(path) - stdlib - {"mmgr_qdrant"}:
            if import_names.get(name.lower(), name.lower()) not in allowed:
                undeclared[name] = path.relative_to(ROOT)
    assert undeclared == {}


def test_install_hints_name_extras_that_exist() -> None:
    extras = set(PROJECT["optional-dependencies"])
    named: list[tuple[str, Path]] = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "missing_dependency" and len(node.args) == 2:
                arg = node.args[1]
                assert isinstance(arg, ast.Constant), f"{path}: pass the extra as a literal"
                if arg.value is not None:
                    named.append((arg.value, path.relative_to(ROOT)))
    assert named and [(e, p) for e, p in named if e not in extras] == []
    assert "pip install torch" in str(missing_dependency("torch", None))
    assert "mmgr-qdrant[lit]" in str(missing_dependency("safetensors", "lit"))


def test_create_refuses_an_unknown_docid_scheme(tmp_path: Path, tiny_encoder: Any) -> None:
    from mmgr_qdrant import ConfigError, MultimodalRetriever

    with pytest.raises(ConfigError, match="typo"):
        MultimodalRetriever.create("c", path=tmp_path, encoder=tiny_encoder, docids="typo")
    assert MultimodalRetriever.list_collections(path=tmp_path) == []


class _Broken(importlib.abc.MetaPathFinder):
    """Makes importing one module fail the way a bug inside it would."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == self.name:
            raise ImportError(f"cannot import name 'helper' from {fullname!r} (a bug)")
        return None


def test_an_import_bug_in_an_encoder_module_is_not_unknown_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmgr_qdrant.encoders import base

    monkeypatch.setattr(base, "_BUILTIN_LOADED", False)
    monkeypatch.delitem(sys.modules, "mmgr_qdrant.encoders.lit", raising=False)
    import mmgr_qdrant.encoders as package

    if hasattr(package, "lit"):
        monkeypatch.delattr(package, "lit")
    monkeypatch.setattr(sys, "meta_path", [_Broken("mmgr_qdrant.encoders.lit"), *sys.meta_path])
    with pytest.raises(ImportError, match="a bug"):
        base.get_encoder("lit:default")
    monkeypatch.undo()
    assert "lit" in base.available_encoders()


def test_a_missing_optional_package_is_the_missing_extra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmgr_qdrant.encoders import get_encoder

    monkeypatch.setitem(sys.modules, "open_clip", None)  # what an absent package looks like to import
    with pytest.raises(MissingDependencyError, match=r"mmgr-qdrant\[clip\]"):
        get_encoder("open_clip:mmgr-tiny/none")
