"""Which docid prefixes hybrid search admits: a rule over the router's calibrated probability mass.

Part of the retriever layer (only ``retriever`` uses it). The router (``GenerativeIndex.route``)
scores every existing prefix of the filter's depth; the scores become calibrated probabilities

    p_i = softmax_i(score_i / T)

with a temperature ``T`` fitted at training time on a held-out slice (queries and documents the
decoder did not train on) by minimizing the negative log-likelihood of the true prefix. Prefixes
are then admitted, most probable first:

    keep prefix i while  (admitted docs < floor  or  kept mass < mass_target)
    stop before prefix i if admitted docs >= k and admitted docs + docs(i) > ceiling

where ``floor = max(min_fraction * N, min_candidates, k)`` and ``ceiling = max(max_fraction * N,
floor)``; whole prefixes never take the documents past the ceiling once ``k`` are admitted (so a
floor equal to the ceiling, a small collection's ``min_candidates``, ends a little under it). A sure query (one prefix holds most of the mass) scans little; an unsure one (a flat
distribution: a query far from anything learned) scans more, up to the ceiling. The rule is
monotone: for the same prefix order, a flatter distribution (one whose top-j mass is never larger)
never admits fewer documents, because the mass stop comes later and the floor and ceiling do not
depend on the probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .config import HybridConfig

if TYPE_CHECKING:
    from .decoder import BeamResult
    from .generative import GenerativeIndex

logger = logging.getLogger(__name__)

StopReason = Literal["mass", "floor", "ceiling", "beam", "unsure", "small"]
_GRID = np.exp(np.linspace(np.log(0.02), np.log(50.0), 81))  # temperatures tried by the fit
_MIN_CALIBRATION = 20  # fewer held-out pairs than this keep T = 1
_MAX_ROUTE_BEAM = 1024
_LIKENESS_QUANTILE = 0.01  # min_likeness: this quantile of the documents' own likeness


@dataclass(frozen=True)
class Admission:
    """The prefixes admitted for one query and why the list ended where it did.

    Attributes:
        pairs: the kept ``(prefix, router score)`` pairs, best first.
        probs: the calibrated probability of each kept prefix.
        n_admitted: documents under the kept prefixes.
        mass: calibrated probability mass of the kept prefixes.
        confidence: calibrated probability of the most likely prefix.
        reason: ``"mass"`` (the mass target was reached), ``"floor"`` (the mass was reached but
            the floor asked for more documents), ``"ceiling"`` (the next prefix would pass the
            ceiling), ``"beam"`` (no prefixes left), ``"unsure"`` (the query is off the documents'
            distribution and no learned query is near it) and ``"small"`` (the floor alone is
            ``dense_share`` of the collection): no filter, every document is searched.
        temperature: the calibration temperature used.
        floor / ceiling: the document bounds applied.
    """

    pairs: list[tuple[tuple[int, ...], float]]
    probs: list[float]
    n_admitted: int
    mass: float
    confidence: float
    reason: StopReason
    temperature: float
    floor: float
    ceiling: float
    likeness: float | None = None

    @property
    def unfiltered(self) -> bool:
        """The router stood aside: search every document (dense), ranked by the vector alone."""
        return self.reason in ("unsure", "small")

    def explain(self) -> dict[str, Any]:
        """The figures ``search(..., explain=True)`` attaches to a hybrid hit."""
        return {
            "admitted": self.n_admitted, "mass": round(self.mass, 4), "confidence": round(self.confidence, 4),
            "stopped": self.reason, "temperature": round(self.temperature, 4), "floor": int(self.floor),
            "ceiling": int(self.ceiling), "prefixes": len(self.pairs),
            **({"likeness": round(self.likeness, 4)} if self.likeness is not None else {}),
        }


def calibrated(scores: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(scores / T)`` over the last axis; ``-inf`` scores get probability 0."""
    z = np.asarray(scores, np.float64) / max(float(temperature), 1e-6)
    finite = np.isfinite(z)
    top = np.where(finite, z, -np.inf).max(-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)  # a row without a finite score: all zeros, no warning
    e = np.where(finite, np.exp(np.where(finite, z - top, 0.0)), 0.0)
    return e / np.maximum(e.sum(-1, keepdims=True), 1e-300)


