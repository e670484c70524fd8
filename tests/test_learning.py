"""Query supervision: ``learn`` / ``feedback`` stored with the index, used by retrain, pruned on delete."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import MultimodalRetriever
from mmgr_qdrant.errors import InputError, NotFoundError
from mmgr_qdrant.learning import PAIRS_BLOB, load_pairs, training_plan

DIM = 64  # the tiny encoder's width


def _corpus(n: int = 240, seed: int = 0) -> np.ndarray:
    """Unit vectors in 8 clusters, so the docids have structure."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, DIM))
    x = centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _pairs(r: MultimodalRetriever) -> int:
    return len(load_pairs(r.store, r.config.dim))


@pytest.fixture
def filled(retriever: MultimodalRetriever) -> tuple[MultimodalRetriever, list[Any]]:
    ids = list(retriever.add_embeddings(_corpus(), modality="image", ids=list(range(240))))
    return retriever, ids


def test_learn_stores_pairs_and_counts_them(filled: tuple[MultimodalRetriever, list[Any]]) -> None:
    r, ids = filled
    assert r.learn(["red shoes", "a blue bag"], [[ids[0], ids[1]], [ids[2]]], grades=[[2.0, 1.0], [1.0]]) == 3
    pairs = load_pairs(r.store, r.config.dim)
    assert len(pairs) == 3 and pairs.queries.shape == (2, DIM)
    assert pairs.targets == (ids[0], ids[1], ids[2])
    assert pairs.weights.tolist() == [2.0, 1.0, 1.0]
    assert np.allclose(np.linalg.norm(pairs.queries, axis=1), 1.0, atol=1e-5)
    assert r.stats(probe=False).staleness["learned_since_training"] == 3
    r.build(epochs=2)
    st = r.stats(probe=False).staleness
    assert (st["learned_pairs"], st["learned_since_training"]) == (3, 0)
    r.feedback("red shoes", ids[5])
    assert r.stats(probe=False).staleness["learned_since_training"] == 1


