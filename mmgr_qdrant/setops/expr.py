"""Query expressions: the :class:`Expr` node classes, the :class:`Q` constructors and ``Q.where`` helpers."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from ..filters import Condition, Filter, HasId, Match, Range
from ..types import F_MODALITY, F_PREFIXES, MODALITY_CODES, RESERVED_KEY, U64_MAX, PointId, normalize_id

WhereScalar = str | int | float | bool
"""A payload value a field filter can test for equality (floats compile to a closed range)."""

RangeOp = Literal["lt", "lte", "gt", "gte"]
_RANGE_OPS: dict[str, str] = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_OP_NAMES: dict[str, str] = {v: k for k, v in _RANGE_OPS.items()}
_INT64_MAX = 2**63 - 1
_U64_MAX = U64_MAX

_PREFIX_RE = re.compile(r"\d+(\.\d+)*\Z")


# --------------------------------------------------------------------------------------------
# Expressions
# --------------------------------------------------------------------------------------------


class Expr:
    """Base class of every query expression; build them with :class:`Q`'s constructors.

    Combine expressions with ``&`` (AND), ``|`` (OR) and ``~`` (NOT); nested ANDs and ORs are
    flattened, so ``a & b & c`` is one :class:`And` of three. ``str(expr)`` renders the string
    syntax that :func:`parse` reads back to an equal expression (in-memory images excepted).
    Expressions have no truth value: ``a and b`` raises instead of silently returning ``b``.
    """

    __slots__ = ()

    def __and__(self, other: object) -> Expr:
        return And((self, _operand(other, "&")))

    def __or__(self, other: object) -> Expr:
        return Or((self, _operand(other, "|")))

    def __invert__(self) -> Expr:
        return Not(self)

    def __add__(self, other: object) -> Composed:
        """``Q.image(ref) + Q.text("in red")``: a composed query (see :class:`Composed`)."""
        return Composed.of(self, other)

    def __radd__(self, other: object) -> Composed:
        return Composed.of(other, self)

    def __bool__(self) -> bool:
        raise InputError(
            "A Q expression has no truth value; combine expressions with &, | and ~ instead of and, or, not."
        )

    def __str__(self) -> str:
        from .syntax import _render  # late import: syntax imports this module

        return _render(self)


class Q:
    """The constructors of query expressions: ``Q.text("cat") & ~Q.image("dog.jpg")``."""

    __slots__ = ()

    # -- atom constructors ------------------------------------------------------------------

    @staticmethod
    def text(text: str) -> Text:
        """A text concept: the documents whose docids the decoder generates for ``text``.

        Raises:
            InputError: ``text`` is not a string or is blank.
        """
        return Text(text)

    @staticmethod
    def image(image: Any) -> Image:
        """An image concept, from a path, ``pathlib.Path``, PIL image, bytes or numpy array.

        The image is only read when the query is compiled; an unreadable one raises there.

        Raises:
            InputError: ``image`` is of an unsupported type or an empty path.
        """
        return Image(image)

    @staticmethod
    def composed(image: Any, text: str, *, weight: float | None = None) -> Composed:
        """A composed query: a reference image changed by a text (``Q.image(ref) + Q.text(text)``).

        Args:
            image: the reference image (path, PIL image, bytes or array).
            text: the modification ("in red", "with a hat").
            weight: the fusion weight, 0 (image only) to 1 (text only); ``None`` for the index's
                trained fusion when it has one, else 0.5.

        Raises:
            InputError: a bad image or text, or a weight outside 0..1.
        """
        return Composed(Image(image), Text(text), weight)

    @staticmethod
    def ids(ids: Sequence[PointId] | PointId) -> Ids:
        """The documents with these point ids (unsigned integers or UUID strings).

        Raises:
            InputError: no id was given, or an id is neither an unsigned integer nor a UUID.
        """
        if isinstance(ids, (int, str)):
            ids = [ids]
        if not isinstance(ids, (list, tuple)):
            raise InputError(f"Q.ids got {type(ids).__name__}; pass a list of integer or UUID point ids.")
        return Ids(tuple(ids))

    @staticmethod
    def prefix(codes: Sequence[int] | str) -> Prefix:
        """The documents whose docid starts with ``codes``: ``Q.prefix((1, 12))`` or ``Q.prefix("1.12")``.

        Raises:
            InputError: the prefix is empty or holds a code that is not a non-negative integer.
        """
        if isinstance(codes, str):
            if not _PREFIX_RE.match(codes):
                raise InputError(f"Docid prefix {codes!r} is not dot-separated integer codes; write it like '1.12'.")
            codes = [int(c) for c in codes.split(".")]
        if not isinstance(codes, (list, tuple)):
            raise InputError(f"Q.prefix got {type(codes).__name__}; pass a tuple of integer codes like (1, 12).")
        return Prefix(tuple(codes))

    @staticmethod
    def modality(modality: str) -> Modality:
        """The documents of one modality (``"image"``, ``"text"`` or ``"video"``).

        Raises:
            InputError: the modality is unknown.
        """
        return Modality(modality)

    @staticmethod
    def where(conditions: Mapping[str, Any] | Condition | Any | None = None, /, **fields: Any) -> Expr:
        """Conditions on the user payload, ANDed: ``Q.where({"brand": "acme", "price": {"lt": 10}})``.

        Each field takes a string, integer, float or boolean (equality; a float matches a closed
        range of one value), a non-empty list of those (any of them; on an array field, any
        element), or a dict of ``lt`` / ``lte`` / ``gt`` / ``gte`` numeric bounds. Keyword
        arguments work too: ``Q.where(brand="acme")``. A backend-neutral
        :class:`~mmgr_qdrant.filters.Filter` (or one of its conditions) or a ``qdrant_client``
        ``models.Filter`` of field matches, ranges and id conditions is converted to the same atoms.

        Raises:
            InputError: no condition was given, a key starts with ``_mmgr`` (the library's own
                fields), or a value is of a type a field filter cannot take (None, a date, a nested
                dict other than bounds, an empty list).
        """
        if conditions is not None and not isinstance(conditions, Mapping):
            if fields:
                raise InputError("Q.where takes either a filter or field conditions, not both; call it twice and AND the results.")
            return _from_filter(conditions)
        items = list((conditions or {}).items()) + list(fields.items())
        if not items:
            raise InputError("Q.where got no condition; pass field conditions like Q.where({'brand': 'acme'}).")
        atoms: list[Expr] = []
        for key, value in items:
            atoms.extend(_where_atoms(key, value))
        return Q.all_of(*atoms)

    @staticmethod
    def all() -> All:
        """Every document: the identity of AND (``Q.all() & ~Q.text("dog")`` is "everything but dogs")."""
        return All()

    @staticmethod
    def all_of(*exprs: Expr) -> Expr:
        """The AND of ``exprs`` (one expression is returned as is).

        Raises:
            InputError: no expression was given.
        """
        if not exprs:
            raise InputError(_EMPTY_MESSAGE)
        return exprs[0] if len(exprs) == 1 else And(tuple(exprs))

    @staticmethod
    def any_of(*exprs: Expr) -> Expr:
        """The OR of ``exprs`` (one expression is returned as is).

        Raises:
            InputError: no expression was given.
        """
        if not exprs:
            raise InputError(_EMPTY_MESSAGE)
        return exprs[0] if len(exprs) == 1 else Or(tuple(exprs))

    @staticmethod
    def parse(text: str) -> Expr:
        """Parse the string syntax; see :func:`parse`."""
        from .syntax import parse  # late import: syntax imports this module

        return parse(text)


_EMPTY_MESSAGE = "The query is empty; type a term such as 'cat', 'cat AND NOT dog' or 'modality:image'."


def _operand(other: object, op: str) -> Expr:
    if isinstance(other, Composed):
        other._refuse(op)
    if isinstance(other, Expr):
        return other
    raise InputError(
        f"Cannot combine a Q expression with {type(other).__name__} using {op!r}; "
        "wrap text in Q.text(...) or parse a query string with parse(...)."
    )


def _is_pil(obj: object) -> bool:
    return type(obj).__module__.startswith("PIL.")


@dataclass(frozen=True)
class Text(Expr):
    """A text concept atom."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InputError(f"Q.text got {type(self.text).__name__}; pass a non-empty string.")
        if not self.text.strip():
            raise InputError("Q.text got a blank string; pass the words to search for, like Q.text('cat').")


