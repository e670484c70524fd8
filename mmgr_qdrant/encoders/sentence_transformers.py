"""Text-only encoders from sentence-transformers: ``sentence-transformers:<name or local path>``.

A text-only encoder cannot embed images; such an index holds text documents alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import EncoderError, missing_dependency
from .base import best_device, check_texts, normalize, register_encoder


class SentenceTransformerEncoder:
    """A sentence-transformers text model (a Hub name, or a local folder for offline use)."""

    def __init__(self, spec: str, device: str | None = None) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise missing_dependency("sentence-transformers", "text") from exc
        self.name = f"sentence-transformers:{spec}"
        self.device = device or best_device()
        try:
            self.model = SentenceTransformer(spec, device=self.device)
        except Exception as exc:
            raise EncoderError(
                f"Could not load the sentence-transformers model {spec!r} ({type(exc).__name__}: {str(exc)[:200]}); "
                "download it on a connected machine and pass its local folder, e.g. 'sentence-transformers:/models/all-MiniLM-L6-v2'."
            ) from exc
        get_dim = getattr(self.model, "get_embedding_dimension", None) or getattr(self.model, "get_sentence_embedding_dimension", None)
        dim = get_dim() if get_dim else None
        self.dim = int(dim) if dim else int(self.model.encode(["probe"]).shape[-1])

    def encode_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        raise EncoderError(f"{self.name} embeds text only; use an open_clip or 'lit:default' encoder to index images.")

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        emb = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        return normalize(emb)


@register_encoder("sentence-transformers")
def _factory(spec: str) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(spec)
