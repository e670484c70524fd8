"""Learning from queries: held-out phrasings, before and after ``learn`` + ``retrain``, against baselines.

Query sets (relevance by label; phrasings split into train and test by construction, no test
string used to train or tune anything):

* ``fmnist-text``: the 10,000 Fashion-MNIST *test* images, asked for by class in phrasings written
  here (synonyms, descriptions, materials, uses): 8 per class train, 4 per class test.
* ``fmnist-image``: the same corpus queried by 300 *train*-split images (in-distribution; no
  phrasings, so only the before-learning figures).
* ``clipart``: the held-out clip art (``benchmarks/data/openclipart_heldout.tsv``: images the
  encoder's head never saw), queried by titles and keywords; the distinct query strings are split
  train/test by a hash of the string.

Rows per set: dense; IVF at the hybrid's filter fraction (nearest level-1 centroids); hybrid and
generative before learning (calibrated mass rule; hybrid with the earlier fixed 5% budget; hybrid
that filters every query, even those it is unsure of); hybrid and generative after learning the
train queries and ``retrain()``, and hybrid after learning without the learned query expansion
(the router's share alone); query memory (the nearest
training queries' relevant documents ranked by cosine); recommend (Qdrant's average-vector
recommendation from the nearest training queries' positives: the mean of the positives' vectors,
no negatives). Figures: P@10, R@100, mean filter fraction, ratios against dense of the same run.

    python -m benchmarks.learning --json [--sets fmnist-text,clipart] [--scale 100000 --scale-pairs 10000]
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import parser, report
from benchmarks._data import _cache_dir, _cached, load_encoder
from scripts.prepare_data import FMNIST, OPENCLIPART, clipart_image, good_keywords, norm_title, read_heldout, read_idx

# Class -> (train phrasings, test phrasings), written for this benchmark: no test string is a
# copy or near copy of a train string.
PHRASINGS: dict[str, tuple[list[str], list[str]]] = {
    "t-shirt": (["tee", "short sleeve top", "crew neck tee shirt", "cotton t-shirt", "casual top for summer", "graphic tee",
                 "jersey top with short sleeves", "undershirt to wear under a jacket"],
                ["a plain tshirt", "something light to wear on a hot day", "short-sleeved cotton shirt without buttons", "gym top"]),
    "pair of trousers": (["pants", "slacks", "jeans", "denim trousers", "chinos", "long legwear", "khaki pants for work", "leggings"],
                         ["bottoms for the office", "something to cover my legs", "corduroy bottoms", "tailored suit trousers"]),
    "pullover sweater": (["sweater", "jumper", "knitted wool top", "woolly jumper for winter", "cardigan", "knitwear",
                          "long sleeve fleece", "turtleneck"],
                         ["a warm knit", "cosy pullover to wear in the cold", "cashmere top", "sweatshirt"]),
    "dress": (["gown", "frock", "summer dress", "evening gown", "sundress", "one-piece garment for women", "cocktail dress", "maxi dress"],
              ["a dress", "something to wear to a wedding party", "floral midi", "sleeveless dress"]),
    "coat": (["jacket", "overcoat", "parka", "raincoat", "winter coat", "puffer jacket", "trench coat", "outerwear to keep warm"],
             ["a coat", "anorak", "padded outer layer for snowy weather", "wool topcoat"]),
    "sandal": (["flip flops", "beach sandals", "open toe shoes", "strappy summer footwear", "slides", "thongs for the pool",
                "gladiator sandals", "slippers"],
               ["shoes for walking on the beach", "espadrilles", "open footwear with straps", "huaraches"]),
    "shirt": (["button-up shirt", "blouse", "dress shirt", "flannel shirt", "collared shirt", "oxford shirt",
               "formal shirt for the office", "checked shirt"],
              ["a shirt with buttons", "long sleeved top with cuffs", "plaid button down", "top with a collar for work"]),
    "sneaker": (["trainers", "running shoes", "athletic shoes", "tennis shoes", "kicks", "canvas shoes", "sports footwear",
                 "lace-up shoes for the gym"],
                ["sneakers", "shoes for jogging", "low top basketball shoes", "comfortable everyday sport shoes"]),
    "bag": (["handbag", "purse", "tote", "backpack", "satchel", "leather bag", "shoulder bag", "clutch"],
            ["a bag", "something to carry my things in", "shopping tote made of canvas", "briefcase"]),
    "ankle boot": (["boots", "booties", "chelsea boots", "leather boots", "heeled boots", "winter boots", "combat boots",
                    "short boots that cover the ankle"],
                   ["ankle boots", "footwear for rainy autumn days", "suede booties with a heel", "lace-up hiking boots"]),
}
FMNIST_ORDER = ("t-shirt", "pair of trousers", "pullover sweater", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
CLICKS = 64  # relevant documents given per training query (the "clicked" results)
NEAREST = 5  # training queries consulted by query memory and recommend


class QuerySet:
    """A corpus, train and test queries (vectors, label sets), and each document's labels."""

    def __init__(self, name: str, docs: np.ndarray, doc_labels: list[frozenset[str]], test: np.ndarray, test_labels: list[frozenset[str]],
                 train: np.ndarray | None = None, train_labels: list[frozenset[str]] | None = None, ood: bool = True) -> None:
        self.name, self.docs, self.doc_labels, self.test, self.test_labels = name, docs, doc_labels, test, test_labels
        self.train, self.train_labels, self.ood = train, train_labels, ood

    def relevant(self, labels: frozenset[str]) -> np.ndarray:
        return np.asarray([i for i, d in enumerate(self.doc_labels) if d & labels], np.int64)


