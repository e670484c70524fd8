"""Ranking terms: the positive concept atoms of an expression in disjunctive normal form, one vector per conjunction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .expr import And, Expr, Image, Not, Or, Text
from .simplify import polarities

JOINT_TEXT = " and "
"""How the texts of a conjunction are joined into one phrase for ranking."""

MAX_RANKING_TERMS = 16
"""The most conjunctions :attr:`Compiled.ranking_vectors` expands an expression into; beyond it
the positive atoms rank together by the normalized mean of their own vectors (one vector, no
phrase): see :func:`ranking_terms`."""


def unit_mean(vectors: Sequence[np.ndarray]) -> np.ndarray | None:
    """The L2-normalized mean of the L2-normalized ``vectors``; ``None`` for none."""
    if not vectors:
        return None
    unit = [v / n if (n := float(np.linalg.norm(v))) > 0 else v for v in vectors]
    mean = np.mean(np.stack(unit), axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype(np.float32)


class _TooMany(Exception):
    pass


def ranking_terms(expr: Expr) -> tuple[list[tuple[Expr, ...]], bool]:
    """The positive concept atoms of ``expr`` in disjunctive normal form: one tuple per conjunction.

    Returns:
        The conjunctions, and whether the expansion passed :data:`MAX_RANKING_TERMS`. Past it,
        the one "conjunction" returned is every positive atom, and it must rank by the mean of
        the atoms' own vectors, never as one phrase: in ``(a|b) & (c|d) & ...`` the atoms are
        alternatives, and a phrase of all of them ("a and b and c and d ...") asks for every
        alternative at once (an AND of everything, and past the text encoder's context it
        silently drops the last atoms), while the mean weighs each alternative equally and
        degrades to the plain mean the expression would have without its structure.
    """

    def walk(e: Expr, positive: bool) -> list[tuple[Expr, ...]] | None:
        # None: no concept to rank by in this branch (it admits documents, ranks none)
        if isinstance(e, Not):
            return walk(e.child, not positive)
        if isinstance(e, (Text, Image)):
            return [(e,)] if positive else None
        if not isinstance(e, (And, Or)):
            return None
        parts = [t for c in e.children if (t := walk(c, positive)) is not None]
        if not parts:
            return None
        if isinstance(e, And) == positive:  # AND (or NOT of an OR): every combination of the children's terms
            out: list[tuple[Expr, ...]] = [()]
            for terms in parts:
                out = [tuple(dict.fromkeys(a + b)) for a in out for b in terms]
                if len(out) > MAX_RANKING_TERMS:
                    raise _TooMany
            return out
        return [t for terms in parts for t in terms]  # OR (or NOT of an AND): any child's terms

    try:
        terms = walk(expr, True) or []
    except _TooMany:
        pols = polarities(expr)
        return [tuple(a for a, p in pols.items() if isinstance(a, (Text, Image)) and True in p)], True
    return list(dict.fromkeys(terms)), False
