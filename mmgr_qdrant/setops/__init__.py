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
form; a document scores by its best one). :func:`evaluate` computes, in Python, the set a filter admits from
stored payloads with Qdrant's semantics, for tests and debugging.

This package is pure: it never imports a Qdrant client, an encoder or the decoder.

Submodules (imports flow one way, ``expr`` <- ``syntax`` <- ``compile`` <- ``evaluate``):

- :mod:`.expr`: :class:`Expr`, :class:`Q`, the node classes and the ``Q.where`` helpers;
- :mod:`.syntax`: rendering (``str(expr)``), the lexer and :func:`parse`;
- :mod:`.compile`: :class:`ConceptCutoff`, :func:`select_prefixes`, :class:`Resolver`,
  :class:`AtomResolution`, :class:`Compiled`, :func:`compile_expr` and :func:`filter_to_dict`;
- :mod:`.evaluate`: :func:`matches` and :func:`evaluate`.
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
from .evaluate import evaluate, matches
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
from .syntax import parse

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
    "filter_to_dict",
    "matches",
    "parse",
    "select_prefixes",
]