def fmnist_sets(enc: Any, n_image_queries: int) -> list[QuerySet]:
    cache = _cache_dir(enc)
    images, labels = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz", FMNIST / "t10k-labels-idx1-ubyte.gz")
    docs, _ = _cached(cache / "fmnist_test_images.npy", lambda: enc.encode_images(list(images), batch_size=128))
    doc_labels = [frozenset([FMNIST_ORDER[int(y)]]) for y in labels]
    train_txt = [(c, t) for c in FMNIST_ORDER for t in PHRASINGS[c][0]]
    test_txt = [(c, t) for c in FMNIST_ORDER for t in PHRASINGS[c][1]]
    digest = hashlib.sha1(repr(PHRASINGS).encode()).hexdigest()[:8]
    tr, _ = _cached(cache / f"learning_fm_train_{digest}.npy", lambda: enc.encode_texts([t for _, t in train_txt]))
    te, _ = _cached(cache / f"learning_fm_test_{digest}.npy", lambda: enc.encode_texts([t for _, t in test_txt]))
    text = QuerySet("fmnist-text", docs, doc_labels, te, [frozenset([c]) for c, _ in test_txt], tr, [frozenset([c]) for c, _ in train_txt])
    qimg, qlab = read_idx(FMNIST / "train-images-idx3-ubyte.gz", FMNIST / "train-labels-idx1-ubyte.gz")
    pick = np.random.default_rng(1).choice(len(qimg), n_image_queries, replace=False)
    qv, _ = _cached(cache / f"learning_fm_imgq_{n_image_queries}.npy", lambda: enc.encode_images([qimg[i] for i in pick], batch_size=128))
    image = QuerySet("fmnist-image", docs, doc_labels, qv, [frozenset([FMNIST_ORDER[int(qlab[i])]]) for i in pick], ood=False)
    return [text, image]


