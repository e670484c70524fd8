"""Regression tests for the retriever faults found by the audit (each failed before its fix), on both backends."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import MultimodalRetriever, Q
from mmgr_qdrant.errors import ArtifactError, InputError, MMGRError, NotFoundError
from mmgr_qdrant.payload import LibraryFields
from mmgr_qdrant.types import RESERVED_KEY
from tests.helpers import make_image

DECODER = {"epochs": 3, "patience": 2}
Connect = Callable[..., dict[str, Any]]


def _vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, dim))
    x = centers[np.arange(n) % 4] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _stored(r: MultimodalRetriever) -> dict[Any, dict[str, Any]]:
    return {rec.id: rec.payload for page in r.store.scroll(batch_size=1000) for rec in page}


# -- 1. integer point ids keep working through links -------------------------------------------------
def test_int_ids_with_caption_docs_link_relate_search_and_delete(connect: Connect, tiny_encoder: Any) -> None:
    with MultimodalRetriever.create("ints", encoder=tiny_encoder, decoder_params=DECODER, **connect()) as r:
        imgs = [make_image(i) for i in range(12)]
        ids = r.add_images(imgs, ids=list(range(1, 13)), captions=[f"picture {i}" for i in range(12)], caption_docs=True)
        assert ids == list(range(1, 13))
        r.build()
        caption = r.related(1, modality="text", k=1)[0]
        assert caption.text == "picture 0" and 1 in caption.links
        hits = r.search(Q.text("picture 3") & Q.modality("image"), k=3)  # follows the links of captions
        assert hits and all(isinstance(h.id, int) for h in hits)
        r.delete([1])
        assert 1 not in r.get([caption.id])[0].links
        assert r.count() == 23


def test_links_written_as_strings_by_older_versions_still_read() -> None:
    fields = LibraryFields.of({RESERVED_KEY: {"modality": "image", "links": ["7", "5b6f3c1e-7d1a-4b2e-9f3a-1c2d3e4f5a6b"]}})
    assert fields.links == (7, "5b6f3c1e-7d1a-4b2e-9f3a-1c2d3e4f5a6b")


def test_delete_with_an_unknown_id_deletes_nothing_and_keeps_links(retriever: MultimodalRetriever) -> None:
    a, b = retriever.add_texts(["alpha", "beta"], ids=[10, 11])
    retriever.link(a, b)
    with pytest.raises(NotFoundError):
        retriever.delete([a, 999])
    assert retriever.count() == 2
    assert retriever.get([b])[0].links == (10,)


# -- 3. documents without the current generation's docid -----------------------------------------------
def test_a_retriever_opened_before_the_build_gives_new_documents_docids(connect: Connect, tiny_encoder: Any) -> None:
    conn = connect()
    first = MultimodalRetriever.create("two", encoder=tiny_encoder, decoder_params=DECODER, **conn)
    second = MultimodalRetriever.open("two", encoder=tiny_encoder, **conn)
    try:
        first.add_embeddings(_vectors(40, first.config.dim), modality="text")
        first.build()
        late = second.add_embeddings(_vectors(3, first.config.dim, seed=5), modality="text")
        assert all(h.docid for h in second.get(late))  # docids of the build the other retriever made
        first.retrain()  # no ragged array
        found = first.search(vector=_vectors(3, first.config.dim, seed=5)[0], k=3, mode="hybrid")
        assert late[0] in {h.id for h in found}
    finally:
        second.close()
        first.close()


def test_retrain_gives_documents_without_a_docid_their_docid(connect: Connect, tiny_encoder: Any) -> None:
    with MultimodalRetriever.create("miss", encoder=tiny_encoder, decoder_params=DECODER, **connect()) as r:
        x = _vectors(41, r.config.dim)
        r.add_embeddings(x[:40], modality="text")
        r.build()
        # a point written without the library's docid fields (an older writer, or a write racing a build)
        r.store.upsert([4242], x[40:41], [{RESERVED_KEY: {"modality": "text", "added": 0.0}}])
        report = r.retrain()
        assert report.n_docs == 41
        assert r.get([4242])[0].docid
        assert 4242 in {h.id for h in r.search(vector=x[40], k=5, mode="hybrid")}


# -- 4. an orphaned build of a collection deleted outside mmgr -----------------------------------------
def test_create_after_the_collection_was_deleted_outside_mmgr_starts_clean(connect: Connect, tiny_encoder: Any) -> None:
    conn = connect()
    r = MultimodalRetriever.create("orphan", encoder=tiny_encoder, decoder_params=DECODER, **conn)
    r.add_embeddings(_vectors(30, r.config.dim), modality="text")
    r.build()
    store = r.store
    r.close()
    if "client" in conn:
        conn["client"].delete_collection("orphan")  # the companion "orphan__mmgr" stays behind
    else:
        shutil.rmtree(store.shard_dir)  # type: ignore[attr-defined]  # the blobs folder stays behind
    with MultimodalRetriever.create("orphan", encoder=tiny_encoder, **conn) as fresh:
        assert not fresh.index.is_built
        assert fresh.count() == 0
        assert fresh.search(vector=_vectors(1, fresh.config.dim)[0], k=3) == []


def test_a_build_of_another_index_is_refused_on_load(connect: Connect, tiny_encoder: Any) -> None:
    from mmgr_qdrant.artifacts import load_build

    conn = connect()
    with MultimodalRetriever.create("ident", encoder=tiny_encoder, decoder_params=DECODER, **conn) as r:
        r.add_embeddings(_vectors(30, r.config.dim), modality="text")
        r.build()
        assert r.config.index_id
        assert load_build(r.store, r.config.index_id) is not None
        with pytest.raises(ArtifactError, match="another index"):
            load_build(r.store, "some-other-index")


# -- 5. payloads and texts are checked before anything is written ------------------------------------
@pytest.mark.parametrize(
    "bad",
    [{"x": float("nan")}, {"x": float("inf")}, {1: "a"}, {"x": object()}, {"x": {"y": [1, float("nan")]}}, {"x": "\ud800"}, {"\udc00": 1}],
    ids=["nan", "inf", "int-key", "object", "nested-nan", "surrogate-value", "surrogate-key"],
)
def test_bad_payloads_write_nothing_in_raise_mode_and_are_skipped_in_skip_mode(retriever: MultimodalRetriever, bad: dict[Any, Any]) -> None:
    texts = [f"text {i}" for i in range(300)]
    payloads: list[dict[Any, Any] | None] = [None] * 300
    payloads[290] = bad
    with pytest.raises(InputError, match="#290"):
        retriever.add_texts(texts, payloads=payloads)
    assert retriever.count() == 0
    result = retriever.add_texts(texts, payloads=payloads, on_error="skip")
    assert [s.index for s in result.skipped] == [290]
    assert retriever.count() == 299


def test_texts_with_lone_surrogates_are_input_errors(retriever: MultimodalRetriever) -> None:
    texts = [f"text {i}" for i in range(300)]
    texts[299] = "broken \udcff text"
    with pytest.raises(InputError, match="surrogate"):
        retriever.add_texts(texts)
    assert retriever.count() == 0
    with pytest.raises(InputError, match="surrogate"):
        retriever.add_images([make_image(0)], captions=["bad \ud800"])


# -- 7. links survive updates and re-adds before the first build ---------------------------------------
def test_update_and_readd_before_build_keep_links_on_both_sides(retriever: MultimodalRetriever) -> None:
    [img] = retriever.add_images([make_image(3)], captions=["a red square"], caption_docs=True)
    [cap] = retriever.get([img])[0].links
    retriever.update(img, payload={"album": "x"})
    retriever.update(img, image=make_image(4))
    assert retriever.get([img])[0].payload == {"album": "x"}
    retriever.add_images([make_image(4)], ids=[img], payloads=[{"album": "y"}])
    retriever.update(cap, text="a blue square")
    assert retriever.get([img])[0].links == (cap,)
    assert retriever.get([cap])[0].links == (img,)
    assert retriever.get([img])[0].payload == {"album": "y"}


# -- 8. create(exist_ok=True) keeps the encoder object it was given ------------------------------------
def test_create_exist_ok_keeps_the_encoder_object(connect: Connect, tiny_encoder: Any) -> None:
    conn = connect()
    MultimodalRetriever.create("enc", encoder=tiny_encoder, **conn).close()
    with MultimodalRetriever.create("enc", encoder=tiny_encoder, exist_ok=True, **conn) as again:
        assert again.encoder is tiny_encoder


# -- 10. argument checks ------------------------------------------------------------------------------
def test_argument_checks_raise_input_errors(retriever: MultimodalRetriever) -> None:
    dim = retriever.config.dim
    retriever.add_texts(["one", "two"])
    for bad_k in (2**64, 10**9, 0, -1, 2.5, True):
        with pytest.raises(InputError):
            retriever.search("one", k=bad_k)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        retriever.search("one", where={1: "a"})  # type: ignore[dict-item]
    with pytest.raises(InputError):
        retriever.search_batch(vectors=np.zeros((2, dim), np.float32))
    with pytest.raises(InputError):
        retriever.search(vector=np.zeros(dim, np.float32))
    with pytest.raises(InputError):
        retriever.search(vector=np.ones((2, dim), np.float32))


def test_huge_vectors_keep_their_direction(retriever: MultimodalRetriever) -> None:
    dim = retriever.config.dim
    v = np.zeros(dim, np.float32)
    v[:2] = 1e20
    [pid] = retriever.add_embeddings(v[None], modality="text")
    stored = retriever.store.retrieve([pid], with_vectors=True)[0].vector
    assert stored is not None
    np.testing.assert_allclose(np.linalg.norm(stored), 1.0, rtol=1e-5)
    np.testing.assert_allclose(stored[:2], [2**-0.5, 2**-0.5], rtol=1e-5)
    assert retriever.search(vector=v * 1e10, k=1)[0].id == pid


def test_every_public_error_is_an_mmgr_error(retriever: MultimodalRetriever) -> None:
    for call in (lambda: retriever.get(["not-an-id"]), lambda: retriever.related(12345), lambda: retriever.update(5, payload={"a": 1})):
        with pytest.raises(MMGRError):
            call()


# -- 13. a failed upsert leaves the trie as it was ---------------------------------------------------
def test_a_failed_write_into_a_built_index_leaves_its_trie_unchanged(connect: Connect, tiny_encoder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with MultimodalRetriever.create("trie", encoder=tiny_encoder, decoder_params=DECODER, **connect()) as r:
        r.add_embeddings(_vectors(30, r.config.dim), modality="text")
        r.build()
        gen = r.index.generative
        assert gen is not None
        before = gen.trie.codes.copy()
        used_before = {k: set(v) for k, v in gen.used.items() if v}

        def fail(*args: Any, **kwargs: Any) -> None:  # a server that drops the write (cannot be made to fail here otherwise)
            raise ConnectionError("write refused")

        monkeypatch.setattr(r.store, "upsert", fail)
        with pytest.raises(ConnectionError):
            r.add_embeddings(_vectors(5, r.config.dim, seed=9), modality="text")
        monkeypatch.undo()
        np.testing.assert_array_equal(gen.trie.codes, before)
        assert {k: set(v) for k, v in gen.used.items() if v} == used_before
        assert r.count() == 30


# -- 15. an image and its caption as one hit --------------------------------------------------------------
def test_collapse_links_folds_an_image_and_its_caption_into_one_hit(connect: Connect, tiny_encoder: Any) -> None:
    with MultimodalRetriever.create("fold", encoder=tiny_encoder, **connect()) as r:
        r.add_images([make_image(i) for i in range(6)], captions=[f"caption {i}" for i in range(6)], caption_docs=True)
        plain = r.search("caption 0", k=12)
        folded = r.search("caption 0", k=12, collapse_links=True)
        assert len(plain) == 12 and len(folded) == 6
        for h in folded:
            assert len(h.collapsed) == 1 and h.collapsed[0] in h.links
        assert [h.id for h in folded] == [h.id for h in plain if h.id not in {c for f in folded for c in f.collapsed}]
        batch = r.search_batch(["caption 0"], k=3, collapse_links=True)[0]
        assert [h.id for h in batch] == [h.id for h in folded[:3]]


def test_blob_names_must_match_whole(tmp_path: Any) -> None:
    from mmgr_qdrant.store.edge import _blob_name

    for bad in ("abc\n", "a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            _blob_name(bad)
    assert _blob_name("build.json") == "build.json"


def test_non_numeric_vectors_and_huge_k_in_generative_mode_fail_cleanly(connect: Connect, tiny_encoder: Any) -> None:
    with MultimodalRetriever.create("gk", encoder=tiny_encoder, decoder_params=DECODER, **connect()) as r:
        x = _vectors(30, r.config.dim)
        ids = r.add_embeddings(x, modality="text")
        r.build()
        hits = r.search(vector=x[0], k=100_000, mode="generative")  # the beam never exceeds the docids
        assert 0 < len(hits) <= 30
        for call in (lambda: r.update(ids[0], vector="vector"), lambda: r.search(vector="vector"),  # type: ignore[arg-type]
                     lambda: r.search_batch(vectors="vector"), lambda: r.add_embeddings("vector", modality="text")):  # type: ignore[arg-type]
            with pytest.raises(InputError):
                call()
        assert r.count() == 30
