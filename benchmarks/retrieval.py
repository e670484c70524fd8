"""Retrieval quality and cost of hybrid search (issue: the generative core), everything in one run.

Real data, through the offline encoder (``lit:default``; embeddings cached under ``.cache/bench``):

* **fmnist-t2i**: the 10,000 Fashion-MNIST *test* images; 50 class prompts (10 classes x 5
  templates) query them; an image of the prompt's class is relevant.
* **fmnist-i2i**: the same index; ``--i2i-queries`` of its images query it (the query itself is
  left out of the hits); an image of the same class is relevant.
* **clipart-t2i**: the 300 sample openclipart images (``examples/data``); each caption queries
  them; its own image and every image sharing a keyword with it are relevant.

For each task: precision@10 and recall@100 of exact dense search, hybrid and generative-only,
``hybrid_over_dense`` (hybrid / dense precision@10), ``filter_fraction`` (mean share of the
corpus the prefix filter admits) and, at the same filter fraction, a **nearest-centroid router**
over the same level-1 codes (IVF: each code's centroid is the mean of its documents, a query
visits the centroids with the largest inner product, best first, until the same document budget
is spent), the baseline a learned decoder has to beat.

Synthetic clustered 512-d unit vectors (1,000 topics, noise of norm 0.6) at ``--n`` (100,000) and
``--n-large`` (1,000,000) points on Qdrant Edge through ``add_embeddings``: recall@10 of hybrid
against the exact top-10, filter fraction, per-stage latency (decode, filter + rank, end to end)
beside dense search on the same engine, single queries and batches of 64; build time (fit +
train) and peak memory (VmHWM, reset before each build).

    python -m benchmarks.retrieval                    # everything (about 15 min on 2 busy cores)
    python -m benchmarks.retrieval --skip-1m --json   # real data + 100k, table then one JSON line

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

import numpy as np

from benchmarks._common import parser, report, status_mb

TARGETS = {"hybrid_over_dense": 0.99, "filter_fraction": 0.10, "beam_1q_ms": 3.0, "beam_batch_ms_per_query": 0.5,
           "hybrid_over_dense_latency": 2.0, "build_100k_s": 300.0}


# -- memory ----------------------------------------------------------------------------------------
def reset_peak() -> None:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5), so VmHWM measures what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mb() -> float:
    """This process's peak RSS since the last :func:`reset_peak` (VmHWM), in MB."""
    return status_mb("VmHWM")


# -- helpers ---------------------------------------------------------------------------------------
def median_ms(fn: Any, items: list[Any]) -> float:
    fn(items[0])  # warm-up
    times = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def select_buckets(order: np.ndarray, counts: np.ndarray, budget: float, k: int) -> tuple[list[int], int]:
    """Buckets best first until the next would pass ``budget`` documents (at least ``k`` documents)."""
    chosen, total = [], 0
    for j in order:
        c = int(counts[j])
        if total >= k and total + c > budget:
            break
        chosen.append(int(j))
        total += c
    return chosen, total


class Router:
    """Nearest-centroid router (IVF) over the level-1 codes of a built index.

    Each code's centroid is the mean of its documents' vectors; a query visits centroids by inner
    product, best first, and spends the same document budget as hybrid search; the visited
    documents are ranked exactly.
    """

    def __init__(self, x: np.ndarray, codes: np.ndarray, budget: float) -> None:
        self.x = x
        self.codes = codes
        k1 = int(codes.max()) + 1
        self.counts = np.bincount(codes, minlength=k1)
        sums = np.zeros((k1, x.shape[1]), np.float64)
        np.add.at(sums, codes, x)
        self.centroids = (sums / np.maximum(self.counts, 1)[:, None]).astype(np.float32)
        self.budget = budget

    def search(self, q: np.ndarray, k: int, exclude: int | None = None) -> tuple[np.ndarray, int]:
        order = np.argsort(-(self.centroids @ q))
        chosen, admitted = select_buckets(order, self.counts, self.budget, k + (exclude is not None))
        rows = np.flatnonzero(np.isin(self.codes, chosen))
        s = self.x[rows] @ q
        if exclude is not None:
            s[rows == exclude] = -np.inf
        top = rows[np.argsort(-s)[:k]]
        return top, admitted