def clipart_set(enc: Any) -> QuerySet:
    cache = _cache_dir(enc)
    from scripts.prepare_data import Clipart, read_openclipart

    held = read_heldout()
    rels = {rel for rel, _ in held}
    items = {c.rel: c for c in read_openclipart(OPENCLIPART) if c.rel in rels}
    rows = [items[rel] for rel, _ in held if rel in items]
    tmp = Path(tempfile.gettempdir()) / "mmgr-bench-clipart"
    docs, _ = _cached(cache / f"learning_clipart_{len(rows)}.npy", lambda: enc.encode_images([str(clipart_image(c.rel, tmp)) for c in rows], batch_size=64))

    def labels(c: Clipart) -> frozenset[str]:
        return frozenset([f"t:{norm_title(c.title)}"] + [f"k:{k}" for k in good_keywords(c)])

    doc_labels = [labels(c) for c in rows]
    counts: dict[str, int] = {}
    for lab in doc_labels:
        for x in lab:
            counts[x] = counts.get(x, 0) + 1
    queries = sorted(x for x, n in counts.items() if x.startswith("t:") or n >= 2)  # titles, and keywords shared by 2+ images
    train_q = [q for q in queries if int(hashlib.sha1(q.encode()).hexdigest(), 16) % 3 != 0]
    test_q = [q for q in queries if int(hashlib.sha1(q.encode()).hexdigest(), 16) % 3 == 0]
    tr, _ = _cached(cache / f"learning_clip_train_{len(train_q)}.npy", lambda: enc.encode_texts([q[2:] for q in train_q]))
    te, _ = _cached(cache / f"learning_clip_test_{len(test_q)}.npy", lambda: enc.encode_texts([q[2:] for q in test_q]))
    return QuerySet("clipart", docs, doc_labels, te, [frozenset([q]) for q in test_q], tr, [frozenset([q]) for q in train_q])


# -- metrics ---------------------------------------------------------------------------------------
def scores(qs: QuerySet, ranked: list[list[int]]) -> tuple[float, float]:
    p10, r100 = [], []
    for labs, rows in zip(qs.test_labels, ranked):
        rel = set(qs.relevant(labs).tolist())
        p10.append(sum(r in rel for r in rows[:10]) / 10)
        r100.append(sum(r in rel for r in rows[:100]) / max(1, len(rel)))
    return float(np.mean(p10)), float(np.mean(r100))