@pytest.mark.parametrize(
    ("queries", "relevant", "kwargs", "error"),
    [
        (["a", "b"], [[0]], {}, InputError),  # mismatched lengths
        (["  "], [[0]], {}, InputError),  # empty query
        (["a"], [[]], {}, InputError),  # no relevant ids
        (["a"], [[0, 1]], {"grades": [[1.0]]}, InputError),  # a grade per id
        (["a"], [[0]], {"grades": [[-1.0]]}, InputError),  # grades are positive
        (["a", "b"], [[0], [999_999]], {}, NotFoundError),  # an unknown id
        ([], [], {}, InputError),
        ("a", [[0]], {}, InputError),  # a bare string, not a list of queries
        (["a"], [[0]], {"kind": "audio"}, InputError),
    ],
)
def test_bad_input_stores_nothing(
    filled: tuple[MultimodalRetriever, list[Any]], queries: Any, relevant: Any, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    r, _ = filled
    r.learn(["kept"], [[3]])
    with pytest.raises(error):
        r.learn(queries, relevant, **kwargs)
    assert _pairs(r) == 1


def test_feedback_checks_and_negative_feedback(filled: tuple[MultimodalRetriever, list[Any]]) -> None:
    r, ids = filled
    with pytest.raises(InputError):
        r.feedback(id=ids[0])  # no query
    with pytest.raises(InputError):
        r.feedback("shoes")  # no id
    with pytest.raises(NotFoundError):
        r.feedback("shoes", 999_999)
    assert _pairs(r) == 0
    r.feedback("shoes", ids[0])
    r.feedback(vector=_unit(1), id=ids[1])
    r.feedback("boots", ids[0])
    assert _pairs(r) == 3
    r.feedback("shoes", ids[0], relevant=False)  # removes the "shoes" -> 0 pair only
    pairs = load_pairs(r.store, r.config.dim)
    assert len(pairs) == 2 and pairs.targets == (ids[1], ids[0])


def test_deleted_documents_take_their_pairs(filled: tuple[MultimodalRetriever, list[Any]]) -> None:
    r, ids = filled
    r.learn(["shoes", "bags"], [[ids[0], ids[1]], [ids[0]]])
    r.feedback("boots", ids[0])
    r.delete([ids[0]])
    pairs = load_pairs(r.store, r.config.dim)
    assert pairs.targets == (ids[1],) and pairs.queries.shape == (1, DIM)
    with pytest.raises(NotFoundError):  # feedback arriving for a document deleted since the search
        r.feedback("shoes", ids[0])
    r.delete([ids[1]])
    assert _pairs(r) == 0 and PAIRS_BLOB not in r.store.list_blobs()


def test_pairs_survive_reopen_and_export_import(
    connect: Callable[..., dict[str, Any]], tiny_encoder: Any, backend: str, tmp_path: Path
) -> None:
    r = MultimodalRetriever.create("pairs", encoder=tiny_encoder, **connect())
    ids = list(r.add_embeddings(_corpus(60), modality="image", ids=list(range(60))))
    r.learn([_unit(7), "a query"], [[ids[4]], [ids[5], ids[6]]])
    before = load_pairs(r.store, DIM)
    file = r.export(tmp_path / "pairs.zip")
    if backend == "edge":
        r.close()
        r = MultimodalRetriever.open("pairs", encoder=tiny_encoder, **connect())
        again = load_pairs(r.store, DIM)
        assert again.targets == before.targets and np.array_equal(again.queries, before.queries)
    r.close()
    copy = MultimodalRetriever.import_file(file, "pairs_copy", **connect(fresh=True))
    moved = load_pairs(copy.store, DIM)
    assert moved.targets == before.targets and np.array_equal(moved.queries, before.queries)
    assert np.array_equal(moved.times, before.times)
    copy.close()


@pytest.mark.slow
def test_learned_query_targets_rank_first_after_retrain(filled: tuple[MultimodalRetriever, list[Any]]) -> None:
    """Queries far from their targets: before learning the decoder does not know them, after retrain it does."""
    base, ids = filled
    # the same collection seen with other decoder settings (240 pairs: several steps an epoch); base closes the store
    r = MultimodalRetriever(base.store, base.config.with_(decoder_params={"batch_size": 32, "query_weight": 20.0}), base.encoder)
    r.build(epochs=30, seed=0)
    queries = [_unit(100 + i) for i in range(4)]
    targets = [[ids[10 * i + 3]] for i in range(4)]
    before = [r.search(vector=q, k=1, mode="generative")[0].id for q in queries]
    assert r.learn(queries, targets, kind="vector") == 4
    report = r.retrain(epochs=30, seed=0)
    assert report.n_docs == 240
    after = [r.search(vector=q, k=1, mode="generative")[0].id for q in queries]
    assert after == [t[0] for t in targets]
    assert before != after
    # the other documents keep being found by their own embedding (indexing pairs stay)
    found = [r.search(vector=_corpus()[i], k=10)[0].id == ids[i] for i in range(0, 240, 12)]
    assert np.mean(found) >= 0.9


def test_no_pairs_trains_on_indexing_pairs_only(filled: tuple[MultimodalRetriever, list[Any]]) -> None:
    r, ids = filled
    vecs = _corpus()
    docids = np.stack([np.zeros(240, np.int64), np.arange(240) % 8, np.arange(240)], 1)
    base = (vecs, docids, np.arange(240))
    plan = training_plan(r.store, ids, vecs, docids, base)
    assert np.array_equal(plan.queries, vecs) and np.array_equal(plan.targets, docids)
    assert np.array_equal(plan.doc_index, np.arange(240))
    assert (plan.weights == 1).all() and not plan.mix.any() and plan.n_learned == 0
    assert len(plan.cal_queries) == 0  # under 1,000 documents nothing is held out
    r.learn(["q"], [[ids[3], ids[4]]], grades=[[1.0, 0.5]])
    plan = training_plan(r.store, ids, vecs, docids, base, query_weight=4.0)
    assert plan.n_learned == 2 and plan.mix[-2:].all() and plan.weights[-2:].tolist() == [4.0, 2.0]
    assert plan.targets[-2:].tolist() == [docids[3].tolist(), docids[4].tolist()]


def test_plan_holds_out_calibration_rows_with_one_copy(filled: tuple[MultimodalRetriever, list[Any]]) -> None:
    """At 1,000+ documents a slice is held out for calibration; the rest are the queries, in order,
    and the indexing pairs of a collection without links are its vectors themselves (no copy)."""
    from mmgr_qdrant.payload import LibraryFields
    from mmgr_qdrant.retriever.build import _training_pairs

    r, real_ids = filled
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(1200, r.config.dim)).astype(np.float32)
    docids = np.stack([np.zeros(1200, np.int64), np.arange(1200) % 8, np.arange(1200)], 1)
    ids = list(range(10_000, 11_200))  # none of them has learned pairs
    base = _training_pairs(ids, vecs, docids, [LibraryFields()] * 1200)
    assert base[0] is vecs and np.array_equal(base[2], np.arange(1200))
    plan = training_plan(r.store, ids, vecs, docids, base)
    held = [int(np.flatnonzero((vecs == q).all(1))[0]) for q in plan.cal_queries]
    assert len(held) == 24 and len(set(held)) == 24  # 2% of 1,200
    assert plan.queries is vecs and plan.exclude is not None  # no learned pairs: the vectors themselves, the slice excluded
    assert sorted(np.flatnonzero(plan.exclude).tolist()) == sorted(held) and plan.n_pairs == 1176
    assert np.array_equal(plan.doc_index, np.arange(1200)) and np.array_equal(plan.targets, docids)
    assert np.array_equal(plan.cal_docids, docids[held])
    r.learn(["q"], [[real_ids[0]]])  # with a learned pair the queries are one new array
    with_pair = training_plan(r.store, [*ids[:-1], real_ids[0]], vecs, docids, base)
    kept = np.setdiff1d(np.arange(1200), held)
    assert with_pair.exclude is None and with_pair.n_pairs == len(with_pair.queries) == 1176 + 1
    assert np.array_equal(with_pair.queries[:1176], vecs[kept]) and np.array_equal(with_pair.doc_index[:1176], kept)
    linked = [LibraryFields(links=(ids[1],))] + [LibraryFields()] * 1199  # a link adds a pair, so the queries are copied
    q, t, d = _training_pairs(ids, vecs, docids, linked)
    assert len(q) == 1201 and np.array_equal(q[-1], vecs[0]) and t[-1].tolist() == docids[1].tolist() and d[-1] == 1


