"""Learned query expansion (``mmgr_qdrant.memory``): the fit on the learned pairs and what it does to a query."""

from __future__ import annotations

import numpy as np

from mmgr_qdrant.memory import FEW_MIN_SIM, QueryMemory, fit_memory

D = 32


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _world(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Documents in 8 clusters, and "text" queries of each cluster that sit across a modality gap.

    A query of cluster c points between c and c + 1 (the words are ambiguous), plus a shared
    offset and noise, so its own vector ranks its cluster's documents poorly; the documents other
    queries of the cluster found relevant point the right way.
    """
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(8, D)))
    labels = rng.integers(0, 8, 1600)
    docs = _unit(centres[labels] + 0.5 * rng.normal(size=(1600, D)) / np.sqrt(D))
    gap = _unit(rng.normal(size=D))

    def queries(cluster: np.ndarray) -> np.ndarray:
        return _unit(0.5 * centres[cluster] + 0.5 * centres[(cluster + 1) % 8] + gap + 0.3 * rng.normal(size=(len(cluster), D)) / np.sqrt(D))

    learned_cluster = np.repeat(np.arange(8), 6)  # 48 learned queries, 6 per cluster
    return docs, labels, queries(learned_cluster), learned_cluster


def _fit(seed: int = 0) -> tuple[QueryMemory, dict, np.ndarray, np.ndarray]:
    docs, labels, q, qc = _world(seed)
    rng = np.random.default_rng(seed + 1)
    qidx, rows = [], []
    for j, c in enumerate(qc):
        pos = rng.choice(np.flatnonzero(labels == c), 20, replace=False)
        qidx += [j] * len(pos)
        rows += pos.tolist()
    memory, report = fit_memory(q, np.asarray(qidx), np.asarray(rows), np.ones(len(rows), np.float32), docs)
    assert memory is not None
    return memory, report, docs, labels


def _precision(v: np.ndarray, docs: np.ndarray, labels: np.ndarray, cluster: int, k: int = 20) -> float:
    return float((labels[np.argsort(-(docs @ v))[:k]] == cluster).mean())


def test_fit_chooses_an_expansion_that_helps_on_left_out_queries() -> None:
    memory, report, docs, labels = _fit()
    recall = {float(w): r for w, r in report["recall_by_weight"].items()}
    assert memory.weight > 0 and recall[memory.weight] > recall[0.0] + 0.1
    assert len(memory) == 48 and 0 < memory.min_sim < 1
    # a new phrasing of cluster 3, never learned: expanded, it ranks its cluster's documents far better
    _, _, fresh, fc = _world(seed=0)
    rng = np.random.default_rng(7)
    gap_like = fresh[fc == 3][0] + 0.05 * _unit(rng.normal(size=D))
    q = _unit(gap_like)[None, :]
    expanded, best = memory.expand(q)
    assert best[0] >= memory.min_sim
    assert np.isclose(np.linalg.norm(expanded[0]), 1.0, atol=1e-5)
    assert _precision(expanded[0], docs, labels, 3) > _precision(q[0], docs, labels, 3) + 0.2


def test_queries_far_from_every_learned_one_are_left_alone() -> None:
    memory, _, _, _ = _fit()
    far = _unit(-memory.queries.mean(0))[None, :]  # the opposite of what was learned
    expanded, best = memory.expand(far)
    assert best[0] < memory.min_sim
    assert np.allclose(expanded, far, atol=1e-6)


def test_no_positive_pairs_means_no_memory_and_few_queries_repeat_only() -> None:
    docs = _unit(np.random.default_rng(0).normal(size=(50, D)))
    none, report = fit_memory(docs[:2], np.asarray([0, 1]), np.asarray([3, 4]), np.asarray([0.0, -1.0], np.float32), docs)
    assert none is None and report["n_queries"] == 0
    few, report = fit_memory(docs[:2], np.asarray([0, 1]), np.asarray([3, 4]), np.ones(2, np.float32), docs)
    assert few is not None and few.min_sim == FEW_MIN_SIM and few.weight == 1.0 and "fit" in report
    moved, best = few.expand(docs[:1])  # the learned query itself: moved towards document 3
    assert best[0] > 0.99 and float(moved[0] @ docs[3]) > float(docs[0] @ docs[3])


def test_memory_round_trips_through_its_arrays() -> None:
    memory, _, _, _ = _fit()
    back = QueryMemory.from_saved(memory.arrays(), memory.params())
    assert back is not None and back.weight == memory.weight and abs(back.min_sim - memory.min_sim) < 1e-4
    assert np.array_equal(back.queries, memory.queries) and np.array_equal(back.centres, memory.centres)
    assert QueryMemory.from_saved({}, {}) is None