def run_set(
    qs: QuerySet, enc: Any, train_s: float, log: list[tuple[str, Any]], figures: dict[str, Any], after_priors: tuple[float, ...] = ()
) -> None:
    from mmgr_qdrant import MultimodalRetriever
    from mmgr_qdrant.types import MODALITY_CODES

    n = len(qs.docs)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        r = MultimodalRetriever.create(qs.name, path=tmp, encoder=enc, decoder_params={"time_budget_s": train_s})
        ids = list(r.add_embeddings(qs.docs, modality="image", ids=list(range(n))))
        row_of = {pid: i for i, pid in enumerate(ids)}
        build = r.build()
        out: dict[str, Any] = {"n_docs": n, "n_test": len(qs.test), "build_s": round(build.total_s, 1),
                               "routing_before": r.index.generative.info.get("routing") if r.index.generative else None}

        def run_mode(mode: str) -> tuple[list[list[int]], float]:
            ranked, fr = [], []
            for v in qs.test:
                hits = r.search(vector=v, k=100, mode=mode, explain=True)  # type: ignore[arg-type]
                ranked.append([row_of[h.id] for h in hits])
                if mode == "hybrid" and hits:
                    fr.append(hits[0].explain.get("admitted", n) / n)  # type: ignore[union-attr]
            return ranked, float(np.mean(fr)) if fr else (1.0 if mode == "dense" else float("nan"))

        def ivf(fractions: list[float]) -> list[list[int]]:
            gen = r.index.generative
            assert gen is not None
            cents = gen._level1_centroids()
            assert cents is not None
            m = MODALITY_CODES["image"]
            counts = gen.prefix_counts(np.asarray([[m, c] for c in range(len(cents))]))
            x = gen.scheme.preprocess(qs.test, np.full(len(qs.test), m, np.int32))  # type: ignore[attr-defined]
            ranked = []
            for i, frac in enumerate(fractions):
                order = np.argsort(-(x[i] @ cents.T))
                kept, total = [], 0
                for c in order:
                    if total >= max(frac * n, 100):
                        break
                    if counts[c]:
                        kept.append((m, int(c)))
                        total += int(counts[c])
                rows = r.store.query(qs.test[i], 100, gen.prefix_filter(kept))
                ranked.append([row_of[x.id] for x in rows])
            return ranked

        results: dict[str, tuple[float, float, float]] = {}
        dense, _ = run_mode("dense")
        results["dense"] = (*scores(qs, dense), 1.0)
        hyb, frac = run_mode("hybrid")
        results["hybrid_before"] = (*scores(qs, hyb), frac)
        per_query = []
        for v in qs.test:
            h = r.search(vector=v, k=10, explain=True)
            per_query.append(h[0].explain["admitted"] / n if h else 1.0)  # type: ignore[index]
        results["ivf_equal_fraction"] = (*scores(qs, ivf(per_query)), float(np.mean(per_query)))
        gen_b, _ = run_mode("generative")
        results["generative_before"] = (*scores(qs, gen_b), float("nan"))
        from dataclasses import replace

        mass_cfg = r.config
        r.index.config = mass_cfg.with_(hybrid=replace(mass_cfg.hybrid, admission="fixed", max_fraction=0.05))
        fixed, ffrac = run_mode("hybrid")
        results["hybrid_fixed5_before"] = (*scores(qs, fixed), ffrac)
        r.index.config = mass_cfg.with_(hybrid=replace(mass_cfg.hybrid, when_unsure="route"))  # every query filtered
        routed, rfrac = run_mode("hybrid")
        results["hybrid_before_route_unsure"] = (*scores(qs, routed), rfrac)
        r.index.config = mass_cfg
        if qs.train is not None and qs.train_labels is not None:
            rng = np.random.default_rng(0)
            relevant = []
            for labs in qs.train_labels:
                rel = qs.relevant(labs)
                relevant.append([ids[i] for i in rng.permutation(rel)[:CLICKS]])
            t1 = time.perf_counter()
            n_pairs = r.learn(list(qs.train), relevant, kind="vector")
            retrain = r.retrain()
            out.update({"learned_pairs": n_pairs, "retrain_s": round(time.perf_counter() - t1, 1), "routing_after": r.index.generative.info.get("routing") if r.index.generative else None,
                        "train_stop": retrain.train.get("stop_reason")})
            hyb_a, frac_a = run_mode("hybrid")
            results["hybrid_after"] = (*scores(qs, hyb_a), frac_a)
            gen_a, _ = run_mode("generative")
            results["generative_after"] = (*scores(qs, gen_a), float("nan"))
            r.index.config = mass_cfg.with_(hybrid=replace(mass_cfg.hybrid, query_expansion=False))  # the router's share alone
            hyb_r, frac_r = run_mode("hybrid")
            results["hybrid_after_no_expansion"] = (*scores(qs, hyb_r), frac_r)
            r.index.config = mass_cfg
            out["memory"] = r.index.generative.info.get("memory") if r.index.generative else None
            for t in after_priors:  # the centroid prior flattened, so the learned decoder weighs more in routing
                r.index.config = mass_cfg.with_(hybrid=replace(mass_cfg.hybrid, prior_temperature=t))
                hyb_t, frac_t = run_mode("hybrid")
                results[f"hybrid_after_prior{t:g}"] = (*scores(qs, hyb_t), frac_t)
            r.index.config = mass_cfg
            sims = qs.test @ qs.train.T  # (t, q)
            mem, rec = [], []
            for i in range(len(qs.test)):
                near = np.argsort(-sims[i])[:NEAREST]
                pos = list(dict.fromkeys(row_of[p] for j in near for p in relevant[j]))
                cand = np.asarray(pos, np.int64)
                mem.append(cand[np.argsort(-(qs.docs[cand] @ qs.test[i]))][:100].tolist())
                centre = qs.docs[cand[:32]].mean(0)
                rows = r.store.query(centre / np.linalg.norm(centre), 100)
                rec.append([row_of[x.id] for x in rows])
            results["query_memory"] = (*scores(qs, mem), float("nan"))
            results["recommend"] = (*scores(qs, rec), 1.0)
        r.close()
    d = results["dense"][0]
    for name, (p10, r100, fr) in results.items():
        log.append((f"{qs.name} {name}: P@10 / R@100 / filter / P@10 vs dense", f"{p10:.3f} / {r100:.3f} / {fr:.3f} / {p10 / d if d else float('nan'):.3f}"))
        out[name] = {"p10": round(p10, 4), "r100": round(r100, 4), "filter_fraction": None if np.isnan(fr) else round(fr, 4),
                     "p10_vs_dense": round(p10 / d, 4) if d else None}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    figures[qs.name] = out