def test_build_without_pairs_and_fixed_rule(filled: tuple[MultimodalRetriever, list[Any]]) -> None:
    """An index nobody taught builds and searches as before; the earlier fixed budget is still reachable."""
    from dataclasses import replace

    base, ids = filled
    r = MultimodalRetriever(base.store, base.config.with_(hybrid=replace(base.config.hybrid, min_candidates=0)), base.encoder)
    r.build(epochs=3)
    assert r.index.generative is not None and r.index.generative.info["learned_pairs"] == 0
    q = _corpus()[17]
    hits = r.search(vector=q, k=5, explain=True)
    assert hits[0].id == ids[17] and hits[0].explain is not None
    assert hits[0].explain["stopped"] in ("mass", "floor", "ceiling", "beam")
    fixed_rule = MultimodalRetriever(r.store, r.config.with_(hybrid=replace(r.config.hybrid, admission="fixed", min_candidates=0)), r.encoder)
    fixed = fixed_rule.search(vector=q, k=5, explain=True)
    assert fixed[0].id == ids[17] and fixed[0].explain is not None and fixed[0].explain["admitted"] >= 5


def test_cli_learn_skips_and_reports_bad_lines_and_feedback(tmp_path: Path, tiny_encoder: Any) -> None:
    from typer.testing import CliRunner

    from mmgr_qdrant.cli import app

    store = tmp_path / "store"
    with MultimodalRetriever.create("cli", path=store, encoder="open_clip:mmgr-tiny/none") as r:
        ids = list(r.add_texts([f"document {i}" for i in range(10)]))
    img = tmp_path / "q.png"
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(img)
    lines = [
        json.dumps({"query": "red shoes", "ids": [ids[0], ids[1]]}),
        "{not json",
        json.dumps({"query": "", "ids": [ids[0]]}),
        json.dumps({"query": "no ids"}),
        json.dumps({"query": "unknown", "ids": ["00000000-0000-0000-0000-000000000001"]}),
        json.dumps({"image": "q.png", "ids": [ids[2]], "grades": [2]}),
        json.dumps({"image": "missing.png", "ids": [ids[2]]}),
        "",
        json.dumps({"query": "bags", "ids": [ids[3]]}),
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    env = {"MMGR_PATH": None, "MMGR_COLLECTION": None, "QDRANT_URL": None, "COLUMNS": "200"}
    conn = ["--path", str(store), "--collection", "cli"]
    res = CliRunner().invoke(app, ["learn", str(tmp_path / "pairs.jsonl"), *conn], prog_name="mmgr", env=env)
    assert res.exit_code == 0, res.output
    assert "Learned 4 pairs" in res.output
    for n in (2, 3, 4, 5, 7):
        assert f"skipped line {n}:" in res.output
    res = CliRunner().invoke(app, ["feedback", str(ids[4]), "--query", "hats", *conn], prog_name="mmgr", env=env)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["feedback", "00000000-0000-0000-0000-000000000001", "--query", "hats", *conn], prog_name="mmgr", env=env)
    assert res.exit_code == 1 and "not in collection" in res.output
    with MultimodalRetriever.open("cli", path=store) as r:
        pairs = load_pairs(r.store, r.config.dim)
        assert pairs.targets == (ids[0], ids[1], ids[3], ids[2], ids[4]) and pairs.weights.tolist() == [1, 1, 1, 2, 1]


