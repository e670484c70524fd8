"""Locality-sensitive hashing: the sign of random projections, ``bits`` bits packed into each code.

The projections are orthonormal (QR of a Gaussian matrix) when ``levels * bits <= d``. Fitting
only learns the modality means and, with ``balanced=True``, a per-bit threshold at the median
projection of the sample, so every bit splits the collection in half.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..progress import ProgressCallback
from .base import SchemeBase, auto_k, register_scheme

logger = logging.getLogger(__name__)


@register_scheme("lsh")
class LSHScheme(SchemeBase):
    """Random-projection sign hashing.

    Args:
        levels: number of codes.
        bits: bits per code (code range ``[0, 2**bits)``), 1-16, or ``"auto"`` (as many as
            ``rq``'s ``k="auto"`` would give codes, at most 8).
        balanced: thresholds at the sample median of each projection instead of 0.
        center_modalities: subtract each modality's mean before hashing (hyperplanes through the
            origin cut normalized vectors poorly when they sit in one cone).
        sample_size: vectors the thresholds are estimated on.
    """

    def __init__(
        self,
        *,
        levels: int = 2,
        bits: int | str = "auto",
        balanced: bool = False,
        center_modalities: bool = True,
        sample_size: int = 50000,
    ) -> None:
        super().__init__(levels=levels, center_modalities=center_modalities, sample_size=sample_size)
        if bits != "auto" and (not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 16):
            raise ConfigError(f"lsh bits must be 'auto' or an int in 1..16, got {bits!r}; 8 gives codes in [0, 256).")
        self.bits = bits
        self.balanced = bool(balanced)
        self.n_bits = 0
        self.proj: np.ndarray | None = None  # (d, levels * n_bits)
        self.thresholds: np.ndarray | None = None  # (levels * n_bits,)

    def _fit(self, v: np.ndarray, m: np.ndarray, rng: np.random.Generator, progress: ProgressCallback | None) -> None:
        d, n = v.shape[1], v.shape[0]
        if self.bits == "auto":
            self.n_bits = max(1, min(8, math.floor(math.log2(max(auto_k(n, self.levels), 2)))))
            logger.info("docids lsh: bits='auto' picked %d bits per code for %d documents", self.n_bits, n)
        else:
            self.n_bits = int(self.bits)
        total = self.levels * self.n_bits
        g = rng.standard_normal((d, total)).astype(np.float32)
        if total <= d:
            q, _ = np.linalg.qr(g)
            g = q.astype(np.float32)
        self.proj = np.ascontiguousarray(g)
        if self.balanced:
            self.thresholds = np.median(self.sample(v, m, rng) @ self.proj, axis=0).astype(np.float32)
        else:
            self.thresholds = np.zeros(total, np.float32)
        if progress is not None:
            progress("fit", self.levels, self.levels, {})

    def _codes(self, x: np.ndarray) -> np.ndarray:
        assert self.proj is not None and self.thresholds is not None
        bits = (x @ self.proj > self.thresholds).reshape(x.shape[0], self.levels, self.n_bits)
        weights = (1 << np.arange(self.n_bits - 1, -1, -1)).astype(np.int32)  # first bit is the most significant
        return (bits.astype(np.int32) * weights).sum(axis=2).astype(np.int32)

    def _sizes(self) -> list[int]:
        return [1 << self.n_bits] * self.levels

    def _params(self) -> dict[str, Any]:
        return {"bits": self.bits, "n_bits": self.n_bits, "balanced": self.balanced}

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.proj is not None and self.thresholds is not None
        return {"proj": self.proj, "thresholds": self.thresholds}

    @classmethod
    def _init_kwargs(cls, params: dict[str, Any]) -> dict[str, Any]:
        kw = super()._init_kwargs(params)
        kw["bits"], kw["balanced"] = params["bits"], params["balanced"]
        return kw

    def _load(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.n_bits = int(params["n_bits"])
        self.proj = np.asarray(arrays["proj"], np.float32)
        self.thresholds = np.asarray(arrays["thresholds"], np.float32)
