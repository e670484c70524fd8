"""Composed image + text retrieval on the openclipart keywords: R@10 of five ways to ask.

Triples are built from the clip-art keywords: a reference image with keywords {A, B, ...}, the
text "A with C" (C a keyword the reference lacks; targets: the other images with A and C) or
"C instead of B" (targets: images with A and C but not B). The split is by construction:

* images: openclipart items are split by group (same title or same picture = one group; the
  committed held-out list always goes to the test side) into a training pool and a test pool;
  a triple's reference and targets come from one pool;
* texts: the modification keywords C are split in two halves, so no test triple's text was seen
  in training.

Methods, each ranking the test pool (the reference itself left out): image-only (the
reference's embedding), text-only (the text's), untrained fusion (weighted sum; the weight is
picked on the training triples), trained fusion (``fusion.train_fusion`` on the training triples),
and ``Q.image(ref) & Q.text(text)`` (the boolean AND through a built index on Qdrant Edge).
R@10: the share of test triples with at least one target in the first 10.

    python benchmarks/composed.py [--n 1500] [--test-triples 400] [--bool-triples 30] [--json]

Embeddings are cached under .cache/bench (git-ignored). Needs the openclipart-png/-svg Debian
packages and the ``lit`` extra (``lit:default``, the offline encoder).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from benchmarks._data import CACHE, _cache_dir, _cached, load_encoder
from scripts.prepare_data import _groups, clipart_image, good_keywords, read_heldout, read_openclipart

# Keywords that name a collection or a file type, not what the picture shows.
NOT_CONTENT = {"geometry", "stars", "shapes", "magick", "action", "application", "filesystem", "mimetypes", "mime-types",
               "menu", "special", "gradients", "webpage", "appicon", "led", "hardware", "office", "device", "symbol",
               "signs and symbols", "sign", "shape", "pattern", "work", "media", "remix", "public domain", "black and white",
               "line art", "outline", "white", "black", "colour", "color", "drawing", "cartoon", "clip-art", "image"}
MIN_USES, MAX_USES = 8, 300


def make_triples(pool: list[int], kws: list[frozenset[str]], mods: set[str], limit: int, rng: np.random.Generator) -> list[tuple[int, str, frozenset[int]]]:
    """``(reference, text, targets)`` triples whose reference and targets are in ``pool`` and whose C is in ``mods``."""
    by_kw: dict[str, set[int]] = {}
    for i in pool:
        for k in kws[i]:
            by_kw.setdefault(k, set()).add(i)
    out: list[tuple[int, str, frozenset[int]]] = []
    for r in pool:
        for a in sorted(kws[r]):
            for c in sorted(mods - kws[r]):
                both = (by_kw.get(a, set()) & by_kw.get(c, set())) - {r}
                if not both:
                    continue
                out.append((r, f"{a} with {c}", frozenset(both)))
                for b in sorted(kws[r] - {a}):
                    t = frozenset(x for x in both if b not in kws[x])
                    if t:
                        out.append((r, f"{c} instead of {b}", t))
    rng.shuffle(out)  # type: ignore[arg-type]
    # at most 3 triples per reference, so a few keyword-rich images do not dominate
    per_ref: Counter[int] = Counter()
    kept = []
    for tr in out:
        if per_ref[tr[0]] < 3:
            per_ref[tr[0]] += 1
            kept.append(tr)
        if len(kept) == limit:
            break
    return kept


def recall_at(scores: np.ndarray, triples: list[tuple[int, str, frozenset[int]]], pos: dict[int, int], k: int = 10) -> float:
    """Share of triples with a target among the ``k`` best (the reference itself left out)."""
    hits = 0
    for row, (ref, _, targets) in zip(scores, triples):
        s = row.copy()
        s[pos[ref]] = -np.inf
        top = np.argpartition(-s, k)[:k]
        hits += bool({int(x) for x in top} & {pos[t] for t in targets})
    return hits / max(len(triples), 1)


def boolean_recall(enc: Any, corpus: np.ndarray, pool: list[int], ref_paths: dict[int, str],
                   triples: list[tuple[int, str, frozenset[int]]]) -> float:
    """R@10 of ``Q.image(ref) & Q.text(text)`` through a built index (Qdrant Edge) holding ``pool``."""
    from mmgr_qdrant import MultimodalRetriever
    from mmgr_qdrant.setops import Q

    id_of = {i: n + 1 for n, i in enumerate(pool)}
    with tempfile.TemporaryDirectory() as tmp, MultimodalRetriever.create("composed", path=tmp, encoder=enc) as r:
        r.add_embeddings(corpus, modality="image", ids=[id_of[i] for i in pool], uris=[ref_paths[i] for i in pool])
        r.build(time_budget_s=30.0)
        hit = 0
        for ref, text, targets in triples:
            got = [h.id for h in r.search(Q.image(ref_paths[ref]) & Q.text(text), k=11) if h.id != id_of[ref]][:10]
            hit += bool(set(got) & {id_of[t] for t in targets})
    return hit / max(len(triples), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1500, help="images in the benchmark (both pools)")
    ap.add_argument("--train-triples", type=int, default=4000)
    ap.add_argument("--test-triples", type=int, default=400)
    ap.add_argument("--bool-triples", type=int, default=30, help="test triples also run as Q.image & Q.text (slow: a built index)")
    ap.add_argument("--encoder", default="lit:default")
    ap.add_argument("--fusion-params", default="{}", help='FusionConfig fields as JSON, e.g. \'{"hidden": 128}\'')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON line last")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()

    items = read_openclipart()
    groups = _groups(items)
    raw = [good_keywords(c, 8) for c in items]
    uses = Counter(k for ks in raw for k in set(ks))
    vocab = {k for k, n in uses.items() if MIN_USES <= n <= MAX_USES and k not in NOT_CONTENT}
    kws_all = [frozenset(k for k in ks if k in vocab) for ks in raw]
    eligible = [i for i, ks in enumerate(kws_all) if len(ks) >= 2]
    chosen = sorted(rng.choice(eligible, size=min(args.n, len(eligible)), replace=False).tolist())
    held = {rel for rel, _ in read_heldout()}
    gset = sorted({groups[i] for i in chosen})
    test_groups = {g for g in gset if rng.random() < 0.4} | {groups[i] for i in chosen if items[i].rel in held}
    test_pool = [i for i in chosen if groups[i] in test_groups]
    train_pool = [i for i in chosen if groups[i] not in test_groups]
    mod_vocab = sorted({k for i in chosen for k in kws_all[i]})
    perm = rng.permutation(len(mod_vocab))
    test_mods = {mod_vocab[j] for j in perm[: len(perm) // 2]}
    train_mods = set(mod_vocab) - test_mods
    train = make_triples(train_pool, kws_all, train_mods, args.train_triples, rng)
    test = make_triples(test_pool, kws_all, test_mods, args.test_triples, rng)
    assert not {t for _, t, _ in train} & {t for _, t, _ in test}, "a test text is in the training triples"
    assert not ({r for r, _, _ in train} | {x for _, _, ts in train for x in ts}) & set(test_pool), "a test image is in training"

    enc = load_encoder(args.encoder)
    cache = _cache_dir(enc)
    render = CACHE / "render"
    paths = [str(clipart_image(items[i].rel, render)) for i in chosen]
    key = f"composed_{args.seed}_{len(chosen)}_{abs(hash(tuple(chosen))) % 10**8}"
    img_vecs, s_img = _cached(cache / f"{key}_images.npy", lambda: enc.encode_images(paths, batch_size=64))
    texts = sorted({t for _, t, _ in train} | {t for _, t, _ in test})
    txt_vecs, s_txt = _cached(cache / f"{key}_texts_{len(texts)}.npy", lambda: enc.encode_texts(texts))
    row = {i: n for n, i in enumerate(chosen)}
    trow = {t: n for n, t in enumerate(texts)}

    def vecs(triples: list[tuple[int, str, frozenset[int]]]) -> tuple[np.ndarray, np.ndarray]:
        return img_vecs[[row[r] for r, _, _ in triples]], txt_vecs[[trow[t] for _, t, _ in triples]]

    from mmgr_qdrant.fusion import train_fusion, weighted_fusion

    corpus = img_vecs[[row[i] for i in test_pool]]
    pos = {i: n for n, i in enumerate(test_pool)}
    train_corpus = img_vecs[[row[i] for i in train_pool]]
    train_pos = {i: n for n, i in enumerate(train_pool)}
    ti, tt = vecs(test)
    ri, rt = vecs(train)
    results: dict[str, float] = {}
    results["image-only"] = recall_at(ti @ corpus.T, test, pos)
    results["text-only"] = recall_at(tt @ corpus.T, test, pos)
    weights = [round(w, 2) for w in np.arange(0.1, 0.95, 0.1)]
    train_r = {w: recall_at(weighted_fusion(ri, rt, w) @ train_corpus.T, train, train_pos) for w in weights}
    best_w = max(weights, key=lambda w: train_r[w])
    results["fusion w=0.5 (untrained)"] = recall_at(weighted_fusion(ti, tt, 0.5) @ corpus.T, test, pos)
    results[f"fusion w={best_w} (untrained, w from train)"] = recall_at(weighted_fusion(ti, tt, best_w) @ corpus.T, test, pos)
    # every target of a training triple is a positive; the whole training pool is the negatives
    t_fit = time.perf_counter()
    fparams = {"init_weight": best_w, "seed": args.seed, "time_budget_s": 240.0, **json.loads(args.fusion_params)}
    module = train_fusion(ri, rt, [sorted(train_pos[x] for x in ts) for _, _, ts in train], corpus=train_corpus,
                          groups=[t.split(" with ")[-1] if " with " in t else t.split(" instead of ")[0] for _, t, _ in train], **fparams)
    fit_s = time.perf_counter() - t_fit
    results["fusion (trained)"] = recall_at(module.fuse(ti, tt) @ corpus.T, test, pos)
    by_kind: dict[str, dict[str, float]] = {}
    for kind in ("with", "instead of"):
        idx = [n for n, (_, text, _) in enumerate(test) if f" {kind} " in text]
        part = [test[n] for n in idx]
        by_kind[kind] = {"triples": len(idx), "image-only": recall_at(ti[idx] @ corpus.T, part, pos),
                         "text-only": recall_at(tt[idx] @ corpus.T, part, pos),
                         "untrained": recall_at(weighted_fusion(ti[idx], tt[idx], best_w) @ corpus.T, part, pos),
                         "trained": recall_at(module.fuse(ti[idx], tt[idx]) @ corpus.T, part, pos)}

    bool_test = test[: args.bool_triples]
    t_bool = time.perf_counter()
    sub: dict[str, float] = {}
    if bool_test:
        ref_paths = {i: paths[row[i]] for i in test_pool}
        results["Q.image & Q.text"] = boolean_recall(enc, corpus, test_pool, ref_paths, bool_test)
        # the same triples, the other methods, for a like-for-like comparison on the boolean subset
        sub_i, sub_t = ti[: len(bool_test)], tt[: len(bool_test)]
        sub = {"image-only": recall_at(sub_i @ corpus.T, bool_test, pos), "text-only": recall_at(sub_t @ corpus.T, bool_test, pos),
               "fusion (trained)": recall_at(module.fuse(sub_i, sub_t) @ corpus.T, bool_test, pos)}
    bool_s = time.perf_counter() - t_bool

    base = max(results["image-only"], results["text-only"])
    ratio = results["fusion (trained)"] / base if base else float("inf")
    print(f"composed retrieval, openclipart keywords, encoder {enc.name}: {len(chosen)} images "
          f"({len(train_pool)} train / {len(test_pool)} test), {len(train)} train / {len(test)} test triples, "
          f"{len(train_mods)} / {len(test_mods)} modification keywords")
    print(f"{'method':<44} {'R@10':>6}")
    for name, v in results.items():
        extra = f"   (first {len(bool_test)} test triples)" if name == "Q.image & Q.text" else ""
        print(f"{name:<44} {v:6.3f}{extra}")
    if sub:
        print(f"{'  same subset: image / text / trained':<44} {sub['image-only']:.3f} / {sub['text-only']:.3f} / {sub['fusion (trained)']:.3f}")
    for kind, f in by_kind.items():
        print(f"  {kind!r} triples ({f['triples']}): image / text / untrained / trained = "
              f"{f['image-only']:.3f} / {f['text-only']:.3f} / {f['untrained']:.3f} / {f['trained']:.3f}")
    print(f"trained fusion / best single modality: {ratio:.2f}x (target 1.2x); fusion fit {fit_s:.1f} s, "
          f"embedding {s_img + s_txt:.1f} s, boolean part {bool_s:.1f} s, total {time.perf_counter() - t0:.1f} s")
    if args.json:
        print(json.dumps({"benchmark": "composed", "encoder": enc.name, "images": len(chosen), "train_images": len(train_pool),
                          "test_images": len(test_pool), "train_triples": len(train), "test_triples": len(test),
                          "bool_triples": len(bool_test), "r_at_10": {k: round(v, 4) for k, v in results.items()},
                          "bool_subset_r_at_10": {k: round(v, 4) for k, v in sub.items()}, "picked_weight": best_w,
                          "by_template": {k: {m: round(v, 4) for m, v in f.items()} for k, f in by_kind.items()},
                          "trained_over_best_single": round(ratio, 3), "target": 1.2, "met": bool(ratio >= 1.2),
                          "fusion_train": module.info, "total_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
