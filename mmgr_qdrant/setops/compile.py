"""Compilation of expressions: :class:`ConceptCutoff`, :func:`select_prefixes`, the :class:`Resolver`
protocol and :func:`compile_expr`, which turns an expression into one backend-neutral filter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import ConfigError, InputError
from ..filters import Condition, Filter, HasId, Match, Range
from ..types import F_MODALITY, F_PREFIXES, PointId, prefix_key
from .expr import _RANGE_OPS, All, And, Expr, FieldEq, FieldRange, Ids, Image, Modality, Not, Or, Prefix, Text, check_depth
from .syntax import parse

logger = logging.getLogger(__package__)  # "mmgr_qdrant.setops", as before the split


# --------------------------------------------------------------------------------------------
# Concept cut-off
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConceptCutoff:
    """Which of the decoder's beam prefixes count as "the documents this concept matches".

    A docid cluster is not a concept label: "dog" spreads over several clusters (dogs on
    beaches, dogs on sofas, drawings of dogs), so ``NOT dog`` that excludes only the top beam
    prefix lets most dogs through. Keeping more prefixes makes NOT exclude what the concept
    really matches, but makes a positive atom (and an AND) admit more unrelated documents.
    This class's defaults keep the smallest set of prefixes that covers 90% of the beam's
    probability; the retriever starts from :data:`DEFAULT_CUTOFF` for concepts that rank and
    :data:`DEFAULT_NEGATIVE_CUTOFF` for concepts only under NOT (``retriever.cutoff`` and
    ``retriever.negative_cutoff``).

    Attributes:
        beam_size: beams the decoder searches, and the most prefixes kept (1 = top cluster only).
        min_prob: drop prefixes whose normalized beam probability is below this (the top one is
            always kept); ``None`` keeps all that ``mass`` and ``beam_size`` allow.
        mass: keep the most probable prefixes until their normalized probabilities sum to at
            least this (in (0, 1]); ``None`` keeps up to ``beam_size``.
        depth: truncate prefixes to this many codes and sum the probabilities of those that
            collapse together (shallower = broader concept, a coarser NOT); ``None`` keeps them as
            generated.
        max_fraction: keep prefixes, most probable first, only while the documents under them
            stay within this fraction of the collection (the most probable is always kept);
            ``None`` sets no such bound. A NOT with a small bound excludes only the documents the
            decoder is surest of, which is what keeps ``A AND NOT B`` from losing the many ``A``
            documents that merely resemble ``B``.
    """

    beam_size: int = 32
    min_prob: float | None = None
    mass: float | None = 0.9
    depth: int | None = None
    max_fraction: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise ConfigError(f"ConceptCutoff.beam_size is {self.beam_size!r}; set a positive integer such as 32.")
        if self.min_prob is not None and not 0.0 <= self.min_prob <= 1.0:
            raise ConfigError(f"ConceptCutoff.min_prob is {self.min_prob!r}; set a probability in [0, 1] or None.")
        if self.mass is not None and not 0.0 < self.mass <= 1.0:
            raise ConfigError(f"ConceptCutoff.mass is {self.mass!r}; set a probability mass in (0, 1] or None.")
        if self.depth is not None and (isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1):
            raise ConfigError(f"ConceptCutoff.depth is {self.depth!r}; set a positive number of docid codes or None.")
        if self.max_fraction is not None and not 0.0 < self.max_fraction <= 1.0:
            raise ConfigError(f"ConceptCutoff.max_fraction is {self.max_fraction!r}; set a fraction of the collection in (0, 1] or None.")


DEFAULT_CUTOFF = ConceptCutoff(beam_size=64, mass=None)
"""The retriever's default cut-off for a concept that ranks (not only under NOT): the 64 most
probable prefixes of one code below the modality, per modality. Broad on purpose: documents
outside a positive concept's set are lost to the query, and ranking by the concept's embedding
already puts its documents first. Narrower sets (mass 0.9, beam 32) cost precision@10 on
``A AND B`` in ``benchmarks/setops.py --sweep``: 0.125 vs 0.140 on the sample set, 0.152 vs
0.188 on the Debian held-out set, 0.228 vs 0.328 on the whole Debian set."""

DEFAULT_NEGATIVE_CUTOFF = ConceptCutoff(beam_size=64, mass=None, depth=3, max_fraction=0.02)
"""The retriever's default cut-off for a concept that appears only under NOT: the most probable
prefixes of two codes below the modality, covering at most 2% of the collection. Narrow on
purpose: concepts that co-occur look alike, and a broad NOT removes the ``A`` documents that
merely resemble ``B``. ``A AND NOT B`` precision@10 with this default vs 5% one code shallower:
0.156 vs 0.128 on the sample set, 0.224 vs 0.180 on the whole Debian set (0.084 vs 0.096 on the
Debian held-out set, where the pairs have few answers)."""


def select_prefixes(
    prefixes: Sequence[Sequence[int]],
    logprobs: Sequence[float] | np.ndarray,
    cutoff: ConceptCutoff | None = None,
    *,
    count: Callable[[Sequence[tuple[int, ...]]], Sequence[int]] | None = None,
    total: int | None = None,
) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
    """Apply a :class:`ConceptCutoff` to the decoder's beam for one concept.

    The beam's log-probabilities are normalized to probabilities over the beam (after ``depth``
    truncation, equal prefixes add up). Prefixes are taken most probable first until ``mass`` is
    covered, at most ``beam_size``, then those below ``min_prob`` are dropped; the most probable
    is always kept. A kept prefix that extends another kept prefix is dropped (the shorter one
    already matches it).

    Args:
        prefixes: the beam's docid prefixes (tuples of codes).
        logprobs: their log-probabilities, same length (any constant offset is fine).
        cutoff: the cut-off; the defaults of :class:`ConceptCutoff` when ``None``.
        count: documents under each of a list of prefixes; needed with ``cutoff.max_fraction``.
        total: documents in the collection; needed with ``cutoff.max_fraction``.

    Returns:
        The kept prefixes, most probable first, and their normalized probabilities.

    Raises:
        InputError: the lengths differ, a log-probability is NaN or +inf, or ``max_fraction`` is
            set without ``count`` and ``total``.
    """
    cutoff = cutoff or ConceptCutoff()
    lp = np.asarray(logprobs, dtype=np.float64).reshape(-1)
    if len(prefixes) != lp.shape[0]:
        raise InputError(f"select_prefixes got {len(prefixes)} prefixes but {lp.shape[0]} log-probabilities; pass one per prefix.")
    if lp.shape[0] == 0:
        return (), ()
    if np.isnan(lp).any() or np.isposinf(lp).any():
        raise InputError("select_prefixes got a NaN or +inf log-probability; pass finite log-probabilities or -inf.")
    top = lp.max()
    probs = np.full(lp.shape, 1.0 / lp.shape[0]) if np.isneginf(top) else np.exp(lp - top)
    probs = probs / probs.sum()

    merged: dict[tuple[int, ...], float] = {}
    for p, pr in zip(prefixes, probs):
        key = tuple(int(c) for c in p)
        if cutoff.depth is not None:
            key = key[: cutoff.depth]
        merged[key] = merged.get(key, 0.0) + float(pr)
    ranked = sorted(merged.items(), key=lambda kv: -kv[1])  # stable: ties keep beam order

    n = len(ranked)
    if cutoff.mass is not None:
        cum = np.cumsum([pr for _, pr in ranked])
        n = int(np.searchsorted(cum, cutoff.mass - 1e-12)) + 1
    kept = ranked[: max(1, min(n, cutoff.beam_size))]
    if cutoff.min_prob is not None:
        kept = kept[:1] + [kv for kv in kept[1:] if kv[1] >= cutoff.min_prob]
    if cutoff.max_fraction is not None:
        if count is None or total is None:
            raise InputError("ConceptCutoff.max_fraction needs the documents per prefix; pass count= and total= to select_prefixes.")
        budget, admitted = cutoff.max_fraction * total, 0
        sizes = [int(c) for c in count([k for k, _ in kept])]
        for n_kept, size in enumerate(sizes):
            if n_kept and admitted + size > budget:
                kept = kept[:n_kept]
                break
            admitted += size

    keys = {k for k, _ in kept}
    kept = [(k, pr) for k, pr in kept if not any(k[:d] in keys for d in range(1, len(k)))]
    return tuple(k for k, _ in kept), tuple(pr for _, pr in kept)


# --------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AtomResolution:
    """What the retriever resolved a concept atom to.

    Attributes:
        vector: the atom's embedding, shape ``(dim,)``.
        prefixes: the docid prefixes the concept matches (after its :class:`ConceptCutoff`).
        scores: one figure per prefix (probability or log-probability), shown by ``explain``.
    """

    vector: np.ndarray
    prefixes: tuple[tuple[int, ...], ...]
    scores: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "vector", np.asarray(self.vector, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "prefixes", tuple(tuple(int(c) for c in p) for p in self.prefixes))
        object.__setattr__(self, "scores", tuple(float(s) for s in self.scores))
        if self.scores and len(self.scores) != len(self.prefixes):
            raise InputError(
                f"AtomResolution got {len(self.prefixes)} prefixes but {len(self.scores)} scores; give one score per prefix."
            )


class Resolver(Protocol):
    """What :func:`compile_expr` needs from the retriever."""

    def resolve_text(self, text: str, *, negated: bool = False) -> AtomResolution:
        """Embed ``text`` and decode the docid prefixes it matches (``negated``: it appears only under NOT)."""
        ...

    def resolve_image(self, image: Any, *, negated: bool = False) -> AtomResolution:
        """Embed an image (path, PIL, bytes, array) and decode its prefixes; InputError if unreadable."""
        ...

    def check_ids(self, ids: Sequence[PointId]) -> None:
        """Raise NotFoundError naming the ids that are not in the index."""
        ...

    def embed_text(self, text: str) -> np.ndarray:
        """Embed a phrase made of several text atoms (``"cat and dog"``), for ranking only."""
        ...


Polarity = Literal["positive", "negative", "both"]


@dataclass(frozen=True, eq=False)
class CompiledAtom:
    """One distinct atom of a compiled expression, for ``explain``.

    Attributes:
        atom: the atom.
        polarity: ``"positive"`` if it appears under an even number of NOTs, ``"negative"`` if
            under an odd number, ``"both"`` if it appears both ways.
        condition: the filter condition it compiled to (``None`` for ``*`` or an empty concept).
        resolution: the resolver's answer, for text and image atoms.
    """

    atom: Expr
    polarity: Polarity
    condition: Condition | None
    resolution: AtomResolution | None = None

    @property
    def kind(self) -> str:
        return {Text: "text", Image: "image", Ids: "ids", Prefix: "prefix", Modality: "modality",
                FieldEq: "field", FieldRange: "field", All: "all"}[type(self.atom)]


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
            texts read as one phrase (``"cat and dog"``), when the resolver provided one.
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
        return _unit_mean(self.positive_vectors)

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
        ``None`` when nothing positive ranks.
        """
        vectors = {a.atom: a.resolution.vector for a in self.atoms if a.resolution is not None}
        rows = []
        for terms in self.ranking_terms:
            joint = self.joint_vectors.get(terms)
            parts = [joint] if joint is not None else []
            parts += [vectors[t] for t in terms if joint is None or not isinstance(t, Text)]
            if (v := _unit_mean(parts)) is not None:
                rows.append(v)
        return np.stack(rows) if rows else None

    def explain(self) -> dict[str, Any]:
        """The compiled sets, the filter and any NOT-covers-positive overlaps, as JSON-ready data."""
        if self.ranking_terms:
            ways = [self._describe_terms(t) for t in self.ranking_terms]
            ranking = ways[0] if len(ways) == 1 else "the best of: " + "; ".join(ways)
        else:
            ranking = "none: no positive text or image term, documents come in store order"
        atoms = []
        for a in self.atoms:
            item: dict[str, Any] = {"term": str(a.atom), "kind": a.kind, "polarity": a.polarity,
                                    "condition": filter_to_dict(a.condition)}
            if a.resolution is not None:
                item["prefixes"] = [prefix_key(p) for p in a.resolution.prefixes]
                item["scores"] = [round(s, 6) for s in a.resolution.scores]
            atoms.append(item)
        return {
            "query": str(self.expr),
            "filter": filter_to_dict(self.filter),
            "negative_only": self.negative_only,
            "ranking": ranking,
            "atoms": atoms,
            "warnings": self.overlaps(),
        }

    def _describe_terms(self, terms: tuple[Expr, ...]) -> str:
        if terms in self.joint_vectors:
            texts = [t for t in terms if isinstance(t, Text)]
            rest = len(terms) - len(texts)
            phrase = f"the phrase {JOINT_TEXT.join(t.text for t in texts)!r}"
            return f"cosine to {phrase}" + (f" averaged with {rest} image term{'s' if rest > 1 else ''}" if rest else "")
        if len(terms) == 1:
            return f"cosine to {terms[0]}"
        return f"cosine to the mean of {', '.join(map(str, terms))}"

    def overlaps(self) -> list[str]:
        """Positive concept prefixes that a negated concept's prefixes cover entirely.

        Concepts share clusters, so ``cat AND NOT wolf`` can exclude whole cat clusters; each
        line names the two terms and the prefixes concerned (tune the :class:`ConceptCutoff`).
        """
        resolved = [a for a in self.atoms if a.resolution is not None]
        out: list[str] = []
        for pos in (a for a in resolved if a.polarity != "negative"):
            for neg in (a for a in resolved if a.polarity != "positive" and a is not pos):
                assert pos.resolution is not None and neg.resolution is not None
                hit = [p for p in pos.resolution.prefixes if any(p[: len(n)] == n for n in neg.resolution.prefixes)]
                if hit:
                    keys = ", ".join(prefix_key(p) for p in hit)
                    out.append(f"{str(neg.atom)!r} under NOT covers prefixes {keys} of {str(pos.atom)!r}; those documents are excluded.")
        return out