def level1_codes(r: Any, n: int) -> np.ndarray:
    """Each document's level-1 code (ids are 0..n-1), read from the stored docids."""
    gen = r.index.generative
    out = np.full(n, -1, np.int64)
    for page in r.store.scroll(batch_size=4096):
        for rec in page:
            d = rec.payload["_mmgr"]["docids"][str(gen.generation)]
            out[int(rec.id)] = d[1]
    return out


# -- real data -------------------------------------------------------------------------------------
def eval_task(r: Any, name: str, x: np.ndarray, labels: list[frozenset[str]], queries: np.ndarray,
              qlabels: list[frozenset[str]], qself: list[int], exclude_self: bool, router: Router) -> dict[str, Any]:
    """Precision@10 and recall@100 of every mode, the filter fraction and the router, for one task."""
    n = len(x)
    rel = [np.flatnonzero([bool(ql & lab) for lab in labels]) for ql in qlabels]
    for i, s in enumerate(qself):  # a caption's own image is relevant even without keywords
        if s >= 0 and not exclude_self and s not in set(rel[i]):
            rel[i] = np.append(rel[i], s)
    if exclude_self:
        rel = [r_[r_ != s] for r_, s in zip(rel, qself)]
    out: dict[str, Any] = {"task": name, "n_docs": n, "n_queries": len(queries)}
    fractions = []
    for mode in ("dense", "hybrid", "generative"):
        p10, r100 = [], []
        for i, q in enumerate(queries):
            ex = qself[i] if exclude_self else None
            extra = 1 if ex is not None else 0
            hits10 = r.search(vector=q, k=10 + extra, mode=mode, modality="image", explain=(mode == "hybrid"))
            if mode == "hybrid" and hits10 and hits10[0].explain:
                fractions.append(hits10[0].explain.get("admitted", float("nan")) / n)
            hits100 = r.search(vector=q, k=100 + extra, mode=mode, modality="image")
            top10 = [int(h.id) for h in hits10 if int(h.id) != ex][:10]
            top100 = [int(h.id) for h in hits100 if int(h.id) != ex][:100]
            relset = {int(v) for v in rel[i]}
            p10.append(sum(h in relset for h in top10) / 10)
            r100.append(sum(h in relset for h in top100) / max(1, len(relset)))
        out[f"{mode}_p@10"] = float(np.mean(p10))
        out[f"{mode}_r@100"] = float(np.mean(r100))
    out["filter_fraction"] = float(np.mean(fractions))
    # the router at the same budget
    p10, r100, adm = [], [], []
    for i, q in enumerate(queries):
        ex = qself[i] if exclude_self else None
        relset = {int(v) for v in rel[i]}
        top, a = router.search(q, 10, ex)
        p10.append(sum(int(h) in relset for h in top) / 10)
        adm.append(a / n)
        top, _ = Router.search(router, q, 100, ex)
        r100.append(sum(int(h) in relset for h in top) / max(1, len(relset)))
    out["router_p@10"] = float(np.mean(p10))
    out["router_r@100"] = float(np.mean(r100))
    out["router_filter_fraction"] = float(np.mean(adm))
    out["hybrid_over_dense"] = out["hybrid_p@10"] / max(out["dense_p@10"], 1e-12)
    out["router_over_dense"] = out["router_p@10"] / max(out["dense_p@10"], 1e-12)
    return out


def build_real(name: str, x: np.ndarray, encoder: Any, root: Path, args: Any) -> tuple[Any, dict[str, Any]]:
    from mmgr_qdrant import MultimodalRetriever

    r = MultimodalRetriever.create(name, path=root / name, encoder=encoder)
    r.add_embeddings(x, modality="image", ids=list(range(len(x))))
    rep = r.build(seed=args.seed)
    return r, {"build_s": rep.total_s, "fit_s": rep.fit_s, "train_s": rep.train_s,
               "val_level_accuracy": [round(a, 3) for a in rep.train["val_level_accuracy"]]}


