"""build(), hybrid and generative search, artifacts, on both backends."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import ArtifactError, MultimodalRetriever, NotBuiltError
from tests.helpers import DECODER, clustered


def _make_built(kwargs: dict[str, Any], encoder: Any) -> Any:
    r = MultimodalRetriever.create("g", encoder=encoder, decoder_params=DECODER, **kwargs)
    x, labels = clustered(r.config.dim)
    ids = r.add_embeddings(x, modality="image", payloads=[{"label": int(l)} for l in labels])
    report = r.build()
    return r, x, labels, list(ids), report


@pytest.fixture(scope="module", params=["edge", "local"])
def shared_built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Any) -> Any:
    """One built index per backend for the tests that only read it."""
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:") if request.param == "local" else None
    kwargs = {"client": client} if client is not None else {"path": tmp_path_factory.mktemp("built")}
    state = _make_built(kwargs, tiny_encoder)
    yield state
    state[0].close()
    if client is not None:
        client.close()


@pytest.fixture
def built(connect: Any, tiny_encoder: Any) -> Any:
    """A fresh built index, for tests that change it."""
    state = _make_built(connect(), tiny_encoder)
    yield state
    state[0].close()


def test_build_assigns_unique_docids_with_modality_first(shared_built: Any) -> None:
    r, _x, _labels, ids, report = shared_built
    hits = r.get(ids)
    docids = [h.docid for h in hits]
    assert len(set(docids)) == len(ids)
    assert all(d[0] == 1 for d in docids)  # images
    assert report.n_docs == len(ids) and report.generation == 1
    level1 = report.docid_stats["levels"][1]
    assert level1["used"] >= 2 and 0 < level1["usage"] <= 1


def test_hybrid_matches_dense_on_clustered_data(shared_built: Any) -> None:
    r, x, _labels, _ids, _ = shared_built
    rng = np.random.default_rng(1)
    overlap = []
    for i in rng.choice(len(x), 20, replace=False):
        q = x[i] + 0.05 * rng.normal(size=x.shape[1]).astype(np.float32)
        h = r.search(vector=q, k=10)  # hybrid is the default once built
        d = r.search(vector=q, k=10, mode="dense")
        overlap.append(len({a.id for a in h} & {b.id for b in d}) / 10)
        assert h[0].docid and len(h) == 10
    assert np.mean(overlap) >= 0.9


def test_generative_mode_ranks_by_the_decoder(shared_built: Any) -> None:
    r, x, labels, _ids, _ = shared_built
    hits = r.search(vector=x[0], k=5, mode="generative", explain=True)
    assert 1 <= len(hits) <= 5
    assert all(h.explain and h.explain["mode"] == "generative" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # the decoder's top documents come from the query's own cluster
    assert sum(h.payload["label"] == labels[0] for h in hits) >= 3


def test_explain_shows_beam_and_vector_scores(shared_built: Any) -> None:
    r, x, *_ = shared_built
    hit = r.search(vector=x[3], k=3, explain=True)[0]
    assert hit.explain["mode"] in ("hybrid", "dense-fallback")
    assert "vector_score" in hit.explain
    if hit.explain["mode"] == "hybrid" and hit.explain["stopped"] not in ("small", "unsure"):
        assert 0 < hit.explain["prefix_prob"] <= 1 and hit.explain["beam"]
    else:  # no filter: the vector's own score
        assert hit.explain["prefix_prob"] == 0 and hit.score == hit.explain["vector_score"]
    routed = MultimodalRetriever(r.store, r.config.with_(hybrid=replace(r.config.hybrid, dense_share=1.0, min_candidates=0)), r.encoder)
    hit = routed.search(vector=x[3], k=3, explain=True)[0]
    assert hit.explain["mode"] == "hybrid" and hit.explain["stopped"] in ("mass", "floor", "ceiling", "beam")
    assert 0 < hit.explain["prefix_prob"] <= 1 and hit.explain["beam"]


def test_small_result_sets_fall_back_to_dense(shared_built: Any) -> None:
    r, x, *_ = shared_built
    hits = r.search(vector=x[0], k=len(x))
    assert len(hits) == len(x)
    assert len({h.id for h in hits}) == len(x)


def test_search_batch_equals_single(shared_built: Any) -> None:
    r, x, *_ = shared_built
    batch = r.search_batch(vectors=x[:4], k=5)
    for i in range(4):
        assert [h.id for h in batch[i]] == [h.id for h in r.search(vector=x[i], k=5)]


def test_new_documents_get_docids_and_are_found_at_once(built: Any) -> None:
    r, x, _labels, ids, _ = built
    rng = np.random.default_rng(7)
    new = x[:5] + 0.02 * rng.normal(size=(5, x.shape[1])).astype(np.float32)
    new_ids = r.add_embeddings(new, modality="image")
    got = r.get(new_ids)
    assert all(len(h.docid) == len(got[0].docid) for h in got)
    assert len({h.docid for h in r.get(ids + list(new_ids))}) == len(ids) + 5
    for v, pid in zip(new, new_ids):
        assert pid in [h.id for h in r.search(vector=v, k=3, mode="hybrid")]


def test_deleted_documents_leave_the_trie(built: Any) -> None:
    r, x, _labels, ids, _ = built
    r.delete(ids[:3])
    hits = r.search(vector=x[0], k=10, mode="generative")
    assert not {h.id for h in hits} & set(ids[:3])


def test_generative_before_build_is_a_clear_error(retriever: MultimodalRetriever) -> None:
    retriever.add_texts(["one", "two"])
    with pytest.raises(NotBuiltError, match="build"):
        retriever.search("one", mode="generative")
    assert retriever.search("one", k=1, mode="hybrid")[0].text == "one"  # dense before the first build


def test_build_on_empty_collection(retriever: MultimodalRetriever) -> None:
    with pytest.raises(NotBuiltError, match="empty"):
        retriever.build()


def test_tiny_collection_builds_with_smaller_codebooks(retriever: MultimodalRetriever) -> None:
    retriever.add_texts(["alpha", "beta", "gamma"])
    report = retriever.build(epochs=2)
    assert report.n_docs == 3
    assert retriever.search("beta", k=1)[0].text == "beta"


def test_rebuild_switches_generation_and_keeps_serving(built: Any) -> None:
    r, x, *_ = built
    report = r.build(epochs=2, seed=1)
    assert report.generation == 2
    hit = r.get([r.search(vector=x[0], k=1)[0].id])[0]
    assert len(hit.docid) >= 3


def test_reopen_in_new_process_serves_hybrid(tmp_path: Path, tiny_encoder: Any) -> None:
    x, _ = clustered(64)
    with MultimodalRetriever.create("h", path=tmp_path, encoder=tiny_encoder, decoder_params=DECODER) as r:
        ids = r.add_embeddings(x, modality="image")
        r.build()
        expected = [h.id for h in r.search(vector=x[5], k=5)]
    np.save(tmp_path / "q.npy", x[5])
    script = textwrap.dedent(
        f"""
        import numpy as np
        from mmgr_qdrant import MultimodalRetriever
        with MultimodalRetriever.open("h", path={str(tmp_path)!r}) as r:
            hits = r.search(vector=np.load({str(tmp_path / 'q.npy')!r}), k=5, explain=True)
            print(hits[0].explain["mode"], *[h.id for h in hits])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[0] == "hybrid" and words[1:] == [str(i) for i in expected]
    assert ids


