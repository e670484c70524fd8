"""Progress reporting: the library calls a callback, the CLI renders it."""

from __future__ import annotations

from typing import Protocol


class ProgressCallback(Protocol):
    """Called as long work advances.

    Args:
        stage: a short name of the work ("encode", "upsert", "fit", "train", ...).
        done: units finished so far.
        total: units in all, or ``None`` when unknown.
        info: figures worth showing beside the bar (a loss, a rate), possibly empty.
    """

    def __call__(self, stage: str, done: int, total: int | None, info: dict[str, float]) -> None: ...


def null_progress(stage: str, done: int, total: int | None, info: dict[str, float]) -> None:
    """A progress callback that does nothing."""
