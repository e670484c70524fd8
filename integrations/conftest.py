"""Fixtures shared by every integration package's tests: a small embedded index (image files, an
in-memory image, texts) built with the tiny encoder. pytest loads this file for any test below it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # it would try to reach its server offline

import numpy as np
import pytest
from PIL import Image

from mmgr_qdrant import MultimodalRetriever

TINY = "open_clip:mmgr-tiny/none"
TEXTS = ["a red sports car", "a sailing boat at sea", "a bowl of fresh fruit"]


def make_image(seed: int, size: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def tiny_encoder() -> Any:
    from mmgr_qdrant.encoders import get_encoder

    return get_encoder(TINY)


@pytest.fixture
def image_files(tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        make_image(i).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def index(store_path: Path, image_files: list[Path], tiny_encoder: Any) -> Iterator[MultimodalRetriever]:
    """Three image files (captioned), one in-memory image (no file, no caption) and three texts."""
    r = MultimodalRetriever.create("docs", path=store_path, encoder=tiny_encoder)
    r.add_images([str(p) for p in image_files], payloads=[{"caption": f"picture {i}", "kind": "photo"} for i in range(3)])
    r.add_images([make_image(99)], payloads=[{"kind": "photo"}])
    r.add_texts(TEXTS, payloads=[{"kind": "note", "n": i} for i in range(3)])
    yield r
    r.close()


@pytest.fixture
def closed_index(index: MultimodalRetriever, store_path: Path) -> Path:
    """The index on disk with no open handle (an embedded store has one writer at a time)."""
    index.close()
    return store_path
