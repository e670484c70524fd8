"""Shared fixtures: a tiny real encoder, and one suite run against both store backends."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from mmgr_qdrant import MultimodalRetriever
from tests.helpers import TINY

# Every backend-parametrized test also runs against a live server when QDRANT_URL is set.
SERVER_URL = os.environ.get("QDRANT_URL")
BACKENDS = ["edge", "local"] + (["server"] if SERVER_URL else [])


@pytest.fixture(scope="session")
def tiny_encoder() -> Any:
    """A tiny random-init open_clip model: the real code path, milliseconds a batch."""
    from mmgr_qdrant.encoders import get_encoder

    return get_encoder(TINY)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(backend: str, tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    """Connection kwargs for the backend under test: an Edge folder, or a local-mode QdrantClient."""
    clients: list[Any] = []

    def make(fresh: bool = False) -> dict[str, Any]:
        if backend == "edge":
            return {"path": tmp_path / "edge"}
        from qdrant_client import QdrantClient

        if fresh or not clients:
            if backend == "server":
                client = QdrantClient(url=SERVER_URL, api_key=os.environ.get("QDRANT_API_KEY"))
                before.update(c.name for c in client.get_collections().collections)
                clients.append(client)
            else:
                clients.append(QdrantClient(":memory:"))
        return {"client": clients[-1]}

    before: set[str] = set()
    yield make
    for c in clients:
        if backend == "server":  # leave the server as it was
            for col in c.get_collections().collections:
                if col.name not in before:
                    c.delete_collection(col.name)
        c.close()


@pytest.fixture
def retriever(connect: Callable[..., dict[str, Any]], tiny_encoder: Any) -> Iterator[MultimodalRetriever]:
    r = MultimodalRetriever.create("docs", encoder=tiny_encoder, **connect())
    yield r
    r.close()
