"""Docid schemes side by side on synthetic clustered 512-d vectors (default 100,000 points).

The data imitates CLIP embeddings: ``clusters`` concepts of Zipf-like sizes; every item exists as a
text and an image (half the points each), and the two modalities sit in separate cones (a modality
gap). Per scheme: fit time, assign time for all points, reconstruction error (k-means schemes), per
level usage / perplexity / largest bucket, collisions before the tie-break, purity of the first
level against the true concepts, and ``xmodal`` = share of (text, image) pairs of one item whose
semantic codes agree at level 1 (what lets a text query reach image docids).

    python -m benchmarks.docids [--n 100000] [--schemes rq,rq+bal,...] [--json]

Run it alone: the machines are shared, so compare the rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from typing import Any

import numpy as np

from mmgr_qdrant.docids import add_tiebreak, docid_stats, get_scheme
from mmgr_qdrant.types import MODALITY_CODES

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "rq": ("rq", {}),
    "rq+bal": ("rq", {"balanced": True}),
    "rq+refine": ("rq", {"refine": True, "refine_epochs": 3}),
    "rq+bal+refine": ("rq", {"balanced": True, "refine": True, "refine_epochs": 3}),
    "rq-nocenter": ("rq", {"center_modalities": False}),
    "rq-k256-l3": ("rq", {"levels": 3, "k": 256}),
    "hkmeans": ("hkmeans", {}),
    "hkmeans+bal": ("hkmeans", {"balanced": True}),
    "pq": ("pq", {}),
    "pq+bal": ("pq", {"balanced": True}),
    "lsh": ("lsh", {}),
    "lsh+bal": ("lsh", {"balanced": True}),
}


def _normalize(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic(n: int, d: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` vectors: texts in rows ``[0, n/2)``, their images in ``[n/2, n)``; returns (x, modalities, concept)."""
    rng = np.random.default_rng(seed)
    half = n // 2
    centers = _normalize(rng.standard_normal((clusters, d)).astype(np.float32))
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7  # Zipf-like concept sizes
    concept = rng.choice(clusters, size=half, p=weights / weights.sum())
    items = _normalize(centers[concept] + rng.standard_normal((half, d)).astype(np.float32) / np.sqrt(d))
    gap = _normalize(rng.standard_normal((2, d)).astype(np.float32)) * 0.8
    x = np.empty((2 * half, d), np.float32)
    x[:half] = items + gap[0] + 0.4 * rng.standard_normal((half, d)).astype(np.float32) / np.sqrt(d)
    x[half:] = items + gap[1] + 0.4 * rng.standard_normal((half, d)).astype(np.float32) / np.sqrt(d)
    _normalize(x)
    m = np.repeat([MODALITY_CODES["text"], MODALITY_CODES["image"]], half).astype(np.int32)
    return x, m, np.concatenate([concept, concept])


def purity(codes: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose level-1 bucket's majority concept is their own."""
    pairs, counts = np.unique(np.stack([codes, labels], axis=1), axis=0, return_counts=True)
    best = np.zeros(int(codes.max()) + 1, np.int64)
    np.maximum.at(best, pairs[:, 0], counts)
    return float(best.sum() / len(labels))


def recon_mse(scheme: Any, x: np.ndarray, m: np.ndarray, codes: np.ndarray) -> float | None:
    """Mean squared error of the reconstruction, in the scheme's (centered, normalized) input space."""
    pre = scheme.preprocess(x, m)
    if hasattr(scheme, "reconstruct"):
        return float(((scheme.reconstruct(codes) - pre) ** 2).sum(axis=1).mean())
    if hasattr(scheme, "reconstruct_nodes"):
        return float(((scheme.reconstruct_nodes(pre) - pre) ** 2).sum(axis=1).mean())
    return None


def run_variant(label: str, x: np.ndarray, m: np.ndarray, concept: np.ndarray, seed: int) -> dict[str, Any]:
    name, params = VARIANTS[label]
    scheme = get_scheme(name, **params)
    t0 = time.perf_counter()
    scheme.fit(x, m, seed=seed)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    codes = scheme.assign(x, m)
    assign_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    docids = add_tiebreak(codes)
    tiebreak_s = time.perf_counter() - t0
    st = docid_stats(docids, scheme.codebook_sizes())
    half = len(x) // 2
    sub = np.random.default_rng(0).choice(len(x), size=min(len(x), 20000), replace=False)
    row: dict[str, Any] = {
        "variant": label,
        "fit_s": round(fit_s, 2),
        "assign_s": round(assign_s, 2),
        "tiebreak_s": round(tiebreak_s, 2),
        "sizes": scheme.codebook_sizes()[1:],
        "recon_mse": recon_mse(scheme, x[sub], m[sub], codes[sub]),
        "usage": [round(lv.usage, 3) for lv in st.levels[1:]],
        "perplexity": [round(lv.perplexity, 1) for lv in st.levels[1:]],
        "largest_bucket": [lv.largest_bucket for lv in st.levels[1:]],
        "mean_bucket": [round(lv.mean_bucket, 1) for lv in st.levels[1:]],
        "collision_rate": round(st.collision_rate, 4),
        "max_tiebreak": st.max_tiebreak,
        "l1_purity": round(purity(codes[:, 1], concept), 4),
        "xmodal_l1": round(float((codes[:half, 1] == codes[half:, 1]).mean()), 4),
        "refined": getattr(scheme, "refined", None),
    }
    if row["recon_mse"] is not None:
        row["recon_mse"] = round(row["recon_mse"], 4)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schemes", default=",".join(VARIANTS), help=f"comma-separated, from {','.join(VARIANTS)}")
    p.add_argument("--json", action="store_true", help="print one JSON line with all figures last")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    t0 = time.perf_counter()
    x, m, concept = synthetic(args.n, args.dim, args.clusters, args.seed)
    print(f"data: {len(x)} x {args.dim}, {args.clusters} concepts, made in {time.perf_counter() - t0:.1f} s")
    rows = []
    for label in args.schemes.split(","):
        rows.append(run_variant(label.strip(), x, m, concept, args.seed))
        r = rows[-1]
        print(
            f"{r['variant']:<14} fit {r['fit_s']:>6.2f}s assign {r['assign_s']:>5.2f}s sizes {r['sizes']} "
            f"mse {r['recon_mse']} usage {r['usage']} ppl {r['perplexity']} largest {r['largest_bucket']} "
            f"mean {r['mean_bucket']} coll {r['collision_rate']:.3f} maxtie {r['max_tiebreak']} "
            f"pur {r['l1_purity']:.3f} xmodal {r['xmodal_l1']:.3f}",
            flush=True,
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB")
    if args.json:
        print(json.dumps({"n": len(x), "dim": args.dim, "clusters": args.clusters, "peak_rss_mb": round(peak_mb), "rows": rows}))


if __name__ == "__main__":
    main()
