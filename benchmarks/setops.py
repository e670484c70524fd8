"""Boolean queries over docid sets against dense baselines, on openclipart images and their keywords.

Corpora (images only; an image's openclipart keywords are its ground truth):

* ``sample``: the 300 images of ``examples/data/clipart.jsonl`` (all from the held-out part, which
  the shipped ``lit:default`` head never saw).
* ``debian`` (when ``openclipart-png``/``-svg`` are installed): the held-out part (510 images with
  keywords; the default, ``--n-debian 500``) plus, with a larger ``--n-debian``, a fixed-seed
  sample of the rest (``--n-debian 7000``: the whole set, 6,132 images). Keywords and the split
  come from ``scripts/prepare_data.py``. Beware the rest: the shipped head was *trained* on those
  images with captions "title, keyword, keyword, ...", so their ground-truth keywords leaked into
  the encoder, and a dense text query "A and B" finds them by memory. Only held-out images test
  the algebra fairly; figures on the rest are printed for completeness.

Queries: at least 20 of each form ``A``, ``A AND B``, ``A OR B``, ``A AND NOT B``, over keywords
with enough support (``AND``/``AND NOT`` pairs co-occur, so NOT has something to remove). Each
concept is the keyword as text, ``Q.text("flag") & ~Q.text("europe")``.

The index holds each image and, as ``add_images(..., captions=..., caption_docs=True)`` stores
them, its openclipart title as a linked text document (the cross-modal map; ``--no-caption-docs``
leaves them out). Titles are not keywords ("Baby-Tux" for penguin, tux, animal, linux).

Methods, all in the same run on the same embeddings and index, every one returning images:

* ``algebra``: ``r.search(Q-expression, modality="image")`` with the retriever's cut-offs.
* ``dense_text``: one text query phrased as the boolean ("A and B", "A or B", "A but not B").
* ``dense_arith``: embedding arithmetic, normalize(A + B) for AND and OR, normalize(A - B) for NOT.
* ``dense_text+cap`` and ``dense_arith+cap`` (with caption documents): the same query vectors
  scored over each image *and* its caption, cos(q, image) + cos(q, caption), exactly (numpy) -
  dense search given the same cross-modal evidence the algebra ranks with.
* ``best_dense``: per query form, whichever of ``dense_text``/``dense_arith`` has the higher mean
  precision@10 (the issue's baselines); ``best_dense+cap`` likewise over all four.

Figures: precision@10 and recall@50 per form and method, ``gain`` = algebra P@10 / best dense
P@10 - 1 and ``gain+cap`` against ``best_dense+cap``. Target: gain >= 0.20 on AND and AND NOT,
>= 0 on A and OR. ``--sweep`` also scores a grid of cut-offs (the dense figures do not change).

Embeddings are cached under ``.cache/setops/`` (git-ignored).

    python -m benchmarks.setops [--corpus sample|debian|both] [--sweep] [--no-caption-docs] [--json]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _common

REPO = Path(__file__).resolve().parents[1]

from mmgr_qdrant import MultimodalRetriever
from mmgr_qdrant.setops import ConceptCutoff, Q

CACHE = REPO / ".cache" / "setops"
ENCODER = "lit:default"
FORMS = ("A", "AND", "OR", "AND NOT")
K_P, K_R = 10, 50
N_QUERIES = 25  # per form (>= 20)


# -- corpora ---------------------------------------------------------------------------------------
def sample_corpus() -> dict[str, Any]:
    root = REPO / "examples" / "data"
    rows = [json.loads(line) for line in (root / "clipart.jsonl").read_text().splitlines() if line.strip()]
    return {"name": "sample", "paths": [str(root / r["file"]) for r in rows], "captions": [r["caption"] for r in rows],
            "keywords": [[k.lower() for k in r["keywords"]] for r in rows], "min_support": 5, "min_pair": 2}


def debian_corpus(n: int, seed: int = 0) -> dict[str, Any] | None:
    from scripts import prepare_data as data

    if not (data.OPENCLIPART / "png").is_dir() or not (data.OPENCLIPART / "svg").is_dir():
        return None
    items = [c for c in data.read_openclipart() if data.good_keywords(c, 20)]
    held = {rel for rel, _ in data.read_heldout()}
    heldout = [c for c in items if c.rel in held]
    rest = [c for c in items if c.rel not in held]
    per_cap: Counter[str] = Counter()
    kept = []
    for c in rest:  # the 1,375 near-identical "gramastar" stars would swamp everything (as in training)
        cap = data.filename_caption(c)
        per_cap[cap] += 1
        if per_cap[cap] <= data.MAX_PER_FILENAME_CAPTION:
            kept.append(c)
    rng = np.random.default_rng(seed)
    others = [kept[i] for i in sorted(rng.permutation(len(kept))[: max(0, n - len(heldout))])]
    chosen = heldout + others
    out = CACHE / "images"
    return {"name": "debian", "paths": [str(data.clipart_image(c.rel, out)) for c in chosen], "captions": [c.title or data.filename_caption(c) for c in chosen],
            "keywords": [data.good_keywords(c, 20) for c in chosen], "n_heldout": len(heldout),
            # support thresholds grow with the corpus: 5/2 (as the sample's) up to 1,000 images, 10/5 from 3,000
            "min_support": max(5, round(len(chosen) / 300)), "min_pair": max(2, round(len(chosen) / 600))}


def embed_images(paths: list[str], encoder: Any) -> np.ndarray:
    key = hashlib.sha1(("\n".join(paths) + ENCODER).encode()).hexdigest()[:16]
    file = CACHE / f"img-{key}.npy"
    if file.is_file():
        return np.load(file)
    CACHE.mkdir(parents=True, exist_ok=True)
    vecs = np.concatenate([encoder.encode_images(paths[i : i + 64]) for i in range(0, len(paths), 64)])
    np.save(file, vecs)
    return vecs


# -- queries ---------------------------------------------------------------------------------------
def make_queries(keywords: list[list[str]], min_support: int, min_pair: int, n: int = N_QUERIES) -> dict[str, list[tuple[str, ...]]]:
    """Deterministic queries of each form over keywords with enough support."""
    sets: dict[str, set[int]] = {}
    for i, kws in enumerate(keywords):
        for k in kws:
            sets.setdefault(k, set()).add(i)
    kw = sorted((k for k, s in sets.items() if len(s) >= min_support), key=lambda k: (-len(sets[k]), k))
    pairs = list(itertools.combinations(kw, 2))
    co = {p: len(sets[p[0]] & sets[p[1]]) for p in pairs}
    # AND: co-occurring pairs where neither keyword implies the other (else AND is just one keyword)
    and_pairs = [p for p in pairs if co[p] >= min_pair and co[p] <= 0.8 * min(len(sets[p[0]]), len(sets[p[1]]))]
    and_pairs.sort(key=lambda p: (-co[p], p))
    # AND NOT: B co-occurs with A (so NOT has something to remove) and A without B has support
    not_pairs = [(a, b) for a, b in itertools.permutations(kw, 2)
                 if len(sets[a] & sets[b]) >= min_pair and len(sets[a] - sets[b]) >= min_pair]
    not_pairs.sort(key=lambda p: (-len(sets[p[0]] & sets[p[1]]) / len(sets[p[0]]), p))
    # OR: pairs of distinct concepts (little overlap), most supported first
    or_pairs = [p for p in pairs if co[p] <= 0.2 * min(len(sets[p[0]]), len(sets[p[1]]))]
    or_pairs.sort(key=lambda p: (-(len(sets[p[0]]) + len(sets[p[1]])), p))
    return {"A": [(k,) for k in kw[:n]], "AND": _spread(and_pairs, n), "OR": _spread(or_pairs, n), "AND NOT": _spread(not_pairs, n)}


def _spread(pairs: list[tuple[str, str]], n: int) -> list[tuple[str, ...]]:
    """The first ``n`` pairs, preferring pairs whose first keyword is not used yet (variety)."""
    out: list[tuple[str, ...]] = []
    used: Counter[str] = Counter()
    for cap in (1, 2, 3, 10**9):
        for p in pairs:
            if len(out) >= n:
                return out
            if p not in out and used[p[0]] < cap:
                out.append(p)
                used[p[0]] += 1
    return out


def relevant(form: str, q: tuple[str, ...], kws: set[str]) -> bool:
    if form == "A":
        return q[0] in kws
    a, b = q[0] in kws, q[1] in kws
    return {"AND": a and b, "OR": a or b, "AND NOT": a and not b}[form]


def expr_of(form: str, q: tuple[str, ...]) -> Any:
    if form == "A":  # a lone Q.text is an ordinary (hybrid) text query; AND modality keeps it an expression
        return Q.text(q[0]) & Q.modality("image")
    a, b = Q.text(q[0]), Q.text(q[1])
    return {"AND": a & b, "OR": a | b, "AND NOT": a & ~b}[form]


def phrase_of(form: str, q: tuple[str, ...]) -> str:
    return q[0] if form == "A" else {"AND": "{} and {}", "OR": "{} or {}", "AND NOT": "{} but not {}"}[form].format(*q)


def arith_of(form: str, q: tuple[str, ...], vec: dict[str, np.ndarray]) -> np.ndarray:
    if form == "A":
        return vec[q[0]]
    v = vec[q[0]] - vec[q[1]] if form == "AND NOT" else vec[q[0]] + vec[q[1]]
    return v / max(float(np.linalg.norm(v)), 1e-12)


# -- scoring ---------------------------------------------------------------------------------------
def score(hits: list[Any], form: str, q: tuple[str, ...], n_rel: int) -> tuple[float, float]:
    rel = [relevant(form, q, set(h.payload.get("keywords", []))) for h in hits]
    return sum(rel[:K_P]) / K_P, sum(rel[:K_R]) / max(1, n_rel)


def run_method(queries: dict[str, list[tuple[str, ...]]], n_rel: dict[Any, int], search: Any) -> dict[str, dict[str, float]]:
    out = {}
    for form, qs in queries.items():
        ps, rs = zip(*(score(search(form, q), form, q, n_rel[form, q]) for q in qs))
        out[form] = {"p@10": float(np.mean(ps)), "r@50": float(np.mean(rs))}
    return out


def algebra_method(r: MultimodalRetriever, queries: dict[str, list[tuple[str, ...]]], n_rel: dict[Any, int]) -> dict[str, dict[str, float]]:
    return run_method(queries, n_rel, lambda form, q: r.search(expr_of(form, q), k=K_R, modality="image"))


class CaptionDense:
    """Exact dense ranking of images by cos(q, image) + cos(q, its caption document)."""

    def __init__(self, r: MultimodalRetriever, image_ids: list[Any], text_ids: list[Any]) -> None:
        pairs = dict(zip(image_ids, text_ids))  # identical images are stored once (content ids): rank each once
        recs = {x.id: x for x in r.store.retrieve(list(pairs) + list(pairs.values()), with_vectors=True)}
        self.images = [recs[i] for i in pairs]
        self.x = np.stack([recs[i].vector for i in pairs]) + np.stack([recs[t].vector for t in pairs.values()])

    def search(self, q: np.ndarray, k: int) -> list[Any]:
        return [self.images[i] for i in np.argsort(-(self.x @ q), kind="stable")[:k]]


def evaluate_corpus(corpus: dict[str, Any], encoder: Any, *, sweep: bool, caption_docs: bool, budget: float | None, log: logging.Logger) -> dict[str, Any]:
    t0 = time.perf_counter()
    vecs = embed_images(corpus["paths"], encoder)
    t_embed = time.perf_counter() - t0
    keywords = corpus["keywords"]
    queries = make_queries(keywords, corpus["min_support"], corpus["min_pair"])
    n_rel = {(form, q): sum(relevant(form, q, set(k)) for k in keywords) for form, qs in queries.items() for q in qs}
    with tempfile.TemporaryDirectory() as tmp:
        r = MultimodalRetriever.create(corpus["name"], path=tmp, encoder=encoder)
        try:
            ids = r.add_embeddings(vecs, modality="image", payloads=[{"keywords": k} for k in keywords], uris=corpus["paths"])
            if caption_docs:  # as add_images(..., captions=..., caption_docs=True) does
                text_ids = r.add_texts(corpus["captions"], payloads=[{"keywords": k} for k in keywords])
                r.link_many(list(zip(ids, text_ids)))
            t1 = time.perf_counter()
            report = r.build(seed=0, time_budget_s=budget)
            t_build = time.perf_counter() - t1
            log.info("%s: embedded %d images in %.0fs, built in %.0fs", corpus["name"], len(vecs), t_embed, t_build)
            words = sorted({w for qs in queries.values() for q in qs for w in q})
            wvec = dict(zip(words, r.encoder.encode_texts(words)))
            phrases = {(f, q): phrase_of(f, q) for f, qs in queries.items() for q in qs}
            pvec = dict(zip(phrases, r.encoder.encode_texts(list(phrases.values()))))
            t2 = time.perf_counter()
            methods = {
                "dense_text": run_method(queries, n_rel, lambda f, q: r.search(vector=pvec[f, q], k=K_R, modality="image", mode="dense")),
                "dense_arith": run_method(queries, n_rel, lambda f, q: r.search(vector=arith_of(f, q, wvec), k=K_R, modality="image", mode="dense")),
            }
            if caption_docs:
                cd = CaptionDense(r, list(ids), list(text_ids))
                methods["dense_text+cap"] = run_method(queries, n_rel, lambda f, q: cd.search(pvec[f, q], K_R))
                methods["dense_arith+cap"] = run_method(queries, n_rel, lambda f, q: cd.search(arith_of(f, q, wvec), K_R))
            t_dense = time.perf_counter() - t2
            log.info("dense baselines in %.0fs", t_dense)
            cuts = (r.cutoff, r.negative_cutoff)
            t3 = time.perf_counter()
            methods["algebra"] = algebra_method(r, queries, n_rel)
            t_alg = time.perf_counter() - t3
            log.info("algebra in %.0fs: %s", t_alg, {f: v["p@10"] for f, v in methods["algebra"].items()})
            # ablation: AND NOT with the NOT left out (rank by A alone): what the exclusion itself adds
            no_not = run_method({"AND NOT": queries["AND NOT"]}, n_rel, lambda f, q: r.search(expr_of("A", q[:1]), k=K_R, modality="image"))
            grid: list[dict[str, Any]] = []
            if sweep:
                for which, cut in sweep_grid():
                    r.cutoff, r.negative_cutoff = (cut, cuts[1]) if which == "positive" else (cuts[0], cut)
                    grid.append({"which": which, "cutoff": asdict(cut), **{f: v["p@10"] for f, v in algebra_method(r, queries, n_rel).items()}})
                    log.info("%s %s %s", which, cut, grid[-1])
                r.cutoff, r.negative_cutoff = cuts
        finally:
            r.close()
    issue = ("dense_text", "dense_arith")
    with_cap = tuple(m for m in methods if m.startswith("dense_"))
    best = {f: max(issue, key=lambda m: methods[m][f]["p@10"]) for f in FORMS}
    best_cap = {f: max(with_cap, key=lambda m: methods[m][f]["p@10"]) for f in FORMS}
    gain = {f: methods["algebra"][f]["p@10"] / max(methods[best[f]][f]["p@10"], 1e-12) - 1 for f in FORMS}
    gain_cap = {f: methods["algebra"][f]["p@10"] / max(methods[best_cap[f]][f]["p@10"], 1e-12) - 1 for f in FORMS}

    def met(g: dict[str, float]) -> bool:
        return all(g[f] >= 0.2 for f in ("AND", "AND NOT")) and all(g[f] >= 0 for f in ("A", "OR"))

    return {
        "corpus": corpus["name"], "n_images": len(vecs), "n_heldout": corpus.get("n_heldout", len(vecs)), "caption_docs": caption_docs,
        "n_queries": {f: len(queries[f]) for f in FORMS}, "cutoff": asdict(cuts[0]), "negative_cutoff": asdict(cuts[1]),
        "methods": methods, "best_dense": best, "gain": gain, "target_met": met(gain), "and_not_without_not": no_not["AND NOT"],
        "best_dense+cap": best_cap, "gain+cap": gain_cap, "target_met+cap": met(gain_cap),
        "codebook_sizes": [lv["codebook_size"] for lv in report.docid_stats.get("levels", [])],
        "seconds": {"embed": t_embed, "build": t_build, "dense": t_dense, "algebra": t_alg}, "sweep": grid,
        "examples": {f: [" ".join(q) for q in queries[f][:3]] for f in FORMS},
    }


def sweep_grid() -> list[tuple[str, ConceptCutoff]]:
    """Cut-offs to score: positive ones (AND, OR, A) and negative ones (the NOT of AND NOT)."""
    out = [("positive", ConceptCutoff(beam_size=b, mass=m, depth=d)) for d, b, m in ((2, 32, 0.9), (2, 64, 1.0), (3, 64, 0.9))]
    out += [("positive", ConceptCutoff(beam_size=256, mass=None, depth=d, max_fraction=f)) for d, f in ((2, 0.1), (2, 0.25), (2, 0.5), (3, 0.25))]
    out += [("negative", ConceptCutoff(beam_size=64, mass=None, depth=d, max_fraction=f)) for d, f in ((2, 0.05), (3, 0.01), (3, 0.05), (4, 0.02))]
    return out


def cell(res: dict[str, Any], method: str, form: str) -> str:
    m = res["methods"][method][form]
    return f"{m['p@10']:.3f}/{m['r@50']:.3f}"


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--corpus", choices=("sample", "debian", "both"), default="both")
    p.add_argument("--n-debian", type=int, default=500, help="images of the Debian set (held-out part first; 500 = held out only)")
    p.add_argument("--sweep", action="store_true", help="also score a grid of ConceptCutoff settings")
    p.add_argument("--no-caption-docs", dest="caption_docs", action="store_false", help="store the images alone, without their titles as linked text documents")
    p.add_argument("--train-budget", type=float, default=60.0, help="seconds of decoder training per index")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    log = logging.getLogger("benchmarks.setops")
    log.setLevel(logging.INFO)
    from mmgr_qdrant.encoders.base import get_encoder

    encoder = get_encoder(ENCODER)
    corpora = []
    if args.corpus in ("sample", "both"):
        corpora.append(sample_corpus())
    if args.corpus in ("debian", "both"):
        deb = debian_corpus(args.n_debian)
        if deb is None:
            log.warning("openclipart-png/-svg are not installed; skipping the Debian set")
        else:
            corpora.append(deb)
    results = [evaluate_corpus(c, encoder, sweep=args.sweep, caption_docs=args.caption_docs, budget=args.train_budget, log=log) for c in corpora]

    for res in results:
        print(f"\n{res['corpus']} ({res['n_images']} images, {res['n_heldout']} held out; caption docs {res['caption_docs']}; "
              f"codebooks {res['codebook_sizes']})\ncut-off {res['cutoff']}\nnegative cut-off {res['negative_cutoff']}")
        names = [m for m in res["methods"] if m != "algebra"]
        print(f"{'form':8} {'n':>3}  {'algebra':>11}  " + "  ".join(f"{m:>15}" for m in names) + f"  {'gain':>7}  {'gain+cap':>8}")
        for f in FORMS:
            print(f"{f:8} {res['n_queries'][f]:>3}  {cell(res, 'algebra', f):>11}  " + "  ".join(f"{cell(res, k, f):>15}" for k in names)
                  + f"  {res['gain'][f]:+7.1%}  {res['gain+cap'][f]:+8.1%}")
        print(f"(cells: precision@10/recall@50)   AND NOT with the NOT left out (ranked by A alone): "
              f"{res['and_not_without_not']['p@10']:.3f}/{res['and_not_without_not']['r@50']:.3f}")
        print(f"target met: {res['target_met']} (vs the issue's baselines), {res['target_met+cap']} (vs all four)   seconds: "
              + ", ".join(f"{k} {v:.1f}" for k, v in res["seconds"].items()))
        if res["sweep"]:
            print("sweep (algebra P@10 per form):")
            for g in res["sweep"]:
                c = g["cutoff"]
                print(f"  {g['which']:8} beam {c['beam_size']:>3} mass {c['mass']} depth {c['depth']} max_fraction {c['max_fraction']}: "
                      + "  ".join(f"{f} {g[f]:.3f}" for f in FORMS))
    if args.json:
        print(json.dumps({"benchmark": "setops", "encoder": ENCODER, "results": results}, sort_keys=True))


if __name__ == "__main__":
    main()
