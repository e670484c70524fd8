"""Helpers shared by the test modules (fixtures live in ``conftest.py``; tests import from here, not from each other)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