def test_corrupt_artifacts_are_refused_and_rebuild_repairs(tmp_path: Path, tiny_encoder: Any) -> None:
    x, _ = clustered(64)
    with MultimodalRetriever.create("c", path=tmp_path, encoder=tiny_encoder, decoder_params=DECODER) as r:
        r.add_embeddings(x, modality="image")
        r.build(epochs=2)
    blob = next((tmp_path / "c" / "blobs").glob("build-*.zip"))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        MultimodalRetriever.open("c", path=tmp_path)
    blob.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        MultimodalRetriever.open("c", path=tmp_path)


def test_interrupted_build_keeps_previous_generation(built: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    r, x, *_ = built
    before = [h.id for h in r.search(vector=x[2], k=5)]

    def boom(*a: Any, **k: Any) -> None:
        raise KeyboardInterrupt  # the process is stopped after the new docids were written

    monkeypatch.setattr("mmgr_qdrant.retriever.build.save_build", boom)
    with pytest.raises(KeyboardInterrupt):
        r.build(epochs=1)
    monkeypatch.undo()
    reopened = MultimodalRetriever(r.store, r.config, r.encoder)  # a fresh load of what is stored
    assert reopened.index.generative is not None and reopened.index.generative.generation == 1
    assert [h.id for h in reopened.search(vector=x[2], k=5)] == before


def test_decode_and_route_use_the_numpy_router_with_the_same_results(shared_built: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Single queries route through the numpy decoder, large batches through torch: same prefixes and scores."""
    from mmgr_qdrant.decoder import beam_search

    r, x, *_ = shared_built
    gen = r.index.generative
    q = x[:20] + 0.05
    small = gen.decode(q[:3], beam_size=16, depth=2, modality=1)
    assert gen._fast is not None and gen._fast[0] is gen.decoder  # the numpy copy served it
    ref = beam_search(gen.decoder, gen.decodable(), q[:3], beam_size=16, depth=2, force_prefix=(1,))
    assert (small.prefixes == ref.prefixes).all() and (small.valid == ref.valid).all()
    np.testing.assert_allclose(small.scores[small.valid], ref.scores[ref.valid], atol=1e-4)
    hc = r.config.hybrid
    # single queries score every prefix directly (the beam would hold them all), batches beam-search in torch
    for modality, beam in [(1, hc.beam_size), (None, hc.beam_size), (None, 4), (None, 1024)]:
        with monkeypatch.context() as m:
            m.setattr(gen, "EVERY_MAX_BATCH", 0)  # 20 > FAST_MAX_BATCH: torch beam search
            batch = gen.route(q, beam_size=beam, depth=2, modality=modality, temperature=hc.prior_temperature)
        every = gen.route(q, beam_size=beam, depth=2, modality=modality, temperature=hc.prior_temperature)  # numpy, every prefix
        assert (every.valid == batch.valid).all() and (every.prefixes == batch.prefixes).all()
        np.testing.assert_allclose(every.scores[every.valid], batch.scores[batch.valid], atol=1e-4)
        for i in (0, 7, 19):
            one = gen.route(q[i : i + 1], beam_size=beam, depth=2, modality=modality, temperature=hc.prior_temperature)
            assert one.prefixes.shape == batch.prefixes[i : i + 1].shape and (one.valid == batch.valid[i]).all()
            assert [p for p, _ in one.query(0)] == [p for p, _ in batch.query(i)]
            np.testing.assert_allclose([s for _, s in one.query(0)], [s for _, s in batch.query(i)], atol=1e-4)
        for depth in (1, 2, 3):
            every = gen.decode(q[:2], beam_size=1024, depth=depth, modality=modality)
            ref = beam_search(gen.decoder, gen.decodable(), q[:2], beam_size=1024, depth=depth, force_prefix=() if modality is None else (modality,))
            assert (every.valid == ref.valid).all() and (every.prefixes[every.valid] == ref.prefixes[ref.valid]).all()
            np.testing.assert_allclose(every.scores[every.valid], ref.scores[ref.valid], atol=1e-4)
