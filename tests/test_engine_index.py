"""The engine's own index: HNSW after build, search settings, quantization, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import MultimodalRetriever
from mmgr_qdrant.config import EngineConfig, IndexConfig
from mmgr_qdrant.errors import ConfigError
from mmgr_qdrant.filters import Filter, Match
from mmgr_qdrant.store import ClientStore, EdgeStore, Store
from mmgr_qdrant.types import F_PREFIXES

DIM = 32
# Tiny thresholds so a few thousand small vectors get a real HNSW graph and graph search.
SMALL = {"indexing_threshold_kb": 1, "full_scan_threshold_kb": 1}


def clustered(n: int, seed: int = 0, topics: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(topics, DIM))
    x = centers[rng.integers(0, topics, n)] + 0.3 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fill(store: Store, x: np.ndarray, start: int = 0) -> None:
    # the tag sits in the prefix field, which has the keyword index the hybrid filter uses
    payloads = [{"_mmgr": {"prefixes": [["a", "b", "c", "d"][i % 4]]}} for i in range(start, start + len(x))]
    for lo in range(0, len(x), 1000):
        store.upsert(list(range(start + lo, start + min(len(x), lo + 1000))), x[lo : lo + 1000], payloads[lo : lo + 1000])


def exact_top(x: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
    s = x @ q
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    return [int(i) for i in np.argsort(-s, kind="stable")[:k]]


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[EdgeStore]:
    s = EdgeStore(tmp_path, "c")
    s.create(DIM, EngineConfig(**SMALL))
    yield s
    s.close()


def test_hnsw_gives_the_exact_top_k_on_a_clustered_set(edge: EdgeStore) -> None:
    x = clustered(3000)
    fill(edge, x[:2950])
    before = edge.index_info()
    assert before.points == 2950 and before.indexed_vectors == 0
    assert edge.optimize() is True
    after = edge.index_info()
    assert after.indexed_vectors == after.points == 2950  # the graph holds every vector
    data, queries = x[:2950], x[2950:]
    for q in queries:
        got = [r.id for r in edge.query(q, 10)]
        assert got == exact_top(data, q, 10)


def test_filtered_search_with_acorn_matches_exact(edge: EdgeStore) -> None:
    x = clustered(3000, seed=1)
    fill(edge, x[:2950])
    edge.optimize()
    tags = np.asarray([["a", "b", "c", "d"][i % 4] for i in range(2950)])
    flt = Filter(must=(Match(F_PREFIXES, ("b",)),))
    for q in x[2950:]:
        got = [r.id for r in edge.query(q, 10, flt)]
        assert got == exact_top(x[:2950], q, 10, tags == "b")
    edge.configure(EngineConfig(**SMALL, exact=True, acorn=False))  # the same through exact scoring
    q = x[2950]
    assert [r.id for r in edge.query_batch(q[None, :], 10, [flt])[0]] == exact_top(x[:2950], q, 10, tags == "b")


def test_int8_quantization_with_rescoring_keeps_the_top_k(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path, "q")
    s.create(DIM, EngineConfig(**SMALL, quantization="int8", oversampling=2.0))
    try:
        x = clustered(3000, seed=2)
        fill(s, x[:2950])
        s.optimize()
        overlap = [len({r.id for r in s.query(q, 10)} & set(exact_top(x[:2950], q, 10))) / 10 for q in x[2950:]]
        assert np.mean(overlap) >= 0.98
        scores = [r.score for r in s.query(x[2950], 10)]
        assert scores[0] == pytest.approx(float(np.max(x[:2950] @ x[2950])), abs=1e-5)  # rescored with the originals
    finally:
        s.close()


def test_ensure_index_waits_for_the_threshold(edge: EdgeStore) -> None:
    x = clustered(1500, seed=3)
    fill(edge, x[:400])
    assert edge.ensure_index(threshold=500) is False  # 400 unindexed: not yet
    assert edge.index_info().indexed_vectors == 0
    fill(edge, x[400:1000], start=400)
    assert edge.ensure_index(threshold=500) is True
    assert edge.index_info().unindexed == 0
    fill(edge, x[1000:1100], start=1000)
    assert edge.ensure_index(threshold=500) is False  # 100 new points since
    assert edge.ensure_index(threshold=0) is True  # after a build: any unindexed point


def test_local_mode_has_no_index_and_still_searches() -> None:
    from qdrant_client import QdrantClient

    s = ClientStore(QdrantClient(":memory:"), "c", owns_client=True)
    s.create(DIM, EngineConfig(**SMALL, quantization="int8"))
    try:
        x = clustered(300, seed=4)
        fill(s, x[:290])
        assert s.optimize() is False and s.ensure_index(threshold=0) is False
        assert s.index_info().points == 290
        assert [r.id for r in s.query(x[295], 5)] == exact_top(x[:290], x[295], 5)
    finally:
        s.close()


def test_engine_config_round_trips_and_checks_fields() -> None:
    cfg = IndexConfig(collection="c", encoder="e", dim=4, engine=EngineConfig(hnsw_ef=64, quantization="int8"))
    assert IndexConfig.from_json(cfg.to_json()).engine == cfg.engine
    legacy = '{"collection": "c", "encoder": "e", "dim": 4, "format_version": 1}'
    assert IndexConfig.from_json(legacy).engine == EngineConfig()  # indexes saved before the field
    with pytest.raises(ConfigError, match="quantization"):
        EngineConfig(quantization="pq8")
    with pytest.raises(ConfigError, match="unknown field"):
        EngineConfig.coerce({"hnsw_eff": 3})


def test_build_leaves_an_hnsw_index_and_open_keeps_the_settings(connect: Any, backend: str, tiny_encoder: Any) -> None:
    engine = {**SMALL, "hnsw_ef": 64}
    r = MultimodalRetriever.create("e", encoder=tiny_encoder, decoder_params={"epochs": 2}, engine=engine, **connect())
    dim = r.config.dim
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(8, dim))
    x = centers[rng.integers(0, 8, 400)] + 0.3 * rng.normal(size=(400, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    r.add_embeddings(x, modality="image", ids=list(range(400)))
    r.build()
    info = r.store.index_info()
    if backend == "edge":
        assert info.indexed_vectors == info.points == 400  # build() had the engine index the collection
    exact = [int(i) for i in np.argsort(-(x @ x[7]), kind="stable")[:10]]
    assert [h.id for h in r.search(vector=x[7], k=10, mode="dense")] == exact
    r.close()
    again = MultimodalRetriever.open("e", encoder=tiny_encoder, **connect())
    try:
        assert again.config.engine == EngineConfig(**engine)
        assert again.store.engine == again.config.engine  # type: ignore[attr-defined]
    finally:
        again.close()
