"""Compilation of expressions: :func:`compile_expr` turns an expression into one backend-neutral
filter plus the vectors that rank, returned as :class:`Compiled`.

The concerns live in their own modules and are re-exported here: the cut-off policy
(:mod:`.cutoff`), the resolver contract (:mod:`.atoms`), the simplifier (:mod:`.simplify`), the
ranking terms (:mod:`.ranking`) and explanations (:mod:`.explain`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..filters import Filter
from ..types import PointId
from .atoms import AtomResolution, CompiledAtom, Polarity, Resolver
from .cutoff import DEFAULT_CUTOFF, DEFAULT_NEGATIVE_CUTOFF, ConceptCutoff, select_prefixes
from .explain import explain_compiled, filter_to_dict, overlaps
from .expr import Expr, Ids, Image, Text, check_depth
from .ranking import JOINT_TEXT, MAX_RANKING_TERMS, ranking_terms, unit_mean
from .simplify import _ALL, _NONE, _CondC, _Const, atom_condition, polarities, simplify
from .syntax import parse

__all__ = [
    "DEFAULT_CUTOFF",
    "DEFAULT_NEGATIVE_CUTOFF",
    "JOINT_TEXT",
    "MAX_RANKING_TERMS",
    "AtomResolution",
    "Compiled",
    "CompiledAtom",
    "ConceptCutoff",
    "Polarity",
    "Resolver",
    "compile_expr",
    "filter_to_dict",
    "select_prefixes",
]

logger = logging.getLogger(__package__)  # "mmgr_qdrant.setops", as before the split


@dataclass(frozen=True, eq=False)
class Compiled:
    """A compiled expression: one filter for the whole expression, and the vectors that rank.

    Attributes:
        expr: the expression compiled.
        filter: the set of documents the expression admits, or ``None`` for every document.
        positive_vectors: embeddings of the text/image atoms that appear un-negated (an even
            number of NOTs), in order of appearance; their normalized mean ranks the results.
        negative_vectors: embeddings of the text/image atoms that appear only negated.
        negative_only: no atom appears un-negated (``NOT dog``): the query means "every document
            except these" and there is nothing to rank by, so results come in store order.
            :func:`compile_expr` refuses such queries unless ``allow_negative_only=True``.
        atoms: every distinct atom with its polarity, condition and resolved prefix set.
        ranking_terms: the positive concept atoms in disjunctive normal form, one tuple per
            conjunction (see :attr:`ranking_vectors`).
        joint_vectors: for each conjunction of two or more text atoms, the embedding of their
            texts read as one phrase (``"cat and dog"``), when the resolver provided one (never
            for the single all-atoms term past :data:`MAX_RANKING_TERMS`).
    """

    expr: Expr
    filter: Filter | None
    positive_vectors: tuple[np.ndarray, ...]
    negative_vectors: tuple[np.ndarray, ...]
    negative_only: bool
    atoms: tuple[CompiledAtom, ...]
    ranking_terms: tuple[tuple[Expr, ...], ...] = ()
    joint_vectors: Mapping[tuple[Expr, ...], np.ndarray] = field(default_factory=dict)

    @property
    def ranking_vector(self) -> np.ndarray | None:
        """The L2-normalized mean of the L2-normalized positive vectors; ``None`` when there are none."""
        return unit_mean(self.positive_vectors)

    @property
    def ranking_vectors(self) -> np.ndarray | None:
        """One ranking vector per way the expression can be satisfied, shape ``(n, dim)``.

        The positive text and image atoms are put in disjunctive normal form (negations pushed
        down, NOTs dropped: excluded documents are not ranked by what excludes them); each
        conjunction ranks by one vector, and a document's score is its best conjunction's. So
        ``cat OR dog`` ranks by whichever of the two a document is closer to (not by their
        mean, which would favour documents halfway between), and ``(cat OR dog) AND grass`` by
        the better of the ``cat``-and-``grass`` and ``dog``-and-``grass`` vectors.

        A conjunction's vector is the normalized mean of its atoms' vectors, except that two or
        more text atoms are read together as one phrase (``"cat and dog"``, embedded by the
        encoder) in place of their separate vectors: a text encoder composes words in a phrase
        better than an average of their embeddings does (``benchmarks/setops.py``: precision@10
        on ``A AND B`` 0.140 vs 0.120 on the sample set, 0.352 vs 0.280 on 3,000 Debian images).
        Past :data:`MAX_RANKING_TERMS` conjunctions, one vector ranks: the normalized mean of
        the positive atoms' own vectors (no phrase; see :func:`.ranking.ranking_terms` for why).
        ``None`` when nothing positive ranks.
        """
        vectors = {a.atom: a.resolution.vector for a in self.atoms if a.resolution is not None}
        rows = []
        for terms in self.ranking_terms:
            joint = self.joint_vectors.get(terms)
            parts = [joint] if joint is not None else []
            parts += [vectors[t] for t in terms if joint is None or not isinstance(t, Text)]
            if (v := unit_mean(parts)) is not None:
                rows.append(v)
        return np.stack(rows) if rows else None

    def explain(self) -> dict[str, Any]:
        """The compiled sets, the filter and any NOT-covers-positive overlaps, as JSON-ready data."""
        return explain_compiled(self)

    def overlaps(self) -> list[str]:
        """Positive concept prefixes that a negated concept's prefixes cover entirely.

        Concepts share clusters, so ``cat AND NOT wolf`` can exclude whole cat clusters; each
        line names the two terms and the prefixes concerned (tune the :class:`ConceptCutoff`).
        """
        return overlaps(self)


def compile_expr(
    expr: Expr | str,
    resolver: Resolver | None = None,
    *,
    allow_negative_only: bool = False,
) -> Compiled:
    """Compile an expression (or a query string) to one filter plus ranking vectors.

    A concept atom becomes ``MatchAny`` on the prefix keyword array over its resolved prefixes;
    ids a ``HasId``; ``modality:`` a match on the modality field; field conditions a match or
    range on the user's own top-level payload key. AND becomes ``must``, OR ``should``, NOT
    ``must_not``; constants (``*``, empty concepts) are simplified away, double negations
    cancel, and matches on one key under OR (or under one NOT) merge into one ``MatchAny``.

    Args:
        expr: the expression, or a string for :func:`parse`.
        resolver: resolves text and image atoms and checks ids (the retriever); may be ``None``
            when the expression has no text or image atom (ids are then not checked).
        allow_negative_only: accept an expression without any un-negated atom (``NOT dog``),
            which means "every document except these", unranked (store order).

    Returns:
        The :class:`Compiled` expression.

    Raises:
        QuerySyntaxError: ``expr`` is a malformed string.
        InputError: the expression is negative-only without ``allow_negative_only``, needs a
            resolver that was not given, or can match no document by construction (``NOT *``,
            or every branch needs a concept that resolved to no prefix); also an unreadable
            image, from the resolver.
        NotFoundError: an id in ``Q.ids`` is not in the index (from the resolver).

    An expression nested more than ``MAX_DEPTH`` (100) levels deep is an ``InputError`` (a
    ``QuerySyntaxError`` for a string).
    """
    expr = parse(expr) if isinstance(expr, str) else check_depth(expr)
    if not isinstance(expr, Expr):
        raise InputError(f"compile_expr got {type(expr).__name__}; pass a Q expression or a query string.")
    pols = polarities(expr)
    negative_only = not any(True in p for p in pols.values())
    if negative_only and not allow_negative_only:
        raise InputError(
            f"The query {str(expr)!r} has only negative terms, which would return every document except "
            "those in no particular order; add a positive term (like 'modality:image AND NOT dog' or "
            "'* AND NOT dog') or pass allow_negative_only=True."
        )

    resolutions: dict[Expr, AtomResolution] = {}
    all_ids: dict[PointId, None] = {}
    for atom in pols:
        if isinstance(atom, (Text, Image)):
            if resolver is None:
                raise InputError(f"The term {str(atom)!r} needs a resolver to embed it; search through the retriever.")
            negated = True not in pols[atom]  # only under NOT: the resolver may use a narrower cut-off
            if isinstance(atom, Text):
                res = resolver.resolve_text(atom.text, negated=negated)
            else:
                res = resolver.resolve_image(atom.source, negated=negated)
            if not isinstance(res, AtomResolution):
                raise InputError(f"The resolver returned {type(res).__name__} for {str(atom)!r}; it must return an AtomResolution.")
            if not res.prefixes:
                logger.warning("Concept %s resolved to no docid prefix; it matches no document.", atom)
            resolutions[atom] = res
        elif isinstance(atom, Ids):
            for i in atom.ids:
                all_ids.setdefault(i, None)
    if all_ids and resolver is not None:
        resolver.check_ids(tuple(all_ids))

    conds: dict[Expr, _CondC] = {a: atom_condition(a, resolutions.get(a)) for a in pols}
    top = simplify(expr, conds)
    if top is _NONE:
        empty = [str(a) for a, r in resolutions.items() if not r.prefixes]
        why = (
            f"the concept{'s' if len(empty) > 1 else ''} {', '.join(map(repr, empty))} resolved to no docid prefix; "
            "build the index or rephrase the term"
            if empty
            else "of how its terms combine (for example NOT *); remove the contradiction"
        )
        raise InputError(f"The query {str(expr)!r} can match no document because {why}.")
    flt: Filter | None
    if top is _ALL:
        flt = None
    elif isinstance(top, Filter):
        flt = top
    else:
        flt = Filter(must=(top,))  # type: ignore[arg-type]

    atoms = tuple(
        CompiledAtom(
            atom=a,
            polarity="both" if len(p) == 2 else "positive" if True in p else "negative",
            condition=None if isinstance(conds[a], _Const) else conds[a],  # type: ignore[arg-type]
            resolution=resolutions.get(a),
        )
        for a, p in pols.items()
    )
    positive = tuple(resolutions[c.atom].vector for c in atoms if c.atom in resolutions and c.polarity != "negative")
    negative = tuple(resolutions[c.atom].vector for c in atoms if c.atom in resolutions and c.polarity == "negative")
    term_list, fallback = ranking_terms(expr)
    terms = tuple(term_list)
    joint: dict[tuple[Expr, ...], np.ndarray] = {}
    for t in terms if not fallback else ():  # past MAX_RANKING_TERMS: the mean of the atoms, no phrase
        texts = [a.text for a in t if isinstance(a, Text)]
        if len(texts) > 1 and resolver is not None and hasattr(resolver, "embed_text"):
            joint[t] = np.asarray(resolver.embed_text(JOINT_TEXT.join(texts)), dtype=np.float32).reshape(-1)
    compiled = Compiled(expr, flt, positive, negative, negative_only, atoms, terms, joint)
    logger.debug("Compiled %s to %s", expr, flt)
    return compiled