def test_learned_vector_queries_keep_their_direction_at_huge_scale(filled: tuple[MultimodalRetriever, list[Any]]) -> None:
    r, ids = filled
    q = np.zeros(DIM, np.float32)
    q[:2] = 1e20  # float32 squares overflow: normalized in float64, as add_embeddings does
    assert r.learn([q], [[ids[0]]], kind="vector") == 1
    stored = load_pairs(r.store, DIM).queries[0]
    np.testing.assert_allclose(stored[:2], [2**-0.5, 2**-0.5], rtol=1e-5)


def _ambiguous_world(seed: int = 3) -> tuple[np.ndarray, np.ndarray, Callable[[int, int], np.ndarray]]:
    """Documents in 8 clusters, and vector "phrasings" of cluster c that point between c and c + 1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, 8, 400)
    docs = centres[labels] + 0.6 * rng.normal(size=(400, DIM)) / np.sqrt(DIM)
    gap = rng.normal(size=DIM) / np.sqrt(DIM)

    def phrasings(c: int, n: int) -> np.ndarray:
        q = 0.5 * centres[c] + 0.5 * centres[(c + 1) % 8] + gap + 0.3 * rng.normal(size=(n, DIM)) / np.sqrt(DIM)
        return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)

    return (docs / np.linalg.norm(docs, axis=1, keepdims=True)).astype(np.float32), labels, phrasings


def test_learned_queries_expand_hybrid_search_and_survive_reopen(
    connect: Callable[..., dict[str, Any]], tiny_encoder: Any, backend: str
) -> None:
    """A new phrasing near learned ones is ranked towards what they found relevant; far queries are not moved."""
    from dataclasses import replace

    docs, labels, phrasings = _ambiguous_world()
    r = MultimodalRetriever.create("expand", encoder=tiny_encoder, **connect())
    ids = list(r.add_embeddings(docs, modality="image", ids=list(range(400))))
    r.build(epochs=2)
    rng = np.random.default_rng(0)
    queries = np.concatenate([phrasings(c, 5) for c in range(8)])
    relevant = [[ids[i] for i in rng.choice(np.flatnonzero(labels == c), 15, replace=False)] for c in range(8) for _ in range(5)]
    r.learn(queries, relevant, kind="vector")
    r.retrain(epochs=2)
    gen = r.index.generative
    assert gen is not None and gen.memory is not None and len(gen.memory) == 40 and gen.memory.weight > 0
    assert gen.info["memory"]["weight"] == gen.memory.weight
    fresh = phrasings(2, 1)[0]
    plain = MultimodalRetriever(r.store, r.config.with_(hybrid=replace(r.config.hybrid, query_expansion=False)), r.encoder)

    def precision(retriever: MultimodalRetriever) -> float:
        hits = retriever.search(vector=fresh, k=10, explain=True)
        return float(np.mean([labels[h.id] == 2 for h in hits]))

    hit = r.search(vector=fresh, k=1, explain=True)[0]
    assert hit.explain is not None and hit.explain["expansion"]["nearest_learned"] >= gen.memory.min_sim
    assert precision(r) >= precision(plain) + 0.3
    assert (plain.search(vector=fresh, k=1, explain=True)[0].explain or {})["expansion"]["weight"] == 0.0
    if backend == "edge":  # the memory is part of the saved build
        weight = gen.memory.weight
        r.close()
        r = MultimodalRetriever.open("expand", encoder=tiny_encoder, **connect())
        again = r.index.generative
        assert again is not None and again.memory is not None and again.memory.weight == weight
        plain = MultimodalRetriever(r.store, r.config.with_(hybrid=replace(r.config.hybrid, query_expansion=False)), r.encoder)
        assert precision(r) >= precision(plain) + 0.3
    r.close()
