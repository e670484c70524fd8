"""Blob writes are atomic on both backends: a write that fails part way leaves the old value.

The server backend is tested through a wrapper around a real local-mode ``QdrantClient`` whose
writes fail on the Nth call: a failing server cannot run here, its client can.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant.artifacts import BuildArtifacts, load_build, read_manifest, save_build
from mmgr_qdrant.errors import StoreError
from mmgr_qdrant.store import ClientStore, EdgeStore, Store
from mmgr_qdrant.store import client as client_module


class FailingClient:
    """Delegates to a real client; the ``fail_at``-th write call (upsert or delete) raises."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes = 0
        self.fail_at: int | None = None
        self.before_write: Callable[[int], None] | None = None

    def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        if self.before_write is not None:
            self.before_write(self.writes)
        if self.fail_at is not None and self.writes == self.fail_at:
            raise RuntimeError(f"injected failure of write {self.writes} ({name})")
        return getattr(self.inner, name)(*args, **kwargs)

    def upsert(self, *args: Any, **kwargs: Any) -> Any:
        return self._write("upsert", *args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._write("delete", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def failing() -> Iterator[tuple[ClientStore, FailingClient]]:
    from qdrant_client import QdrantClient

    inner = QdrantClient(":memory:")
    fc = FailingClient(inner)
    store = ClientStore(fc, "c", retries=0)
    store.create(4)
    yield store, fc
    inner.close()


def _count_writes(store: ClientStore, fc: FailingClient, key: str, data: bytes) -> int:
    before = fc.writes
    store.put_blob(key, data)
    return fc.writes - before


def test_a_failed_blob_write_keeps_the_old_value(failing: tuple[ClientStore, FailingClient], monkeypatch: pytest.MonkeyPatch) -> None:
    store, fc = failing
    monkeypatch.setattr(client_module, "_CHUNK", 16)  # many chunks, several upsert batches
    old, new = bytes(range(200)), bytes(reversed(range(256))) * 2
    store.put_blob("k", old)
    writes = _count_writes(store, fc, "probe", new)
    assert writes >= 3
    for n in range(1, writes + 1):
        store.put_blob("k", old)
        fc.fail_at = fc.writes + n
        try:
            store.put_blob("k", new)
        except StoreError:
            assert store.get_blob("k") == old, f"write {n} of {writes} failed and the old value was lost"
        else:  # the failure hit the clean-up after the switch: the new value is in place
            assert store.get_blob("k") == new
        fc.fail_at = None
    store.put_blob("k", new)
    assert store.get_blob("k") == new
    assert store.list_blobs() == ["k", "probe"]


def test_a_replaced_blob_leaves_no_chunks_behind(failing: tuple[ClientStore, FailingClient], monkeypatch: pytest.MonkeyPatch) -> None:
    store, fc = failing
    monkeypatch.setattr(client_module, "_CHUNK", 16)
    store.put_blob("k", bytes(300))
    store.put_blob("k", b"short")
    assert fc.inner.count(store.meta_collection, exact=True).count == 2  # the pointer and one chunk
    store.delete_blob("k")
    assert store.get_blob("k") is None and store.list_blobs() == []
    assert fc.inner.count(store.meta_collection, exact=True).count == 0


def test_two_writers_of_one_key_do_not_delete_each_others_chunks(failing: tuple[ClientStore, FailingClient]) -> None:
    store, fc = failing
    other = ClientStore(fc.inner, "c", retries=0)
    store.put_blob("k", b"old")
    # The second writer runs its whole write between the first writer's chunks and its switch.
    start = fc.writes

    def interleave(n: int) -> None:
        if n == start + 2:  # the first writer's chunks are stored; its pointer switch comes next
            fc.before_write = None
            other.put_blob("k", b"second")

    fc.before_write = interleave
    store.put_blob("k", b"first")
    assert store.get_blob("k") == b"first"
    other.put_blob("k", b"third")
    assert store.get_blob("k") == b"third"


def test_blobs_written_by_the_earlier_layout_are_read_and_replaced(failing: tuple[ClientStore, FailingClient]) -> None:
    import base64
    import uuid

    from qdrant_client import models

    store, fc = failing
    # The earlier layout: chunk points carrying the key, no pointer.
    fc.inner.upsert(store.meta_collection, points=[
        models.PointStruct(id=str(uuid.uuid5(client_module._NS, f"config.json/{i}")), vector=[0.0],
                           payload={"key": "config.json", "chunk": i, "n": 2, "data": base64.b64encode(part).decode()})
        for i, part in enumerate((b"legacy-", b"value"))
    ])
    assert store.get_blob("config.json") == b"legacy-value"
    assert store.list_blobs() == ["config.json"]
    store.put_blob("config.json", b"new")
    assert store.get_blob("config.json") == b"new"
    assert fc.inner.count(store.meta_collection, exact=True).count == 2


def _art(generation: int, fill: float) -> BuildArtifacts:
    arrays = {"a": np.full(3, fill, dtype=np.float32)}
    return BuildArtifacts({"name": "t"}, arrays, arrays, b"decoder", {"n_docs": 3}, generation)


def test_a_failed_rebuild_keeps_the_previous_build(failing: tuple[ClientStore, FailingClient]) -> None:
    store, fc = failing
    save_build(store, _art(1, 1.0))
    start = fc.writes
    save_build(store, _art(2, 2.0))
    writes = fc.writes - start
    for n in range(1, writes + 1):
        before = read_manifest(store)
        fc.fail_at = fc.writes + n
        try:
            save_build(store, _art(int(before["generation"]) + 1, 3.0))  # type: ignore[index]
        except StoreError:
            loaded = load_build(store)
            assert loaded is not None and loaded.generation == before["generation"], f"write {n} of {writes}"  # type: ignore[index]
        fc.fail_at = None
    assert load_build(store) is not None


def test_two_builders_keep_a_loadable_build(failing: tuple[ClientStore, FailingClient]) -> None:
    store, fc = failing
    other = ClientStore(fc.inner, "c", retries=0)
    save_build(store, _art(1, 1.0))
    # A second builder of the same generation saves while the first is between its bundle and its switch.
    calls = {"n": 0}

    def interleave(n: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            fc.before_write = None
            save_build(other, _art(2, 5.0))

    fc.before_write = interleave
    save_build(store, _art(2, 4.0))
    loaded = load_build(store)
    assert loaded is not None and loaded.generation == 2


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_edge_and_client_blob_overwrite_is_all_or_nothing(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s: Store
    if backend == "edge":
        s = EdgeStore(tmp_path, "c")
    else:
        from qdrant_client import QdrantClient

        s = ClientStore(QdrantClient(":memory:"), "c", owns_client=True)
    s.create(4)
    s.put_blob("k", b"old")
    if backend == "edge":
        import os

        def broken(src: Any, dst: Any) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", broken)
        with pytest.raises(OSError):
            s.put_blob("k", b"new")
        monkeypatch.undo()
        assert not [p for p in (tmp_path / "c" / "blobs").iterdir() if p.name.startswith(".tmp-")]
    assert s.get_blob("k") == b"old"
    s.close()
