"""Opening a built index from its saved docid table plus the docid log equals a full scan."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import MultimodalRetriever, artifacts
from mmgr_qdrant.generative import GenerativeIndex
from tests.helpers import around_centres

DECODER = {"epochs": 3, "patience": 2}


def vectors(dim: int, n: int, seed: int) -> np.ndarray:
    return around_centres(dim, n, seed, clusters=6, centre_seed=99)


def same_index(a: GenerativeIndex, b: GenerativeIndex) -> None:
    assert a.generation == b.generation
    np.testing.assert_array_equal(a.trie.codes, b.trie.codes)
    assert a.used == b.used


def _no_scan(store: Any) -> Any:
    def scroll(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("opening scanned the payloads")

    store.scroll = scroll
    return store


def test_open_replays_the_log_and_equals_a_scan(connect: Any, tiny_encoder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "LOG_COMPACT_AT", 4)  # exercise compaction with a few adds
    r = MultimodalRetriever.create("o", encoder=tiny_encoder, decoder_params=DECODER, **connect())
    dim = r.config.dim
    r.add_embeddings(vectors(dim, 120, 0), modality="image", ids=list(range(120)))
    r.build()
    for step in range(6):  # adds after the build, each one log entry
        r.add_embeddings(vectors(dim, 10, 10 + step), modality="image", ids=list(range(200 + 10 * step, 210 + 10 * step)))
    r.delete([3, 4, 5, 205, 231])
    r.add_embeddings(vectors(dim, 2, 50), modality="image", ids=[7, 8])  # re-adding frees and reassigns docids
    r.add_embeddings(vectors(dim, 3, 51), modality="text", ids=[300, 301, 302])
    names = [n for n in r.store.list_blobs() if n.startswith(artifacts.LOG_PREFIX)]
    assert len(names) < 9  # compacted

    scanned = GenerativeIndex.load(r.store, scan=True)
    replayed = GenerativeIndex.load(_no_scan(r.store), scan=None)
    assert scanned is not None and replayed is not None
    same_index(scanned, replayed)
    same_index(scanned, r.index.generative)  # and both equal the live index the writes kept up to date
    del r.store.scroll  # the instance attribute: scans work again
    q = vectors(dim, 5, 77)
    live = [[h.id for h in hits] for hits in r.search_batch(vectors=q, k=5)]
    r.close()
    again = MultimodalRetriever.open("o", encoder=tiny_encoder, **connect())
    try:
        same_index(scanned, again.index.generative)
        assert [[h.id for h in hits] for hits in again.search_batch(vectors=q, k=5)] == live
    finally:
        again.close()


def test_a_rebuild_starts_a_fresh_log(connect: Any, tiny_encoder: Any) -> None:
    r = MultimodalRetriever.create("p", encoder=tiny_encoder, decoder_params=DECODER, **connect())
    try:
        dim = r.config.dim
        r.add_embeddings(vectors(dim, 80, 1), modality="image", ids=list(range(80)))
        r.build()
        r.add_embeddings(vectors(dim, 10, 2), modality="image", ids=list(range(100, 110)))
        assert any(n.startswith(artifacts.LOG_PREFIX) for n in r.store.list_blobs())
        r.rebuild()
        assert not any(n.startswith(artifacts.LOG_PREFIX) for n in r.store.list_blobs())  # the new trie holds them
        r.delete([100])
        scanned = GenerativeIndex.load(r.store, scan=True)
        replayed = GenerativeIndex.load(_no_scan(r.store))
        assert scanned is not None and replayed is not None
        same_index(scanned, replayed)
        assert len(replayed.trie) == 89
    finally:
        r.close()


def test_a_build_without_a_log_position_is_scanned(connect: Any, tiny_encoder: Any) -> None:
    """Indexes built before the docid log keep opening by a scan."""
    r = MultimodalRetriever.create("s", encoder=tiny_encoder, decoder_params=DECODER, **connect())
    try:
        r.add_embeddings(vectors(r.config.dim, 60, 3), modality="image", ids=list(range(60)))
        r.build()
        art = artifacts.load_build(r.store)
        assert art is not None
        info = {k: v for k, v in art.info.items() if k != "docid_log_seq"}
        artifacts.save_build(r.store, artifacts.BuildArtifacts(art.scheme_params, art.scheme_arrays, art.trie_arrays, art.decoder, info, art.generation))
        r.add_embeddings(vectors(r.config.dim, 5, 4), modality="image", ids=list(range(60, 65)))
        calls: list[int] = []
        real = r.store.scroll

        def counting(*a: Any, **k: Any) -> Any:
            calls.append(1)
            return real(*a, **k)

        r.store.scroll = counting  # type: ignore[method-assign]
        loaded = GenerativeIndex.load(r.store)
        assert calls and loaded is not None and len(loaded.trie) == 65
    finally:
        r.close()
