"""Shared k-means for the docid schemes: k-means++ init, Lloyd on a sample, balanced assignment.

Everything works on float32 and on blocks of rows, so memory stays bounded whatever ``n`` is:
a distance block holds at most ``_BLOCK_ELEMENTS`` floats.

Balanced assignment is *semi-discrete optimal transport*: each centroid ``j`` carries a bias
``b_j`` and a point goes to ``argmin_j ||x - c_j||^2 - b_j``. The biases are the dual variables
of the transport problem with equal bucket sizes (the hard limit of Sinkhorn), found by dual
ascent on the fitting sample. Because the rule is a function of the point alone, new vectors get
the same codes as the fitted ones, which a greedy capacity-constrained assignment cannot give.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)

_BLOCK_ELEMENTS = 1 << 23  # 32 MiB of float32 per distance block


@dataclass(frozen=True)
class Codebook:
    """A fitted k-means codebook.

    Attributes:
        centroids: ``(k, d)`` float32.
        bias: ``(k,)`` float32 balance biases, zeros when unbalanced.
    """

    centroids: np.ndarray
    bias: np.ndarray

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def _block_rows(k: int) -> int:
    return max(256, _BLOCK_ELEMENTS // max(k, 1))


def scores(x: np.ndarray, centroids: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``||c_j||^2 - 2 x.c_j - b_j`` for one block: the squared distance less ``||x||^2``."""
    s = x @ centroids.T  # (m, k)
    s *= -2.0
    off = np.einsum("kd,kd->k", centroids, centroids)
    if bias is not None:
        off = off - bias
    s += off[None, :].astype(np.float32, copy=False)
    return s


