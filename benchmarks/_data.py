"""Real benchmark data through an encoder, embedded once and cached.

* Fashion-MNIST *test* split (10,000 images, 10 classes) from ``dataset-fashion-mnist``;
  class prompts from ``scripts/prepare_data.py`` (``FMNIST_CLASSES`` x ``FMNIST_TEMPLATES``).
* The sample openclipart set in ``examples/data/clipart.jsonl`` (300 images, captions, keywords).

Embeddings are cached under ``.cache/bench/<encoder>-<head digest>/`` (git-ignored): Fashion-MNIST
through ``lit:default`` takes about 20 s of two busy cores, and every benchmark run needs it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# One reader of the data and one set of class prompts, shared with training and the other benchmarks.
from scripts.prepare_data import FMNIST, FMNIST_CLASSES, FMNIST_TEMPLATES, read_idx

CACHE = REPO / ".cache" / "bench"
CLIPART = REPO / "examples" / "data" / "clipart.jsonl"


@dataclass
class ImageSet:
    """Images embedded by one encoder, with what makes a hit relevant."""

    name: str
    images: np.ndarray  # (n, d) float32 unit rows
    labels: list[frozenset[str]]  # per image: its labels (one class, or its keywords)
    queries: np.ndarray  # (m, d) float32 text-query embeddings
    query_labels: list[frozenset[str]]  # per query: labels that make an image relevant
    query_texts: list[str]
    query_self: list[int]  # per query: the image it was written for, or -1
    embed_s: float  # seconds spent embedding (0 when cached)


def _weights_digest(path: Any) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:10] if path and Path(path).is_file() else "noweights"


def load_encoder(name: str = "lit:default") -> Any:
    """The encoder, tagged with a digest of the weights it loaded (the cache key, with its name)."""
    from mmgr_qdrant.encoders.base import get_encoder

    path = None
    if name.startswith("lit:"):
        from mmgr_qdrant.encoders.lit import resolve_head_path

        path = resolve_head_path("" if name in ("lit:", "lit:default") else name[4:])
    for _ in range(3):  # the head file rewritten while it loads: load again
        before = _weights_digest(path)
        enc = get_encoder(name)
        if _weights_digest(path) == before:
            enc._bench_digest = before
            return enc
    raise RuntimeError(f"the weights of {name} keep changing; try again later")


def _cache_dir(encoder: Any) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(encoder.name))
    digest = getattr(encoder, "_bench_digest", None) or _weights_digest(getattr(encoder, "head_path", None))
    path = CACHE / f"{name}-{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(path: Path, make: Any) -> tuple[np.ndarray, float]:
    if path.is_file():
        return np.load(path), 0.0
    t = time.perf_counter()
    arr = np.asarray(make(), dtype=np.float32)
    secs = time.perf_counter() - t
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)
    return arr, secs


def fashion_mnist(encoder: Any, limit: int | None = None) -> tuple[ImageSet, np.ndarray]:
    """The test split: images, class-prompt queries (5 templates x 10 classes); also the labels."""
    images, labels = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz", FMNIST / "t10k-labels-idx1-ubyte.gz")
    d = _cache_dir(encoder)
    emb, s1 = _cached(d / "fmnist_test_images.npy", lambda: encoder.encode_images(list(images), batch_size=128))
    texts = [t.format(c) for c in FMNIST_CLASSES for t in FMNIST_TEMPLATES]
    qlab = [frozenset([c]) for c in FMNIST_CLASSES for _ in FMNIST_TEMPLATES]
    q, s2 = _cached(d / "fmnist_prompts.npy", lambda: encoder.encode_texts(texts))
    n = len(emb) if limit is None else min(limit, len(emb))
    labs = [frozenset([FMNIST_CLASSES[int(y)]]) for y in labels[:n]]
    return ImageSet("fashion-mnist", emb[:n], labs, q, qlab, texts, [-1] * len(texts), s1 + s2), labels[:n].astype(np.int64)


def clipart(encoder: Any) -> ImageSet:
    """The 300 sample clip-art images; each caption queries the images, keywords are the labels."""
    rows = [json.loads(line) for line in CLIPART.read_text().splitlines() if line.strip()]
    d = _cache_dir(encoder)
    paths = [str(CLIPART.parent / r["file"]) for r in rows]
    emb, s1 = _cached(d / "clipart_images.npy", lambda: encoder.encode_images(paths, batch_size=64))
    captions = [r["caption"] for r in rows]
    q, s2 = _cached(d / "clipart_captions.npy", lambda: encoder.encode_texts(captions))
    labs = [frozenset(k.lower() for k in r.get("keywords", [])) for r in rows]
    return ImageSet("clipart", emb, labs, q, labs, captions, list(range(len(rows))), s1 + s2)


if __name__ == "__main__":  # warm the cache: python -m benchmarks._data
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    enc = load_encoder("lit:default")
    t = time.perf_counter()
    fm, _ = fashion_mnist(enc)
    cl = clipart(enc)
    print(f"fashion-mnist {fm.images.shape} ({fm.embed_s:.1f} s), clipart {cl.images.shape} ({cl.embed_s:.1f} s), total {time.perf_counter() - t:.1f} s")
