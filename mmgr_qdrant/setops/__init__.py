"""Set algebra over docid prefixes: ``Q`` expressions, their string syntax, and their compilation.

A query is a tree of atoms combined with ``&`` (AND), ``|`` (OR) and ``~`` (NOT)::

    Q.text("cat") & ~(Q.text("dog") | Q.text("wolf"))
    parse("cat AND NOT (dog OR wolf)")            # the same expression

Concept atoms (text, image) resolve, through a :class:`Resolver` the retriever implements, to the
*set* of docid prefixes the decoder assigns to them (cut off by a :class:`ConceptCutoff`) plus an
embedding. The whole expression then compiles to one backend-neutral
:class:`~mmgr_qdrant.filters.Filter` (``must`` / ``should`` / ``must_not``; a prefix set is one
``MatchAny`` on the prefix keyword array), and the embeddings of the positive atoms rank the
documents the filter admits (one vector per conjunction of the expression's disjunctive normal
form; a document scores by its best one). :func:`evaluate_filter` computes, in Python, the set a filter admits from
stored payloads with Qdrant's semantics, for tests and debugging.

This package is pure: it never imports a Qdrant client, an encoder or the decoder.

Submodules (imports flow one way: ``expr`` <- ``syntax``, ``cutoff``, ``atoms`` <- ``simplify`` <-
``ranking`` <- ``explain`` <- ``compile`` <- ``semantics``):

- :mod:`.expr`: :class:`Expr`, :class:`Q`, the node classes and the ``Q.where`` helpers;
- :mod:`.syntax`: rendering (``str(expr)``), the lexer and :func:`parse`;
- :mod:`.cutoff`: :class:`ConceptCutoff`, the defaults and :func:`select_prefixes` (the cut-off policy);
- :mod:`.atoms`: the :class:`Resolver` protocol, :class:`AtomResolution`, :class:`CompiledAtom`;
- :mod:`.simplify`: atoms to conditions, AND / OR / NOT with constants folded and matches merged;
- :mod:`.ranking`: the ranking terms (disjunctive normal form, bounded by ``MAX_RANKING_TERMS``);
- :mod:`.explain`: :func:`filter_to_dict` and ``Compiled.explain``;
- :mod:`.compile`: :class:`Compiled` and :func:`compile_expr` (it re-exports the names above);
- :mod:`.semantics`: :func:`matches` and :func:`evaluate_filter` (alias ``evaluate``).
"""

from __future__ import annotations

from .compile import (
    DEFAULT_CUTOFF,
    DEFAULT_NEGATIVE_CUTOFF,
    JOINT_TEXT,
    MAX_RANKING_TERMS,
    AtomResolution,
    Compiled,
    CompiledAtom,
    ConceptCutoff,
    Polarity,
    Resolver,
    compile_expr,
    filter_to_dict,
    select_prefixes,
)
from .expr import (
    All,
    And,
    Composed,
    Expr,
    FieldEq,
    FieldRange,
    Ids,
    Image,
    Modality,
    Not,
    Or,
    Prefix,
    Q,
    RangeOp,
    Text,
    WhereScalar,
)
from .semantics import evaluate_filter, matches
from .syntax import parse

evaluate = evaluate_filter
"""Alias of :func:`evaluate_filter`, the name it had before :func:`mmgr_qdrant.evaluation.evaluate_search` took the other ``evaluate``."""

__all__ = [
    "DEFAULT_CUTOFF",
    "DEFAULT_NEGATIVE_CUTOFF",
    "JOINT_TEXT",
    "MAX_RANKING_TERMS",
    "All",
    "And",
    "AtomResolution",
    "Compiled",
    "CompiledAtom",
    "Composed",
    "ConceptCutoff",
    "Expr",
    "FieldEq",
    "FieldRange",
    "Ids",
    "Image",
    "Modality",
    "Not",
    "Or",
    "Polarity",
    "Prefix",
    "Q",
    "RangeOp",
    "Resolver",
    "Text",
    "WhereScalar",
    "compile_expr",
    "evaluate",
    "evaluate_filter",
    "filter_to_dict",
    "matches",
    "parse",
    "select_prefixes",
]
