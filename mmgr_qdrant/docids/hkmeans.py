"""Hierarchical k-means (DSI, NCI): k clusters, then k clusters inside each, ``levels`` deep.

Unlike ``rq``, a level-2 code only means something under its level-1 parent, so the codebook
grows as ``k**levels`` centroids (``rq`` keeps ``levels * k``): for ``k=256, levels=2`` and 512-d
vectors that is 134 MB of state. ``k="auto"`` keeps it small for small collections.

Storage: the nodes of each level are flat arrays ordered by parent, so the children of parent
``p`` at level ``l`` are rows ``child_start[l][p] : child_start[l][p] + child_count[l][p]`` of
``centroids[l]``; a node's code is its index among its parent's children.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..progress import ProgressCallback
from .base import SchemeBase, check_k, register_scheme, resolve_k
from .kmeans import fit_kmeans, nearest

logger = logging.getLogger(__name__)


@register_scheme("hkmeans")
class HierarchicalKMeans(SchemeBase):
    """Hierarchical k-means docids.

    Args:
        levels: depth of the tree (semantic levels).
        k: children per node: ``"auto"``, an int or one int per level (shrunk when a node has fewer points).
        balanced: balanced assignment inside every k-means (even buckets; same biases for new vectors).
        iters: most Lloyd iterations per node.
        points_per_child: a node's k-means is fitted on at most ``points_per_child * k`` of its points.
        center_modalities: subtract each modality's mean before clustering.
        sample_size: vectors the top level is fitted on.
    """

    def __init__(
        self,
        *,
        levels: int = 2,
        k: int | str | list[int] = "auto",
        balanced: bool = False,
        iters: int = 15,
        points_per_child: int = 16,
        center_modalities: bool = True,
        sample_size: int = 50000,
    ) -> None:
        super().__init__(levels=levels, center_modalities=center_modalities, sample_size=sample_size)
        self.k = check_k(k, self.levels)
        self.balanced = bool(balanced)
        if iters < 1 or points_per_child < 1:
            raise ConfigError(f"hkmeans needs iters >= 1 and points_per_child >= 1, got {iters} and {points_per_child}.")
        self.iters = int(iters)
        self.points_per_child = int(points_per_child)
        self.centroids: list[np.ndarray] = []  # level l: (nodes_l, d)
        self.biases: list[np.ndarray] = []  # level l: (nodes_l,)
        self.child_start: list[np.ndarray] = []  # level l >= 1: (nodes_{l-1},) int64
        self.child_count: list[np.ndarray] = []

    def _fit(self, v: np.ndarray, m: np.ndarray, rng: np.random.Generator, progress: ProgressCallback | None) -> None:
        n = v.shape[0]
        ks = resolve_k(self.k, self.levels, n, self.name)
        top = fit_kmeans(self.sample(v, m, rng), ks[0], rng=rng, iters=self.iters, balanced=self.balanced)
        self.centroids, self.biases = [top.centroids], [top.bias]
        self.child_start, self.child_count = [np.zeros(1, np.int64)], [np.array([top.k], np.int64)]
        if progress is not None:
            progress("fit", 1, self.levels, {})
        if self.levels == 1:
            return
        node = self._level_nodes(v, m, 0)  # global node id of every vector at level 0
        for level in range(1, self.levels):
            n_parents = self.centroids[level - 1].shape[0]
            order = np.argsort(node, kind="stable")
            bounds = np.searchsorted(node[order], np.arange(n_parents + 1))
            cents, biases, starts, counts = [], [], np.zeros(n_parents, np.int64), np.zeros(n_parents, np.int64)
            new_node = np.empty(n, np.int64)
            total = 0
            for p in range(n_parents):
                members = order[bounds[p] : bounds[p + 1]]
                starts[p] = total
                if len(members) == 0:  # a parent no vector reaches: one child, itself
                    cents.append(self.centroids[level - 1][p][None, :])
                    biases.append(np.zeros(1, np.float32))
                    counts[p] = 1
                    total += 1
                    continue
                cap = self.points_per_child * ks[level]
                fit_rows = members if len(members) <= cap else np.sort(rng.choice(members, size=cap, replace=False))
                cb = fit_kmeans(
                    self.preprocess(v[fit_rows], m[fit_rows]), ks[level], rng=rng, iters=self.iters, balanced=self.balanced
                )
                codes, _ = nearest(self.preprocess(v[members], m[members]), cb.centroids, cb.bias if self.balanced else None)
                new_node[members] = total + codes
                cents.append(cb.centroids)
                biases.append(cb.bias)
                counts[p] = cb.k
                total += cb.k
            self.centroids.append(np.concatenate(cents).astype(np.float32))
            self.biases.append(np.concatenate(biases).astype(np.float32))
            self.child_start.append(starts)
            self.child_count.append(counts)
            node = new_node
            if progress is not None:
                progress("fit", level + 1, self.levels, {"nodes": float(total)})
        logger.info("hkmeans: %s nodes per level", [c.shape[0] for c in self.centroids])

    def _level_nodes(self, v: np.ndarray, m: np.ndarray, level: int) -> np.ndarray:
        """Global level-``level`` node of every vector, in blocks (used while fitting)."""
        out = np.empty(v.shape[0], np.int64)
        step = 65536
        for s in range(0, v.shape[0], step):
            out[s : s + step] = self._walk(self.preprocess(v[s : s + step], m[s : s + step]), level + 1)[1]
        return out

    def _walk(self, x: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Descend ``depth`` levels; returns local codes ``(n, depth)`` and the global node at the last level."""
        codes = np.empty((x.shape[0], depth), np.int32)
        local, _ = nearest(x, self.centroids[0], self.biases[0] if self.balanced else None)
        codes[:, 0] = local
        node = local.astype(np.int64)
        for level in range(1, depth):
            order = np.argsort(node, kind="stable")
            sorted_nodes = node[order]
            uniq, first = np.unique(sorted_nodes, return_index=True)
            ends = np.append(first[1:], len(order))
            new_node = np.empty_like(node)
            for p, a, b in zip(uniq, first, ends):
                rows = order[a:b]
                s, c = int(self.child_start[level][p]), int(self.child_count[level][p])
                bias = self.biases[level][s : s + c] if self.balanced else None
                loc, _ = nearest(x[rows], self.centroids[level][s : s + c], bias)
                codes[rows, level] = loc
                new_node[rows] = s + loc
            node = new_node
        return codes, node

    def _codes(self, x: np.ndarray) -> np.ndarray:
        return self._walk(x, self.levels)[0]

    def reconstruct_nodes(self, x: np.ndarray) -> np.ndarray:
        """The leaf centroid of each preprocessed row (for reconstruction error)."""
        _, node = self._walk(x, self.levels)
        return self.centroids[-1][node]

    def level1_centroids(self) -> np.ndarray | None:
        """Level 0 holds the first code's centroids."""
        return np.asarray(self.centroids[0], dtype=np.float32) if self.centroids else None

    def _sizes(self) -> list[int]:
        return [int(self.centroids[0].shape[0])] + [int(c.max()) for c in self.child_count[1:]]

    def _params(self) -> dict[str, Any]:
        return {"k": self.k, "balanced": self.balanced, "iters": self.iters, "points_per_child": self.points_per_child}

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(self.levels):
            out[f"centroids_{i}"] = self.centroids[i]
            out[f"bias_{i}"] = self.biases[i]
            out[f"child_start_{i}"] = self.child_start[i]
            out[f"child_count_{i}"] = self.child_count[i]
        return out

    @classmethod
    def _init_kwargs(cls, params: dict[str, Any]) -> dict[str, Any]:
        kw = super()._init_kwargs(params)
        for key in ("k", "balanced", "iters", "points_per_child"):
            kw[key] = params[key]
        return kw

    def _load(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        lv = range(self.levels)
        self.centroids = [np.asarray(arrays[f"centroids_{i}"], np.float32) for i in lv]
        self.biases = [np.asarray(arrays[f"bias_{i}"], np.float32) for i in lv]
        self.child_start = [np.asarray(arrays[f"child_start_{i}"], np.int64) for i in lv]
        self.child_count = [np.asarray(arrays[f"child_count_{i}"], np.int64) for i in lv]
