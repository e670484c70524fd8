"""Operations on assigned codes: the tie-break column that makes docids unique, and docid statistics."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError

TieBreakState = dict[tuple[int, ...], set[int]]
"""Tie-break codes already taken, per semantic docid (modality + semantic codes)."""


def _rows(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"{name} must be a 2-D integer array (n, columns), got shape {a.shape} and dtype {a.dtype}.")
    return a.astype(np.int64, copy=False)


def _group_ranks(sem: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row: its group (identical rows) id, and its rank inside the group in input order.

    Returns:
        ``(group (n,), rank (n,), first_row_of_group (groups,))``.
    """
    n = sem.shape[0]
    order = np.lexsort(sem.T[::-1])  # lexsort is stable: ties keep input order
    srt = sem[order]
    new_group = np.ones(n, dtype=bool)
    if n > 1:
        new_group[1:] = (srt[1:] != srt[:-1]).any(axis=1)
    gid_sorted = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    rank_sorted = np.arange(n) - starts[gid_sorted]
    group = np.empty(n, np.int64)
    rank = np.empty(n, np.int64)
    group[order] = gid_sorted
    rank[order] = rank_sorted
    return group, rank, order[starts]


def add_tiebreak(semantic: np.ndarray, used: TieBreakState | None = None) -> np.ndarray:
    """Append a last column so that every row is unique (TIGER's disambiguation code).

    Rows with the same semantic codes get tie-break codes 0, 1, 2, ... in input order. With
    ``used`` (the codes already taken per semantic docid, e.g. from :func:`used_from_docids` over
    the stored docids), each new row takes the smallest code still free for its semantic docid,
    so incremental adds after a build never collide with stored docids.

    Args:
        semantic: ``(n, c)`` integer codes, normally ``scheme.assign()`` output.
        used: tie-break state; **updated in place** with the codes handed out here, so passing the
            same dict to successive calls keeps every docid unique across batches.

    Returns:
        ``(n, c + 1)`` int32 docids, unique among themselves and against ``used``.

    Raises:
        InputError: ``semantic`` is not a 2-D integer array.
    """
    sem = _rows(semantic, "Semantic codes")
    n = sem.shape[0]
    out = np.empty((n, sem.shape[1] + 1), dtype=np.int32)
    out[:, :-1] = sem
    if n == 0:
        return out
    group, rank, first = _group_ranks(sem)
    tie = rank.copy()
    if used is not None:
        keys = [tuple(int(c) for c in sem[r]) for r in first]
        order = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[order], np.arange(len(keys) + 1))
        for g, key in enumerate(keys):
            rows = order[bounds[g] : bounds[g + 1]]  # input order inside the group
            taken = used.setdefault(key, set())
            if taken:  # the smallest free codes: among 0 .. |taken| + |rows| - 1 there are enough
                tie[rows] = sorted(set(range(len(taken) + len(rows))) - taken)[: len(rows)]
            taken.update(int(t) for t in tie[rows])
    out[:, -1] = tie
    return out


def used_from_docids(docids: np.ndarray) -> TieBreakState:
    """Rebuild the tie-break state from full docids (last column = tie-break code), e.g. read back from the store."""
    d = _rows(docids, "Docids")
    used: TieBreakState = {}
    for row in d:
        used.setdefault(tuple(int(c) for c in row[:-1]), set()).add(int(row[-1]))
    return used


@dataclass(frozen=True)
class LevelStats:
    """Statistics of one docid column.

    Attributes:
        level: column index (0 = modality, 1.. = semantic levels).
        codebook_size: vocabulary size of the column.
        used: distinct codes that occur.
        usage: ``used / codebook_size``.
        perplexity: ``exp(entropy)`` of the code distribution in this column (``codebook_size`` when uniform).
        buckets: distinct prefixes up to and including this column.
        largest_bucket: documents under the most crowded prefix.
        mean_bucket: documents per prefix on average (``n / buckets``).
    """

    level: int
    codebook_size: int
    used: int
    usage: float
    perplexity: float
    buckets: int
    largest_bucket: int
    mean_bucket: float


@dataclass(frozen=True)
class DocidStats:
    """Codebook usage and balance of a set of docids.

    Attributes:
        n_docs: documents counted.
        levels: per-column statistics, column 0 (modality) first.
        collision_rate: share of documents whose semantic docid (before the tie-break) is not
            unique, i.e. that share it with another document: ``1 - singletons / n``.
        duplicate_rate: share of documents that need a non-zero tie-break: ``1 - distinct / n``.
        max_tiebreak: the largest tie-break code needed (``largest leaf bucket - 1``).
    """

    n_docs: int
    levels: tuple[LevelStats, ...]
    collision_rate: float
    duplicate_rate: float
    max_tiebreak: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict (levels as a list of dicts)."""
        d = asdict(self)
        d["levels"] = [asdict(lv) for lv in self.levels]
        return d


def docid_stats(docids: np.ndarray, codebook_sizes: list[int]) -> DocidStats:
    """Usage, perplexity and bucket sizes per column, and collisions before tie-breaking.

    Args:
        docids: ``(n, len(codebook_sizes))`` codes from ``assign()``, or with one more column (the
            tie-break, which is then ignored).
        codebook_sizes: ``scheme.codebook_sizes()``.

    Raises:
        InputError: the column count matches neither form.
    """
    d = _rows(docids, "Docids")
    c = len(codebook_sizes)
    if d.shape[1] not in (c, c + 1):
        raise InputError(
            f"Docids have {d.shape[1]} columns but {c} codebook sizes were given; pass assign() output (optionally with the tie-break column)."
        )
    sem = d[:, :c]
    n = sem.shape[0]
    levels: list[LevelStats] = []
    leaf_counts = np.zeros(0, np.int64)
    for col in range(c):
        counts = np.bincount(sem[:, col] - sem[:, col].min()) if n else np.zeros(0, np.int64)
        counts = counts[counts > 0]
        p = counts / max(n, 1)
        entropy = float(-(p * np.log(p)).sum()) if n else 0.0
        if n:
            _, prefix_counts = np.unique(sem[:, : col + 1], axis=0, return_counts=True)
        else:
            prefix_counts = np.zeros(0, np.int64)
        leaf_counts = prefix_counts
        levels.append(
            LevelStats(
                level=col,
                codebook_size=int(codebook_sizes[col]),
                used=len(counts),
                usage=float(len(counts) / codebook_sizes[col]) if codebook_sizes[col] else 0.0,
                perplexity=math.exp(entropy),
                buckets=len(prefix_counts),
                largest_bucket=int(prefix_counts.max()) if n else 0,
                mean_bucket=float(n / len(prefix_counts)) if n else 0.0,
            )
        )
    singletons = int((leaf_counts == 1).sum())
    return DocidStats(
        n_docs=n,
        levels=tuple(levels),
        collision_rate=float(1.0 - singletons / n) if n else 0.0,
        duplicate_rate=float(1.0 - len(leaf_counts) / n) if n else 0.0,
        max_tiebreak=int(leaf_counts.max() - 1) if n else 0,
    )
