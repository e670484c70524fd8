"""Decoder training time and constrained beam-search latency at 100,000 docids.

Synthetic clustered 512-d vectors (two modalities with a modality gap), docids from a two-level
residual k-means, (modality, c1, c2, tie-break), like the ``rq`` scheme. The decoder is trained
on the indexing pairs under a time budget; then beam search is timed for single queries and for
batches, side by side with one decoder forward pass (the floor a beam search cannot beat).

    python -m benchmarks.beam                 # table
    python -m benchmarks.beam --json          # table, then one JSON line last

Figures are ratios in one run on a shared machine, not timed tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time

import numpy as np
import torch

from mmgr_qdrant.decoder import DecoderConfig, DocidTrie, beam_search, train_decoder

log = logging.getLogger("benchmarks.beam")


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain Lloyd k-means on (n, d); returns centroids (k, d) and labels (n,)."""
    c = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iters):
        labels = (x @ c.T - 0.5 * (c * c).sum(1)).argmax(1)  # nearest by squared distance
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).unsqueeze(1)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
    return c, (x @ c.T - 0.5 * (c * c).sum(1)).argmax(1)


def make_data(n: int, d: int, k1: int, k2: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors and their (modality, c1, c2, tie-break) docids."""
    gen = torch.Generator().manual_seed(seed)
    topics = torch.nn.functional.normalize(torch.randn(1000, d, generator=gen), dim=1)
    gap = torch.nn.functional.normalize(torch.randn(d, generator=gen), dim=0)
    mod = torch.randint(0, 2, (n,), generator=gen)
    noise = 0.6 * torch.randn(n, d, generator=gen) / d**0.5  # norm about 0.6 around a topic
    x = topics[torch.randint(0, 1000, (n,), generator=gen)] + noise
    x = torch.nn.functional.normalize(x + 0.5 * (2 * mod.unsqueeze(1) - 1) * gap, dim=1)
    c1_cent, c1 = kmeans(x, k1, 8, gen)
    _, c2 = kmeans(x - c1_cent[c1], k2, 8, gen)
    codes = torch.stack([mod, c1, c2], 1).numpy().astype(np.int64)
    order = np.lexsort(codes.T[::-1])
    s = codes[order]
    new = np.ones(n, dtype=bool)
    new[1:] = np.any(s[1:] != s[:-1], axis=1)
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    tb = np.empty(n, dtype=np.int64)
    tb[order] = np.arange(n) - start
    return x.numpy().astype(np.float32), np.concatenate([codes, tb[:, None]], 1)


def time_calls(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall seconds and mean CPU seconds of ``repeat`` calls after one warm-up.

    CPU time is this process's own work: on a shared box it excludes time spent waiting for a core.
    """
    fn()
    times = []
    c = time.process_time()
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), (time.process_time() - c) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k1", type=int, default=256)
    ap.add_argument("--k2", type=int, default=256)
    ap.add_argument("--train-seconds", type=float, default=150.0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--beams", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", action="store_true", help="print one JSON line last")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    threads = args.threads or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    out: dict[str, object] = {"n": args.n, "dim": args.dim, "threads": threads}

    t = time.perf_counter()
    x, codes = make_data(args.n, args.dim, args.k1, args.k2, seed=0)
    out["data_s"] = round(time.perf_counter() - t, 2)
    vocab = tuple(int(v) + 1 for v in codes.max(0))
    t = time.perf_counter()
    trie = DocidTrie(codes)
    trie.level_tensors()
    out["trie_build_s"] = round(time.perf_counter() - t, 3)
    out["vocab_sizes"] = list(vocab)
    out["nodes_per_depth"] = [trie.num_nodes(i) for i in range(1, trie.n_levels + 1)]

    config = DecoderConfig(embed_dim=args.dim, vocab_sizes=vocab)
    model, rep = train_decoder(
        x, codes, doc_vectors=x, doc_index=np.arange(len(x)), config=config,
        epochs=args.epochs, batch_size=args.batch_size, time_budget_s=args.train_seconds,
    )  # fmt: skip
    out["train"] = {
        "seconds": round(rep.seconds, 1), "epochs": rep.epochs_run, "steps": rep.steps,
        "stop": rep.stop_reason, "params": rep.n_parameters,
        "val_level_accuracy": [round(a, 4) for a in rep.val_level_accuracy],
        "val_accuracy": round(rep.val_accuracy, 4),
    }  # fmt: skip

    rng = np.random.default_rng(1)
    pick = rng.choice(len(x), 512, replace=False)
    noisy = x[pick] + rng.normal(size=(512, args.dim)).astype(np.float32) * (0.1 / args.dim**0.5)
    rows = []
    with torch.inference_mode():
        q64 = torch.from_numpy(noisy[: args.batch])
        fwd1, _ = time_calls(lambda: model.start(q64[:1]), 50)
        fwd64, _ = time_calls(lambda: model.start(q64), 20)
    out["forward_start_ms"] = {"1": round(fwd1 * 1e3, 3), str(args.batch): round(fwd64 * 1e3, 3)}
    for depth in args.depths:
        for beam in args.beams:
            singles = [noisy[i : i + 1] for i in range(100)]
            it = iter(singles * 10)
            one, one_cpu = time_calls(
                lambda it=it, beam=beam, depth=depth: beam_search(model, trie, next(it), beam_size=beam, depth=depth), 100
            )
            batches = [noisy[i : i + args.batch] for i in range(0, 512, args.batch)]
            itb = iter(batches * 10)
            bat, bat_cpu = time_calls(
                lambda itb=itb, beam=beam, depth=depth: beam_search(model, trie, next(itb), beam_size=beam, depth=depth), 16
            )
            res = beam_search(model, trie, noisy, beam_size=beam, depth=depth)
            top_ok = float(np.mean(np.all(res.prefixes[:, 0] == codes[pick, :depth], axis=1)))
            in_beam = float(np.mean(np.any(np.all(res.prefixes == codes[pick, None, :depth], axis=2), axis=1)))
            admitted = np.mean([_admitted(trie, res.prefixes[i][res.valid[i]]) for i in range(64)])
            admitted = float(admitted) / len(trie)
            rows.append({
                "depth": depth, "beam": beam, "single_ms": round(one * 1e3, 3),
                "single_cpu_ms": round(one_cpu * 1e3, 3),
                "batch_ms_per_query": round(bat / args.batch * 1e3, 4),
                "batch_cpu_ms_per_query": round(bat_cpu / args.batch * 1e3, 4),
                "top1_prefix_acc": round(top_ok, 4), "target_in_beam": round(in_beam, 4),
                "filter_fraction": round(admitted, 5),
            })  # fmt: skip
    out["beam"] = rows

    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(
        f"n={args.n} dim={args.dim} threads={threads} vocab={vocab} "
        f"nodes/depth={out['nodes_per_depth']} load average (1 min)={out['loadavg_1m']}"
    )
    tr = out["train"]
    print(
        f"train: {tr['seconds']} s, {tr['epochs']} epochs, {tr['steps']} steps ({tr['stop']}), "  # type: ignore[index]
        f"{tr['params']} params, val level acc {tr['val_level_accuracy']}, full {tr['val_accuracy']}"  # type: ignore[index]
    )
    print(f"decoder start() forward: {out['forward_start_ms']} ms (1 query, batch)")
    print(f"batch = {args.batch} queries; wall = median, cpu = this process's CPU time")
    print(
        f"{'depth':>5} {'beam':>4} {'1q wall ms':>10} {'1q cpu ms':>9} {'batch/q wall':>12} "
        f"{'batch/q cpu':>11} {'top1 ok':>7} {'in beam':>7} {'filter frac':>11}"
    )
    for r in rows:
        print(
            f"{r['depth']:>5} {r['beam']:>4} {r['single_ms']:>10.3f} {r['single_cpu_ms']:>9.3f} "
            f"{r['batch_ms_per_query']:>12.4f} {r['batch_cpu_ms_per_query']:>11.4f} "
            f"{r['top1_prefix_acc']:>7.3f} {r['target_in_beam']:>7.3f} {r['filter_fraction']:>11.5f}"
        )
    if args.json:
        print(json.dumps(out))


def _admitted(trie: DocidTrie, prefixes: np.ndarray) -> int:
    """Docids under any of the given prefixes (the share a prefix filter lets through)."""
    if len(prefixes) == 0:
        return 0
    depth = prefixes.shape[1]
    keys = trie.codes[:, :depth]
    hit = np.zeros(len(keys), dtype=bool)
    for p in prefixes:
        hit |= np.all(keys == p, axis=1)
    return int(hit.sum())


if __name__ == "__main__":
    main()
