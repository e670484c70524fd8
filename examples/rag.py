"""Multimodal RAG with mmgr-qdrant, end to end and offline.

Ingests the sample clip-art images (``examples/data/``, with their captions and keywords) and a few
text notes into an embedded Qdrant store in a temporary folder, retrieves text passages *and*
images for a question, assembles the prompt context (passages plus image references with captions
and file paths) and hands prompt and image paths to a pluggable LLM callable.

The default LLM is ``echo_llm``: a **placeholder** that calls no model and only reports what it
was given (prompt size, passages, images). Swap it for your client, with ``--llm module:function``
or by calling :func:`answer` with your own callable ``llm(prompt, image_paths) -> str``, e.g.::

    def my_llm(prompt: str, images: Sequence[str]) -> str:
        content = [{"type": "text", "text": prompt}]
        content += [{"type": "image_url", "image_url": {"url": to_data_url(p)}} for p in images]
        return client.chat.completions.create(model=..., messages=[{"role": "user", "content": content}]).choices[0].message.content

Run it::

    python examples/rag.py
    python examples/rag.py --question "Which flags signal a race start?" --k-text 3 --k-images 4
    python examples/rag.py --encoder open_clip:ViT-B-32/laion2b_s34b_b79k   # any encoder; default: the library's

Texts and images are retrieved with one search per modality: CLIP-style encoders place texts and
images in one space, but a text query is much closer to texts than to any image (the "modality
gap"), so one mixed top-k would be all texts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mmgr_qdrant import Hit, MultimodalRetriever

DATA = Path(__file__).resolve().parent / "data"
QUESTION = "What do the signal flags mean at the start of a sailing regatta?"

NOTES = [
    ("notes/regatta.md", ("Regatta briefing: the race committee hoists flag P, the Blue Peter, five minutes before the start; "
                          "a repeat pennant means the start is postponed.")),
    ("notes/sailing.md", ("Points of sail: in irons, close-hauled, beam reach, broad reach and running. "
                          "No boat sails straight into the wind.")),
    ("notes/safety.md", "Safety: every crew member wears a life jacket; in fog, sound signals replace flag signals."),
    ("notes/party.md", "Club party menu: lasagna, salad, garlic toast and a lemon cake with candles."),
    ("notes/office.md", "Home office: the Cisco router and the 5-port hub sit under the desk; reboot the router first."),
    ("notes/garden.md", "Garden diary: the sunflowers and daffodils need water every morning in July."),
]

LLM = Callable[[str, Sequence[str]], str]
"""An LLM call: ``llm(prompt, image_paths) -> answer``. Multimodal models take the images too."""


def echo_llm(prompt: str, images: Sequence[str]) -> str:
    """A placeholder LLM: calls no model, reports what it was given. Replace it with your client."""
    passages = sum(1 for line in prompt.splitlines() if line.startswith("[T"))
    return (
        f"[echo LLM placeholder] got a prompt of {len(prompt)} characters ({len(prompt.splitlines())} lines) "
        f"with {passages} text passages and {len(images)} images; plug in a real model with --llm module:function."
    )


# -- data ------------------------------------------------------------------------------------------
def sample_images(data_dir: Path, limit: int, scratch: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The sample images and their payloads (caption, keywords); generated ones when there is no data."""
    index = data_dir / "clipart.jsonl"
    if index.is_file():
        rows = [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = rows[:limit] if limit > 0 else rows
        paths = [str(data_dir / row["file"]) for row in rows]
        payloads = [{"caption": row["caption"], "keywords": row.get("keywords", []), "source": row.get("source", "")} for row in rows]
        return paths, payloads
    print(f"(no sample data under {data_dir}; generating a few images)")
    return generated_images(scratch)


def generated_images(folder: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A few simple drawn images with captions, for when ``examples/data/`` is absent."""
    from PIL import Image, ImageDraw

    shapes = [
        ("a red flag on a pole", "red", "flag"),
        ("a blue square flag with a white centre", "blue", "flag"),
        ("a yellow sun", "yellow", "circle"),
        ("a green tree", "green", "triangle"),
        ("a white sailboat on the sea", "white", "sail"),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    paths, payloads = [], []
    for i, (caption, colour, kind) in enumerate(shapes):
        img = Image.new("RGB", (96, 96), "skyblue" if kind == "sail" else "white")
        draw = ImageDraw.Draw(img)
        if kind == "flag":
            draw.line((20, 10, 20, 90), fill="black", width=3)
            draw.rectangle((22, 12, 80, 50), fill=colour)
            if colour == "blue":
                draw.rectangle((40, 24, 62, 38), fill="white")
        elif kind == "circle":
            draw.ellipse((20, 20, 76, 76), fill=colour)
        elif kind == "triangle":
            draw.polygon([(48, 10), (15, 80), (81, 80)], fill=colour)
        else:
            draw.polygon([(50, 10), (50, 70), (15, 70)], fill=colour)
            draw.rectangle((10, 72, 86, 80), fill="brown")
        path = folder / f"sample_{i}.png"
        img.save(path)
        paths.append(str(path))
        payloads.append({"caption": caption, "keywords": [kind], "source": "generated"})
    return paths, payloads


def ingest(r: MultimodalRetriever, data_dir: Path, limit: int, scratch: Path) -> None:
    """Store the sample images and the text notes."""
    paths, payloads = sample_images(data_dir, limit, scratch)
    r.add_images(paths, payloads=payloads)
    r.add_texts([text for _, text in NOTES], payloads=[{"source": source} for source, _ in NOTES])
    print(f"ingested {len(paths)} images and {len(NOTES)} notes into {r!r}")


# -- retrieval and prompt --------------------------------------------------------------------------
def retrieve(r: MultimodalRetriever, question: str, k_text: int, k_images: int) -> tuple[list[Hit], list[Hit]]:
    """Text passages and images for the question, one search per modality (see the module docstring)."""
    texts = r.search(question, k=k_text, modality="text") if k_text > 0 else []
    images = r.search(question, k=k_images, modality="image") if k_images > 0 else []
    return texts, images


def build_context(texts: Sequence[Hit], images: Sequence[Hit]) -> tuple[str, list[str]]:
    """The context block of the prompt and the image files to attach, numbered so answers can cite them."""
    lines = ["Text passages:"]
    for i, hit in enumerate(texts, 1):
        lines.append(f"[T{i}] {hit.text} (source: {hit.payload.get('source', hit.id)}, score {hit.score:.3f})")
    lines.append("")
    lines.append("Images (attached in this order):")
    attached: list[str] = []
    for i, hit in enumerate(images, 1):
        caption = hit.payload.get("caption") or "(no caption)"
        keywords = ", ".join(hit.payload.get("keywords") or [])
        where = hit.uri or f"id {hit.id}"
        lines.append(f"[I{i}] {caption}" + (f" [{keywords}]" if keywords else "") + f" (file: {where}, score {hit.score:.3f})")
        if hit.uri:
            attached.append(hit.uri)
    return "\n".join(lines), attached


def build_prompt(question: str, context: str) -> str:
    """The prompt: instructions, the retrieved context, the question."""
    return (
        "Answer the question using only the context below. Cite passages as [T1] and images as [I1]; "
        "say so if the context does not contain the answer.\n\n"
        f"{context}\n\nQuestion: {question}\nAnswer:"
    )


def answer(r: MultimodalRetriever, question: str, llm: LLM = echo_llm, *, k_text: int = 3, k_images: int = 4) -> tuple[str, str]:
    """Retrieve, assemble the prompt and call the LLM; returns ``(prompt, answer)``."""
    texts, images = retrieve(r, question, k_text, k_images)
    context, attached = build_context(texts, images)
    prompt = build_prompt(question, context)
    return prompt, llm(prompt, attached)


def load_llm(spec: str) -> LLM:
    """``echo`` or ``module:function`` naming a callable ``llm(prompt, image_paths) -> str``."""
    if spec == "echo":
        return echo_llm
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"--llm {spec!r} is not 'echo' or 'module:function'.")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--encoder", default=None, help="encoder name; default: the library default (lit:default)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with clipart.jsonl (default: examples/data)")
    parser.add_argument("--limit", type=int, default=0, help="ingest at most this many images (0: all)")
    parser.add_argument("--k-text", type=int, default=3)
    parser.add_argument("--k-images", type=int, default=4)
    parser.add_argument("--llm", default="echo", help="'echo' (placeholder) or module:function")
    args = parser.parse_args(argv)

    llm = load_llm(args.llm)
    with tempfile.TemporaryDirectory(prefix="mmgr-rag-") as tmp:
        options = {} if args.encoder is None else {"encoder": args.encoder}
        with MultimodalRetriever.create("rag", path=Path(tmp) / "store", **options) as r:
            ingest(r, args.data, args.limit, Path(tmp) / "images")
            prompt, reply = answer(r, args.question, llm, k_text=args.k_text, k_images=args.k_images)
        # Printed while the temporary folder (and any generated image) still exists.
        print("\n=== prompt sent to the LLM ===")
        print(prompt)
        print("\n=== LLM answer ===")
        print(reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
