"""Ingest and dense-search costs of the foundation (issue: foundation).

Measures, in one run:
- ingest of 512 images through ``add_images`` with a random-init open_clip ViT-B-32 (the real
  compute cost) against encoding the same images alone: ``ingest_overhead_ratio`` (target <= 1.10);
- upsert rate of 50,000 512-d vectors through ``add_embeddings`` on Qdrant Edge, beside a raw
  ``qdrant_edge`` upsert of the same vectors (``edge_upsert_vs_raw``);
- median dense top-10 query time on Edge and on QdrantClient local mode.

Run: ``.venv/bin/python -m benchmarks.ingest [--json] [--images 512] [--vectors 50000]``
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import parser, report, timed


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--vectors", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()

    import torch
    from PIL import Image
    from qdrant_client import QdrantClient

    from mmgr_qdrant import MultimodalRetriever
    from mmgr_qdrant.encoders import get_encoder

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="mmgr-bench-"))
    img_dir = tmp / "images"
    img_dir.mkdir()
    paths = []
    for i in range(args.images):
        p = img_dir / f"{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 255, size=(256, 256, 3), dtype=np.uint8)).save(p, quality=90)
        paths.append(p)

    encoder = get_encoder("open_clip:ViT-B-32/none")
    encoder.encode_images(paths[:32])  # warm up
    t_encode, _ = timed(lambda: encoder.encode_images(paths, batch_size=64))
    with MultimodalRetriever.create("bench_images", path=tmp / "edge", encoder=encoder) as r:
        t_ingest, ids = timed(lambda: r.add_images(paths, batch_size=64))
        assert len(ids) == args.images
    overhead = t_ingest / t_encode

    vecs = rng.normal(size=(args.vectors, 512)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = vecs[rng.choice(args.vectors, args.queries, replace=False)] + 0.05 * rng.normal(size=(args.queries, 512)).astype(np.float32)

    import qdrant_edge as qe

    raw = qe.EdgeShard.create(str(tmp / "raw"), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=512, distance=qe.Distance.Cosine)))
    def raw_upsert() -> None:
        for s in range(0, args.vectors, 1024):
            raw.update(qe.UpdateOperation.upsert_points([qe.Point(s + i, vecs[s + i], {}) for i in range(min(1024, args.vectors - s))]))
    t_raw, _ = timed(raw_upsert)
    raw.close()

    with MultimodalRetriever.create("bench_vectors", path=tmp / "edge", encoder=encoder) as r:
        t_edge, _ = timed(lambda: r.add_embeddings(vecs, modality="image", ids=list(range(args.vectors))))
        r.search(vector=queries[0], k=10, mode="dense")
        lat = []
        for q in queries:
            t0 = time.perf_counter()
            r.search(vector=q, k=10, mode="dense")
            lat.append(time.perf_counter() - t0)
        edge_query_ms = statistics.median(lat) * 1000

    client = QdrantClient(":memory:")
    try:
        with MultimodalRetriever.create("bench_local", client=client, encoder=encoder) as r:
            t_local, _ = timed(lambda: r.add_embeddings(vecs, modality="image", ids=list(range(args.vectors))))
            lat = []
            for q in queries[:10]:
                t0 = time.perf_counter()
                r.search(vector=q, k=10, mode="dense")
                lat.append(time.perf_counter() - t0)
            local_query_ms = statistics.median(lat) * 1000
    finally:
        client.close()

    figures = {
        "images": args.images,
        "encode_s": round(t_encode, 3),
        "ingest_s": round(t_ingest, 3),
        "ingest_overhead_ratio": round(overhead, 4),
        "vectors": args.vectors,
        "edge_upsert_per_s": round(args.vectors / t_edge, 1),
        "raw_edge_upsert_per_s": round(args.vectors / t_raw, 1),
        "edge_upsert_vs_raw": round(t_edge / t_raw, 3),
        "edge_query_ms": round(edge_query_ms, 3),
        "local_upsert_per_s": round(args.vectors / t_local, 1),
        "local_query_ms": round(local_query_ms, 3),
        "local_over_edge_query": round(local_query_ms / edge_query_ms, 2),
    }
    report("ingest and dense search", list(figures.items()), figures, args.json)


if __name__ == "__main__":
    main()
