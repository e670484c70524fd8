"""``haystack_integrations.components.retrievers.mmgr.MMGRRetriever`` against real haystack-ai."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from haystack import Document, Pipeline
from haystack.utils import Secret
from haystack_integrations.components.retrievers.mmgr import MMGRRetriever

from mmgr_qdrant import CollectionNotFoundError, InputError, MultimodalRetriever

ALL = 7  # documents in the fixture index


@pytest.fixture
def component(closed_index: Path) -> MMGRRetriever:
    c = MMGRRetriever(collection="docs", path=closed_index, top_k=ALL)
    yield c
    c.close()


def test_run_returns_documents(component: MMGRRetriever, image_files: list[Path]) -> None:
    docs = component.run(query="a red sports car")["documents"]
    assert len(docs) == ALL and all(isinstance(d, Document) for d in docs)
    scores = [d.score for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert all(d.meta["collection"] == "docs" and isinstance(d.meta["docid"], list) and "kind" in d.meta for d in docs)
    texts = [d for d in docs if d.meta["modality"] == "text"]
    assert sorted(d.content for d in texts) == sorted(["a red sports car", "a sailing boat at sea", "a bowl of fresh fruit"])
    files = [d for d in docs if "file_path" in d.meta]
    assert sorted(d.meta["file_path"] for d in files) == sorted(str(p) for p in image_files)
    assert all(d.content.startswith("picture ") for d in files)
    (memory,) = [d for d in docs if d.meta["modality"] == "image" and "file_path" not in d.meta]
    assert memory.content is None


def test_run_arguments_override_init(component: MMGRRetriever) -> None:
    docs = component.run(query="car", top_k=2, modality="image")["documents"]
    assert len(docs) == 2 and {d.meta["modality"] for d in docs} == {"image"}
    docs = component.run(query="car", filters={"n": 1})["documents"]
    assert [d.content for d in docs] == ["a sailing boat at sea"]


def test_haystack_filters_translate(component: MMGRRetriever) -> None:
    flt = {
        "operator": "AND",
        "conditions": [
            {"field": "meta.kind", "operator": "==", "value": "note"},
            {"field": "meta.n", "operator": "in", "value": [0, 2]},
        ],
    }
    docs = component.run(query="car", filters=flt)["documents"]
    assert sorted(d.content for d in docs) == ["a bowl of fresh fruit", "a red sports car"]
    with pytest.raises(InputError, match="operator '>' is not supported"):
        component.run(query="car", filters={"field": "meta.n", "operator": ">", "value": 1})


def test_run_async_matches_run(component: MMGRRetriever) -> None:
    sync = component.run(query="boat", top_k=3)["documents"]
    asyn = asyncio.run(component.run_async(query="boat", top_k=3))["documents"]
    assert [d.id for d in asyn] == [d.id for d in sync]


def test_errors_pass_through_with_their_messages(component: MMGRRetriever, tmp_path: Path) -> None:
    component.warm_up()
    with pytest.raises(InputError) as via:
        component.run(query="")
    assert "empty" in str(via.value)
    with pytest.raises(InputError, match="empty"):
        asyncio.run(component.run_async(query=""))
    with pytest.raises(CollectionNotFoundError, match="'nope' does not exist"):
        MMGRRetriever(collection="nope", path=tmp_path / "empty").run(query="car")


def test_to_dict_from_dict(closed_index: Path) -> None:
    c = MMGRRetriever(collection="docs", path=closed_index, top_k=2, modality="text", filters={"kind": "note"}, query_syntax=True)
    data = c.to_dict()
    assert data["type"] == "haystack_integrations.components.retrievers.mmgr.retriever.MMGRRetriever"
    params = data["init_parameters"]
    assert params["path"] == str(closed_index) and params["api_key"] == {"type": "env_var", "env_vars": ["QDRANT_API_KEY"], "strict": False}
    back = MMGRRetriever.from_dict(data)
    assert back.to_dict() == data
    docs = back.run(query="car")["documents"]
    assert len(docs) == 2 and {d.meta["modality"] for d in docs} == {"text"}
    back.close()
    with pytest.raises(ValueError):  # a token secret never serializes, as everywhere in Haystack
        MMGRRetriever(collection="docs", url="http://localhost:6333", api_key=Secret.from_token("t")).to_dict()


def test_in_a_pipeline_and_its_yaml(closed_index: Path) -> None:
    pipe = Pipeline()
    pipe.add_component("retriever", MMGRRetriever(collection="docs", path=closed_index, top_k=3))
    try:
        out = pipe.run({"retriever": {"query": "fruit"}})
        assert len(out["retriever"]["documents"]) == 3
    finally:
        pipe.get_component("retriever").close()
    again = Pipeline.loads(pipe.dumps())
    try:
        assert len(again.run({"retriever": {"query": "fruit", "top_k": 1}})["retriever"]["documents"]) == 1
    finally:
        again.get_component("retriever").close()


def test_in_an_async_pipeline(closed_index: Path) -> None:
    # Haystack 3 runs a Pipeline asynchronously with run_async (2.x had a separate AsyncPipeline).
    pipe = Pipeline()
    if not hasattr(pipe, "run_async"):
        from haystack import AsyncPipeline  # type: ignore[attr-defined]

        pipe = AsyncPipeline()
    pipe.add_component("retriever", MMGRRetriever(collection="docs", path=closed_index, top_k=2))
    try:
        out = asyncio.run(pipe.run_async({"retriever": {"query": "boat"}}))
        assert len(out["retriever"]["documents"]) == 2
    finally:
        pipe.get_component("retriever").close()


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="only one of path"):
        MMGRRetriever(collection="docs", path="x", url="http://localhost:6333")
    with pytest.raises(ValueError, match="needs collection"):
        MMGRRetriever(collection="")


def test_live_index_is_not_an_init_argument(index: MultimodalRetriever) -> None:
    with pytest.raises(TypeError, match="connection settings"):
        MMGRRetriever(index)  # type: ignore[arg-type]
