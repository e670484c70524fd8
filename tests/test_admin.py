"""stats(), retrain(), update(), export/import, list and drop, on both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import ArtifactError, CollectionNotFoundError, ConfigError, MultimodalRetriever, NotBuiltError, NotFoundError
from tests.helpers import DECODER, clustered


@pytest.fixture
def built(connect: Any, tiny_encoder: Any) -> Any:
    r = MultimodalRetriever.create("a", encoder=tiny_encoder, decoder_params=DECODER, **connect())
    x, labels = clustered(r.config.dim, seed=5)
    ids = list(r.add_embeddings(x, modality="image", payloads=[{"label": int(l)} for l in labels]))
    r.build(epochs=3)
    yield r, x, ids
    r.close()


def test_stats_before_and_after_build(retriever: MultimodalRetriever) -> None:
    retriever.add_texts(["one", "two", "three"])
    s = retriever.stats()
    assert s.counts == {"text": 3, "image": 0, "video": 0, "total": 3} and not s.built
    retriever.build(epochs=1)
    s = retriever.stats().as_dict()
    assert s["built"] and s["generation"] == 1
    assert s["docid_stats"]["levels"][0]["used"] == 1
    assert s["staleness"]["added_since_build"] == 0 and s["sizes"]["artifact_bytes"] > 0


def test_staleness_counts_adds_and_deletes_and_retrain_resets(built: Any) -> None:
    r, x, ids = built
    rng = np.random.default_rng(0)
    r.add_embeddings(x[:6] + 0.01 * rng.normal(size=(6, x.shape[1])).astype(np.float32), modality="image")
    r.delete(ids[:2])
    st = r.stats().staleness
    assert st["added_since_build"] == 6 and st["deleted_since_build"] == 2
    assert 0.0 <= st["recall_probe"] <= 1.0
    docids_before = {h.id: h.docid for h in r.get(ids[2:10])}
    report = r.retrain(epochs=2)
    assert report.generation == 1  # docids kept
    assert {h.id: h.docid for h in r.get(ids[2:10])} == docids_before
    st = r.stats().staleness
    assert st["added_since_build"] == 0 and st["deleted_since_build"] == 0


def test_retrain_needs_a_build(retriever: MultimodalRetriever) -> None:
    retriever.add_texts(["x"])
    with pytest.raises(NotBuiltError):
        retriever.retrain()


def test_update_reembeds_and_keeps_links(built: Any) -> None:
    r, x, ids = built
    r.link(ids[0], ids[1])
    r.update(ids[0], vector=x[100], payload={"label": "moved"})
    hit = r.get([ids[0]])[0]
    assert hit.payload == {"label": "moved"}
    assert r.search(vector=x[100], k=2, mode="dense")[0].id in (ids[0], ids[100])
    assert r.related(ids[0], k=1)[0].id == ids[1]
    r.update(ids[1], payload={"only": "payload"})
    assert r.get([ids[1]])[0].payload == {"only": "payload"}
    with pytest.raises(NotFoundError):
        r.update(123456789, payload={})


def test_export_import_round_trip_across_backends(built: Any, tmp_path: Path, tiny_encoder: Any) -> None:
    r, x, _ids = built
    file = r.export(tmp_path / "idx.mmgr")
    expected = [h.id for h in r.search(vector=x[7], k=5)]
    with MultimodalRetriever.import_file(file, "copy", path=tmp_path / "other") as c:
        assert c.count() == r.count()
        assert c.stats().built
        assert [h.id for h in c.search(vector=x[7], k=5)] == expected
    with pytest.raises(ConfigError, match="already exists"):
        MultimodalRetriever.import_file(file, "copy", path=tmp_path / "other")
    bad = tmp_path / "bad.mmgr"
    bad.write_bytes(b"junk")
    with pytest.raises(ArtifactError, match="not an mmgr export"):
        MultimodalRetriever.import_file(bad, "x", path=tmp_path / "other")


def test_list_and_drop_embedded(tmp_path: Path, tiny_encoder: Any) -> None:
    for name in ("one", "two"):
        MultimodalRetriever.create(name, path=tmp_path, encoder=tiny_encoder).close()
    assert MultimodalRetriever.list_collections(path=tmp_path) == ["one", "two"]
    MultimodalRetriever.drop("one", path=tmp_path)
    assert MultimodalRetriever.list_collections(path=tmp_path) == ["two"]
    with pytest.raises(CollectionNotFoundError):
        MultimodalRetriever.drop("one", path=tmp_path)


def test_list_and_drop_client(tiny_encoder: Any) -> None:
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    try:
        MultimodalRetriever.create("one", client=client, encoder=tiny_encoder).close()
        assert MultimodalRetriever.list_collections(client=client) == ["one"]
        MultimodalRetriever.drop("one", client=client)
        assert MultimodalRetriever.list_collections(client=client) == []
    finally:
        client.close()
