"""``mmgr serve``'s start-up checks through typer's CliRunner (the live service is in test_serve_live.py)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from mmgr_qdrant import MultimodalRetriever
from mmgr_qdrant.errors import MissingDependencyError
from tests.helpers import mmgr


def flat(result: Any) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def store(tmp_path: Path, tiny_encoder: Any) -> Path:
    with MultimodalRetriever.create("web", path=tmp_path / "store", encoder=tiny_encoder) as r:
        r.add_texts(["a red car", "a blue boat"])
    return tmp_path / "store"


def test_help_has_an_example() -> None:
    result = mmgr("serve", "--help")
    assert result.exit_code == 0 and "Example: mmgr serve --collection demo" in flat(result)
    assert "--allow-writes" in result.output and "--write-key" in result.output and "--workers" in result.output


def test_writes_need_a_key(store: Path) -> None:
    result = mmgr("serve", "--allow-writes", "--path", store, "--collection", "web")
    assert result.exit_code == 2 and "--allow-writes needs --write-key" in flat(result)


def test_several_workers_need_a_server(store: Path) -> None:
    result = mmgr("serve", "--workers", "2", "--path", store, "--collection", "web")
    assert result.exit_code == 1 and "needs a Qdrant server (--url)" in flat(result)


def test_a_port_in_use_is_reported_before_serving(store: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = mmgr("serve", "--port", port, "--path", store, "--collection", "web")
    assert result.exit_code == 1, result.output
    assert f"Cannot listen on 127.0.0.1:{port}" in flat(result) and "pass another --port" in flat(result)
    with MultimodalRetriever.open("web", path=store) as r:  # the index was closed again on the way out
        assert r.count() == 2


def test_a_missing_collection_says_how_to_create_it(store: Path) -> None:
    result = mmgr("serve", "--path", store, "--collection", "nope")
    assert result.exit_code == 1 and "Collection 'nope' does not exist" in flat(result) and "mmgr init" in flat(result)


def test_a_missing_web_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # FastAPI is installed here; pretend it is not, as on a machine without the extra.
    import mmgr_qdrant.service._deps as deps

    monkeypatch.setattr(deps, "find_spec", lambda name: None if name == "fastapi" else object())
    with pytest.raises(MissingDependencyError, match=r"mmgr-qdrant\[serve\]"):
        deps.require()
