"""Qdrant's filter semantics in Python: :func:`matches` and :func:`evaluate_filter`, the set a filter admits (for tests and debugging)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InputError
from ..filters import Condition, Filter, HasId, Match, Range
from ..types import PointId
from .compile import Compiled, Resolver, compile_expr
from .expr import Expr

# --------------------------------------------------------------------------------------------
# Evaluation in Python (Qdrant semantics)
# --------------------------------------------------------------------------------------------


def _values_at(payload: Mapping[str, Any], key: str) -> list[Any]:
    """The values at a dotted key: nested objects are walked, one array level is flattened."""
    cur: Any = payload
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return []
        cur = cur[part]
    if cur is None:
        return []
    return [v for v in cur if v is not None] if isinstance(cur, (list, tuple)) else [cur]


def _same(stored: Any, wanted: Any) -> bool:
    # Qdrant matches by type: a keyword never equals an integer, a bool only a bool,
    # and an integer match does not match a float payload.
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return isinstance(wanted, bool) and isinstance(stored, bool) and stored == wanted
    if isinstance(wanted, int):
        return isinstance(stored, int) and stored == wanted
    return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted


def _in_range(v: Any, r: Range) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return not (
        (r.gt is not None and not v > r.gt)
        or (r.gte is not None and not v >= r.gte)
        or (r.lt is not None and not v < r.lt)
        or (r.lte is not None and not v <= r.lte)
    )


def matches(cond: Condition, point_id: PointId, payload: Mapping[str, Any]) -> bool:
    """Whether one stored point satisfies ``cond``, with Qdrant's semantics.

    A match or range on an array field holds when any element does; a missing or null field
    satisfies no match or range (so it satisfies their ``must_not``); an empty filter holds.
    """
    if isinstance(cond, Filter):
        return (
            all(matches(c, point_id, payload) for c in cond.must)
            and (not cond.should or any(matches(c, point_id, payload) for c in cond.should))
            and not any(matches(c, point_id, payload) for c in cond.must_not)
        )
    if isinstance(cond, Match):
        return any(_same(v, w) for v in _values_at(payload, cond.key) for w in cond.values)
    if isinstance(cond, Range):
        return any(_in_range(v, cond) for v in _values_at(payload, cond.key))
    if isinstance(cond, HasId):
        return point_id in cond.ids
    raise InputError(f"matches() got {type(cond).__name__}; pass a Filter, Match, Range or HasId.")


def evaluate_filter(
    target: Compiled | Condition | Expr | str | None,
    payloads: Mapping[PointId, Mapping[str, Any]],
    *,
    resolver: Resolver | None = None,
) -> set[PointId]:
    """The ids of the stored points a filter admits, computed in Python from their payloads.

    Mirrors what Qdrant returns for the same filter (see :func:`matches`), for tests and
    debugging; it scans every payload, so keep it off hot paths.

    Args:
        target: a :class:`Compiled`, a filter condition, ``None`` (every point), or an
            expression / query string, compiled here with ``resolver`` (negative-only allowed).
        payloads: every stored point's full payload (user fields at the top level, the
            library's under ``_mmgr``), by point id.
        resolver: needed only to compile an expression with text or image atoms.

    Returns:
        The admitted point ids.
    """
    if isinstance(target, (Expr, str)):
        target = compile_expr(target, resolver, allow_negative_only=True)
    cond = target.filter if isinstance(target, Compiled) else target
    if cond is None:
        return set(payloads)
    return {pid for pid, payload in payloads.items() if matches(cond, pid, payload)}