def admit_by_mass(
    pairs: Sequence[tuple[tuple[int, ...], float]],
    counts: Sequence[int],
    *,
    n_docs: int,
    k: int,
    hybrid: HybridConfig,
    temperature: float,
) -> Admission:
    """Apply the mass rule (module docstring) to one query's ``pairs``, best first, with ``counts`` documents each."""
    scores = np.asarray([s for _, s in pairs], np.float64)
    p = calibrated(scores, temperature) if len(scores) else scores
    floor = float(max(hybrid.min_fraction * n_docs, hybrid.min_candidates, k))
    ceiling = float(max(hybrid.max_fraction * n_docs, floor))
    kept: list[tuple[tuple[int, ...], float]] = []
    probs: list[float] = []
    total, mass = 0, 0.0
    reason: StopReason = "beam"
    for_floor = False
    for pair, c, pi in zip(pairs, counts, p.tolist()):
        need_floor, need_mass = total < floor, mass < hybrid.mass_target
        if not (need_floor or need_mass):
            reason = "floor" if for_floor else "mass"
            break
        if total >= k and total + c > ceiling:
            reason = "ceiling"
            break
        kept.append(pair)
        probs.append(pi)
        total += int(c)
        mass += pi
        for_floor = not need_mass
    else:
        if kept and mass >= hybrid.mass_target:
            reason = "floor" if for_floor else "mass"
    return Admission(kept, probs, total, mass, float(p[0]) if len(p) else 0.0, reason, float(temperature), floor, ceiling)


def route_width(gen: GenerativeIndex, hybrid: HybridConfig, depth: int) -> int:
    """Beam width that scores every existing prefix of ``depth`` (capped), so the mass is over all of them."""
    n = gen.decodable().num_nodes(depth)  # from the trie's cached level arrays, not a pass over every docid
    return int(min(max(hybrid.beam_size, n), max(hybrid.beam_size, _MAX_ROUTE_BEAM)))


def temperature_of(gen: GenerativeIndex) -> float:
    """The calibration temperature saved with the build (1.0 for builds made before calibration)."""
    return float((gen.info.get("routing") or {}).get("temperature", 1.0))


def min_likeness_of(gen: GenerativeIndex) -> float | None:
    """The document-likeness below which a query is off the documents' distribution (``None``: never)."""
    value = (gen.info.get("routing") or {}).get("min_likeness")
    return None if value is None else float(value)


def admit_batch(
    gen: GenerativeIndex, vecs: np.ndarray, hybrid: HybridConfig, *, k: int, modality: int | None,
    covered: np.ndarray | None = None,
) -> tuple[int, list[Admission]]:
    """Route ``vecs`` (b, d) and admit prefixes for each by the configured rule.

    ``hybrid.admission == "fixed"`` keeps the rule of earlier versions (the most likely
    prefixes while their documents fit in ``max(max_fraction * N, min_candidates)``), for comparison.

    No filter at all (every document searched, by the vector alone) in two cases: the floor is at
    least ``hybrid.dense_share`` of the collection (``"small"``: filtering would save little and
    only risk recall), or, with ``hybrid.when_unsure == "dense"``, the query is less document-like
    than ``min_likeness`` (the build's 1st percentile of the documents' own likeness,
    ``GenerativeIndex.likeness``) and not ``covered`` (near a learned query, ``QueryMemory``):
    ``"unsure"``.

    Returns:
        The filter depth and one :class:`Admission` per query.
    """
    depth = min(1 + hybrid.depth, gen.n_levels)
    n_docs = len(gen.trie)
    if hybrid.admission == "fixed":
        beams = gen.route(vecs, beam_size=hybrid.beam_size, depth=depth, modality=modality, temperature=hybrid.prior_temperature)
        budget = max(hybrid.max_fraction * n_docs, hybrid.min_candidates)
        out = []
        for i in range(len(vecs)):
            pairs, n = gen.admit(beams.query(i), budget=budget, min_docs=k)
            p = calibrated(np.asarray([s for _, s in pairs]), 1.0) if pairs else np.zeros(0)
            out.append(Admission(pairs, p.tolist(), n, 1.0, float(p[0]) if len(p) else 0.0, "ceiling", 1.0, float(k), budget))
        return depth, out
    temperature = temperature_of(gen)
    floor_ = float(max(hybrid.min_fraction * n_docs, hybrid.min_candidates, k))
    if floor_ >= hybrid.dense_share * n_docs:
        return depth, [Admission([], [], n_docs, 0.0, 0.0, "small", temperature, floor_, float(n_docs)) for _ in range(len(vecs))]
    like = gen.likeness(vecs, modality)
    bound = min_likeness_of(gen)
    unsure = np.zeros(len(vecs), bool)
    if hybrid.when_unsure == "dense" and like is not None and bound is not None:
        unsure = like < bound
        if covered is not None:
            unsure &= ~covered
    sure = np.flatnonzero(~unsure)  # only these are routed
    admitted: list[Admission] = []
    if len(sure):
        beams = gen.route(
            vecs[sure], beam_size=route_width(gen, hybrid, depth), depth=depth, modality=modality, temperature=hybrid.prior_temperature
        )
        admitted = admit_beams(gen, beams, n_docs=n_docs, k=k, hybrid=hybrid, temperature=temperature,
                               likeness=None if like is None else like[sure])
    routed = iter(admitted)
    return depth, [
        Admission([], [], n_docs, 0.0, 0.0, "unsure", temperature, floor_, float(n_docs), None if like is None else float(like[i]))
        if unsure[i] else next(routed)
        for i in range(len(vecs))
    ]


