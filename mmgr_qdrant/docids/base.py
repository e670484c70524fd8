"""The docid scheme contract, its registry, and the parts every scheme shares.

A scheme turns L2-normalized vectors into hierarchical integer codes. Column 0 of
:meth:`DocidScheme.assign` is the modality (GENIUS); the next ``levels`` columns are semantic codes;
:func:`~mmgr_qdrant.docids.codes.add_tiebreak` appends the last column that makes docids unique.

Shared preprocessing (``center_modalities=True``, the default): each modality's mean vector is
subtracted and rows are re-normalized before quantizing. CLIP-style encoders put images and texts
in two separate cones (the *modality gap*); with one codebook shared by both modalities, the
uncentered first level mostly learns "image or text", which column 0 already says. Centering
lets an image and a caption that mean the same thing fall in the same semantic codes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, DimensionMismatchError, InputError, NotBuiltError
from ..progress import ProgressCallback
from ..types import MODALITY_CODES

logger = logging.getLogger(__name__)

N_MODALITIES = len(MODALITY_CODES)
STATE_FORMAT = 1
"""Version of the ``state()`` layout; bumped when a scheme's saved arrays change meaning."""

MAX_AUTO_K = 256
AUTO_LEAF_SIZE = 4
"""``k="auto"`` aims at about this many documents per full semantic docid."""

_ASSIGN_ROWS = 65536
"""Rows preprocessed and quantized at a time by ``assign``: bounds memory for millions of vectors."""


@runtime_checkable
class DocidScheme(Protocol):
    """Fits codebooks on document vectors and assigns hierarchical codes.

    Attributes:
        name: the registry name (``"rq"``, ``"hkmeans"``, ``"pq"``, ``"lsh"``).
        levels: number of semantic levels (modality and tie-break codes excluded).
    """

    name: str
    levels: int

    def fit(
        self, vectors: np.ndarray, modalities: np.ndarray, *, seed: int = 0, progress: ProgressCallback | None = None
    ) -> None:
        """Fit the codebooks on ``(n, d)`` float32 L2-normalized vectors with their ``(n,)`` modality codes."""
        ...

    def assign(self, vectors: np.ndarray, modalities: np.ndarray) -> np.ndarray:
        """Codes ``(n, 1 + levels)`` int32 (column 0 = modality) for any vectors, fitted or new."""
        ...

    def codebook_sizes(self) -> list[int]:
        """Vocabulary size of each column of :meth:`assign` (column 0 = number of modalities)."""
        ...

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able parameters (with ``"name"``) and arrays that rebuild the fitted scheme."""
        ...

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> DocidScheme:
        """Rebuild a fitted scheme from :meth:`state`."""
        ...

    def preprocess(self, v: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Rows as the scheme sees them before quantizing (centred per modality, renormalized)."""
        ...

    def level1_centroids(self) -> np.ndarray | None:
        """The first semantic level's centroids ``(K1, d)`` in the :meth:`preprocess` space, or ``None``.

        A scheme returns them only when the first code is the plain nearest-centroid rule over
        them; the router then adds a geometric prior over level-1 codes (``GenerativeIndex.route``).
        """
        ...


S = TypeVar("S", bound=type)
_REGISTRY: dict[str, type] = {}


def register_scheme(name: str) -> Callable[[S], S]:
    """Class decorator: register a scheme class under ``name`` (and set its ``name`` attribute)."""

    def deco(cls: S) -> S:
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return deco


def available_schemes() -> list[str]:
    """The registered scheme names."""
    return sorted(_REGISTRY)


def _scheme_class(name: str) -> type:
    if name not in _REGISTRY:
        raise ConfigError(f"Unknown docid scheme {name!r}; use one of {', '.join(available_schemes())}.")
    return _REGISTRY[name]


