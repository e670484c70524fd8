"""Product quantization: split the dimensions into ``levels`` subspaces, one k-means per subspace.

PQ codes are not coarse-to-fine: the first code describes the first block of dimensions only,
so a prefix is a weaker semantic filter than an ``rq`` or ``hkmeans`` prefix. It is here as the
seed's comparison point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..progress import ProgressCallback
from .base import SchemeBase, check_k, register_scheme, resolve_k
from .kmeans import Codebook, fit_kmeans, nearest


@register_scheme("pq")
class ProductQuantizer(SchemeBase):
    """Product-quantization docids.

    Args:
        levels: number of subspaces (one code each); the dimension is split as evenly as possible.
        k: codes per subspace: ``"auto"``, an int or one int per level.
        balanced: balanced assignment in each subspace.
        iters: most Lloyd iterations per subspace.
        center_modalities: subtract each modality's mean before quantizing.
        sample_size: vectors the codebooks are fitted on.
    """

    def __init__(
        self,
        *,
        levels: int = 2,
        k: int | str | list[int] = "auto",
        balanced: bool = False,
        iters: int = 20,
        center_modalities: bool = True,
        sample_size: int = 50000,
    ) -> None:
        super().__init__(levels=levels, center_modalities=center_modalities, sample_size=sample_size)
        self.k = check_k(k, self.levels)
        self.balanced = bool(balanced)
        self.iters = int(iters)
        self.codebooks: list[Codebook] = []
        self.bounds: list[int] = []  # subspace i is dims bounds[i]:bounds[i+1]

    def _fit(self, v: np.ndarray, m: np.ndarray, rng: np.random.Generator, progress: ProgressCallback | None) -> None:
        d = v.shape[1]
        if d < self.levels:
            raise ConfigError(f"pq cannot split {d}-d vectors into {self.levels} subspaces; use levels <= {d}.")
        x = self.sample(v, m, rng)
        ks = resolve_k(self.k, self.levels, v.shape[0], self.name)
        self.bounds = [int(b) for b in np.linspace(0, d, self.levels + 1).round().astype(int)]
        self.codebooks = []
        for i, k in enumerate(ks):
            sub = np.ascontiguousarray(x[:, self.bounds[i] : self.bounds[i + 1]])
            self.codebooks.append(fit_kmeans(sub, k, rng=rng, iters=self.iters, balanced=self.balanced))
            if progress is not None:
                progress("fit", i + 1, self.levels, {})

    def _codes(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], self.levels), np.int32)
        for i, cb in enumerate(self.codebooks):
            sub = np.ascontiguousarray(x[:, self.bounds[i] : self.bounds[i + 1]])
            out[:, i], _ = nearest(sub, cb.centroids, cb.bias if self.balanced else None)
        return out

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Vectors rebuilt from ``assign()`` codes, in the preprocessed space."""
        c = np.asarray(codes)[:, -self.levels :]
        return np.concatenate([cb.centroids[c[:, i]] for i, cb in enumerate(self.codebooks)], axis=1)

    def _sizes(self) -> list[int]:
        return [cb.k for cb in self.codebooks]

    def _params(self) -> dict[str, Any]:
        return {"k": self.k, "balanced": self.balanced, "iters": self.iters, "bounds": self.bounds}

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, cb in enumerate(self.codebooks):
            out[f"centroids_{i}"] = cb.centroids
            out[f"bias_{i}"] = cb.bias
        return out

    @classmethod
    def _init_kwargs(cls, params: dict[str, Any]) -> dict[str, Any]:
        kw = super()._init_kwargs(params)
        for key in ("k", "balanced", "iters"):
            kw[key] = params[key]
        return kw

    def _load(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.bounds = [int(b) for b in params["bounds"]]
        self.codebooks = [
            Codebook(np.asarray(arrays[f"centroids_{i}"], np.float32), np.asarray(arrays[f"bias_{i}"], np.float32))
            for i in range(self.levels)
        ]
