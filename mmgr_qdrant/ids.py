"""Point ids derived from content, so that adding the same item twice stores it once."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_NAMESPACE = uuid.UUID("b5a7c1de-2f4e-4c8b-9d1a-7e6f3a2b1c0d")


def content_id(modality: str, digest: str) -> str:
    """A UUID (string) from a modality and a content digest."""
    return str(uuid.uuid5(_NAMESPACE, f"{modality}:{digest}"))


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def image_digest(item: Any) -> str:
    """A digest of an image input: the file's bytes for paths and bytes, pixels for decoded images."""
    h = hashlib.sha256()
    if isinstance(item, (str, Path)):
        with open(Path(item).expanduser(), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    elif isinstance(item, (bytes, bytearray)):
        h.update(item)
    elif isinstance(item, Image.Image):
        h.update(f"{item.mode}{item.size}".encode())
        h.update(item.tobytes())
    elif isinstance(item, np.ndarray):
        h.update(f"{item.dtype}{item.shape}".encode())
        h.update(np.ascontiguousarray(item).tobytes())
    else:
        h.update(repr(item).encode())
    return h.hexdigest()


def vector_digest(vector: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vector, dtype=np.float32).tobytes()).hexdigest()
