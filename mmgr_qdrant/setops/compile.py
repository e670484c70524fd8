"""Compilation of expressions: :class:`ConceptCutoff`, :func:`select_prefixes`, the :class:`Resolver`
protocol and :func:`compile_expr`, which turns an expression into one backend-neutral filter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import ConfigError, InputError
from ..filters import Condition, Filter, HasId, Match, Range
from ..types import F_MODALITY, F_PREFIXES, PointId, prefix_key
from .expr import _RANGE_OPS, All, And, Expr, FieldEq, FieldRange, Ids, Image, Modality, Not, Or, Prefix, Text
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
    The defaults keep the smallest set of prefixes that covers 90% of the beam's probability.

    Attributes:
        beam_size: beams the decoder searches, and the most prefixes kept (1 = top cluster only).
        min_prob: drop prefixes whose normalized beam probability is below this (the top one is
            always kept); ``None`` keeps all that ``mass`` and ``beam_size`` allow.
        mass: keep the most probable prefixes until their normalized probabilities sum to at
            least this (in (0, 1]); ``None`` keeps up to ``beam_size``.
        depth: truncate prefixes to this many codes and sum the probabilities of those that
            collapse together (shallower = broader concept, a coarser NOT); ``None`` keeps them as
            generated.
    """

    beam_size: int = 32
    min_prob: float | None = None
    mass: float | None = 0.9
    depth: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise ConfigError(f"ConceptCutoff.beam_size is {self.beam_size!r}; set a positive integer such as 32.")
        if self.min_prob is not None and not 0.0 <= self.min_prob <= 1.0:
            raise ConfigError(f"ConceptCutoff.min_prob is {self.min_prob!r}; set a probability in [0, 1] or None.")
        if self.mass is not None and not 0.0 < self.mass <= 1.0:
            raise ConfigError(f"ConceptCutoff.mass is {self.mass!r}; set a probability mass in (0, 1] or None.")
        if self.depth is not None and (isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1):
            raise ConfigError(f"ConceptCutoff.depth is {self.depth!r}; set a positive number of docid codes or None.")


def select_prefixes(
    prefixes: Sequence[Sequence[int]],
    logprobs: Sequence[float] | np.ndarray,
    cutoff: ConceptCutoff | None = None,
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

    Returns:
        The kept prefixes, most probable first, and their normalized probabilities.

    Raises:
        InputError: the lengths differ, or a log-probability is NaN or +inf.
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

    def resolve_text(self, text: str) -> AtomResolution:
        """Embed ``text`` and decode the docid prefixes it matches."""
        ...

    def resolve_image(self, image: Any) -> AtomResolution:
        """Embed an image (path, PIL, bytes, array) and decode its prefixes; InputError if unreadable."""
        ...

    def check_ids(self, ids: Sequence[PointId]) -> None:
        """Raise NotFoundError naming the ids that are not in the index."""
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
    """

    expr: Expr
    filter: Filter | None
    positive_vectors: tuple[np.ndarray, ...]
    negative_vectors: tuple[np.ndarray, ...]
    negative_only: bool
    atoms: tuple[CompiledAtom, ...]

    @property
    def ranking_vector(self) -> np.ndarray | None:
        """The L2-normalized mean of the L2-normalized positive vectors; ``None`` when there are none."""
        if not self.positive_vectors:
            return None
        unit = [v / n if (n := float(np.linalg.norm(v))) > 0 else v for v in self.positive_vectors]
        mean = np.mean(np.stack(unit), axis=0)
        norm = float(np.linalg.norm(mean))
        return (mean / norm if norm > 0 else mean).astype(np.float32)

    def explain(self) -> dict[str, Any]:
        """The compiled sets, the filter and any NOT-covers-positive overlaps, as JSON-ready data."""
        n = len(self.positive_vectors)
        if n:
            ranking = f"cosine to the mean of {n} positive term embedding{'s' if n > 1 else ''}"
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
    """
    if isinstance(expr, str):
        expr = parse(expr)
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
            res = resolver.resolve_text(atom.text) if isinstance(atom, Text) else resolver.resolve_image(atom.source)
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
    compiled = Compiled(expr, flt, positive, negative, negative_only, atoms)
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