def get_scheme(name: str, **params: Any) -> DocidScheme:
    """Build an unfitted scheme by registry name.

    Args:
        name: ``"rq"``, ``"hkmeans"``, ``"pq"`` or ``"lsh"``.
        **params: the scheme's constructor arguments (``levels``, ``k``, ``balanced``, ...).

    Raises:
        ConfigError: the name is unknown or a parameter is invalid.
    """
    cls = _scheme_class(name)
    try:
        return cls(**params)  # type: ignore[no-any-return]
    except TypeError as e:
        raise ConfigError(f"Invalid parameters {sorted(params)} for docid scheme {name!r} ({e}); see its docstring.") from e


def scheme_from_state(params: dict[str, Any], arrays: dict[str, np.ndarray]) -> DocidScheme:
    """Rebuild a fitted scheme from ``state()`` output; ``params["name"]`` picks the class.

    Raises:
        ConfigError: the saved name is missing or unknown, or the state format is newer than this library.
    """
    name = params.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"Saved docid scheme parameters have no 'name' (keys: {sorted(params)}); rebuild the index.")
    fmt = int(params.get("format", STATE_FORMAT))
    if fmt > STATE_FORMAT:
        raise ConfigError(
            f"Saved docid scheme state has format {fmt}, newer than this library's {STATE_FORMAT}; upgrade mmgr-qdrant."
        )
    return _scheme_class(name).from_state(params, arrays)  # type: ignore[no-any-return,attr-defined]


def auto_k(n: int, levels: int, max_k: int = MAX_AUTO_K) -> int:
    """Codes per level for ``n`` documents: about ``AUTO_LEAF_SIZE`` documents per full docid, in ``[2, max_k]``."""
    if n <= 1:
        return 1
    return int(min(max_k, max(2, math.ceil((n / AUTO_LEAF_SIZE) ** (1.0 / levels)))))


def check_levels(levels: int) -> int:
    if not isinstance(levels, (int, np.integer)) or isinstance(levels, bool) or levels < 1:
        raise ConfigError(f"A docid scheme needs levels >= 1, got {levels!r}; use 2 or 3.")
    return int(levels)


def check_k(k: int | str | list[int], levels: int) -> int | str | list[int]:
    """Validate a ``k`` argument: ``"auto"``, an int >= 1, or one int >= 1 per level."""
    if k == "auto":
        return "auto"
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1:
        return int(k)
    if isinstance(k, (list, tuple)) and len(k) == levels and all(isinstance(v, (int, np.integer)) and v >= 1 for v in k):
        return [int(v) for v in k]
    raise ConfigError(f"k must be 'auto', an int >= 1 or a list of {levels} such ints, got {k!r}.")


def resolve_k(k: int | str | list[int], levels: int, n: int, name: str) -> list[int]:
    """Per-level codebook sizes for ``n`` fitting vectors, shrunk (and logged) when ``n`` is smaller."""
    if k == "auto":
        ks = [auto_k(n, levels)] * levels
        logger.info("docids %s: k='auto' picked %d codes per level for %d documents", name, ks[0], n)
        return ks
    ks = [int(k)] * levels if isinstance(k, int) else [int(v) for v in k]  # type: ignore[union-attr]
    shrunk = [min(v, n) for v in ks]
    if shrunk != ks:
        logger.warning(
            "docids %s: %d documents are fewer than the %s codes asked per level; using %s", name, n, ks, shrunk
        )
    return shrunk


