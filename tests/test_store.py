"""The store contract, run against both backends: the same behaviour and the same errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant.errors import CollectionNotFoundError, DimensionMismatchError
from mmgr_qdrant.filters import Filter, HasId, Match, Range
from mmgr_qdrant.store import ClientStore, EdgeStore, Store
from mmgr_qdrant.types import F_MODALITY, F_PREFIXES

DIM = 8


@pytest.fixture(params=["edge", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Any
    if request.param == "edge":
        s = EdgeStore(tmp_path, "c")
    else:
        from qdrant_client import QdrantClient

        s = ClientStore(QdrantClient(":memory:"), "c", owns_client=True)
    s.create(DIM)
    yield s
    s.close()


def _fill(store: Store, n: int = 30) -> np.ndarray:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    payloads = [
        {"i": i, "tag": ["a", "b", "c"][i % 3], "_mmgr": {"modality": "image" if i % 2 else "text", "prefixes": [str(i % 2), f"{i % 2}.{i % 5}"]}}
        for i in range(n)
    ]
    store.upsert(list(range(n)), vecs, payloads)
    return vecs


def _ids(rows: Any) -> set[int]:
    return {r.id for r in rows}


def test_query_returns_nearest_first(store: Store) -> None:
    vecs = _fill(store)
    hits = store.query(vecs[7], 5)
    assert hits[0].id == 7 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_query_hits_leave_out_the_prefix_tags_and_acorn_changes_no_result(store: Store) -> None:
    """Query hits carry every payload field but the prefix tags (``QUERY_PAYLOAD_EXCLUDES``); retrieve keeps them.
    A filter searched without ACORN (``acorn=False``) finds what it finds with it."""
    vecs = _fill(store)
    flt = Filter(must=(Match(F_PREFIXES, ("1.3", "0.2")),))
    for hits in (store.query(vecs[7], 5), store.query_batch(vecs[:2], 5, [None, flt])[1]):
        assert hits and all(set(h.payload) == {"i", "tag", "_mmgr"} and set(h.payload["_mmgr"]) == {"modality"} for h in hits)
    assert "prefixes" in store.retrieve([7])[0].payload["_mmgr"]
    for v in vecs[:4]:
        assert [h.id for h in store.query(v, 5, flt, acorn=False)] == [h.id for h in store.query(v, 5, flt)]
    assert [[h.id for h in row] for row in store.query_batch(vecs[:3], 4, [flt] * 3, acorn=False)] == [
        [h.id for h in row] for row in store.query_batch(vecs[:3], 4, [flt] * 3)
    ]


def test_filters_translate_the_same_on_both(store: Store) -> None:
    vecs = _fill(store)
    allowed = {i for i in range(30) if i % 2 == 1 and i % 5 in (1, 3)}
    f = Filter(must=(Match(F_PREFIXES, ("1.1", "1.3")),))
    assert _ids(store.query(vecs[0], 30, f)) == allowed
    assert store.count(f) == len(allowed)
    f = Filter(must=(Match(F_MODALITY, ("image",)),), must_not=(Match("tag", ("a",)),))
    assert _ids(store.query(vecs[0], 30, f)) == {i for i in range(30) if i % 2 == 1 and i % 3 != 0}
    f = Filter(should=(HasId((1, 2, 3)), Range("i", gte=28)))
    assert _ids(store.query(vecs[0], 30, f)) == {1, 2, 3, 28, 29}
    nested = Filter(must=(Filter(should=(Match("tag", ("b",)), Match("tag", ("c",)))),), must_not=(Filter(must=(Match(F_PREFIXES, ("0",)),)),))
    assert _ids(store.query(vecs[0], 30, nested)) == {i for i in range(30) if i % 3 != 0 and i % 2 == 1}


def test_scroll_retrieve_delete_count(store: Store) -> None:
    _fill(store, 25)
    pages = list(store.scroll(batch_size=10, with_vectors=True))
    assert [len(p) for p in pages] == [10, 10, 5]
    assert all(r.vector is not None and r.vector.shape == (DIM,) for p in pages for r in p)
    got = store.retrieve([3, 4, 99])
    assert _ids(got) == {3, 4}
    store.delete([3, 4])
    assert store.count() == 23
    assert store.retrieve([3]) == []


def test_scroll_returns_only_the_fields_asked_for(store: Store) -> None:
    _fill(store, 6)
    store.set_payload([1, 2], "_mmgr", [{"docids": {"3": [1, 5], "2": [0, 0]}}, {"docids": {"2": [0, 2]}}])
    rows = {r.id: r.payload for page in store.scroll(fields=["_mmgr.docids.3"]) for r in page}
    assert len(rows) == 6  # every point, with only the nested key that exists
    assert rows[1] == {"_mmgr": {"docids": {"3": [1, 5]}}}
    assert all(not rows[i].get("_mmgr", {}).get("docids") for i in (0, 2, 3, 4, 5))
    assert all("tag" not in p for p in rows.values())


def test_query_batch_matches_single_queries(store: Store) -> None:
    vecs = _fill(store)
    f = Filter(must=(Match("tag", ("b",)),))
    batch = store.query_batch(vecs[:3], 4, [None, f, None])
    assert [h.id for h in batch[0]] == [h.id for h in store.query(vecs[0], 4)]
    assert [h.id for h in batch[1]] == [h.id for h in store.query(vecs[1], 4, f)]


def test_set_payload_merges_under_key(store: Store) -> None:
    _fill(store, 4)
    store.set_payload([1, 2], "_mmgr", [{"docid": [1, 5]}, {"docid": [0, 2]}])
    rec = {r.id: r.payload for r in store.retrieve([1, 2])}
    assert rec[1]["_mmgr"]["docid"] == [1, 5] and rec[1]["_mmgr"]["modality"] == "image"
    assert rec[2]["_mmgr"]["docid"] == [0, 2] and rec[2]["i"] == 2


def test_blobs_round_trip_large_and_overwrite(store: Store) -> None:
    data = np.random.default_rng(1).bytes(1_300_000)  # several chunks on the client backend
    store.put_blob("big.bin", data)
    store.put_blob("small.json", b"{}")
    assert store.get_blob("big.bin") == data
    store.put_blob("big.bin", b"short")
    assert store.get_blob("big.bin") == b"short"
    assert set(store.list_blobs()) == {"big.bin", "small.json"}
    store.delete_blob("big.bin")
    assert store.get_blob("big.bin") is None


def test_wrong_dimension_is_the_same_error(store: Store) -> None:
    with pytest.raises(DimensionMismatchError):
        store.upsert([1], np.ones((1, DIM + 1), np.float32), [{}])


def test_missing_collection_is_the_same_error(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    edge = EdgeStore(tmp_path, "missing")
    with pytest.raises(CollectionNotFoundError):
        edge.count()
    client = ClientStore(QdrantClient(":memory:"), "missing", owns_client=True)
    with pytest.raises(CollectionNotFoundError):
        client.count()
    client.close()