@dataclass(frozen=True, eq=False)
class Image(Expr):
    """An image concept atom. Paths and bytes compare by value, in-memory images by identity."""

    source: Any

    def __post_init__(self) -> None:
        src = self.source
        if isinstance(src, Path):
            object.__setattr__(self, "source", str(src))
        elif isinstance(src, bytearray):
            object.__setattr__(self, "source", bytes(src))
        elif not (isinstance(src, (str, bytes, np.ndarray)) or _is_pil(src)):
            raise InputError(
                f"Q.image got {type(src).__name__}; pass a path, pathlib.Path, PIL image, bytes or numpy array."
            )
        if isinstance(self.source, str) and not self.source.strip():
            raise InputError("Q.image got an empty path; pass the path of an image file.")

    def _key(self) -> object:
        return self.source if isinstance(self.source, (str, bytes)) else id(self.source)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Image):
            return NotImplemented
        if isinstance(self.source, (str, bytes)) or isinstance(other.source, (str, bytes)):
            return type(self.source) is type(other.source) and self.source == other.source
        return self.source is other.source

    def __hash__(self) -> int:
        return hash(("Image", self._key()))

    def describe(self) -> str:
        """The path, or a short description of an in-memory image."""
        src = self.source
        if isinstance(src, str):
            return src
        if isinstance(src, bytes):
            return f"<{len(src)} bytes>"
        if isinstance(src, np.ndarray):
            return f"<array {src.shape} {src.dtype}>"
        size = getattr(src, "size", ("?", "?"))
        return f"<PIL image {size[0]}x{size[1]} {getattr(src, 'mode', '?')}>"


