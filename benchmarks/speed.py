"""Speed and scale against the engine's own search: raw Edge HNSW, raw exact, dense and hybrid, in one run.

Data, split by construction (queries are never indexed):

* **fmnist**: the Fashion-MNIST *test* images through ``lit:default`` (embeddings cached under
  ``.cache/bench``); the first ``10000 - --real-queries`` are indexed, the rest are image queries.
* **synthetic**: clustered 512-d unit vectors (the retrieval benchmark's set: 1,000 topics,
  noise 0.6) at ``--n`` (100,000) and, with ``--n-large``, a larger size; the last rows are queries.

Per size, on Qdrant Edge through the public API plus the store (``r.store``): add rate before the
build and into the built index (same chunk size), build time and peak RSS (VmHWM, reset before
the build; printed with the resident memory just before it and this benchmark's own input arrays,
which the peak includes), open time (docid log replay, and a full scan for comparison), then per query,
raw exact (in a pass of its own: the ground truth), then interleaved (the same query through every
path back to back): raw Edge HNSW (``shard.query``), ``search(mode="dense")`` and ``search()``
(hybrid), with recall@10 of each against raw exact, p50 and p95; batches of 64 through ``search_batch`` and the raw batch call; the router
alone (``routing.admit_batch``: decoder, prior, mass admission) and the raw filtered query it leads to; the mean number
of level-1 codes a query's admitted prefixes touch and the shards a 16- and 64-shard layout
(level-1 code -> shard) would fan out to.

    python benchmarks/speed.py --json                       # fmnist 10k + synthetic 100k
    python benchmarks/speed.py --skip-real --n 20000        # a quick look
    python benchmarks/speed.py --skip-real --n-large 1000000 --json

Figures are ratios within one run on a shared machine; they are never timed tests.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

# One BLAS thread, set before numpy loads: the router's matmuls are small, and on a busy 2-core
# machine OpenBLAS's threads spin against each other (a batch of 64 routed 5x slower with them).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

from benchmarks._common import parser, report, status_mb
from benchmarks.retrieval import _VectorsOnly, peak_mb, reset_peak, synthetic

TARGETS = {"hybrid_over_hnsw_p50": 1.5, "hybrid_recall_over_exact": 0.99, "dense_minus_hnsw_p50_ms": 0.3,
           "hybrid_over_dense_p50_10k": 1.2, "built_over_unbuilt_add_rate": 0.8, "router_1q_ms": 0.5, "router_batch_ms_per_query": 0.1}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def run_size(name: str, x: np.ndarray, qs: np.ndarray, args: Any, root: Path, time_budget_s: float) -> dict[str, Any]:
    import qdrant_edge as qe

    from mmgr_qdrant import MultimodalRetriever
    from mmgr_qdrant.generative import GenerativeIndex
    from mmgr_qdrant.routing import Admission, admit_batch

    n, d = x.shape
    out: dict[str, Any] = {"name": name, "n": n, "queries": len(qs)}
    r = MultimodalRetriever.create(name, path=root, encoder=_VectorsOnly(d))
    n_late = max(1000, n // 20)  # added after the build; the same-size chunk is timed before it too
    base = n - n_late
    t = time.perf_counter()
    r.add_embeddings(x[: base - n_late], modality="image", ids=list(range(base - n_late)), batch_size=4096)
    t1 = time.perf_counter()
    r.add_embeddings(x[base - n_late : base], modality="image", ids=list(range(base - n_late, base)), batch_size=4096)
    t2 = time.perf_counter()
    out["add_per_s_unbuilt"] = n_late / (t2 - t1)
    out["add_s"] = t2 - t
    gc.collect()
    # what the process holds before the build: this benchmark's own vectors and queries (inputs_mb),
    # the engine's shard and the library; the build's peak counts all of it
    out["inputs_mb"] = (x.nbytes + qs.nbytes) / 2**20
    out["rss_before_build_mb"] = status_mb("VmRSS")
    reset_peak()
    rep = r.build(seed=args.seed, time_budget_s=time_budget_s)
    out.update(build_s=rep.total_s, fit_s=rep.fit_s, train_s=rep.train_s, build_peak_mb=peak_mb())
    t = time.perf_counter()
    r.add_embeddings(x[base:], modality="image", ids=list(range(base, n)), batch_size=4096)
    out["add_per_s_built"] = n_late / (time.perf_counter() - t)
    out["built_over_unbuilt_add_rate"] = out["add_per_s_built"] / out["add_per_s_unbuilt"]
    t = time.perf_counter()
    r.store.ensure_index(threshold=0)  # the late adds into the graph too
    out["reindex_s"] = time.perf_counter() - t
    info = r.store.index_info()
    out["indexed_vectors"], out["points"] = info.indexed_vectors, info.points
    r.close()
    t = time.perf_counter()
    r = MultimodalRetriever.open(name, path=root, encoder=_VectorsOnly(d))
    out["open_s"] = time.perf_counter() - t
    t = time.perf_counter()
    GenerativeIndex.load(r.store, scan=True)
    out["open_scan_s"] = time.perf_counter() - t
    gen = GenerativeIndex.load(r.store)
    assert gen is not None
    hc = r.config.hybrid
    shard = r.store.shard  # type: ignore[attr-defined]

    def raw(q: np.ndarray, exact: bool = False, flt: Any = None) -> list[Any]:
        return shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(q), filter=flt, with_payload=True,
                                           params=qe.SearchParams(exact=exact)))

    def router(q: np.ndarray) -> Admission:  # what hybrid search runs before its engine call
        return admit_batch(gen, q[None, :], hc, k=10, modality=None)[1][0]

    from mmgr_qdrant.store.edge import to_edge_filter

    # Exact search first, in its own pass: it streams every vector through the caches, and timed
    # between the others it left the next path (dense, right after it) cold: 0.4-0.6 ms of the gap
    # between dense and raw HNSW was that, not the library.
    times: dict[str, list[float]] = {"exact": []}
    results: dict[str, list[Any]] = {"exact": []}
    for q in qs:
        t = time.perf_counter()
        results["exact"].append([p.id for p in raw(q, exact=True)])
        times["exact"].append(time.perf_counter() - t)
    paths = {
        "hnsw": lambda q: [p.id for p in raw(q)],
        "dense": lambda q: [h.id for h in r.search(vector=q, k=10, mode="dense")],
        "hybrid": lambda q: [h.id for h in r.search(vector=q, k=10)],
        "router": router,
    }
    times.update({k: [] for k in [*paths, "filtered_raw"]})
    results.update({k: [] for k in paths})
    for fn in paths.values():
        fn(qs[0])  # warm-up
    for q in qs:
        for key, fn in paths.items():
            t = time.perf_counter()
            results[key].append(fn(q))
            times[key].append(time.perf_counter() - t)
        flt = to_edge_filter(gen.prefix_filter([p for p, _ in results["router"][-1].pairs]))
        t = time.perf_counter()
        raw(q, flt=flt)
        times["filtered_raw"].append(time.perf_counter() - t)
    for key, v in times.items():
        out[f"{key}_p50_ms"], out[f"{key}_p95_ms"] = pct(v, 50), pct(v, 95)
    exact = [set(ids) for ids in results["exact"]]
    for key in ("hnsw", "dense", "hybrid"):
        out[f"{key}_recall@10"] = float(np.mean([len(set(ids) & e) / 10 for ids, e in zip(results[key], exact)]))
    out["hybrid_recall_over_exact"] = out["hybrid_recall@10"]
    out["hybrid_over_hnsw_p50"] = out["hybrid_p50_ms"] / out["hnsw_p50_ms"]
    out["dense_minus_hnsw_p50_ms"] = out["dense_p50_ms"] - out["hnsw_p50_ms"]
    out["hybrid_over_dense_p50"] = out["hybrid_p50_ms"] / out["dense_p50_ms"]
    # level-1 fan-out: the codes a query's admitted prefixes touch, and the shards they map to
    k1 = int(gen.trie.max_codes()[1]) + 1
    codes = [sorted({p[1] for p, _ in adm.pairs}) for adm in results["router"]]
    out["prefixes_per_query"] = float(np.mean([len(adm.pairs) for adm in results["router"]]))
    out["admitted_per_query"] = float(np.mean([adm.n_admitted for adm in results["router"]]))
    out["level1_codes"] = k1
    out["level1_codes_per_query"] = float(np.mean([len(c) for c in codes]))
    for shards in (16, 64):
        out[f"shards_per_query_{shards}"] = float(np.mean([len({c * shards // k1 for c in cs}) for cs in codes]))
    # batches of 64, interleaved the same way
    batches = [qs[i : i + 64] for i in range(0, len(qs) - 63, 64)] or [qs]
    bpaths = {
        "hnsw_batch": lambda b: shard.query_batch(qe.QueryBatchRequest([qe.QueryRequest(limit=10, query=qe.Query.Nearest(v), with_payload=True) for v in b])),
        "dense_batch": lambda b: r.search_batch(vectors=b, k=10, mode="dense"),
        "hybrid_batch": lambda b: r.search_batch(vectors=b, k=10),
        "router_batch": lambda b: admit_batch(gen, b, hc, k=10, modality=None),
    }
    btimes: dict[str, list[float]] = {k: [] for k in bpaths}
    for fn in bpaths.values():
        fn(batches[0])
    for _ in range(max(1, 4 // len(batches))):
        for b in batches:
            for key, fn in bpaths.items():
                t = time.perf_counter()
                fn(b)
                btimes[key].append(time.perf_counter() - t)
    out.update({f"{k}_ms_per_query": statistics.median(v) * 1e3 / len(batches[0]) for k, v in btimes.items()})
    r.close()
    return out


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="synthetic points of the main size (0: skip)")
    ap.add_argument("--n-large", type=int, default=0, help="synthetic points of a large size (0: skip)")
    ap.add_argument("--skip-real", action="store_true", help="skip Fashion-MNIST")
    ap.add_argument("--real-queries", type=int, default=300, help="held-out Fashion-MNIST images used as queries")
    ap.add_argument("--queries", type=int, default=200, help="held-out synthetic queries per size")
    ap.add_argument("--budget", type=float, default=60.0, help="decoder training seconds per build")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="mmgr-speed-"))
    figures: dict[str, Any] = {"loadavg_start": round(os.getloadavg()[0], 2), "torch_threads": torch.get_num_threads(),
                               "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}
    runs = []
    if not args.skip_real:
        from benchmarks import _data

        fm, _ = _data.fashion_mnist(_data.load_encoder("lit:default"))
        x = fm.images
        runs.append(run_size("fmnist", x[: len(x) - args.real_queries], x[len(x) - args.real_queries :], args, root, args.budget))
        gc.collect()
    for n in (args.n, args.n_large):
        if n:
            data = synthetic(n + args.queries, 512, seed=args.seed)
            x, qs = data[:n], data[n:]
            del data
            runs.append(run_size(f"syn{n}", x, qs, args, root, args.budget))
            del x
            gc.collect()
    figures["runs"] = runs
    print("\nLatency in ms (p50 / p95), recall@10 against raw exact; batches of 64 in ms per query")
    print(f"{'run':<10}{'n':>8} {'hnsw':>11} {'exact':>11} {'dense':>11} {'hybrid':>11} {'router':>11} {'filt raw':>11}"
          f" {'R hnsw':>7}{'R dense':>8}{'R hyb':>7} {'hnsw/b':>7}{'dense/b':>8}{'hyb/b':>7}{'rout/b':>7}")
    rows: list[tuple[str, Any]] = []
    for s in runs:
        def cell(k: str, s: dict[str, Any] = s) -> str:
            return f"{s[k + '_p50_ms']:.2f}/{s[k + '_p95_ms']:.2f}"

        print(f"{s['name']:<10}{s['n']:>8} {cell('hnsw'):>11} {cell('exact'):>11} {cell('dense'):>11} {cell('hybrid'):>11} {cell('router'):>11}"
              f" {cell('filtered_raw'):>11} {s['hnsw_recall@10']:>7.3f}{s['dense_recall@10']:>8.3f}{s['hybrid_recall@10']:>7.3f}"
              f" {s['hnsw_batch_ms_per_query']:>7.3f}{s['dense_batch_ms_per_query']:>8.3f}{s['hybrid_batch_ms_per_query']:>7.3f}{s['router_batch_ms_per_query']:>7.3f}")
    print(f"\n{'run':<10}{'add/s unbuilt':>14}{'add/s built':>12}{'ratio':>7}{'build s':>8}{'peak MB':>8}{'before MB':>10}{'inputs MB':>10}"
          f"{'reindex s':>10}{'open s':>7}{'scan s':>7}{'L1/query':>9}{'shards@16':>10}{'shards@64':>10}")
    for s in runs:
        print(f"{s['name']:<10}{s['add_per_s_unbuilt']:>14.0f}{s['add_per_s_built']:>12.0f}{s['built_over_unbuilt_add_rate']:>7.2f}{s['build_s']:>8.1f}"
              f"{s['build_peak_mb']:>8.0f}{s['rss_before_build_mb']:>10.0f}{s['inputs_mb']:>10.0f}{s['reindex_s']:>10.1f}{s['open_s']:>7.2f}"
              f"{s['open_scan_s']:>7.2f}{s['level1_codes_per_query']:>9.1f}"
              f"{s['shards_per_query_16']:>10.1f}{s['shards_per_query_64']:>10.1f}")
        rows += [(f"{s['name']} hybrid/hnsw p50", s["hybrid_over_hnsw_p50"]), (f"{s['name']} dense-hnsw p50 ms", s["dense_minus_hnsw_p50_ms"]),
                 (f"{s['name']} hybrid/dense p50", s["hybrid_over_dense_p50"]), (f"{s['name']} hybrid recall@10", s["hybrid_recall@10"]),
                 (f"{s['name']} router p50 ms", s["router_p50_ms"]), (f"{s['name']} router batch ms/q", s["router_batch_ms_per_query"]),
                 (f"{s['name']} built/unbuilt add rate", s["built_over_unbuilt_add_rate"])]
    figures["seconds"] = round(time.perf_counter() - t_start, 1)
    figures["loadavg_end"] = round(os.getloadavg()[0], 2)
    figures["targets"] = TARGETS
    report("Ratios (targets: hybrid/hnsw <= 1.5 at 100k+, dense-hnsw <= 0.3 ms, hybrid/dense <= 1.2 at 10k, add ratio >= 0.8)",
           rows, figures, args.json)


if __name__ == "__main__":
    main()