def admit_beams(
    gen: GenerativeIndex, beams: BeamResult, *, n_docs: int, k: int, hybrid: HybridConfig, temperature: float,
    likeness: np.ndarray | None = None,
) -> list[Admission]:
    """:func:`admit_by_mass` for every query of ``beams`` at once, in array code (``likeness``: each
    query's ``GenerativeIndex.likeness``, kept on its admission).

    The same rule and the same figures as the loop (tests compare them): cumulative documents and
    mass per prefix, the first prefix that meets a stop condition, and Python objects only for the
    prefixes kept (the router scores every prefix; the rule usually keeps a few).
    """
    b, w = beams.scores.shape
    if b == 0:
        return []
    valid = beams.valid
    n_valid = valid.sum(1)
    prefixes, raw = beams.prefixes, beams.scores
    if not (valid == (np.arange(w) < n_valid[:, None])).all():  # valid pairs first, as BeamResult.query lists them
        order = np.argsort(~valid, axis=1, kind="stable")
        prefixes, raw = np.take_along_axis(prefixes, order[:, :, None], axis=1), np.take_along_axis(raw, order, axis=1)
    inside = np.arange(w) < n_valid[:, None]
    scores = np.where(inside, raw.astype(np.float64), -np.inf)
    p = calibrated(scores, temperature)
    depth = prefixes.shape[2]
    counts = np.where(inside, gen.prefix_counts(prefixes.reshape(b * w, depth)).reshape(b, w), 0)
    floor = float(max(hybrid.min_fraction * n_docs, hybrid.min_candidates, k))
    ceiling = float(max(hybrid.max_fraction * n_docs, floor))
    mass_after = np.cumsum(p, axis=1)  # sequential float64 sums, as the loop adds them
    mass_before = np.concatenate([np.zeros((b, 1)), mass_after[:, :-1]], axis=1)
    docs_after = np.cumsum(counts, axis=1)
    docs_before = docs_after - counts
    stop_mass = (docs_before >= floor) & (mass_before >= hybrid.mass_target)
    stop = (stop_mass | ((docs_before >= k) & (docs_after > ceiling))) & inside
    stopped = stop.any(1)
    ends = np.where(stopped, stop.argmax(1), n_valid).tolist()
    out = []
    for i, end in enumerate(ends):
        reason: StopReason
        if end and (stopped[i] and stop_mass[i, end] or not stopped[i] and mass_after[i, end - 1] >= hybrid.mass_target):
            reason = "floor" if mass_before[i, end - 1] >= hybrid.mass_target else "mass"
        else:
            reason = "ceiling" if stopped[i] else "beam"
        kept = [(tuple(pre), sc) for pre, sc in zip(prefixes[i, :end].tolist(), raw[i, :end].tolist())]
        out.append(Admission(
            kept, p[i, :end].tolist(), int(docs_after[i, end - 1]) if end else 0, float(mass_after[i, end - 1]) if end else 0.0,
            float(p[i, 0]) if n_valid[i] else 0.0, reason, float(temperature), floor, ceiling,
            None if likeness is None else float(likeness[i]),
        ))
    return out


