"""Hybrid search's document budget (``HybridConfig.max_fraction``) and the centroid prior of ``route``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import ConfigError, MultimodalRetriever


def clustered(dim: int, n_clusters: int = 40, per: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    x = centers[np.repeat(np.arange(n_clusters), per)] + 0.3 * rng.normal(size=(n_clusters * per, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_budget_prior_and_counts(tmp_path: Path, tiny_encoder: Any) -> None:
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
    """Below min_candidates / max_fraction documents the filter admits at least min_candidates."""
    r = MultimodalRetriever.create("floor", path=tmp_path, encoder=tiny_encoder, decoder_params={"epochs": 2})
    x = clustered(r.config.dim, n_clusters=10, per=40)
    ids = list(r.add_embeddings(x, modality="image"))
    r.build()
    hc = r.config.hybrid
    for i in range(0, len(ids), 41):
        hy = r.search(vector=x[i], k=10, explain=True)
        # the budget is min_candidates (prefixes are whole, so a little under it), far over 5% of 400
        assert hc.max_fraction * len(ids) < 2 * len(ids) // 10 <= hy[0].explain["admitted"] <= hc.min_candidates
        assert [h.id for h in hy][:5] == [h.id for h in r.search(vector=x[i], k=5, mode="dense")]
    with pytest.raises(ConfigError, match="unknown field"):
        MultimodalRetriever.create("bad", path=tmp_path, encoder=tiny_encoder, hybrid={"beams": 3})
    r.close()
