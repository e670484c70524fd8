"""Query supervision stored with the index: (query embedding, target id, weight, time) pairs.

Part of the retriever layer (only ``retriever`` uses it). ``learn`` and ``feedback`` encode their
queries and append pairs to one blob (``learning-pairs.npz``) in the store's blob area, beside the
build artifacts: files next to the Edge shard, the companion collection on a server. So pairs
survive reopening, travel with ``export``/``import`` (which copy every blob), and are rewritten
atomically (the old blob stays until the new one is complete). Build and retrain read them as
extra decoder training pairs; deleting documents prunes the pairs that point to them.

The blob holds::

    queries  (q, d) float32   unit query embeddings
    qidx     (p,)   int64     the query of each pair
    targets  (p,)   str       the target document id of each pair, JSON-encoded (ints and UUIDs)
    weights  (p,)   float32   the pair's grade (1.0 by default)
    times    (p,)   float64   when the pair was learned (seconds since the epoch)
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import ArtifactError, InputError, NotFoundError
from .memory import QueryMemory, fit_memory
from .store.base import Store, normalize_id, unit_rows
from .types import PointId

logger = logging.getLogger(__name__)

PAIRS_BLOB = "learning-pairs.npz"
QueryKind = Literal["text", "image", "vector"]
_SAME_QUERY = 0.98  # cosine above which negative feedback treats two queries as the same


@dataclass(frozen=True)
class QueryPairs:
    """The stored query -> document pairs of an index (see the module docstring for the layout)."""

    queries: np.ndarray
    qidx: np.ndarray
    targets: tuple[PointId, ...]
    weights: np.ndarray
    times: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> QueryPairs:
        return cls(np.zeros((0, dim), np.float32), np.zeros(0, np.int64), (), np.zeros(0, np.float32), np.zeros(0, np.float64))

    def __len__(self) -> int:
        return len(self.targets)

    def since(self, t: float) -> int:
        """How many pairs were learned after time ``t``."""
        return int((self.times > t).sum())

    def select(self, keep: np.ndarray) -> QueryPairs:
        """The pairs where ``keep`` is true, dropping queries left without a pair."""
        qidx = self.qidx[keep]
        used, new_qidx = np.unique(qidx, return_inverse=True)
        return QueryPairs(
            self.queries[used], new_qidx.astype(np.int64).reshape(-1),
            tuple(t for t, k in zip(self.targets, keep.tolist()) if k), self.weights[keep], self.times[keep],
        )

    def append(self, queries: np.ndarray, qidx: np.ndarray, targets: Sequence[PointId], weights: np.ndarray, when: float) -> QueryPairs:
        return QueryPairs(
            np.concatenate([self.queries, queries.astype(np.float32)]),
            np.concatenate([self.qidx, qidx.astype(np.int64) + len(self.queries)]),
            self.targets + tuple(targets),
            np.concatenate([self.weights, weights.astype(np.float32)]),
            np.concatenate([self.times, np.full(len(targets), when, np.float64)]),
        )


def load_pairs(store: Store, dim: int) -> QueryPairs:
    """The pairs stored with an index (empty when none were learned).

    Raises:
        ArtifactError: the pairs blob is corrupt.
    """
    raw = store.get_blob(PAIRS_BLOB)
    if raw is None:
        return QueryPairs.empty(dim)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            pairs = QueryPairs(
                z["queries"].astype(np.float32).reshape(-1, dim), z["qidx"].astype(np.int64),
                tuple(json.loads(str(t)) for t in z["targets"]), z["weights"].astype(np.float32), z["times"].astype(np.float64),
            )
    except (ValueError, KeyError, OSError) as exc:
        raise ArtifactError(
            f"The learned query pairs of collection {store.collection!r} are corrupt ({exc}); delete the blob {PAIRS_BLOB!r} and learn them again."
        ) from exc
    if not (len(pairs.qidx) == len(pairs.targets) == len(pairs.weights) == len(pairs.times)):
        raise ArtifactError(f"The learned query pairs of collection {store.collection!r} have arrays of different lengths; learn them again.")
    return pairs


def save_pairs(store: Store, pairs: QueryPairs) -> None:
    """Replace the stored pairs with ``pairs`` (one atomic blob write; none left when empty)."""
    if len(pairs) == 0:
        store.delete_blob(PAIRS_BLOB)
        return
    buf = io.BytesIO()
    np.savez(
        buf, queries=pairs.queries, qidx=pairs.qidx, targets=np.asarray([json.dumps(t) for t in pairs.targets]),
        weights=pairs.weights, times=pairs.times,
    )
    store.put_blob(PAIRS_BLOB, buf.getvalue())


# -- input ----------------------------------------------------------------------------------------
def query_kind(query: Any, dim: int) -> QueryKind:
    """How a query is given: a string is text, a 1-D numeric array of the index's width is a vector, else an image."""
    if isinstance(query, str):
        return "text"
    if isinstance(query, np.ndarray) and query.ndim == 1 and query.shape[0] == dim and np.issubdtype(query.dtype, np.floating):
        return "vector"
    return "image"


