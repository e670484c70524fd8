"""Explanations of a compiled expression: its filter as readable data, how it ranks, and NOT-covers-positive overlaps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..filters import Condition, Filter, HasId, Match, Range
from ..types import prefix_key
from .expr import _RANGE_OPS, Expr, Text
from .ranking import JOINT_TEXT

if TYPE_CHECKING:
    from .compile import Compiled

def filter_to_dict(cond: Condition | None) -> Any:
    """A filter or condition as readable, JSON-ready data shaped like Qdrant's REST filters."""
    if cond is None:
        return None
    if isinstance(cond, Filter):
        out = {name: [filter_to_dict(c) for c in getattr(cond, name)] for name in ("must", "should", "must_not")}
        return {k: v for k, v in out.items() if v}
    if isinstance(cond, Match):
        match = {"value": cond.values[0]} if len(cond.values) == 1 else {"any": list(cond.values)}
        return {"key": cond.key, "match": match}
    if isinstance(cond, Range):
        return {"key": cond.key, "range": {k: getattr(cond, k) for k in _RANGE_OPS if getattr(cond, k) is not None}}
    if isinstance(cond, HasId):
        return {"has_id": list(cond.ids)}
    raise InputError(f"filter_to_dict got {type(cond).__name__}; pass a Filter, Match, Range or HasId.")


def explain_compiled(c: Compiled) -> dict[str, Any]:
    """The compiled sets, the filter, how it ranks and any NOT-covers-positive overlaps, as JSON-ready data."""
    if c.ranking_terms:
        ways = [describe_terms(c, t) for t in c.ranking_terms]
        ranking = ways[0] if len(ways) == 1 else "the best of: " + "; ".join(ways)
    else:
        ranking = "none: no positive text or image term, documents come in store order"
    atoms = []
    for a in c.atoms:
        item: dict[str, Any] = {"term": str(a.atom), "kind": a.kind, "polarity": a.polarity,
                                "condition": filter_to_dict(a.condition)}
        if a.resolution is not None:
            item["prefixes"] = [prefix_key(p) for p in a.resolution.prefixes]
            item["scores"] = [round(s, 6) for s in a.resolution.scores]
        atoms.append(item)
    return {
        "query": str(c.expr),
        "filter": filter_to_dict(c.filter),
        "negative_only": c.negative_only,
        "ranking": ranking,
        "atoms": atoms,
        "warnings": overlaps(c),
    }


def describe_terms(c: Compiled, terms: tuple[Expr, ...]) -> str:
    """How one conjunction of ranking terms scores a document, in words."""
    if terms in c.joint_vectors:
        texts = [t for t in terms if isinstance(t, Text)]
        rest = len(terms) - len(texts)
        phrase = f"the phrase {JOINT_TEXT.join(t.text for t in texts)!r}"
        return f"cosine to {phrase}" + (f" averaged with {rest} image term{'s' if rest > 1 else ''}" if rest else "")
    if len(terms) == 1:
        return f"cosine to {terms[0]}"
    return f"cosine to the mean of {', '.join(map(str, terms))}"


def overlaps(c: Compiled) -> list[str]:
    """Positive concept prefixes that a negated concept's prefixes cover entirely, one line each."""
    resolved = [a for a in c.atoms if a.resolution is not None]
    out: list[str] = []
    for pos in (a for a in resolved if a.polarity != "negative"):
        for neg in (a for a in resolved if a.polarity != "positive" and a is not pos):
            assert pos.resolution is not None and neg.resolution is not None
            hit = [p for p in pos.resolution.prefixes if any(p[: len(n)] == n for n in neg.resolution.prefixes)]
            if hit:
                keys = ", ".join(prefix_key(p) for p in hit)
                out.append(f"{str(neg.atom)!r} under NOT covers prefixes {keys} of {str(pos.atom)!r}; those documents are excluded.")
    return out
