"""mmgr-qdrant as a drop-in retriever for LangChain, LlamaIndex and Haystack.

Builds a small embedded index (sample images plus three notes) in a temporary folder, then
retrieves from it through each framework's own retriever type:

- LangChain: ``langchain_mmgr.MMGRRetriever`` (a ``BaseRetriever``) inside a small LCEL chain;
- LlamaIndex: ``llama_index.retrievers.mmgr.MMGRMultiModalRetriever`` (``TextNode`` / ``ImageNode``);
- Haystack: ``haystack_integrations.components.retrievers.mmgr.MMGRRetriever`` in a ``Pipeline``.

A framework whose integration is not installed is skipped with the ``pip install`` line to run.

Run it::

    python examples/quickstart_retriever.py
    python examples/quickstart_retriever.py --encoder open_clip:ViT-B-32/laion2b_s34b_b79k
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no usage reports from this example

from mmgr_qdrant import MultimodalRetriever

DATA = Path(__file__).resolve().parent / "data"
NOTES = [
    "The Blue Peter (flag P) goes up five minutes before a race start.",
    "Sunflowers need water every morning in July.",
    "Reboot the router before calling the internet provider.",
]


def build_index(store: Path, encoder: str | None, limit: int) -> None:
    """Create the index with sample images (or a generated one) and the notes, then close it."""
    options = {} if encoder is None else {"encoder": encoder}
    with MultimodalRetriever.create("quickstart", path=store, **options) as r:
        rows_file = DATA / "clipart.jsonl"
        if rows_file.is_file():
            rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            rows = rows[:: max(1, len(rows) // limit)][:limit]  # spread over the topics, not the first few
            r.add_images([str(DATA / row["file"]) for row in rows], payloads=[{"caption": row["caption"]} for row in rows])
        else:
            from PIL import Image

            path = store.parent / "red.png"
            Image.new("RGB", (64, 64), "red").save(path)
            r.add_images([str(path)], payloads=[{"caption": "a red square"}])
        r.add_texts(NOTES, payloads=[{"source": "notes"}] * len(NOTES))


def with_langchain(store: Path, question: str) -> None:
    try:
        from langchain_core.runnables import RunnableLambda
        from langchain_mmgr import MMGRRetriever
    except ImportError:
        print("LangChain: skipped; pip install -e integrations/langchain-mmgr")
        return
    retriever = MMGRRetriever(collection="quickstart", path=str(store), search_kwargs={"k": 4})
    try:
        # A retriever is a Runnable: compose it like any other step of a chain.
        chain = retriever | RunnableLambda(lambda docs: "\n".join(f"- {d.page_content} ({d.metadata['modality']})" for d in docs))
        print("LangChain chain output:\n" + chain.invoke(question))
        images = retriever.invoke(question, modality="image", k=2)
        print("LangChain image documents:", [(d.page_content, d.metadata["image_path"]) for d in images])
    finally:
        retriever.close()


def with_llama_index(store: Path, question: str) -> None:
    try:
        from llama_index.retrievers.mmgr import MMGRMultiModalRetriever
    except ImportError:
        print("LlamaIndex: skipped; pip install -e integrations/llama-index-retrievers-mmgr")
        return
    retriever = MMGRMultiModalRetriever(collection="quickstart", path=store, similarity_top_k=2, image_similarity_top_k=2)
    try:
        for n in retriever.text_retrieve(question) + retriever.text_to_image_retrieve(question):
            print(f"LlamaIndex {type(n.node).__name__}: {n.node.get_content()!r} score={n.score:.3f}", getattr(n.node, "image_path", "") or "")
    finally:
        retriever.close()


def with_haystack(store: Path, question: str) -> None:
    try:
        from haystack import Pipeline
        from haystack_integrations.components.retrievers.mmgr import MMGRRetriever
    except ImportError:
        print("Haystack: skipped; pip install -e integrations/mmgr-haystack")
        return
    pipe = Pipeline()
    pipe.add_component("retriever", MMGRRetriever(collection="quickstart", path=str(store), top_k=3))
    try:
        docs = pipe.run({"retriever": {"query": question}})["retriever"]["documents"]
        print("Haystack documents:", [(d.content, d.meta["modality"], round(d.score or 0.0, 3)) for d in docs])
    finally:
        pipe.get_component("retriever").close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mmgr-qdrant as a drop-in retriever for RAG frameworks.")
    parser.add_argument("--encoder", default=None, help="encoder name; default: the library default (lit:default)")
    parser.add_argument("--limit", type=int, default=30, help="sample images to index (spread over the sample data)")
    parser.add_argument("--question", default="which flag starts a race?")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmgr-quickstart-") as tmp:
        store = Path(tmp) / "store"
        build_index(store, args.encoder, args.limit)
        # An embedded store has one writer at a time: each retriever below opens it, then closes it.
        with_langchain(store, args.question)
        with_llama_index(store, args.question)
        with_haystack(store, args.question)
    return 0


if __name__ == "__main__":
    sys.exit(main())