def encode_queries(encoder: Any, queries: Sequence[Any], kind: QueryKind | None, dim: int) -> np.ndarray:
    """Unit embeddings ``(m, dim)`` of ``queries``; ``kind=None`` decides per query.

    Raises:
        InputError: an empty text, an unreadable image or a vector of the wrong width.
    """
    from .images import load_image

    kinds = [kind or query_kind(q, dim) for q in queries]
    out = np.zeros((len(queries), dim), np.float32)
    for which in ("text", "image", "vector"):
        rows = [i for i, k in enumerate(kinds) if k == which]
        if not rows:
            continue
        if which == "text":
            for i in rows:
                if not isinstance(queries[i], str) or not queries[i].strip():
                    raise InputError(f"Query #{i} {queries[i]!r} is empty or not a string; give the words a user searched for.")
            vecs = encoder.encode_texts([queries[i] for i in rows])
        elif which == "image":
            vecs = encoder.encode_images([load_image(queries[i]) for i in rows])
        else:
            vecs = unit_rows(np.stack([np.asarray(queries[i], np.float64).reshape(-1) for i in rows]), dim, "query vectors")
        vecs = np.asarray(vecs, np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        if (norms == 0).any():
            raise InputError(f"Query #{rows[int(np.flatnonzero(norms[:, 0] == 0)[0])]} is an all-zero vector; it has no direction to learn from.")
        out[rows] = vecs / norms
    return out


def _check_relevant(
    queries: Sequence[Any], relevant: Sequence[Sequence[PointId]], grades: Sequence[Sequence[float]] | None
) -> tuple[list[list[PointId]], list[list[float]]]:
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence | np.ndarray):
        raise InputError("learn() takes a list of queries (and one list of relevant ids per query); wrap a single query in a list.")
    if len(queries) != len(relevant):
        raise InputError(f"learn() got {len(queries)} queries but {len(relevant)} lists of relevant ids; give one list per query.")
    if grades is not None and len(grades) != len(queries):
        raise InputError(f"learn() got {len(queries)} queries but {len(grades)} lists of grades; give one list per query.")
    if len(queries) == 0:
        raise InputError("learn() got no queries; give at least one query with its relevant ids.")
    ids: list[list[PointId]] = []
    weights: list[list[float]] = []
    for i, rel in enumerate(relevant):
        if isinstance(rel, (str, int)) or not isinstance(rel, Sequence):
            raise InputError(f"The relevant ids of query #{i} are {rel!r}, not a list; give a list of ids per query.")
        if len(rel) == 0:
            raise InputError(f"Query #{i} has no relevant ids; give at least one id per query.")
        ids.append([normalize_id(x) for x in rel])
        g = [1.0] * len(rel) if grades is None else list(grades[i])
        if len(g) != len(rel):
            raise InputError(f"Query #{i} has {len(rel)} relevant ids but {len(g)} grades; give one grade per id.")
        for x in g:
            if not isinstance(x, (int, float, np.integer, np.floating)) or not np.isfinite(x) or x <= 0:
                raise InputError(f"Query #{i} has grade {x!r}; grades are positive finite numbers (higher = more relevant).")
        weights.append([float(x) for x in g])
    return ids, weights


def check_exist(store: Store, ids: Sequence[PointId]) -> None:
    """Raise :class:`NotFoundError` naming the ids of ``ids`` that are not in the store."""
    wanted = list(dict.fromkeys(ids))
    found: set[PointId] = set()
    for start in range(0, len(wanted), 1024):
        found.update(r.id for r in store.retrieve(wanted[start : start + 1024]))
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFoundError(f"Ids {missing[:5]} are not in collection {store.collection!r}; nothing was learned (check them with get()).")


