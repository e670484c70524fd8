"""The simplifier: atoms to conditions, and AND / OR / NOT combined with constants folded and matches merged.

``ALL`` (every document) and ``NONE`` (no document) are constants that fold away: ``x AND *`` is ``x``,
``NOT *`` is ``NONE``; matches on one key under OR (or under one NOT) merge into one ``MatchAny``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError
from ..filters import Condition, Filter, HasId, Match, Range
from ..types import F_MODALITY, F_PREFIXES, prefix_key
from .atoms import AtomResolution
from .expr import All, And, Expr, FieldEq, FieldRange, Ids, Image, Modality, Not, Or, Prefix, Text


class _Const:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_ALL = _Const("ALL")
_NONE = _Const("NONE")
_CondC = Condition | _Const


def polarities(expr: Expr) -> dict[Expr, set[bool]]:
    """Each distinct atom with the set of its polarities (True = un-negated)."""
    out: dict[Expr, set[bool]] = {}

    def walk(e: Expr, positive: bool) -> None:
        if isinstance(e, (And, Or)):
            for c in e.children:
                walk(c, positive)
        elif isinstance(e, Not):
            walk(e.child, not positive)
        else:
            out.setdefault(e, set()).add(positive)

    walk(expr, True)
    return out


def atom_condition(atom: Expr, res: AtomResolution | None) -> _CondC:
    if isinstance(atom, (Text, Image)):
        assert res is not None
        if not res.prefixes:
            return _NONE
        return Match(F_PREFIXES, tuple(dict.fromkeys(prefix_key(p) for p in res.prefixes)))
    if isinstance(atom, Ids):
        return HasId(atom.ids)
    if isinstance(atom, Prefix):
        return Match(F_PREFIXES, (prefix_key(atom.codes),))
    if isinstance(atom, Modality):
        return Match(F_MODALITY, (atom.modality,))
    if isinstance(atom, FieldRange):
        return Range(atom.key, **{atom.op: atom.value})
    if isinstance(atom, FieldEq):
        strs = [v for v in atom.values if isinstance(v, str)]
        ints = [v for v in atom.values if isinstance(v, int) and not isinstance(v, bool)]
        parts: list[Condition] = []
        if strs:
            parts.append(Match(atom.key, tuple(dict.fromkeys(strs))))
        if ints:
            parts.append(Match(atom.key, tuple(dict.fromkeys(ints))))
        # MatchAny takes one type only, and Match of a bool must be a single MatchValue.
        for b in dict.fromkeys(v for v in atom.values if isinstance(v, bool)):
            parts.append(Match(atom.key, (b,)))
        for f in dict.fromkeys(v for v in atom.values if isinstance(v, float)):
            parts.append(Range(atom.key, gte=f, lte=f))
        return _or(parts)
    if isinstance(atom, All):
        return _ALL
    raise InputError(f"Cannot compile {type(atom).__name__}; build expressions from Q's constructors.")


def simplify(e: Expr, conds: Mapping[Expr, _CondC]) -> _CondC:
    if isinstance(e, And):
        return _and([simplify(c, conds) for c in e.children])
    if isinstance(e, Or):
        return _or([simplify(c, conds) for c in e.children])
    if isinstance(e, Not):
        return _not(simplify(e.child, conds))
    return conds[e]


def _dedupe(conds: Sequence[Condition]) -> tuple[Condition, ...]:
    return tuple(dict.fromkeys(conds))


def _merge(conds: Sequence[Condition]) -> tuple[Condition, ...]:
    """Merge matches on one key (one value type) and id sets: valid under OR and under NOT-any."""
    out: list[Condition] = []
    slot: dict[tuple[Any, ...], int] = {}
    for c in _dedupe(conds):
        group: tuple[Any, ...] | None = None
        if isinstance(c, HasId):
            group = ("ids",)
        elif isinstance(c, Match):
            if all(isinstance(v, str) for v in c.values):
                group = ("match", c.key, "str")
            elif all(isinstance(v, int) and not isinstance(v, bool) for v in c.values):
                group = ("match", c.key, "int")
        if group is None or group not in slot:
            if group is not None:
                slot[group] = len(out)
            out.append(c)
            continue
        prev = out[slot[group]]
        if isinstance(prev, HasId) and isinstance(c, HasId):
            out[slot[group]] = HasId(tuple(dict.fromkeys(prev.ids + c.ids)))
        elif isinstance(prev, Match) and isinstance(c, Match):
            out[slot[group]] = Match(prev.key, tuple(dict.fromkeys(prev.values + c.values)))
    return tuple(out)


def _filter(must: Sequence[Condition], should: Sequence[Condition], must_not: Sequence[Condition]) -> Condition:
    should, must_not = _merge(should), _merge(must_not)
    must = list(must)
    if len(should) == 1:
        only = should[0]
        should = ()
        if isinstance(only, Filter):
            must.extend(only.must)
            should = only.should
            must_not = _merge(tuple(must_not) + only.must_not)
        else:
            must.append(only)
    must_t = _dedupe(must)
    if len(must_t) == 1 and not should and not must_not:
        return must_t[0]
    return Filter(must=must_t, should=tuple(should), must_not=tuple(must_not))


def _and(conds: Sequence[_CondC]) -> _CondC:
    if any(c is _NONE for c in conds):
        return _NONE
    real = [c for c in conds if c is not _ALL]
    if not real:
        return _ALL
    must: list[Condition] = []
    should: tuple[Condition, ...] = ()
    must_not: list[Condition] = []
    for c in real:
        if isinstance(c, Filter) and (not c.should or not should):
            must.extend(c.must)
            must_not.extend(c.must_not)
            should = c.should or should
        else:
            must.append(c)  # type: ignore[arg-type]
    return _filter(must, should, must_not)


def _or(conds: Sequence[_CondC]) -> _CondC:
    if any(c is _ALL for c in conds):
        return _ALL
    real = [c for c in conds if c is not _NONE]
    if not real:
        return _NONE
    should: list[Condition] = []
    for c in real:
        if isinstance(c, Filter) and c.should and not c.must and not c.must_not:
            should.extend(c.should)
        else:
            should.append(c)  # type: ignore[arg-type]
    return _filter((), should, ())


def _not(c: _CondC) -> _CondC:
    if c is _ALL:
        return _NONE
    if c is _NONE:
        return _ALL
    if isinstance(c, Filter) and c.must_not and not c.must and not c.should:
        return _or(list(c.must_not))  # NOT (none of xs) = any of xs
    if isinstance(c, Filter) and c.should and not c.must and not c.must_not:
        return Filter(must_not=_merge(c.should))  # NOT (any of xs) = none of xs
    return Filter(must_not=(c,))  # type: ignore[arg-type]
