"""Learned query expansion: what hybrid search does with the learned pairs besides routing.

Part of the retriever layer (only ``retriever`` uses it; numpy only). A build that saw learned
query pairs (``r.learn``) keeps, for each distinct learned query ``j``, its embedding ``u_j`` and
the grade-weighted mean ``c_j`` of its relevant documents' vectors (unit length). A hybrid query
``q`` close to learned queries is moved towards what they found relevant before it is ranked:

    s_j = q . u_j                                  # (m,) similarity to each learned query
    N   = the `nearest` learned queries with s_j >= min_sim
    w_j = softmax_{j in N}(s_j / sharpness)
    q'  = unit(q + weight * sum_j w_j c_j)         # no learned query close enough: q' = q

It is Rocchio's relevance feedback with the learned pairs as the feedback, and it works where the
vector alone cannot: a text query against image documents is ranked by image-to-image similarity
to documents users marked relevant for similar queries. The router (the decoder, trained on the
same pairs) still chooses which prefixes are searched; the expansion only changes the ranking
vector.

Both settings are fitted at build time, on the learned pairs alone:

* ``min_sim`` (coverage): the 5th percentile of the learned queries' similarity to their nearest
  *other* learned query. A query at least that close to a learned one is "covered"; one farther
  away (a topic nobody taught) is searched as it is.
* ``weight``: leave-one-out over the learned queries (each one expanded from the *others*, near
  copies of itself left out), the weight in ``WEIGHTS`` whose ranking puts most of the query's own
  relevant documents in its top ``10 x |relevant|``; 0 when expansion does not help.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .encoders.base import normalize

logger = logging.getLogger(__name__)

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # expansion weights the leave-one-out fit chooses from
NEAREST = 5  # learned queries an expansion draws on
SHARPNESS = 0.05  # softmax temperature over their similarities
COVERAGE_QUANTILE = 0.05  # min_sim: this quantile of the learned queries' nearest-other similarity
SAME_QUERY = 0.98  # leave-one-out also leaves out learned queries this similar (near copies)
MIN_FIT_QUERIES = 10  # fewer distinct learned queries: no fit, near repeats only (FEW_MIN_SIM, weight 1)
FEW_MIN_SIM = 0.9
MAX_FIT_QUERIES = 300  # leave-one-out on at most this many learned queries
MAX_FIT_DOCS = 50_000  # and ranks at most this many documents (their relevant ones always among them)


@dataclass(frozen=True)
class QueryMemory:
    """Learned queries and the centre of what each found relevant (see the module docstring).

    Attributes:
        queries: ``(m, d)`` unit learned query embeddings.
        centres: ``(m, d)`` unit grade-weighted means of each query's relevant documents.
        weight: how far a covered query moves towards the centres (0: never).
        min_sim: the similarity to a learned query from which a query counts as covered.
    """

    queries: np.ndarray
    centres: np.ndarray
    weight: float
    min_sim: float

    def __len__(self) -> int:
        return len(self.queries)

    def expand(self, vecs: np.ndarray, *, exclude: np.ndarray | None = None, weight: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Expanded unit query vectors ``(b, d)`` and each query's best similarity to a learned query ``(b,)``.

        ``exclude`` (b, m) bool masks learned queries out per query (the leave-one-out fit);
        ``weight`` overrides the fitted weight.
        """
        w_exp = self.weight if weight is None else weight
        vecs = np.asarray(vecs, np.float32)
        if len(self.queries) == 0 or len(vecs) == 0:
            return vecs, np.zeros(len(vecs), np.float32)
        sims = vecs @ self.queries.T  # (b, m)
        if exclude is not None:
            sims = np.where(exclude, -np.inf, sims)
        n = min(NEAREST, sims.shape[1])
        top = np.argpartition(-sims, n - 1, axis=1)[:, :n]  # (b, n) nearest learned queries, unordered
        s = np.take_along_axis(sims, top, 1)  # (b, n)
        best = s.max(1)  # (b,)
        covered = s >= self.min_sim  # (b, n)
        logits = np.where(covered, s / SHARPNESS, -np.inf)
        logits = logits - np.where(covered.any(1, keepdims=True), logits.max(1, keepdims=True), 0.0)
        w = np.where(covered, np.exp(logits), 0.0)  # (b, n)
        w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
        centre = np.einsum("bn,bnd->bd", w, self.centres[top])  # (b, d); zero where nothing is covered
        return normalize(vecs + w_exp * centre), best.astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays saved in the build bundle (their keys leave room for the build's other arrays)."""
        return {"memory_queries": self.queries.astype(np.float32), "memory_centres": self.centres.astype(np.float32)}

    def params(self) -> dict[str, Any]:
        return {"n_queries": len(self), "weight": self.weight, "min_sim": round(self.min_sim, 4)}

    @classmethod
    def from_saved(cls, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> QueryMemory | None:
        if "memory_queries" not in arrays or "memory_centres" not in arrays:
            return None
        return cls(arrays["memory_queries"].astype(np.float32), arrays["memory_centres"].astype(np.float32),
                   float(params.get("weight", 0.0)), float(params.get("min_sim", 1.0)))


def fit_memory(
    queries: np.ndarray, qidx: np.ndarray, rows: np.ndarray, grades: np.ndarray, doc_vecs: np.ndarray, *, seed: int = 0
) -> tuple[QueryMemory | None, dict[str, Any]]:
    """The memory of learned pairs ``(queries[qidx[p]], doc row rows[p], grade grades[p])`` over ``doc_vecs`` (n, d).

    Returns:
        The memory (``None`` without positive pairs) and a report of the fit for the build's info.
    """
    pos = grades > 0
    qidx, rows, grades = qidx[pos], rows[pos], grades[pos]
    if len(qidx) == 0:
        return None, {"n_queries": 0}
    used, local = np.unique(qidx, return_inverse=True)
    m, d = len(used), doc_vecs.shape[1]
    u = normalize(queries[used])
    centres = np.zeros((m, d), np.float64)
    np.add.at(centres, local, grades[:, None].astype(np.float64) * doc_vecs[rows].astype(np.float64))
    c = normalize(centres)
    if m < MIN_FIT_QUERIES:
        memory = QueryMemory(u, c, 1.0, FEW_MIN_SIM)
        return memory, {**memory.params(), "fit": "too few learned queries to fit; near repeats only"}
    rng = np.random.default_rng(seed + 104729)
    ev = np.sort(rng.choice(m, min(MAX_FIT_QUERIES, m), replace=False))  # (e,) evaluated learned queries
    exclude = (u[ev] @ u.T) >= SAME_QUERY  # (e, m): itself and its near copies
    others = np.where(exclude, -np.inf, u[ev] @ u.T)
    min_sim = float(np.quantile(others.max(1), COVERAGE_QUANTILE))
    memory = QueryMemory(u, c, 0.0, min_sim)
    relevant = [rows[local == j] for j in ev]
    # Rank a sample of the documents (all the evaluated queries' relevant ones among them).
    n = len(doc_vecs)
    pool = np.unique(np.concatenate([np.concatenate(relevant), rng.choice(n, min(n, MAX_FIT_DOCS), replace=False)]))
    docs = np.asarray(doc_vecs[pool], np.float32)  # (s, d)
    where = {int(r): i for i, r in enumerate(pool)}
    recall: dict[float, float] = {}
    for weight in WEIGHTS:
        q2, _ = memory.expand(u[ev], exclude=exclude, weight=weight)
        scores = q2 @ docs.T  # (e, s)
        got = []
        for i, rel in enumerate(relevant):
            want = np.unique(rel)
            cut = min(len(pool), max(len(want), int(np.ceil(10 * len(want) * len(pool) / n))))
            top = np.argpartition(-scores[i], cut - 1)[:cut]
            got.append(np.isin(np.asarray([where[int(r)] for r in want]), top).mean())
        recall[weight] = float(np.mean(got))
    best = max(WEIGHTS, key=lambda w: (round(recall[w], 4), -w))  # ties go to the smaller weight
    memory = QueryMemory(u, c, float(best), min_sim)
    report = {**memory.params(), "fit_queries": len(ev), "recall_by_weight": {str(w): round(r, 4) for w, r in recall.items()}}
    logger.info("query memory: %d learned queries, weight %.2f (leave-one-out recall %.3f vs %.3f unexpanded), min_sim %.3f",
                m, best, recall[best], recall[0.0], min_sim)
    return memory, report


__all__ = ["QueryMemory", "fit_memory"]