# -- the operations behind learn() / feedback() -----------------------------------------------------
def learn(
    store: Store,
    encoder: Any,
    dim: int,
    queries: Sequence[Any],
    relevant: Sequence[Sequence[PointId]],
    *,
    grades: Sequence[Sequence[float]] | None = None,
    kind: QueryKind | None = None,
) -> int:
    """Encode ``queries`` and store one pair per (query, relevant id); all or nothing.

    Returns:
        The number of pairs stored.

    Raises:
        InputError: mismatched lengths, an empty query or id list, a bad grade or query.
        NotFoundError: a relevant id is not in the collection.
    """
    if kind is not None and kind not in ("text", "image", "vector"):
        raise InputError(f"kind={kind!r} is not known; use 'text', 'image', 'vector' or leave it out.")
    ids, weights = _check_relevant(queries, relevant, grades)
    check_exist(store, [x for row in ids for x in row])
    vecs = encode_queries(encoder, list(queries), kind, dim)  # everything is checked before anything is written
    qidx = np.asarray([i for i, row in enumerate(ids) for _ in row], np.int64)
    flat_ids = [x for row in ids for x in row]
    flat_w = np.asarray([w for row in weights for w in row], np.float32)
    pairs = load_pairs(store, dim).append(vecs, qidx, flat_ids, flat_w, time.time())
    save_pairs(store, pairs)
    logger.info("learned %d pairs from %d queries (%d stored)", len(flat_ids), len(ids), len(pairs))
    return len(flat_ids)


def feedback(store: Store, vector: np.ndarray, id: PointId, *, relevant: bool = True) -> int:
    """Record one judgement: a positive pair, or (``relevant=False``) the removal of learned pairs.

    Negative feedback removes the stored pairs from ``id`` whose query is the same query
    (cosine >= 0.98); nothing else is changed.

    Returns:
        Pairs added (1) or removed (0 or more; returned negated).

    Raises:
        NotFoundError: ``id`` is not in the collection.
    """
    pid = normalize_id(id)
    check_exist(store, [pid])
    dim = int(vector.shape[-1])
    pairs = load_pairs(store, dim)
    if relevant:
        save_pairs(store, pairs.append(vector.reshape(1, dim), np.zeros(1, np.int64), [pid], np.ones(1, np.float32), time.time()))
        return 1
    if len(pairs) == 0:
        return 0
    same = (pairs.queries @ vector.reshape(-1)) >= _SAME_QUERY  # (q,)
    drop = same[pairs.qidx] & np.asarray([t == pid for t in pairs.targets], bool)
    if drop.any():
        save_pairs(store, pairs.select(~drop))
    return -int(drop.sum())


def prune(store: Store, dim: int, deleted: Sequence[PointId]) -> int:
    """Drop the pairs that point to deleted documents; returns how many were dropped."""
    pairs = load_pairs(store, dim)
    if len(pairs) == 0 or not deleted:
        return 0
    gone = set(deleted)
    keep = np.asarray([t not in gone for t in pairs.targets], bool)
    if keep.all():
        return 0
    save_pairs(store, pairs.select(keep))
    return int((~keep).sum())


