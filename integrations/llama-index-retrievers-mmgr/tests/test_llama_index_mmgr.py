"""``llama_index.retrievers.mmgr`` against real llama-index-core and a real embedded index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import llama_index.retrievers.mmgr as pkg
import pytest
from llama_index.core.base.base_multi_modal_retriever import MultiModalRetriever
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.retrievers.mmgr import MMGRMultiModalRetriever, MMGRRetriever

from mmgr_qdrant import CollectionNotFoundError, InputError, MultimodalRetriever, QuerySyntaxError

ALL = 7  # documents in the fixture index


def test_namespace_layout() -> None:
    root = Path(pkg.__file__).resolve().parent  # .../llama_index/retrievers/mmgr
    assert not (root.parent / "__init__.py").exists()
    assert not (root.parent.parent / "__init__.py").exists()
    import llama_index.core  # the core package still imports beside this namespace portion

    assert llama_index.core.__file__


def test_types(index: MultimodalRetriever) -> None:
    assert isinstance(MMGRRetriever(index), BaseRetriever)
    multi = MMGRMultiModalRetriever(index)
    assert isinstance(multi, MultiModalRetriever) and not MMGRMultiModalRetriever.__abstractmethods__


def test_retrieve_returns_text_and_image_nodes(index: MultimodalRetriever, image_files: list[Path]) -> None:
    nodes = MMGRRetriever(index, similarity_top_k=ALL).retrieve("a sailing boat at sea")
    assert len(nodes) == ALL and all(isinstance(n, NodeWithScore) for n in nodes)
    hits = {str(h.id): h for h in index.search("a sailing boat at sea", k=ALL)}
    scores = [n.score for n in nodes]
    assert scores == sorted(scores, reverse=True)
    for n in nodes:
        hit = hits[n.node.node_id]
        assert n.score == pytest.approx(hit.score)
        assert n.node.metadata["docid"] == list(hit.docid) and n.node.metadata["modality"] == hit.modality
        assert n.node.metadata["kind"] == hit.payload["kind"]
    texts = [n.node for n in nodes if n.node.metadata["modality"] == "text"]
    assert all(type(t) is TextNode for t in texts)
    assert sorted(t.text for t in texts) == sorted(["a red sports car", "a sailing boat at sea", "a bowl of fresh fruit"])
    images = [n.node for n in nodes if n.node.metadata["modality"] == "image"]
    assert len(images) == 4 and all(isinstance(i, ImageNode) for i in images)
    with_files = [i for i in images if i.image_path]
    assert sorted(i.image_path for i in with_files) == sorted(str(p) for p in image_files)
    assert all(i.text.startswith("picture ") and i.metadata["file_path"] == i.image_path for i in with_files)
    assert all(i.image_mimetype == "image/png" for i in with_files)
    (memory,) = [i for i in images if not i.image_path]
    assert memory.text == "" and "file_path" not in memory.metadata


def test_bookkeeping_metadata_stays_out_of_llm_text(index: MultimodalRetriever) -> None:
    (node,) = MMGRRetriever(index, similarity_top_k=1, modality="text").retrieve("fruit")
    llm_text = node.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "docid" not in llm_text and "kind: note" in llm_text


def test_aretrieve_matches_retrieve(index: MultimodalRetriever) -> None:
    retriever = MMGRRetriever(index, similarity_top_k=4)
    sync = retriever.retrieve("car")
    asyn = asyncio.run(retriever.aretrieve("car"))
    assert [n.node.node_id for n in asyn] == [n.node.node_id for n in sync]


def test_query_bundle_with_only_an_image_searches_by_image(index: MultimodalRetriever, image_files: list[Path]) -> None:
    nodes = MMGRRetriever(index, similarity_top_k=2).retrieve(QueryBundle(query_str="", image_path=str(image_files[1])))
    assert isinstance(nodes[0].node, ImageNode) and nodes[0].node.image_path == str(image_files[1])
    assert nodes[0].score == pytest.approx(1.0, abs=1e-3)


def test_settings_filter_and_mode(index: MultimodalRetriever) -> None:
    nodes = MMGRRetriever(index, similarity_top_k=ALL, where={"kind": "note"}, mode="dense").retrieve("car")
    assert len(nodes) == 3 and all(type(n.node) is TextNode for n in nodes)


def test_multimodal_text_and_text_to_image(index: MultimodalRetriever) -> None:
    r = MMGRMultiModalRetriever(index, similarity_top_k=2, image_similarity_top_k=3)
    texts = r.text_retrieve("boat")
    assert len(texts) == 2 and all(type(n.node) is TextNode for n in texts)
    images = r.text_to_image_retrieve("boat")
    assert len(images) == 3 and all(isinstance(n.node, ImageNode) for n in images)
    mixed = r.retrieve("boat")
    assert len(mixed) == 2
    assert [n.node.node_id for n in r.text_to_image_retrieve(QueryBundle("boat"))] == [n.node.node_id for n in images]


def test_multimodal_image_to_image(index: MultimodalRetriever, image_files: list[Path]) -> None:
    r = MMGRMultiModalRetriever(index, image_similarity_top_k=2)
    for query in (str(image_files[2]), QueryBundle(query_str="", image_path=str(image_files[2]))):
        nodes = r.image_to_image_retrieve(query)
        assert len(nodes) == 2 and all(isinstance(n.node, ImageNode) for n in nodes)
        assert nodes[0].node.image_path == str(image_files[2])


def test_multimodal_async_variants(index: MultimodalRetriever, image_files: list[Path]) -> None:
    r = MMGRMultiModalRetriever(index, similarity_top_k=2, image_similarity_top_k=2)

    async def run() -> list[list[NodeWithScore]]:
        return list(
            await asyncio.gather(
                r.atext_retrieve("car"),
                r.atext_to_image_retrieve("car"),
                r.aimage_to_image_retrieve(str(image_files[0])),
                r.aretrieve("car"),
                r._atext_to_image_retrieve(QueryBundle("car")),
                r._aimage_to_image_retrieve(QueryBundle(query_str="", image_path=str(image_files[0]))),
            )
        )

    text, t2i, i2i, mixed, t2i_b, i2i_b = asyncio.run(run())
    assert [n.node.node_id for n in text] == [n.node.node_id for n in r.text_retrieve("car")]
    assert [n.node.node_id for n in t2i] == [n.node.node_id for n in r.text_to_image_retrieve("car")]
    assert [n.node.node_id for n in t2i_b] == [n.node.node_id for n in t2i]
    assert i2i[0].node.image_path == str(image_files[0]) and i2i_b[0].node.node_id == i2i[0].node.node_id
    assert len(mixed) == 2


def test_library_errors_pass_through_with_their_messages(index: MultimodalRetriever, tmp_path: Path) -> None:
    with pytest.raises(InputError) as direct:
        index.search("")
    r = MMGRMultiModalRetriever(index)
    with pytest.raises(InputError) as via:
        r.retrieve("")
    assert str(via.value) == str(direct.value)
    with pytest.raises(InputError) as via_async:
        asyncio.run(r.aretrieve(""))
    assert str(via_async.value) == str(direct.value)
    missing = str(tmp_path / "missing.png")
    with pytest.raises(InputError, match="does not exist"):
        r.image_to_image_retrieve(missing)
    with pytest.raises(InputError, match="got no image"):
        r.image_to_image_retrieve(QueryBundle("text only"))
    with pytest.raises(QuerySyntaxError):
        MMGRRetriever(index, query_syntax=True).retrieve("car AND")


def test_opens_lazily_from_settings(closed_index: Path, tmp_path: Path) -> None:
    r = MMGRMultiModalRetriever(collection="docs", path=closed_index, similarity_top_k=1)
    assert len(r.text_retrieve("car")) == 1
    r.close()
    with MultimodalRetriever.open("docs", path=closed_index) as again:  # the store is free again
        assert again.count() == ALL
    with pytest.raises(CollectionNotFoundError, match="'nope' does not exist"):
        MMGRRetriever(collection="nope", path=tmp_path / "empty").retrieve("car")


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="needs an index"):
        MMGRRetriever()
    with pytest.raises(ValueError, match="only one of path"):
        MMGRMultiModalRetriever(collection="docs", path="x", url="http://localhost:6333")
