"""A backend-neutral filter model; each store backend translates it to its own Qdrant types.

Set algebra over docid prefixes compiles to these objects, so it never imports a Qdrant client.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import PointId

Scalar = str | int | bool


@dataclass(frozen=True)
class Match:
    """The payload field ``key`` holds any of ``values`` (for an array field: any element does)."""

    key: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    """The numeric payload field ``key`` lies in the given bounds."""

    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class HasId:
    """The point id is one of ``ids``."""

    ids: tuple[PointId, ...]


@dataclass(frozen=True)
class Filter:
    """All of ``must``, at least one of ``should`` (when given), none of ``must_not``."""

    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()

    def is_empty(self) -> bool:
        return not (self.must or self.should or self.must_not)


Condition = Match | Range | HasId | Filter


def all_of(*conds: Condition | None) -> Filter | None:
    """AND the given conditions, dropping ``None``; ``None`` when nothing is left."""
    kept = tuple(c for c in conds if c is not None and not (isinstance(c, Filter) and c.is_empty()))
    if not kept:
        return None
    if len(kept) == 1 and isinstance(kept[0], Filter):
        return kept[0]
    return Filter(must=kept)