def training_pairs(
    store: Store, dim: int, ids: Sequence[PointId], *, weight: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored pairs as decoder training rows: ``(query vectors (p, d), target rows (p,), weights (p,))``.

    ``ids`` are the documents being trained on, in row order; pairs whose target is not among
    them are skipped. Each pair's weight is its grade times ``weight``.
    """
    pairs = load_pairs(store, dim)
    row = {pid: i for i, pid in enumerate(ids)}
    rows = np.asarray([row.get(t, -1) for t in pairs.targets], np.int64)
    ok = rows >= 0
    return pairs.queries[pairs.qidx[ok]], rows[ok], pairs.weights[ok] * float(weight)


@dataclass(frozen=True)
class TrainingPlan:
    """Decoder training inputs: indexing and link pairs plus learned query pairs, and a held-out slice.

    Attributes:
        queries / targets / doc_index / weights / mix: the training pairs (see ``train_decoder``).
        buckets: the level-1 bucket of each document (hard negatives).
        cal_queries / cal_docids: the held-out slice the router's temperature is fitted on.
        n_learned: learned pairs used for training.
        n_learned_held_out: learned pairs kept for calibration instead.
        memory / memory_info: the learned query expansion (``mmgr_qdrant/memory.py``) and its fit.
        exclude: ``None``, or the pairs of ``queries`` held out for calibration (``train_decoder``'s
            ``exclude``): without learned pairs the queries are the given array, not a copy.
    """

    queries: np.ndarray
    targets: np.ndarray
    doc_index: np.ndarray
    weights: np.ndarray
    mix: np.ndarray
    buckets: np.ndarray
    cal_queries: np.ndarray
    cal_docids: np.ndarray
    n_learned: int
    n_learned_held_out: int
    memory: QueryMemory | None = None
    memory_info: dict[str, Any] | None = None
    exclude: np.ndarray | None = None

    @property
    def n_pairs(self) -> int:
        """The pairs the decoder trains on (the excluded ones left out)."""
        return len(self.queries) - (int(self.exclude.sum()) if self.exclude is not None else 0)


def training_plan(
    store: Store,
    ids: Sequence[PointId],
    vecs: np.ndarray,
    docids: np.ndarray,
    base: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    query_weight: float = 4.0,
    calibration_fraction: float = 0.02,
    max_calibration: int = 500,
    seed: int = 0,
) -> TrainingPlan:
    """Join the indexing/link pairs ``base`` = (queries, targets, doc rows) with the stored query pairs.

    Held out for the router's calibration: ``calibration_fraction`` of the documents (their
    indexing pair; at least 20, so only collections of 1,000 and more) and, when at least 50 queries
    were learned, a tenth of the learned queries (all their pairs), up to ``max_calibration`` each.
    Documents nobody asked about keep their indexing pairs; each learned pair weighs
    ``query_weight`` times its grade.
    """
    rng = np.random.default_rng(seed + 7919)
    n, dim = vecs.shape
    bq, bt, bi = base
    bw = np.ones(len(bq), np.float32)
    n_cal_docs = min(max_calibration, int(n * calibration_fraction))
    cal_docs = rng.choice(n, n_cal_docs, replace=False) if n_cal_docs >= 20 else np.zeros(0, np.int64)
    keep = ~np.isin(np.arange(len(bq)), cal_docs) | (bi != np.arange(len(bq)))  # the first n rows are the indexing pairs
    cal_q: list[np.ndarray] = [vecs[cal_docs]]
    cal_d: list[np.ndarray] = [docids[cal_docs]]
    pairs = load_pairs(store, dim)
    row = {pid: i for i, pid in enumerate(ids)}
    rows = np.asarray([row.get(t, -1) for t in pairs.targets], np.int64)
    ok = rows >= 0
    qidx, rows, w = pairs.qidx[ok], rows[ok], pairs.weights[ok] * float(query_weight)
    held = np.zeros(len(qidx), bool)
    distinct = np.unique(qidx)
    if len(distinct) >= 50:
        cal_queries = rng.choice(distinct, min(max_calibration, len(distinct) // 10), replace=False)
        held = np.isin(qidx, cal_queries)
        cal_q.append(pairs.queries[qidx[held]])
        cal_d.append(docids[rows[held]])
    lq, lr, lw = pairs.queries[qidx[~held]], rows[~held], w[~held]
    memory, memory_info = fit_memory(pairs.queries, qidx, rows, pairs.weights[ok], vecs, seed=seed)  # all learned pairs
    exclude = None
    if len(lq) == 0 and bq.dtype == np.float32:  # the pairs as given (often the scanned vectors themselves), the slice excluded
        queries, exclude = bq, (None if keep.all() else ~keep)
        keep = np.ones(len(bq), bool)
    else:  # filled in place: one copy of the vectors, not three
        queries = np.empty((int(keep.sum()) + len(lq), dim), np.float32)
        np.compress(keep, bq, axis=0, out=queries[: int(keep.sum())])
        queries[int(keep.sum()) :] = lq
    targets = np.concatenate([bt[keep], docids[lr]]).astype(np.int64)
    doc_index = np.concatenate([bi[keep], lr]).astype(np.int64)
    weights = np.concatenate([bw[keep], lw]).astype(np.float32)
    mix = np.concatenate([np.zeros(int(keep.sum()), bool), np.ones(len(lr), bool)])
    buckets = docids[:, 0].astype(np.int64) * (int(docids[:, 1].max()) + 1 if docids.shape[1] > 1 else 1) + (
        docids[:, 1] if docids.shape[1] > 1 else 0
    )
    return TrainingPlan(
        queries, targets, doc_index, weights, mix, np.asarray(buckets, np.int64),
        np.concatenate(cal_q).astype(np.float32), np.concatenate(cal_d).astype(np.int64), len(lr), int(held.sum()),
        memory, memory_info, exclude,
    )


__all__ = [
    "PAIRS_BLOB",
    "QueryKind",
    "QueryPairs",
    "TrainingPlan",
    "check_exist",
    "encode_queries",
    "feedback",
    "learn",
    "load_pairs",
    "prune",
    "query_kind",
    "save_pairs",
    "training_pairs",
    "training_plan",
]
