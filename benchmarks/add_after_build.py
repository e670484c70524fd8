"""Adding documents to a built index vs to an unbuilt one, at 100,000 documents on Edge.

Once an index is built, every add also assigns docids with the frozen scheme (nearest code per
level, a free tie-break code), updates the docid trie (copy on write, so searches running at the
same time keep a consistent trie) and stores the docid fields. In one run, on synthetic clustered
vectors: two collections of ``--n`` documents, one built (a short decoder training: the decoder
plays no part in adding), one not; then ``--extra`` more documents are added to each in batches
of ``--batch``. ``built_over_unbuilt`` is the slowdown that docids cost.

    python -m benchmarks.add_after_build [--n 100000] [--extra 5120] [--batch 256] [--json]
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from benchmarks._common import parser, report
from mmgr_qdrant import MultimodalRetriever


class VectorsOnly:
    """An encoder stand-in: this benchmark adds embeddings, it never encodes."""

    name = "vectors:none"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode_texts(self, texts: Any) -> np.ndarray:
        raise NotImplementedError("this benchmark adds embeddings only")

    def encode_images(self, images: Any) -> np.ndarray:
        raise NotImplementedError("this benchmark adds embeddings only")


def clustered(n: int, dim: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    x = centers[rng.integers(0, len(centers), n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def adds_per_s(base: np.ndarray, extra: np.ndarray, batch: int, build: bool) -> float:
    with tempfile.TemporaryDirectory() as path:
        r = MultimodalRetriever.create("adds", path=path, encoder=VectorsOnly(base.shape[1]))
        try:
            r.add_embeddings(base, modality="image", batch_size=4096)
            if build:
                r.build(seed=0, time_budget_s=5)
            t0 = time.perf_counter()
            for i in range(0, len(extra), batch):
                r.add_embeddings(extra[i : i + batch], modality="image")
            return len(extra) / (time.perf_counter() - t0)
        finally:
            r.close()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--extra", type=int, default=5120)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dim", type=int, default=128)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(500, args.dim))
    base, extra = clustered(args.n, args.dim, rng, centers), clustered(args.extra, args.dim, rng, centers)
    built = adds_per_s(base, extra, args.batch, build=True)
    unbuilt = adds_per_s(base, extra, args.batch, build=False)
    figures = {"n": args.n, "batch": args.batch, "built_adds_per_s": built, "unbuilt_adds_per_s": unbuilt,
               "built_over_unbuilt": unbuilt / built}
    report(f"Adds after a build ({args.n:,} documents, batches of {args.batch})",
           [("built index, docs/s", built), ("unbuilt index, docs/s", unbuilt), ("slowdown (unbuilt/built)", unbuilt / built)],
           figures, args.json)


if __name__ == "__main__":
    main()
