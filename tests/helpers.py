"""Helpers shared by the test modules (fixtures live in ``conftest.py``; tests import from here, not from each other)."""

from __future__ import annotations

import numpy as np

TINY = "open_clip:mmgr-tiny/none"
N_CLUSTERS, PER = 12, 25
DECODER = {"epochs": 8, "patience": 3}


def clustered(dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``N_CLUSTERS`` tight clusters of ``PER`` unit vectors each, and their cluster labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(N_CLUSTERS, dim))
    labels = np.repeat(np.arange(N_CLUSTERS), PER)
    x = centers[labels] + 0.25 * rng.normal(size=(len(labels), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def make_image(seed: int, size: int = 40) -> np.ndarray:
    """A deterministic RGB test image."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
