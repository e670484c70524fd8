"""Helpers shared by the test modules (fixtures live in ``conftest.py``; tests import from here, not from each other)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

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


def around_centres(dim: int, n: int, seed: int, *, clusters: int, centre_seed: int) -> np.ndarray:
    """``n`` unit vectors near ``clusters`` fixed centres (the same centres for every ``seed``, so later batches join earlier ones)."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(centre_seed).normal(size=(clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_image(seed: int, size: int = 40) -> np.ndarray:
    """A deterministic RGB test image."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)


# -- the mmgr CLI, in process ------------------------------------------------------------------
# Unset what the developer's shell says about where indexes live; a wide terminal, so long tmp paths do not wrap.
CLI_ENV = {"MMGR_PATH": None, "MMGR_COLLECTION": None, "QDRANT_URL": None, "QDRANT_API_KEY": None, "COLUMNS": "200"}


def mmgr(*args: Any, input: str | None = None) -> Any:
    """Run ``mmgr ARGS`` with typer's CliRunner; returns its result."""
    from typer.testing import CliRunner

    from mmgr_qdrant.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], prog_name="mmgr", env=CLI_ENV, input=input)


# -- the sample clip art ----------------------------------------------------------------------
CLIPART = Path(__file__).resolve().parents[1] / "examples" / "data"


def sample_rows(n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of the sample clip art's manifest (``file``, ``caption``, ...)."""
    rows = [json.loads(line) for line in (CLIPART / "clipart.jsonl").read_text().splitlines() if line.strip()]
    return rows[:n]


# -- short videos made from the sample clip art (PyAV) ------------------------------------------
FPS = 10
SCENE_S = 2.0  # each picture is shown for this long


def picture(name: str, size: int = 96) -> Image.Image:
    """A clip-art picture on white, square."""
    img = Image.open(CLIPART / "clipart" / name).convert("RGBA")
    img.thumbnail((size - 8, size - 8))
    canvas = Image.new("RGB", (size, size), "white")
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2), img)
    return canvas


def make_clip(path: Path, names: Sequence[str], *, scene_s: float = SCENE_S, size: int = 96) -> Path:
    """Write an mpeg4 .mp4 clip showing ``names`` in turn, ``scene_s`` seconds each, with a slow pan."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 400_000
        for name in names:
            big = picture(name, size + 8)
            for f in range(int(scene_s * FPS)):
                shift = f * 8 // int(scene_s * FPS)  # a pan of 8 px across the scene
                frame = av.VideoFrame.from_image(big.crop((shift, shift, shift + size, shift + size)))
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