def run_real(args: Any, root: Path) -> list[dict[str, Any]]:
    from benchmarks import _data

    encoder = _data.load_encoder(args.encoder)
    tasks = []
    fm, _ = _data.fashion_mnist(encoder, limit=args.fmnist_limit)
    r, info = build_real("fmnist", fm.images, encoder, root, args)
    budget = r.config.hybrid.max_fraction * len(fm.images)
    router = Router(fm.images, level1_codes(r, len(fm.images)), budget)
    t2i = eval_task(r, "fmnist-t2i", fm.images, fm.labels, fm.queries, fm.query_labels, fm.query_self, False, router)
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(fm.images), min(args.i2i_queries, len(fm.images)), replace=False))
    i2i = eval_task(r, "fmnist-i2i", fm.images, fm.labels, fm.images[pick], [fm.labels[i] for i in pick], list(pick), True, router)
    for t in (t2i, i2i):
        t.update(info)
    tasks += [t2i, i2i]
    r.close()
    cl = _data.clipart(encoder)
    r, info = build_real("clipart", cl.images, encoder, root, args)
    router = Router(cl.images, level1_codes(r, len(cl.images)), r.config.hybrid.max_fraction * len(cl.images))
    c = eval_task(r, "clipart-t2i", cl.images, cl.labels, cl.queries, cl.query_labels, cl.query_self, False, router)
    c.update(info)
    tasks.append(c)
    r.close()
    return tasks