@dataclass(frozen=True)
class Ids(Expr):
    """The documents with the given point ids (UUIDs are normalized, duplicates dropped)."""

    ids: tuple[PointId, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.ids, tuple) or not self.ids:
            raise InputError("Q.ids got no id; pass at least one point id, like Q.ids([1, 2]).")
        seen: dict[PointId, None] = {}
        for v in self.ids:
            seen.setdefault(normalize_id(v), None)
        object.__setattr__(self, "ids", tuple(seen))


@dataclass(frozen=True)
class Prefix(Expr):
    """The documents whose semantic docid starts with ``codes``."""

    codes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.codes, tuple) or not self.codes:
            raise InputError("Q.prefix got an empty prefix; pass at least one docid code, like Q.prefix((1, 12)).")
        for c in self.codes:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
                raise InputError(f"Docid prefix {self.codes!r} holds {c!r}; every code must be a non-negative integer.")
        object.__setattr__(self, "codes", tuple(int(c) for c in self.codes))


@dataclass(frozen=True)
class Modality(Expr):
    """The documents of one modality."""

    modality: str

    def __post_init__(self) -> None:
        m = self.modality.lower() if isinstance(self.modality, str) else self.modality
        if m not in MODALITY_CODES:
            raise InputError(f"Modality {self.modality!r} is unknown; use one of {sorted(MODALITY_CODES)}.")
        object.__setattr__(self, "modality", m)


