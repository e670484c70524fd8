"""Hybrid search's document budget (``HybridConfig.max_fraction``) and the centroid prior of ``route``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import ConfigError, MultimodalRetriever, generative


def clustered(dim: int, n_clusters: int = 40, per: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    x = centers[np.repeat(np.arange(n_clusters), per)] + 0.3 * rng.normal(size=(n_clusters * per, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_budget_prior_and_counts(tmp_path: Path, tiny_encoder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # min_candidates=0: this 2,000-document collection is small enough that the floor would admit a
    # large share of it; the budget itself is what this test checks
    r = MultimodalRetriever.create(
        "budget", path=tmp_path, encoder=tiny_encoder, decoder_params={"epochs": 2}, hybrid={"min_candidates": 0}
    )
    x = clustered(r.config.dim)
    ids = list(r.add_embeddings(x, modality="image"))
    r.build()
    gen, hc = r.index.generative, r.config.hybrid
    n = len(ids)

    # prefix_counts agrees with counting the stored docids
    codes = np.asarray([h.docid for h in r.get(ids)])
    pre, counts = np.unique(codes[:, :2], axis=0, return_counts=True)
    assert (gen.prefix_counts(pre) == counts).all()
    assert gen.prefix_counts(np.array([[1, 10_000]])).tolist() == [0]
    # a dense count per possible prefix (small code spaces) and the sorted-key search give the same counts
    odd = np.concatenate([pre, [[1, 10_000], [-1, 0], [0, -3], [7, 0]]])
    dense = gen.prefix_counts(odd)
    assert gen._counts is not None and gen._counts[1][2][3] is not None  # the dense table was used
    monkeypatch.setattr(generative, "_DENSE_COUNTS", 0)
    gen._counts = None
    assert gen.prefix_counts(odd).tolist() == dense.tolist() == [*counts.tolist(), 0, 0, 0, 0]
    assert gen._counts[1][2][3] is None

    # likeness: max_j q . c_j / |c_j|^2 over the raw level-1 centres (cached per modality)
    assert gen.centres is not None
    cents = gen.centres[0][gen.centres[1] == 1]
    want = (x[:50] @ cents.T / (cents * cents).sum(1)).max(1)
    np.testing.assert_allclose(gen.likeness(x[:50], 1), want, rtol=1e-5)
    np.testing.assert_allclose(gen.likeness(x[:50], 1), want, rtol=1e-5)  # from the cache

    # admit keeps the best prefixes while they fit in the budget, but always at least min_docs
    pairs = [(tuple(int(c) for c in p), -float(i)) for i, p in enumerate(pre)]
    kept, admitted = gen.admit(pairs, budget=0.1 * n, min_docs=10)
    assert kept == pairs[: len(kept)] and admitted == int(counts[: len(kept)].sum())
    assert admitted >= 10 and (admitted <= 0.1 * n or len(kept) == 1)

    # the centroid prior puts a document's own level-1 code first, even with a barely trained decoder
    beams = gen.route(x, beam_size=hc.beam_size, depth=2, modality=1, temperature=hc.prior_temperature)
    own = np.asarray([h.docid[1] for h in r.get(ids)])
    assert np.mean(beams.prefixes[:, 0, 1] == own) >= 0.95

    # hybrid search admits about max_fraction of the corpus and finds what dense finds
    overlap, fractions = [], []
    for i in range(0, n, 97):
        hy = r.search(vector=x[i], k=10, explain=True)
        de = r.search(vector=x[i], k=10, mode="dense")
        overlap.append(len({h.id for h in hy} & {h.id for h in de}) / 10)
        fractions.append(hy[0].explain["admitted"] / n)
    assert np.mean(overlap) >= 0.9
    assert np.mean(fractions) <= 2 * hc.max_fraction
    r.close()


def test_small_collections_get_a_candidate_floor(tmp_path: Path, tiny_encoder: Any) -> None:
    """Below min_candidates / max_fraction documents the filter admits at least min_candidates; smaller
    still (the floor a dense_share of the collection), hybrid searches every document."""
    r = MultimodalRetriever.create("floor", path=tmp_path, encoder=tiny_encoder, decoder_params={"epochs": 2}, hybrid={"dense_share": 1.0})
    x = clustered(r.config.dim, n_clusters=10, per=40)
    ids = list(r.add_embeddings(x, modality="image"))
    r.build()
    hc = r.config.hybrid
    small = MultimodalRetriever(r.store, r.config.with_(hybrid=replace(hc, dense_share=0.5)), r.encoder)
    for i in range(0, len(ids), 41):
        hy = r.search(vector=x[i], k=10, explain=True)
        # the budget is min_candidates (prefixes are whole, so a little under it), far over 5% of 400
        assert hc.max_fraction * len(ids) < 2 * len(ids) // 10 <= hy[0].explain["admitted"] <= hc.min_candidates
        dense = r.search(vector=x[i], k=10, mode="dense")
        assert [h.id for h in hy][:5] == [h.id for h in dense][:5]
        # 256 candidates are over half of 400 documents: no filter at all, the dense ranking exactly
        everything = small.search(vector=x[i], k=10, explain=True)
        assert everything[0].explain["stopped"] == "small" and everything[0].explain["admitted"] == len(ids)
        assert [(h.id, h.score) for h in everything] == [(h.id, h.score) for h in dense]
    with pytest.raises(ConfigError, match="unknown field"):
        MultimodalRetriever.create("bad", path=tmp_path, encoder=tiny_encoder, hybrid={"beams": 3})
    r.close()


def test_queries_off_the_documents_distribution_are_searched_unfiltered(tmp_path: Path, tiny_encoder: Any) -> None:
    """A query unlike every document (the modality gap before learning) gets no filter; documents do."""
    r = MultimodalRetriever.create(
        "unsure", path=tmp_path, encoder=tiny_encoder, decoder_params={"epochs": 2}, hybrid={"min_candidates": 0}
    )
    x = clustered(r.config.dim)
    r.add_embeddings(x, modality="image")
    r.build()
    gen = r.index.generative
    bound = gen.info["routing"]["min_likeness"]
    like = gen.likeness(x, 1)
    assert bound is not None and np.mean(like >= bound) >= 0.98  # the 1st percentile of the documents
    rng = np.random.default_rng(5)
    far = rng.normal(size=(20, r.config.dim)).astype(np.float32)  # random directions: like no document
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    assert (gen.likeness(far, 1) < bound).all()
    routed = MultimodalRetriever(r.store, r.config.with_(hybrid=replace(r.config.hybrid, when_unsure="route")), r.encoder)
    for q in far[:5]:
        hits = r.search(vector=q, k=10, explain=True)
        assert hits[0].explain["stopped"] == "unsure" and hits[0].explain["admitted"] == len(x)
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in r.search(vector=q, k=10, mode="dense")]
        assert routed.search(vector=q, k=10, explain=True)[0].explain["stopped"] != "unsure"
    sure = [r.search(vector=v, k=10, explain=True)[0].explain for v in x[::97]]
    assert np.mean([e["stopped"] not in ("unsure", "small") for e in sure]) >= 0.9
    assert np.mean([e["admitted"] for e in sure]) <= 0.1 * len(x)
    r.close()


@pytest.mark.parametrize("bad", [{"when_unsure": "maybe"}, {"dense_share": 0.0}, {"dense_share": 1.5}])
def test_bad_unsure_settings(bad: dict[str, Any]) -> None:
    from mmgr_qdrant.config import HybridConfig

    with pytest.raises(ConfigError):
        HybridConfig(**bad)