# -- synthetic -------------------------------------------------------------------------------------
def synthetic(n: int, d: int, seed: int, topics: int = 1000, noise: float = 0.6) -> np.ndarray:
    """Clustered unit vectors: a random topic direction plus isotropic noise of norm ``noise``."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((topics, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        m = min(n, s + 100_000) - s
        t = rng.integers(0, topics, m)
        x = centers[t] + (noise / d**0.5) * rng.standard_normal((m, d), dtype=np.float32)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def run_synthetic(n: int, n_queries: int, args: Any, root: Path, time_budget_s: float | None) -> dict[str, Any]:
    from mmgr_qdrant import MultimodalRetriever

    d = 512
    data = synthetic(n + n_queries, d, seed=args.seed)  # the last rows are held-out queries
    x, qs = data[:n], data[n:]
    del data
    out: dict[str, Any] = {"n": n}
    r = MultimodalRetriever.create(f"syn{n}", path=root / f"syn{n}", encoder=_VectorsOnly(d))
    t0 = time.perf_counter()
    r.add_embeddings(x, modality="image", ids=list(range(n)), batch_size=4096)
    t_add = time.perf_counter() - t0
    out["add_s"] = t_add
    out["add_per_s"] = n / t_add
    del x
    gc.collect()
    reset_peak()
    rep = r.build(seed=args.seed, time_budget_s=time_budget_s)
    out.update(build_s=rep.total_s, fit_s=rep.fit_s, train_s=rep.train_s, fit_train_s=rep.fit_s + rep.train_s,
               build_peak_mb=peak_mb(), train_stop=rep.train["stop_reason"], train_epochs=rep.train["epochs_run"],
               val_level_accuracy=[round(a, 3) for a in rep.train["val_level_accuracy"]])
    gen, hc = r.index.generative, r.config.hybrid
    depth = min(1 + hc.depth, gen.n_levels)
    single = [q for q in qs]
    # quality: hybrid top-10 against the exact top-10 (dense search is exact on Edge without HNSW)
    rec, frac = [], []
    for q in single:
        exact = {h.id for h in r.search(vector=q, k=10, mode="dense")}
        hy = r.search(vector=q, k=10, explain=True)
        rec.append(len(exact & {h.id for h in hy}) / 10)
        frac.append(hy[0].explain.get("admitted", float("nan")) / n)
    out["recall@10"] = float(np.mean(rec))
    out["filter_fraction"] = float(np.mean(frac))
    # latency per stage, single queries; the stages of one query are timed back to back (interleaved),
    # so a busy moment of the shared machine hits every stage alike
    route = lambda b: gen.route(b, beam_size=hc.beam_size, depth=depth, modality=1, temperature=hc.prior_temperature)
    budget = hc.max_fraction * len(gen.trie)
    filters = [gen.prefix_filter([p for p, _ in gen.admit(route(q[None, :]).query(0), budget=budget, min_docs=10)[0]]) for q in single]
    stages = {
        "dense_ms": lambda i: r.search(vector=single[i], k=10, mode="dense"),
        "hybrid_ms": lambda i: r.search(vector=single[i], k=10),
        "beam_ms": lambda i: gen.decode(single[i][None, :], beam_size=hc.beam_size, depth=depth, modality=1),
        "decode_ms": lambda i: route(single[i][None, :]),  # beam search + the centroid prior
        "filter_rank_ms": lambda i: r.store.query(single[i], 10, filters[i]),
    }
    times: dict[str, list[float]] = {name: [] for name in stages}
    for fn in stages.values():
        fn(0)  # warm-up
    for i in range(len(single)):
        for name, fn in stages.items():
            t = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - t)
    out.update({name: statistics.median(v) * 1e3 for name, v in times.items()})
    out["hybrid_over_dense_latency"] = out["hybrid_ms"] / out["dense_ms"]
    # batches of 64, interleaved the same way
    batches = [qs[i : i + 64] for i in range(0, len(qs) - 63, 64)] or [qs]
    bsz = len(batches[0])
    bstages = {
        "beam_batch_ms_per_query": lambda b: gen.decode(b, beam_size=hc.beam_size, depth=depth, modality=1),
        "decode_batch_ms_per_query": route,
        "dense_batch_ms_per_query": lambda b: r.search_batch(vectors=b, k=10, mode="dense"),
        "hybrid_batch_ms_per_query": lambda b: r.search_batch(vectors=b, k=10),
    }
    btimes: dict[str, list[float]] = {name: [] for name in bstages}
    for fn in bstages.values():
        fn(batches[0])  # warm-up
    for _ in range(max(1, 4 // len(batches))):
        for b in batches:
            for name, fn in bstages.items():
                t = time.perf_counter()
                fn(b)
                btimes[name].append(time.perf_counter() - t)
    out.update({name: statistics.median(v) * 1e3 / bsz for name, v in btimes.items()})
    r.close()
    return out


class _VectorsOnly:
    """A stand-in encoder for an index fed only through ``add_embeddings``."""

    def __init__(self, dim: int) -> None:
        self.name = f"vectors:{dim}"
        self.dim = dim

    def encode_images(self, images: Any) -> np.ndarray:
        raise NotImplementedError("this benchmark index takes vectors only")

    def encode_texts(self, texts: Any) -> np.ndarray:
        raise NotImplementedError("this benchmark index takes vectors only")


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="lit:default")
    ap.add_argument("--n", type=int, default=100_000, help="synthetic points of the main size")
    ap.add_argument("--n-large", type=int, default=1_000_000, help="synthetic points of the large size")
    ap.add_argument("--skip-1m", action="store_true", help="skip the large synthetic size")
    ap.add_argument("--skip-real", action="store_true", help="skip the real-data tasks")
    ap.add_argument("--skip-synthetic", action="store_true", help="skip both synthetic sizes")
    ap.add_argument("--queries", type=int, default=200, help="held-out synthetic queries")
    ap.add_argument("--queries-large", type=int, default=64, help="held-out synthetic queries at the large size (exact search is slow there)")
    ap.add_argument("--i2i-queries", type=int, default=500, help="Fashion-MNIST images used as image queries")
    ap.add_argument("--fmnist-limit", type=int, default=None, help="index only the first N test images")
    ap.add_argument("--budget-1m", type=float, default=150.0, help="decoder training seconds at the large size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default); 1 is faster on a busy 2-core machine")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="mmgr-retrieval-"))
    figures: dict[str, Any] = {"loadavg_start": round(os.getloadavg()[0], 2), "torch_threads": torch.get_num_threads()}
    rows: list[tuple[str, Any]] = []
    if not args.skip_real:
        tasks = run_real(args, root)
        figures["real"] = tasks
        print(f"\nReal data ({args.encoder}); p = precision@10, r = recall@100; fractions of the corpus")
        head = f"{'task':<12}{'docs':>6}{'qs':>5} {'dense p':>8}{'hyb p':>7}{'gen p':>7}{'IVF p':>7} {'dense r':>8}{'hyb r':>7}{'gen r':>7}{'IVF r':>7} {'hyb/dense':>10}{'IVF/dense':>10} {'filter':>7}{'IVF filt':>9}"
        print(head)
        for t in tasks:
            print(f"{t['task']:<12}{t['n_docs']:>6}{t['n_queries']:>5} {t['dense_p@10']:>8.3f}{t['hybrid_p@10']:>7.3f}{t['generative_p@10']:>7.3f}"
                  f"{t['router_p@10']:>7.3f} {t['dense_r@100']:>8.3f}{t['hybrid_r@100']:>7.3f}{t['generative_r@100']:>7.3f}{t['router_r@100']:>7.3f}"
                  f" {t['hybrid_over_dense']:>10.4f}{t['router_over_dense']:>10.4f} {t['filter_fraction']:>7.4f}{t['router_filter_fraction']:>9.4f}")
            rows += [(f"{t['task']} hybrid_over_dense", t["hybrid_over_dense"]), (f"{t['task']} filter_fraction", t["filter_fraction"]),
                     (f"{t['task']} router_over_dense", t["router_over_dense"])]
        figures["hybrid_over_dense_min"] = min(t["hybrid_over_dense"] for t in tasks)
        figures["filter_fraction_max"] = max(t["filter_fraction"] for t in tasks)
    if not args.skip_synthetic:
        sizes = [(args.n, args.queries, None)] + ([] if args.skip_1m else [(args.n_large, args.queries_large, args.budget_1m)])
        syn = []
        for n, nq, budget in sizes:
            syn.append(run_synthetic(n, nq, args, root, budget))
            gc.collect()
        figures["synthetic"] = syn
        print("\nSynthetic clustered 512-d on Qdrant Edge (exact dense); latencies are medians in ms")
        print(f"{'n':>9} {'recall@10':>9} {'filter':>7} {'beam':>6} {'decode':>7} {'filt+rank':>9} {'hybrid':>7} {'dense':>7} {'hyb/dense':>9}"
              f" {'beam/q@64':>9} {'dec/q@64':>8} {'hyb/q@64':>8} {'den/q@64':>8} {'fit s':>6} {'train s':>7} {'peak MB':>8}")
        for s in syn:
            print(f"{s['n']:>9} {s['recall@10']:>9.4f} {s['filter_fraction']:>7.4f} {s['beam_ms']:>6.2f} {s['decode_ms']:>7.2f} {s['filter_rank_ms']:>9.2f}"
                  f" {s['hybrid_ms']:>7.2f} {s['dense_ms']:>7.2f} {s['hybrid_over_dense_latency']:>9.3f} {s['beam_batch_ms_per_query']:>9.3f} {s['decode_batch_ms_per_query']:>8.3f}"
                  f" {s['hybrid_batch_ms_per_query']:>8.3f} {s['dense_batch_ms_per_query']:>8.3f} {s['fit_s']:>6.1f} {s['train_s']:>7.1f} {s['build_peak_mb']:>8.0f}")
            rows += [(f"synthetic {s['n']} recall@10", s["recall@10"]), (f"synthetic {s['n']} filter_fraction", s["filter_fraction"]),
                     (f"synthetic {s['n']} hybrid/dense latency", s["hybrid_over_dense_latency"])]
    figures["seconds"] = round(time.perf_counter() - t_start, 1)
    figures["loadavg_end"] = round(os.getloadavg()[0], 2)
    figures["targets"] = TARGETS
    report("Targets: hybrid_over_dense >= 0.99, filter_fraction <= 0.10, hybrid <= 2x dense at 100k", rows, figures, args.json)


if __name__ == "__main__":
    main()
