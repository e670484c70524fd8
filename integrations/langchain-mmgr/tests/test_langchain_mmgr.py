"""``langchain_mmgr.MMGRRetriever`` against real langchain-core and a real embedded index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.load import dumpd, dumps, load, loads
from langchain_core.retrievers import BaseRetriever
from langchain_mmgr import MMGRRetriever
from pydantic import ValidationError

from mmgr_qdrant import CollectionNotFoundError, InputError, MMGRError, MultimodalRetriever, QuerySyntaxError

ALL = 7  # documents in the fixture index


def test_is_a_langchain_retriever(index: MultimodalRetriever) -> None:
    assert isinstance(MMGRRetriever(retriever=index), BaseRetriever)


def test_invoke_returns_documents_with_metadata(index: MultimodalRetriever, image_files: list[Path]) -> None:
    docs = MMGRRetriever(retriever=index, search_kwargs={"k": ALL}).invoke("a red sports car")
    assert len(docs) == ALL and all(isinstance(d, Document) for d in docs)
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    hits = {str(h.id): h for h in index.search("a red sports car", k=ALL)}
    for d in docs:
        m = d.metadata
        hit = hits[d.id]
        assert m["id"] == hit.id and m["score"] == pytest.approx(hit.score)
        assert m["docid"] == list(hit.docid) and isinstance(m["docid"], list)
        assert m["modality"] == hit.modality and m["collection"] == "docs"
        assert m["kind"] == hit.payload["kind"]  # the user payload rides along
    texts = [d for d in docs if d.metadata["modality"] == "text"]
    assert sorted(d.page_content for d in texts) == sorted(["a red sports car", "a sailing boat at sea", "a bowl of fresh fruit"])
    assert all("image_path" not in d.metadata for d in texts)
    files = [d for d in docs if d.metadata.get("image_path")]
    assert sorted(d.metadata["image_path"] for d in files) == sorted(str(p) for p in image_files)
    assert all(d.page_content.startswith("picture ") and d.metadata["uri"] == d.metadata["image_path"] for d in files)


def test_image_without_file_or_caption(index: MultimodalRetriever) -> None:
    docs = MMGRRetriever(retriever=index, search_kwargs={"k": ALL, "modality": "image"}).invoke("anything")
    (memory,) = [d for d in docs if d.metadata["image_path"] is None]
    assert memory.page_content == f"Image {memory.metadata['id']}"
    assert "uri" not in memory.metadata


def test_search_kwargs_and_per_call_overrides(index: MultimodalRetriever) -> None:
    retriever = MMGRRetriever(retriever=index, search_kwargs={"k": 2, "modality": "image"})
    docs = retriever.invoke("boat")
    assert len(docs) == 2 and {d.metadata["modality"] for d in docs} == {"image"}
    docs = retriever.invoke("boat", k=1, modality="text")
    assert len(docs) == 1 and docs[0].metadata["modality"] == "text"
    docs = retriever.invoke("boat", k=ALL, modality=None, where={"n": 2})
    assert [d.page_content for d in docs] == ["a bowl of fresh fruit"]
    docs = retriever.invoke("boat", explain=True, mode="dense")
    assert all(d.metadata["explain"]["mode"] == "dense" for d in docs)


def test_ainvoke_matches_invoke(index: MultimodalRetriever) -> None:
    retriever = MMGRRetriever(retriever=index, search_kwargs={"k": 4})
    sync = retriever.invoke("sailing")
    asyn = asyncio.run(retriever.ainvoke("sailing"))
    assert [d.id for d in asyn] == [d.id for d in sync]
    assert [d.metadata for d in asyn] == [d.metadata for d in sync]


def test_batch_and_abatch(index: MultimodalRetriever) -> None:
    retriever = MMGRRetriever(retriever=index, search_kwargs={"k": 3})
    queries = ["car", "boat", "fruit"]
    batched = retriever.batch(queries)
    assert [[d.id for d in docs] for docs in batched] == [[d.id for d in retriever.invoke(q)] for q in queries]
    abatched = asyncio.run(retriever.abatch(queries))
    assert [[d.id for d in docs] for docs in abatched] == [[d.id for d in docs] for docs in batched]


def test_library_errors_pass_through_with_their_messages(index: MultimodalRetriever) -> None:
    with pytest.raises(InputError) as direct:
        index.search("")
    retriever = MMGRRetriever(retriever=index)
    with pytest.raises(InputError) as sync:
        retriever.invoke("")
    with pytest.raises(InputError) as asyn:
        asyncio.run(retriever.ainvoke("   "))
    assert str(sync.value) == str(direct.value)
    assert "empty" in str(asyn.value)
    with pytest.raises(InputError, match="not known"):
        retriever.invoke("car", modality="audio")
    with pytest.raises(InputError, match="unknown search options"):
        retriever.invoke("car", top_k=3)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="needs an index"):
        MMGRRetriever()
    with pytest.raises(ValidationError, match="only one of path"):
        MMGRRetriever(collection="docs", path="x", url="http://localhost:6333")
    with pytest.raises(ValidationError, match="unknown search options"):
        MMGRRetriever(collection="docs", search_kwargs={"top_k": 3})


def test_collection_mismatch_is_refused(index: MultimodalRetriever) -> None:
    with pytest.raises(ValidationError, match="differs"):
        MMGRRetriever(retriever=index, collection="other")


def test_opens_lazily_from_settings_and_closes(closed_index: Path) -> None:
    retriever = MMGRRetriever(collection="docs", path=closed_index, search_kwargs={"k": 2})
    assert retriever.path == str(closed_index)
    docs = retriever.invoke("car")
    assert len(docs) == 2
    retriever.close()
    # Closed means the embedded store is free for another opener.
    with MultimodalRetriever.open("docs", path=closed_index) as again:
        assert again.count() == ALL
    assert len(retriever.invoke("car")) == 2  # opens again on demand
    retriever.close()


def test_missing_collection_error_passes_through(tmp_path: Path) -> None:
    retriever = MMGRRetriever(collection="nope", path=tmp_path / "empty")
    with pytest.raises(CollectionNotFoundError, match="'nope' does not exist"):
        retriever.invoke("car")


def test_serialization_round_trip(closed_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    retriever = MMGRRetriever(
        collection="docs", path=closed_index, api_key="s3cret", search_kwargs={"k": 3, "modality": "text"}, query_syntax=True
    )
    text = dumps(retriever)
    assert "s3cret" not in text and "QDRANT_API_KEY" in text
    data = dumpd(retriever)
    assert data["type"] == "constructor" and data["id"] == ["langchain_mmgr", "MMGRRetriever"]
    assert data["kwargs"]["search_kwargs"] == {"k": 3, "modality": "text"}
    back = loads(
        text, allowed_objects=[MMGRRetriever], valid_namespaces=["langchain_mmgr"], secrets_map={"QDRANT_API_KEY": "s3cret"}
    )
    assert isinstance(back, MMGRRetriever)
    assert (back.collection, back.path, back.search_kwargs, back.query_syntax) == ("docs", str(closed_index), {"k": 3, "modality": "text"}, True)
    assert back.api_key is not None and back.api_key.get_secret_value() == "s3cret"
    docs = back.invoke("car")
    assert len(docs) == 3 and {d.metadata["modality"] for d in docs} == {"text"}
    back.close()
    again = load(data, allowed_objects=[MMGRRetriever], valid_namespaces=["langchain_mmgr"])
    assert again.api_key is None  # no secret given, none invented


def test_a_live_object_alone_does_not_serialize(index: MultimodalRetriever) -> None:
    data = dumpd(MMGRRetriever(retriever=index))
    assert data["type"] == "not_implemented"
    data = dumpd(MMGRRetriever(retriever=index, collection="docs", path="somewhere"))
    assert data["type"] == "constructor" and "retriever" not in data["kwargs"]


def test_query_syntax(index: MultimodalRetriever) -> None:
    retriever = MMGRRetriever(retriever=index, search_kwargs={"k": 3}, query_syntax=True)
    plain = MMGRRetriever(retriever=index, search_kwargs={"k": 3})
    # A plain phrase parses to one text atom and searches exactly as without the syntax.
    assert [d.id for d in retriever.invoke("a red sports car")] == [d.id for d in plain.invoke("a red sports car")]
    with pytest.raises(QuerySyntaxError, match="position"):
        retriever.invoke("car AND")


def test_query_syntax_boolean_expression(index: MultimodalRetriever) -> None:
    from mmgr_qdrant.setops import parse

    query = "car AND NOT boat"
    retriever = MMGRRetriever(retriever=index, query_syntax=True, search_kwargs={"k": ALL})
    try:  # before build() the library may refuse concept terms; its error must come through unchanged
        index.search(parse(query), k=ALL)
    except MMGRError as exc:
        with pytest.raises(type(exc)) as via:
            retriever.invoke(query)
        assert str(via.value) == str(exc)
    try:
        index.build(epochs=1)
    except (MMGRError, AttributeError) as exc:
        pytest.skip(f"this mmgr-qdrant cannot build the tiny fixture index: {type(exc).__name__}: {exc}")
    direct = index.search(parse(query), k=ALL)
    docs = retriever.invoke(query)
    assert [d.id for d in docs] == [str(h.id) for h in direct]
    assert all(isinstance(d, Document) for d in docs)


def test_works_on_the_qdrant_client_backend(tiny_encoder: object) -> None:
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    try:
        with MultimodalRetriever.create("docs", client=client, encoder=tiny_encoder) as r:
            r.add_texts(["one text", "another text"])
            docs = MMGRRetriever(retriever=r, search_kwargs={"k": 1}).invoke("one text")
            assert [d.page_content for d in docs] == ["one text"]
    finally:
        client.close()