def check_input(vectors: np.ndarray, modalities: np.ndarray, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``(n, d)`` vectors and ``(n,)`` modality codes to float32 / int32.

    Raises:
        InputError: wrong shapes, non-finite values, or unknown modality codes.
        DimensionMismatchError: ``d`` differs from the fitted dimension.
    """
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise InputError(f"Docid vectors must be a 2-D (n, d) array, got shape {v.shape}; stack the embeddings first.")
    v = np.ascontiguousarray(v, dtype=np.float32)
    m = np.asarray(modalities)
    if m.shape != (v.shape[0],):
        raise InputError(
            f"Modalities must be a 1-D array with one code per vector ({v.shape[0]}), got shape {m.shape}."
        )
    if m.size and not np.issubdtype(m.dtype, np.integer):
        raise InputError(f"Modalities must be integer codes {MODALITY_CODES}, got dtype {m.dtype}.")
    m = m.astype(np.int32)
    if m.size and (m.min() < 0 or m.max() >= N_MODALITIES):
        raise InputError(f"Modality codes must be in {sorted(MODALITY_CODES.values())} ({MODALITY_CODES}), got {np.unique(m)[:5]}.")
    if dim is not None and v.shape[1] != dim:
        raise DimensionMismatchError(f"The docid scheme was fitted on {dim}-d vectors, got {v.shape[1]}-d; use the same encoder.")
    if v.size and not np.isfinite(v).all():
        raise InputError("Docid vectors contain NaN or infinite values; check the encoder output.")
    return v, m


def _pad_means(means: np.ndarray) -> np.ndarray:
    """Means saved before a modality existed (two rows before video) get the average row for the new ones."""
    if means.ndim != 2 or means.shape[0] >= N_MODALITIES:
        return means
    extra = np.repeat(means.mean(axis=0, keepdims=True), N_MODALITIES - means.shape[0], axis=0)
    return np.concatenate([means, extra]).astype(np.float32)


class SchemeBase:
    """Shared plumbing: input checks, modality centering, sampling, chunked assignment, state.

    Subclasses implement ``_fit(x, rng, progress)`` on preprocessed sample rows, ``_codes(x)`` for
    a preprocessed block, ``_sizes()``, and ``_params()`` / ``_arrays()`` / ``_load(params, arrays)``.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, levels: int = 2, center_modalities: bool = True, sample_size: int = 50000) -> None:
        self.levels = check_levels(levels)
        self.center_modalities = bool(center_modalities)
        if not isinstance(sample_size, int) or sample_size < 1:
            raise ConfigError(f"sample_size must be a positive int, got {sample_size!r}; 50000 is a good default.")
        self.sample_size = sample_size
        self.dim: int | None = None
        self.n_fit: int = 0
        self._means: np.ndarray | None = None  # (N_MODALITIES, d) float32

    # -- the public contract -------------------------------------------------------------

    def fit(
        self, vectors: np.ndarray, modalities: np.ndarray, *, seed: int = 0, progress: ProgressCallback | None = None
    ) -> None:
        """Fit on ``(n, d)`` L2-normalized vectors with their modality codes.

        Codebooks are fitted on a random sample of ``sample_size`` rows; all rows are only needed
        for the modality means.

        Raises:
            ConfigError: the collection is empty.
            InputError: bad shapes, values or modality codes.
        """
        v, m = check_input(vectors, modalities)
        n = v.shape[0]
        if n == 0:
            raise ConfigError(f"Cannot fit docid scheme {self.name!r} on an empty collection; add documents before building.")
        self.dim = int(v.shape[1])
        self.n_fit = n
        self._means = self._modality_means(v, m)
        rng = np.random.default_rng(seed)
        self._fit(v, m, rng, progress)

    def assign(self, vectors: np.ndarray, modalities: np.ndarray) -> np.ndarray:
        """Codes ``(n, 1 + levels)`` int32 for any vectors (nearest code per level, no refit).

        Raises:
            NotBuiltError: the scheme was not fitted.
            InputError: bad shapes, values or modality codes.
            DimensionMismatchError: the dimension differs from the fitted one.
        """
        self._check_fitted()
        v, m = check_input(vectors, modalities, self.dim)
        out = np.empty((v.shape[0], 1 + self.levels), dtype=np.int32)
        out[:, 0] = m
        for start in range(0, v.shape[0], _ASSIGN_ROWS):
            sl = slice(start, start + _ASSIGN_ROWS)
            out[sl, 1:] = self._codes(self.preprocess(v[sl], m[sl]))
        return out

    def codebook_sizes(self) -> list[int]:
        """Vocabulary size of each column of :meth:`assign`; column 0 is the number of modalities."""
        self._check_fitted()
        return [N_MODALITIES, *self._sizes()]

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(params, arrays)``: JSON-able parameters carrying ``"name"`` and the fitted arrays."""
        self._check_fitted()
        assert self._means is not None
        params: dict[str, Any] = {
            "name": self.name,
            "format": STATE_FORMAT,
            "levels": self.levels,
            "dim": self.dim,
            "n_fit": self.n_fit,
            "center_modalities": self.center_modalities,
            "sample_size": self.sample_size,
            **self._params(),
        }
        arrays = {"modality_means": self._means.copy(), **self._arrays()}
        return params, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        """Rebuild the fitted scheme saved by :meth:`state`.

        Raises:
            ConfigError: the state belongs to another scheme or misses an array.
        """
        if params.get("name") != cls.name:
            raise ConfigError(f"State of docid scheme {params.get('name')!r} cannot be loaded as {cls.name!r}; use scheme_from_state().")
        try:
            obj = cls(**cls._init_kwargs(params))
            obj.dim = int(params["dim"])
            obj.n_fit = int(params.get("n_fit", 0))
            obj._means = _pad_means(np.asarray(arrays["modality_means"], dtype=np.float32))
            obj._load(params, arrays)
        except KeyError as e:
            raise ConfigError(f"Saved state of docid scheme {cls.name!r} lacks {e}; rebuild the index.") from e
        return obj

    # -- shared helpers ------------------------------------------------------------------

    @classmethod
    def _init_kwargs(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "levels": int(params["levels"]),
            "center_modalities": bool(params["center_modalities"]),
            "sample_size": int(params["sample_size"]),
        }

    def _check_fitted(self) -> None:
        if self.dim is None:
            raise NotBuiltError(f"Docid scheme {self.name!r} is not fitted; call fit() (or build()) first.")

    def _modality_means(self, v: np.ndarray, m: np.ndarray) -> np.ndarray:
        d = v.shape[1]
        means = np.zeros((N_MODALITIES, d), dtype=np.float32)
        if not self.center_modalities:
            return means
        counts = np.bincount(m, minlength=N_MODALITIES)
        onehot = sp.csr_matrix((np.ones(len(m), dtype=np.float32), (m, np.arange(len(m)))), shape=(N_MODALITIES, len(m)))
        sums = np.asarray(onehot @ v, dtype=np.float64)  # no copy of the rows, whatever n is
        total = sums.sum(axis=0) / max(len(m), 1)
        for code in range(N_MODALITIES):
            # A modality absent at fit time (texts added later) falls back to the overall mean.
            means[code] = sums[code] / counts[code] if counts[code] else total
        return means

    def preprocess(self, v: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Centered (per modality) and re-normalized float32 rows: the space the codebooks live in."""
        assert self._means is not None
        if not self.center_modalities:
            return v
        x = v - self._means[m]
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        np.maximum(norms, 1e-12, out=norms)
        x /= norms
        return x

    def sample(self, v: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Preprocessed rows of a random sample of at most ``sample_size`` vectors (sorted indices)."""
        n = v.shape[0]
        if n <= self.sample_size:
            return self.preprocess(v, m)
        idx = np.sort(rng.choice(n, size=self.sample_size, replace=False))
        return self.preprocess(v[idx], m[idx])

    def level1_centroids(self) -> np.ndarray | None:
        """``None``: the first code is not a plain nearest-centroid rule (schemes that have one override this)."""
        return None

    # -- subclass hooks ------------------------------------------------------------------

    def _fit(self, v: np.ndarray, m: np.ndarray, rng: np.random.Generator, progress: ProgressCallback | None) -> None:
        raise NotImplementedError

    def _codes(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _sizes(self) -> list[int]:
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        fitted = f"dim={self.dim}, sizes={self._sizes()}" if self.dim is not None else "unfitted"
        return f"{type(self).__name__}(levels={self.levels}, {fitted})"