def nearest(
    x: np.ndarray, centroids: np.ndarray, bias: np.ndarray | None = None, *, return_dist: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Code of the nearest centroid (less its bias) for every row, block by block.

    Returns:
        ``(codes (n,) int32, squared distances (n,) float32 or None)``; the distance is the true
        ``||x - c||^2`` of the chosen centroid, bias excluded.
    """
    n, k = x.shape[0], centroids.shape[0]
    codes = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float32) if return_dist else None
    step = _block_rows(k)
    for start in range(0, n, step):
        xb = x[start : start + step]
        s = scores(xb, centroids, bias)
        idx = s.argmin(axis=1)
        codes[start : start + step] = idx
        if dist is not None:
            best = s[np.arange(len(idx)), idx]
            if bias is not None:
                best = best + bias[idx]
            d = best + np.einsum("md,md->m", xb, xb)
            dist[start : start + step] = np.maximum(d, 0.0)
    return codes, dist


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (``2 + ln k`` candidates a step, as scikit-learn does).

    Returns:
        ``(k, d)`` float32 initial centroids, rows of ``x``.
    """
    m = x.shape[0]
    x_sq = np.einsum("md,md->m", x, x)
    trials = 2 + int(math.log(max(k, 1)))
    first = int(rng.integers(m))
    chosen = [first]
    d2 = np.maximum(x_sq - 2.0 * (x @ x[first]) + x_sq[first], 0.0)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0.0:  # fewer distinct points than k: duplicates are harmless, never used
            chosen.append(int(rng.integers(m)))
            continue
        cands = np.searchsorted(np.cumsum(d2, dtype=np.float64), rng.random(trials) * total)
        cands = np.minimum(cands, m - 1)
        cd = np.maximum(x_sq[:, None] - 2.0 * (x @ x[cands].T) + x_sq[cands][None, :], 0.0)  # (m, t)
        np.minimum(cd, d2[:, None], out=cd)
        best = int(np.argmin(cd.sum(axis=0)))
        chosen.append(int(cands[best]))
        d2 = cd[:, best]
    return np.ascontiguousarray(x[np.asarray(chosen)], dtype=np.float32)


def balance_bias(s: np.ndarray, bias: np.ndarray, *, iters: int = 60, slack: float = 0.05) -> np.ndarray:
    """Dual ascent on the balance biases so that ``argmin(s - bias)`` fills buckets evenly.

    Args:
        s: ``(m, k)`` scores from :func:`scores` without bias.
        bias: the starting biases (warm start across Lloyd iterations).
        iters: most ascent steps.
        slack: stop once the largest bucket is within ``(1 + slack)`` of ``m / k``.

    Returns:
        The new ``(k,)`` float32 biases.
    """
    m, k = s.shape
    if k < 2:
        return bias
    target = m / k
    # Step scale: the typical gap between a point's best and second-best centroid, so a step moves
    # a bucket's border by about one "typical" point whatever the units of the distances are.
    part = np.partition(s[: min(m, 20000)], 1, axis=1)[:, :2]
    gap = float(np.median(part[:, 1] - part[:, 0])) + 1e-12
    b = bias.astype(np.float64).copy()
    cap = math.ceil(target * (1.0 + slack))
    buf = np.empty_like(s)
    for t in range(iters):
        np.subtract(s, b.astype(np.float32)[None, :], out=buf)
        counts = np.bincount(buf.argmin(axis=1), minlength=k)
        if counts.max() <= cap:
            break
        b += (gap / math.sqrt(t + 1.0)) * (target - counts) / target
        b -= b.mean()  # only differences matter; keep the numbers small
    return b.astype(np.float32)


def fit_kmeans(
    x: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    iters: int = 20,
    tol: float = 1e-4,
    balanced: bool = False,
    init_size: int = 10000,
) -> Codebook:
    """Lloyd's k-means with k-means++ seeding on ``x`` (already a sample: it is held in memory).

    Args:
        x: ``(m, d)`` float32 points.
        k: number of centroids; lowered to ``m`` when larger.
        rng: the random generator (determinism with a seed).
        iters: most Lloyd iterations.
        tol: stop when the mean squared error improves by less than this fraction.
        balanced: fit with balanced assignment (see the module docstring).
        init_size: points used for the k-means++ seeding.

    Returns:
        The fitted :class:`Codebook`.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    m, d = x.shape
    k = max(1, min(k, m))
    init_idx = np.sort(rng.choice(m, size=min(m, max(init_size, k)), replace=False))
    centroids = kmeans_pp(x[init_idx], k, rng)
    bias = np.zeros(k, dtype=np.float32)
    prev = math.inf
    rows = np.arange(m)
    for it in range(iters):
        if balanced and k > 1:
            s = scores(x, centroids)
            bias = balance_bias(s, bias, iters=20 if it < iters - 1 else 60)
            codes = (s - bias[None, :]).argmin(axis=1).astype(np.int32)
            dist = s[rows, codes] + np.einsum("md,md->m", x, x)
        else:
            codes, dist = nearest(x, centroids, return_dist=True)
        assert dist is not None
        mse = float(dist.mean())
        onehot = sp.csr_matrix((np.ones(m, dtype=np.float32), (codes, rows)), shape=(k, m))
        sums = np.asarray(onehot @ x, dtype=np.float32)
        counts = np.bincount(codes, minlength=k).astype(np.float32)
        empty = np.flatnonzero(counts == 0)
        new = sums / np.maximum(counts, 1.0)[:, None]
        if len(empty):
            # Re-seed empty centroids on the points worst served by their centroid.
            far = np.argsort(-dist, kind="stable")[: len(empty)]
            new[empty[: len(far)]] = x[far]
        centroids = new.astype(np.float32)
        if prev < math.inf and (prev - mse) <= tol * max(prev, 1e-12) and not len(empty):
            break
        prev = mse
    if balanced and k > 1:
        bias = balance_bias(scores(x, centroids), bias, iters=100)
    logger.debug("k-means: m=%d d=%d k=%d iters=%d mse=%.5f balanced=%s", m, d, k, it + 1, prev, balanced)
    return Codebook(centroids=centroids, bias=bias)
