"""The build's bulk scan and blocked docid writes, and a crash in the middle of them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import MultimodalRetriever, bulk
from mmgr_qdrant.errors import StoreError
from mmgr_qdrant.generative import GenerativeIndex
from mmgr_qdrant.types import RESERVED_KEY
from tests.helpers import around_centres

DECODER = {"epochs": 3, "patience": 2}


def vectors(dim: int, n: int, seed: int) -> np.ndarray:
    return around_centres(dim, n, seed, clusters=5, centre_seed=42)


def test_scan_reads_vectors_and_the_build_fields_only(connect: Any, tiny_encoder: Any) -> None:
    r = MultimodalRetriever.create("b", encoder=tiny_encoder, **connect())
    try:
        dim = r.config.dim
        x = vectors(dim, 90, 0)
        r.add_embeddings(x[:60], modality="image", ids=list(range(60)), payloads=[{"user": i} for i in range(60)], uris=[f"u{i}" for i in range(60)])
        r.add_embeddings(x[60:], modality="text", ids=list(range(60, 90)), texts=[f"t{i}" for i in range(30)])
        r.link(3, 70)
        seen: list[tuple[int, int]] = []
        got = bulk.scan(r.store, dim, batch_size=16, progress=lambda stage, done, total, _: seen.append((done, total)))
        assert len(got) == 90 and got.vectors.shape == (90, dim) and got.vectors.dtype == np.float32
        order = np.argsort(np.asarray(got.ids))
        np.testing.assert_allclose(got.vectors[order], x, atol=1e-6)
        assert got.modalities[order].tolist() == [1] * 60 + [0] * 30
        row = got.ids.index(3)
        assert got.metas[row].links == (70,)  # links keep the id's type
        assert all(m.uri is None and m.text is None for m in got.metas)  # only what a build needs
        assert {m.modality for m in got.metas} == {"image", "text"}
        assert seen[-1] == (90, 90)
        other = MultimodalRetriever.create("e", encoder=tiny_encoder, **connect())
        empty = bulk.scan(other.store, dim)
        other.close()
        assert len(empty) == 0 and empty.vectors.shape == (0, dim)
    finally:
        r.close()


def test_a_crash_while_writing_docids_keeps_the_previous_build(connect: Any, tiny_encoder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    r = MultimodalRetriever.create("c", encoder=tiny_encoder, decoder_params=DECODER, **connect())
    try:
        dim = r.config.dim
        x = vectors(dim, 120, 1)
        r.add_embeddings(x, modality="image", ids=list(range(120)))
        r.build()
        before = [[h.id for h in hits] for hits in r.search_batch(vectors=x[:5], k=5)]
        gen1 = r.index.generative.generation
        real = r.store.set_payload

        def half_then_crash(ids: Any, key: str, values: Any) -> None:
            real(ids[: len(ids) // 2], key, values[: len(values) // 2])  # half the block lands, then the process "dies"
            raise StoreError("simulated crash")

        monkeypatch.setattr(r.store, "set_payload", half_then_crash)
        with pytest.raises(StoreError):
            r.rebuild()
        monkeypatch.undo()
        assert r.index.generative.generation == gen1
        assert [[h.id for h in hits] for hits in r.search_batch(vectors=x[:5], k=5)] == before  # still served by the old build
        reopened = GenerativeIndex.load(r.store)
        assert reopened is not None and reopened.generation == gen1 and len(reopened.trie) == 120
        half = [rec for rec in r.store.retrieve(list(range(120))) if str(gen1 + 1) in rec.payload[RESERVED_KEY].get("docids", {})]
        assert 0 < len(half) < 120  # the interrupted generation is half written, and ignored
        r.rebuild()  # and a later build completes
        assert r.index.generative.generation > gen1 and len(r.index.generative.trie) == 120
    finally:
        r.close()