def _unit_mean(vectors: Sequence[np.ndarray]) -> np.ndarray | None:
    if not vectors:
        return None
    unit = [v / n if (n := float(np.linalg.norm(v))) > 0 else v for v in vectors]
    mean = np.mean(np.stack(unit), axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype(np.float32)


JOINT_TEXT = " and "
"""How the texts of a conjunction are joined into one phrase for ranking."""

MAX_RANKING_TERMS = 16
"""The most conjunctions :attr:`Compiled.ranking_vectors` expands an expression into; beyond it
the positive atoms rank together by their mean (one vector)."""


def _ranking_terms(expr: Expr) -> list[tuple[Expr, ...]]:
    """The positive concept atoms of ``expr`` in disjunctive normal form: one tuple per conjunction."""

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
        pols = _polarities(expr)
        return [tuple(a for a, p in pols.items() if isinstance(a, (Text, Image)) and True in p)]
    return list(dict.fromkeys(terms))


class _TooMany(Exception):
    pass


class _Const:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_ALL = _Const("ALL")
_NONE = _Const("NONE")
_CondC = Condition | _Const


def _polarities(expr: Expr) -> dict[Expr, set[bool]]:
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
    pols = _polarities(expr)
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

    conds: dict[Expr, _CondC] = {a: _atom_condition(a, resolutions.get(a)) for a in pols}
    top = _compile(expr, conds)
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
    terms = tuple(_ranking_terms(expr))
    joint: dict[tuple[Expr, ...], np.ndarray] = {}
    for t in terms:
        texts = [a.text for a in t if isinstance(a, Text)]
        if len(texts) > 1 and resolver is not None and hasattr(resolver, "embed_text"):
            joint[t] = np.asarray(resolver.embed_text(JOINT_TEXT.join(texts)), dtype=np.float32).reshape(-1)
    compiled = Compiled(expr, flt, positive, negative, negative_only, atoms, terms, joint)
    logger.debug("Compiled %s to %s", expr, flt)
    return compiled


def _atom_condition(atom: Expr, res: AtomResolution | None) -> _CondC:
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


def _compile(e: Expr, conds: Mapping[Expr, _CondC]) -> _CondC:
    if isinstance(e, And):
        return _and([_compile(c, conds) for c in e.children])
    if isinstance(e, Or):
        return _or([_compile(c, conds) for c in e.children])
    if isinstance(e, Not):
        return _not(_compile(e.child, conds))
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