def level1_centres(vecs: np.ndarray, docids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The raw mean vector of each (modality, level-1 code) group of documents ``(K, d)``, and its modality ``(K,)``."""
    from scipy.sparse import csr_matrix

    keys, group = np.unique(np.asarray(docids)[:, :2], axis=0, return_inverse=True)
    group = group.reshape(-1)
    sums = np.zeros((len(keys), vecs.shape[1]), np.float64)
    for s in range(0, len(vecs), 16_384):  # blocks in float64: no float64 copy of a million vectors (67 MB at a time)
        g = group[s : s + 16_384]
        onehot = csr_matrix((np.ones(len(g)), (g, np.arange(len(g)))), shape=(len(keys), len(g)))  # (K, block)
        sums += onehot @ np.asarray(vecs[s : s + 16_384], np.float64)
    counts = np.bincount(group, minlength=len(keys)).astype(np.float64)
    return (sums / counts[:, None]).astype(np.float32), keys[:, 0].astype(np.int64)


def fit_likeness(gen: GenerativeIndex, vecs: np.ndarray, modalities: np.ndarray, *, sample: int = 20_000, seed: int = 0) -> float | None:
    """``min_likeness``: the 1st percentile of (a sample of) the documents' likeness under their own modality."""
    rng = np.random.default_rng(seed + 31)
    rows = np.sort(rng.choice(len(vecs), min(sample, len(vecs)), replace=False)) if len(vecs) else np.zeros(0, np.int64)
    if len(rows) < _MIN_CALIBRATION:
        return None
    like = np.full(len(rows), np.nan, np.float32)
    mods = np.asarray(modalities)[rows]
    for m in np.unique(mods).tolist():
        at = mods == m
        got = gen.likeness(np.asarray(vecs[rows[at]], np.float32), int(m))
        if got is None:
            return None
        like[at] = got
    return round(float(np.quantile(like, _LIKENESS_QUANTILE)), 4)


def fit_temperature(
    gen: GenerativeIndex, queries: np.ndarray, target_docids: np.ndarray, hybrid: HybridConfig
) -> dict[str, Any]:
    """Fit the calibration temperature on held-out ``queries`` (m, d) and their documents' docids (m, L).

    Returns:
        ``{"temperature", "n_calibration", "nll", "top1"}`` for the build's info (``T = 1`` with fewer
        than 20 usable held-out pairs).
    """
    depth = min(1 + hybrid.depth, gen.n_levels)
    if len(queries) < _MIN_CALIBRATION or len(gen.trie) == 0:
        return {"temperature": 1.0, "n_calibration": len(queries), "nll": None, "top1": None}
    beams = gen.route(
        np.asarray(queries, np.float32), beam_size=route_width(gen, hybrid, depth), depth=depth,
        modality=None, temperature=hybrid.prior_temperature,
    )
    want = np.asarray(target_docids, np.int64)[:, :depth]  # (m, depth)
    hit = (beams.prefixes == want[:, None, :]).all(-1) & beams.valid  # (m, beam)
    found = hit.any(1)
    if found.sum() < _MIN_CALIBRATION:
        return {"temperature": 1.0, "n_calibration": int(found.sum()), "nll": None, "top1": None}
    scores = beams.scores[found].astype(np.float64)
    where = hit[found].argmax(1)
    best_t, best_nll = 1.0, np.inf
    for t in _GRID:
        p = calibrated(scores, float(t))
        nll = float(-np.log(np.maximum(p[np.arange(len(p)), where], 1e-12)).mean())
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    top1 = float((where == 0).mean())
    logger.info("router calibration: T=%.3f on %d held-out pairs (nll %.3f, top-1 %.3f)", best_t, len(scores), best_nll, top1)
    return {"temperature": best_t, "n_calibration": len(scores), "nll": round(best_nll, 4), "top1": round(top1, 4)}


__all__ = [
    "Admission", "admit_batch", "admit_beams", "admit_by_mass", "calibrated", "fit_likeness", "fit_temperature", "level1_centres",
    "min_likeness_of", "route_width", "temperature_of",
]
