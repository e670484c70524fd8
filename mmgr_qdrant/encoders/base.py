"""The encoder contract and its registry.

An encoder maps images and texts into one L2-normalized float32 space. Encoders are named
``"<prefix>:<spec>"`` (``open_clip:ViT-B-32/laion2b_s34b_b79k``); the prefix picks a factory from
an explicit registry, never a guess from a substring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, EncoderError, InputError

logger = logging.getLogger(__name__)


@runtime_checkable
class Encoder(Protocol):
    """Embeds images and texts into one space.

    Attributes:
        name: the registry name that rebuilds this encoder (saved with the index).
        dim: the embedding dimension.
    """

    name: str
    dim: int

    def encode_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Embed images (paths, PIL images, bytes or arrays) to an ``(n, dim)`` float32 array, rows of norm 1."""
        ...

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts to an ``(n, dim)`` float32 array, rows of norm 1."""
        ...


EncoderFactory = Callable[[str], Encoder]
_REGISTRY: dict[str, EncoderFactory] = {}


def register_encoder(prefix: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register a factory for encoder names that start with ``prefix:``.

    The factory receives the part after the colon and returns an :class:`Encoder`.
    """

    def deco(factory: EncoderFactory) -> EncoderFactory:
        _REGISTRY[prefix] = factory
        return factory

    return deco


IndexResolver = Callable[[str, "str | None"], str]
_INDEX_RESOLVERS: dict[str, IndexResolver] = {}


def register_index_resolver(prefix: str, resolver: IndexResolver) -> None:
    """Register how a saved ``prefix:spec`` name plus its saved weights fingerprint maps to the spec to load.

    Lets a name such as ``lit:default``, whose weights change between releases, reopen an old index
    with the weights that built it.
    """
    _INDEX_RESOLVERS[prefix] = resolver


def index_encoder_name(name: str, fingerprint: str | None) -> str:
    """The encoder name to load for an index saved with ``name`` and weights ``fingerprint``.

    Args:
        name: the encoder name the index saved (``IndexConfig.encoder``).
        fingerprint: the weights digest it saved (``IndexConfig.encoder_fingerprint``), or ``None``.

    Returns:
        ``name`` itself, or the name of the weights that built the index (``lit:default`` saved with
        the first shipped head's fingerprint -> ``lit:v1``).
    """
    _load_builtin()
    prefix, sep, spec = name.partition(":")
    resolver = _INDEX_RESOLVERS.get(prefix) if sep else None
    if resolver is None:
        return name
    return f"{prefix}:{resolver(spec, fingerprint)}"


def available_encoders() -> list[str]:
    """The registered name prefixes."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_encoder(name: str | Encoder) -> Encoder:
    """Build the encoder registered under ``name`` (or pass an encoder object through).

    Raises:
        ConfigError: the prefix is unknown or the name has no ``prefix:`` part.
        EncoderError: the encoder's weights could not be loaded.
        MissingDependencyError: the encoder's optional dependency is absent.
    """
    if not isinstance(name, str):
        if isinstance(name, Encoder):
            return name
        raise ConfigError(f"An encoder must be a name such as 'open_clip:ViT-B-32/laion2b_s34b_b79k' or an Encoder object, got {type(name).__name__}.")
    _load_builtin()
    prefix, sep, spec = name.partition(":")
    if not sep or prefix not in _REGISTRY:
        raise ConfigError(
            f"Unknown encoder {name!r}; use one of the prefixes {', '.join(p + ':' for p in sorted(_REGISTRY))} "
            "(for example 'open_clip:ViT-B-32/laion2b_s34b_b79k' or 'lit:default')."
        )
    return _REGISTRY[prefix](spec)


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def best_device() -> str:
    """``"cuda"`` when a GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate a batch of texts: each a non-empty string."""
    if isinstance(texts, str):
        raise EncoderError("encode_texts takes a list of strings, got one string; wrap it in a list.")
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"Text #{i} is a {type(t).__name__}, not a string; pass text as str.")
        if not t.strip():
            raise InputError(f"Text #{i} is empty; give a non-empty string or drop it.")
        out.append(t)
    return out


_BUILTIN_LOADED = False


def _load_builtin() -> None:
    # Importing the modules registers their factories; none of them imports torch at import time.
    # An ImportError here is a bug in the library (optional packages are imported inside the
    # factories, which turn a missing one into MissingDependencyError): let it propagate rather
    # than leave the prefix unregistered ("Unknown encoder 'lit:default'").
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    from . import lit as _lit  # noqa: F401
    from . import open_clip as _oc  # noqa: F401
    from . import sentence_transformers as _st  # noqa: F401

    _BUILTIN_LOADED = True