def retrain_at_scale(n: int, n_pairs: int, train_s: float, figures: dict[str, Any], log: list[tuple[str, Any]]) -> None:
    """Time ``learn`` + ``retrain()`` of ``n_pairs`` pairs into a built index of ``n`` clustered 512-d vectors.

    Queries are noisy copies of documents' topics, 10 relevant documents each (the documents
    nearest the query); the retrain uses the library's defaults (it continues from the built
    decoder), the build before it gets ``train_s`` seconds of training.
    """
    from benchmarks.retrieval import _VectorsOnly, synthetic
    from mmgr_qdrant import MultimodalRetriever

    d, per = 512, 10
    x = synthetic(n + n_pairs // per, d, seed=5)
    docs, queries = x[:n], x[n:]
    with tempfile.TemporaryDirectory() as tmp:
        r = MultimodalRetriever.create("scale", path=tmp, encoder=_VectorsOnly(d))
        ids = list(r.add_embeddings(docs, modality="image", ids=list(range(n)), batch_size=4096))
        t0 = time.perf_counter()
        r.build(time_budget_s=train_s)
        build_s = time.perf_counter() - t0
        relevant = []
        for b in range(0, len(queries), 256):
            sims = queries[b : b + 256] @ docs.T
            relevant += [[ids[j] for j in np.argsort(-row)[:per]] for row in sims]
        t1 = time.perf_counter()
        learned = r.learn(queries, relevant, kind="vector")
        t2 = time.perf_counter()
        report_ = r.retrain()
        t3 = time.perf_counter()
        r.close()
    out = {"n_docs": n, "learned_pairs": learned, "build_s": round(build_s, 1), "learn_s": round(t2 - t1, 1),
           "retrain_s": round(t3 - t2, 1), "retrain_train_s": round(report_.train_s, 1), "train_stop": report_.train.get("stop_reason")}
    figures["scale"] = out
    log.append((f"learn {learned} pairs into {n} docs: learn / retrain (train) s", f"{out['learn_s']} / {out['retrain_s']} ({out['retrain_train_s']})"))


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--train-s", type=float, default=90.0, help="decoder training budget of each build/retrain (seconds)")
    p.add_argument("--image-queries", type=int, default=300)
    p.add_argument("--sets", default="fmnist-text,fmnist-image,clipart")
    p.add_argument("--after-prior", default="", help="also hybrid after learning with these prior temperatures (comma-separated)")
    p.add_argument("--scale", type=int, default=0, help="also time learning --scale-pairs pairs into this many synthetic documents")
    p.add_argument("--scale-pairs", type=int, default=10_000)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    enc = load_encoder("lit:default")
    wanted = set(args.sets.split(",")) - {""}
    sets = [s for s in fmnist_sets(enc, args.image_queries) if s.name in wanted]
    if "clipart" in wanted:
        sets.append(clipart_set(enc))
    rows: list[tuple[str, Any]] = []
    figures: dict[str, Any] = {"encoder": enc.name, "train_s": args.train_s}
    for qs in sets:
        start = len(rows)
        run_set(qs, enc, args.train_s, rows, figures, tuple(float(t) for t in args.after_prior.split(",") if t))
        print(f"[{qs.name} done: {figures[qs.name]['seconds']} s]", *(f"  {a}: {b}" for a, b in rows[start:]), sep="\n", flush=True)
    if args.scale:
        retrain_at_scale(args.scale, args.scale_pairs, args.train_s, figures, rows)
        print(*rows[-1], flush=True)
    report("learning from queries (held-out phrasings)", rows, figures, args.json)


if __name__ == "__main__":
    main()