def _encodable(s: str) -> bool:
    """False for a string Qdrant cannot store or match: one with a lone surrogate (not valid UTF-8)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InputError(f"Payload field name {key!r} is not a non-empty string; name the field as in your payloads.")
    if not _encodable(key):
        raise InputError(f"Payload field name {key!r} holds a lone surrogate, which is not valid UTF-8; fix the string's decoding.")
    if key.startswith(RESERVED_KEY):
        raise InputError(
            f"Payload field {key!r} is reserved for the library; filter on your own fields, "
            "or use Q.prefix / Q.modality / Q.ids."
        )
    return key


def _check_scalar(key: str, v: object) -> WhereScalar:
    if isinstance(v, str) and not _encodable(v):
        raise InputError(f"Field {key!r} got {v!r}, which holds a lone surrogate (not valid UTF-8); fix the string's decoding.")
    if isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)):
        if abs(int(v)) > _INT64_MAX:
            raise InputError(f"Field {key!r} got integer {v}, beyond 64 bits; Qdrant stores 64-bit integers.")
        return int(v)
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            raise InputError(f"Field {key!r} got {v!r}; pass a finite number.")
        return float(v)
    if v is None:
        raise InputError(f"Field {key!r} cannot be matched against None; drop the condition or use a value.")
    raise InputError(
        f"Field {key!r} cannot be filtered on a value of type {type(v).__name__} ({v!r}); "
        "pass a string, number, boolean, a list of those, or bounds like {'lt': 10}."
    )


def _check_number(key: str, op: str, v: object) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise InputError(f"Field {key!r} got {v!r} for bound {op!r}; a range bound must be a number.")
    return _check_scalar(key, v)  # type: ignore[return-value]


@dataclass(frozen=True)
class FieldEq(Expr):
    """The user payload field ``key`` equals any of ``values`` (on an array field: any element does)."""

    key: str
    values: tuple[WhereScalar, ...]

    def __post_init__(self) -> None:
        _check_key(self.key)
        if not isinstance(self.values, tuple) or not self.values:
            raise InputError(f"Field {self.key!r} got an empty list of values; pass at least one value.")
        object.__setattr__(self, "values", tuple(_check_scalar(self.key, v) for v in self.values))


@dataclass(frozen=True)
class FieldRange(Expr):
    """The numeric user payload field ``key`` satisfies one bound: ``key <op> value``."""

    key: str
    op: RangeOp
    value: int | float

    def __post_init__(self) -> None:
        _check_key(self.key)
        if self.op not in _RANGE_OPS:
            raise InputError(f"Field {self.key!r} got range operator {self.op!r}; use one of {sorted(_RANGE_OPS)}.")
        object.__setattr__(self, "value", _check_number(self.key, self.op, self.value))


@dataclass(frozen=True)
class All(Expr):
    """Every document (the identity of AND); renders as ``*``."""


def _flatten(kind: type, children: object) -> tuple[Expr, ...]:
    if not isinstance(children, tuple):
        raise InputError(f"{kind.__name__} takes a tuple of Q expressions, got {type(children).__name__}.")
    out: list[Expr] = []
    for c in children:
        if not isinstance(c, Expr):
            raise InputError(f"{kind.__name__} got {type(c).__name__}; every operand must be a Q expression.")
        out.extend(c.children if isinstance(c, kind) else (c,))  # type: ignore[attr-defined]
    if len(out) < 2:
        raise InputError(f"{kind.__name__} needs at least two operands; use Q.all_of / Q.any_of for fewer.")
    return tuple(out)


@dataclass(frozen=True)
class And(Expr):
    """All children hold. Nested ANDs are flattened on construction."""

    children: tuple[Expr, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", _flatten(And, self.children))


@dataclass(frozen=True)
class Or(Expr):
    """At least one child holds. Nested ORs are flattened on construction."""

    children: tuple[Expr, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", _flatten(Or, self.children))


@dataclass(frozen=True)
class Not(Expr):
    """The child does not hold (``~~a`` stays two nodes; compilation simplifies it)."""

    child: Expr

    def __post_init__(self) -> None:
        if not isinstance(self.child, Expr):
            raise InputError(f"Not got {type(self.child).__name__}; the operand must be a Q expression.")


_ATOMS = (Text, Image, Ids, Prefix, Modality, FieldEq, FieldRange, All)

# Nesting (parentheses, NOTs, alternating AND/OR) deeper than this is refused: the parser,
# compiler, renderer and even hashing of a frozen expression recurse once per level, and no
# sensible query needs more (``a & b & c`` is one AND whatever its length).
MAX_DEPTH = 100


def expr_depth(expr: Expr) -> int:
    """The nesting depth of ``expr`` (an atom is 1), computed without recursion."""
    deepest = 0
    stack: list[tuple[Expr, int]] = [(expr, 1)]
    while stack:
        e, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(e, (And, Or)):
            stack.extend((c, d + 1) for c in e.children)
        elif isinstance(e, Not):
            stack.append((e.child, d + 1))
    return deepest


def check_depth(expr: Expr) -> Expr:
    """Return ``expr``, or raise if it nests deeper than :data:`MAX_DEPTH`.

    Raises:
        InputError: the expression nests more than :data:`MAX_DEPTH` levels deep.
    """
    depth = expr_depth(expr)
    if depth > MAX_DEPTH:
        raise InputError(
            f"The query nests {depth} levels deep, more than the limit of {MAX_DEPTH}; "
            "flatten it (a & b & c is one AND, and ~~a is a)."
        )
    return expr


def _where_atoms(key: object, value: object) -> list[Expr]:
    k = _check_key(key)
    if isinstance(value, Mapping):
        if not value:
            raise InputError(f"Field {k!r} got an empty dict; pass bounds like {{'gte': 3, 'lt': 10}}.")
        bad = [op for op in value if op not in _RANGE_OPS]
        if bad:
            raise InputError(f"Field {k!r} got unknown bound {bad[0]!r}; use lt, lte, gt or gte.")
        return [FieldRange(k, op, v) for op, v in value.items()]  # type: ignore[arg-type]
    if isinstance(value, (list, tuple)):
        return [FieldEq(k, tuple(value))]
    return [FieldEq(k, (value,))]  # type: ignore[arg-type]


# -- conversion of filters given to Q.where ------------------------------------------------------


def _as_list(v: object) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _from_filter(cond: Any) -> Expr:
    """Convert a neutral filter condition, or a duck-typed ``qdrant_client`` one, to atoms."""
    if isinstance(cond, Filter) or (hasattr(cond, "must") and hasattr(cond, "must_not")):
        parts: list[Expr] = [_from_filter(c) for c in _as_list(cond.must)]
        should = [_from_filter(c) for c in _as_list(cond.should)]
        if should:
            parts.append(Q.any_of(*should))
        parts.extend(Not(_from_filter(c)) for c in _as_list(cond.must_not))
        if getattr(cond, "min_should", None) is not None:
            raise InputError("Q.where cannot convert a filter with min_should; express it with & and |.")
        return Q.all_of(*parts) if parts else All()
    if isinstance(cond, Match):
        if cond.key == F_PREFIXES:
            return Q.any_of(*(Q.prefix(str(v)) for v in cond.values))
        if cond.key == F_MODALITY:
            return Q.any_of(*(Modality(str(v)) for v in cond.values))
        return FieldEq(cond.key, tuple(cond.values))
    if isinstance(cond, Range) or (hasattr(cond, "gte") and hasattr(cond, "lte") and hasattr(cond, "key")):
        return _range_atoms(cond.key, cond)
    if isinstance(cond, HasId):
        return Ids(tuple(cond.ids))
    if hasattr(cond, "has_id"):
        return Ids(tuple(_as_list(cond.has_id)))
    if hasattr(cond, "key") and (getattr(cond, "match", None) is not None or getattr(cond, "range", None) is not None):
        match: Any = getattr(cond, "match", None)
        rng: Any = getattr(cond, "range", None)
        if rng is not None:
            return _range_atoms(cond.key, rng)
        if hasattr(match, "value"):
            return _from_filter(Match(cond.key, (match.value,)))
        if hasattr(match, "any"):
            return _from_filter(Match(cond.key, tuple(match.any)))
        raise InputError(f"Q.where cannot convert the match {type(match).__name__} on {cond.key!r}; use a value, a list or bounds.")
    raise InputError(
        f"Q.where cannot convert {type(cond).__name__}; pass a dict of field conditions, an "
        "mmgr_qdrant.filters.Filter, or a qdrant_client Filter of field matches, ranges and has_id."
    )


def _range_atoms(key: str, rng: Any) -> Expr:
    atoms = [FieldRange(key, op, getattr(rng, op)) for op in ("gt", "gte", "lt", "lte") if getattr(rng, op, None) is not None]
    if not atoms:
        raise InputError(f"The range on field {key!r} has no bound; set lt, lte, gt or gte.")
    return Q.all_of(*atoms)




@dataclass(frozen=True)
class Composed(Expr):
    """A composed query: a reference image and a text modification fused into one query embedding.

    Build it with ``Q.image(ref) + Q.text("in red")`` (either order) or ``Q.composed(ref, "in red",
    weight=0.6)``. It is searched on its own (``r.search(Q.image(ref) + Q.text("in red"))``), like
    ``r.search(image=ref, text="in red", fusion_weight=...)``; it does not combine with ``&``,
    ``|`` or ``~``.

    Attributes:
        image: the reference image atom.
        text: the modification text atom.
        weight: the fusion weight (0 = the image alone, 1 = the text alone), or ``None`` for the
            index's trained fusion module when it has one, else 0.5.
    """

    image: Image
    text: Text
    weight: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.image, Image) or not isinstance(self.text, Text):
            raise InputError("A composed query needs one Q.image(...) and one Q.text(...); write Q.image(ref) + Q.text('in red').")
        if self.weight is not None:
            from ..fusion import check_weight

            object.__setattr__(self, "weight", check_weight(self.weight))

    @staticmethod
    def of(a: object, b: object) -> Composed:
        """The composed query of an image atom and a text atom, in either order.

        Raises:
            InputError: the operands are not one ``Q.image`` and one ``Q.text``.
        """
        if isinstance(a, Image) and isinstance(b, Text):
            return Composed(a, b)
        if isinstance(a, Text) and isinstance(b, Image):
            return Composed(b, a)
        raise InputError(
            f"'+' composes one Q.image(...) with one Q.text(...), got {type(a).__name__} + {type(b).__name__}; "
            "combine other expressions with &, | and ~."
        )

    def _refuse(self, op: str) -> Expr:
        raise InputError(f"A composed query (image + text) is searched on its own and cannot be combined with {op!r}; search it alone.")

    def __and__(self, other: object) -> Expr:
        return self._refuse("&")

    def __rand__(self, other: object) -> Expr:
        return self._refuse("&")

    def __or__(self, other: object) -> Expr:
        return self._refuse("|")

    def __ror__(self, other: object) -> Expr:
        return self._refuse("|")

    def __invert__(self) -> Expr:
        return self._refuse("~")

    def __str__(self) -> str:
        w = "" if self.weight is None else f" (weight {self.weight:g})"
        return f"{self.image.describe()} + {self.text.text!r}{w}"
