"""The string syntax of query expressions: rendering (``str(expr)``), the lexer and :func:`parse`."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, QuerySyntaxError
from ..types import MODALITY_CODES, PointId, prefix_key
from .expr import (
    _EMPTY_MESSAGE,
    _OP_NAMES,
    _PREFIX_RE,
    _RANGE_OPS,
    _U64_MAX,
    MAX_DEPTH,
    All,
    And,
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
    Text,
    WhereScalar,
    expr_depth,
)

# --------------------------------------------------------------------------------------------
# Rendering (str(expr))
# --------------------------------------------------------------------------------------------

_KEYWORDS = {"AND", "OR", "NOT"}
_KINDS = ("image", "id", "prefix", "modality")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_INT_RE = re.compile(r"-?\d+\Z")
_FLOAT_RE = re.compile(r"-?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?\Z")
_WORD_STOP = set('()"&|')
_TERM_CHARS = set(":=<>")
_VALUE_STOP = set('()"&|')
_LIST_STOP = set('()"&|,]')


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_bare_text(s: str) -> bool:
    return (
        bool(s)
        and not any(c.isspace() or c in _WORD_STOP or c in _TERM_CHARS for c in s)
        and s[0] not in "-!*[],"
        and s.upper() not in _KEYWORDS
    )


def _is_bare_value(s: str) -> bool:
    return bool(s) and not any(c.isspace() or c in _LIST_STOP or c == "[" for c in s)


def _looks_typed(s: str) -> bool:
    return bool(_INT_RE.match(s) or _FLOAT_RE.match(s)) or s.lower() in ("true", "false")


def _value_literal(v: WhereScalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    return v if _is_bare_value(v) and not _looks_typed(v) else _quote(v)


def _render_atom(e: Expr) -> str:
    if isinstance(e, Text):
        return e.text if _is_bare_text(e.text) else _quote(e.text)
    if isinstance(e, Image):
        if not isinstance(e.source, str):
            return f"image:{e.describe()}"  # in-memory: a description, which parse() rejects
        s = e.source
        return "image:" + (s if _is_bare_value(s) and not s.startswith("<") else _quote(s))
    if isinstance(e, Ids):
        vals = [str(i) for i in e.ids]
        return "id:" + (vals[0] if len(vals) == 1 else "[" + ", ".join(vals) + "]")
    if isinstance(e, Prefix):
        return "prefix:" + prefix_key(e.codes)
    if isinstance(e, Modality):
        return "modality:" + e.modality
    key = ""
    if isinstance(e, (FieldEq, FieldRange)):
        key = e.key if _NAME_RE.match(e.key) else _quote(e.key)
    if isinstance(e, FieldEq):
        vals = [_value_literal(v) for v in e.values]
        return f"{key}=" + (vals[0] if len(vals) == 1 else "[" + ", ".join(vals) + "]")
    if isinstance(e, FieldRange):
        return f"{key}{_RANGE_OPS[e.op]}{_value_literal(e.value)}"
    if isinstance(e, All):
        return "*"
    raise InputError(f"Cannot render {type(e).__name__}; build expressions from Q's constructors.")


def _level(e: Expr) -> int:
    return 1 if isinstance(e, Or) else 2 if isinstance(e, And) else 3


def _render(e: Expr) -> str:
    def child(c: Expr, need: int) -> str:
        s = _render(c)
        return f"({s})" if _level(c) < need else s

    if isinstance(e, Or):
        return " OR ".join(child(c, 2) for c in e.children)
    if isinstance(e, And):
        return " AND ".join(child(c, 2) for c in e.children)
    if isinstance(e, Not):
        return "NOT " + child(e.child, 3)
    return _render_atom(e)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    kind: str  # "(", ")", "AND", "OR", "NOT", "*", "TEXT", "ATOM", "EOF"
    pos: int
    raw: str
    value: Any = None


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)

    def error(self, expected: str, pos: int, got: str | None = None, note: str = "") -> QuerySyntaxError:
        if got is None:
            got = "end of input" if pos >= self.n else repr(self.text[pos])
        return QuerySyntaxError(f"Expected {expected} at position {pos} in {self.text!r}, got {got}{note}.", position=pos)

    def quoted(self, i: int) -> tuple[str, int]:
        buf: list[str] = []
        j = i + 1
        while j < self.n:
            c = self.text[j]
            if c == "\\" and j + 1 < self.n and self.text[j + 1] in '"\\':
                buf.append(self.text[j + 1])
                j += 2
            elif c == '"':
                return "".join(buf), j + 1
            else:
                buf.append(c)
                j += 1
        raise self.error("a closing '\"'", self.n, note=f" (the quote at position {i} is not closed)")

    def bare(self, i: int, stop: set[str]) -> int:
        j = i
        while j < self.n and not self.text[j].isspace() and self.text[j] not in stop:
            j += 1
        return j

    def value(self, i: int, what: str, allow_list: bool) -> tuple[Any, int]:
        """A value at ``i``: ``(str, quoted, pos)`` or a list of those; and the end position."""
        if i >= self.n or self.text[i].isspace() or self.text[i] in _VALUE_STOP - {'"'}:
            raise self.error(what, i)
        if self.text[i] == '"':
            s, j = self.quoted(i)
            return (s, True, i), j
        if self.text[i] == "[" and allow_list:
            items: list[tuple[str, bool, int]] = []
            j = i + 1
            while True:
                while j < self.n and self.text[j].isspace():
                    j += 1
                if j < self.n and self.text[j] == '"':
                    s, k = self.quoted(j)
                    items.append((s, True, j))
                else:
                    k = self.bare(j, _LIST_STOP)
                    if k == j:
                        raise self.error(what, j)
                    items.append((self.text[j:k], False, j))
                j = k
                while j < self.n and self.text[j].isspace():
                    j += 1
                if j < self.n and self.text[j] == ",":
                    j += 1
                    continue
                if j < self.n and self.text[j] == "]":
                    return items, j + 1
                raise self.error("',' or ']'", j, note=f" (the list at position {i} is not closed)" if j >= self.n else "")
        j = self.bare(i, _VALUE_STOP)
        return (self.text[i:j], False, i), j

    def tokens(self) -> list[_Tok]:
        out: list[_Tok] = []
        i, t = 0, self.text
        while i < self.n:
            c = t[i]
            if c.isspace():
                i += 1
            elif c in "()*":
                out.append(_Tok(c, i, c))
                i += 1
            elif c in "&|":
                j = i + 2 if t[i + 1 : i + 2] == c else i + 1
                out.append(_Tok("AND" if c == "&" else "OR", i, t[i:j]))
                i = j
            elif c in "!-":
                out.append(_Tok("NOT", i, c))
                i += 1
            elif c in "[],":
                raise self.error("a term", i, note="; quote text that contains it")
            elif c == '"':
                s, j = self.quoted(i)
                if j < self.n and t[j] in "=<>":
                    tok, j = self.field(i, s, j)
                    out.append(tok)
                else:
                    out.append(_Tok("TEXT", i, t[i:j], (s, True)))
                i = j
            else:
                j = i
                while j < self.n and not t[j].isspace() and t[j] not in _WORD_STOP and t[j] not in _TERM_CHARS:
                    j += 1
                if j < self.n and t[j] in _TERM_CHARS:
                    if j == i:
                        raise self.error("a term or field name", i)
                    tok, j = self.kind(i, j) if t[j] == ":" else self.field(i, t[i:j], j)
                    out.append(tok)
                else:
                    word = t[i:j]
                    kind = word.upper() if word.upper() in _KEYWORDS else "TEXT"
                    out.append(_Tok(kind, i, word, (word, False)))
                i = j
        out.append(_Tok("EOF", self.n, ""))
        return out

    def kind(self, i: int, j: int) -> tuple[_Tok, int]:
        name = self.text[i:j].lower()
        if name not in _KINDS:
            raise self.error(
                "one of image:, id:, prefix:, modality:",
                i,
                got=repr(self.text[i : j + 1]),
                note=f"; write {self.text[i:j]}=value for a payload field, or quote the text",
            )
        what = {"image": "an image path", "id": "a point id", "prefix": "a docid prefix like 1.12", "modality": "'image', 'text' or 'video'"}[name]
        val, end = self.value(j + 1, f"{what} after {self.text[i:j + 1]!r}", allow_list=name == "id")
        try:
            atom = self.kind_atom(name, val, f"{what} after {self.text[i:j + 1]!r}")
        except QuerySyntaxError:
            raise
        except InputError as exc:
            raise QuerySyntaxError(f"{str(exc).rstrip('.')} (at position {i} in {self.text!r}).", position=i) from exc
        return _Tok("ATOM", i, self.text[i:end], atom), end

    def kind_atom(self, name: str, val: Any, what: str) -> Expr:
        if name == "image":
            s, quoted, pos = val
            if not quoted and s.startswith("<"):
                note = "; in-memory images have no query syntax, pass them with Q.image(...)"
                raise self.error("an image file path", pos, got=repr(s), note=note)
            return Image(s)
        if name == "id":
            ids: list[PointId] = []
            for s, _quoted, pos in val if isinstance(val, list) else [val]:
                if _INT_RE.match(s) and not s.startswith("-") and int(s) <= _U64_MAX:
                    ids.append(int(s))
                    continue
                try:
                    ids.append(str(uuid.UUID(s)))
                except ValueError:
                    raise self.error("an unsigned integer or UUID point id", pos, got=repr(s)) from None
            return Ids(tuple(ids))
        s, _quoted, pos = val
        if name == "prefix":
            if not _PREFIX_RE.match(s):
                raise self.error(what, pos, got=repr(s))
            return Prefix(tuple(int(c) for c in s.split(".")))
        if s.lower() not in MODALITY_CODES:
            raise self.error(what, pos, got=repr(s))
        return Modality(s.lower())

    def field(self, i: int, key: str, j: int) -> tuple[_Tok, int]:
        t = self.text
        if t[j] == "=":
            op, k = "=", j + 1
        else:
            op = t[j : j + 2] if t[j + 1 : j + 2] == "=" else t[j]
            k = j + len(op)
        if not (t[i] == '"' or _NAME_RE.match(key)):
            raise self.error("a field name (letters, digits, '_', '.', '-'; quote others)", i, got=repr(key))
        label = f"after {t[i:k]!r}"
        try:
            if op == "=":
                val, end = self.value(k, f"a value {label}", allow_list=True)
                items = val if isinstance(val, list) else [val]
                atom: Expr = FieldEq(key, tuple(_typed(s, quoted) for s, quoted, _ in items))
            else:
                val, end = self.value(k, f"a number {label}", allow_list=False)
                s, quoted, pos = val
                num = None if quoted else _typed(s, False)
                if isinstance(num, bool) or not isinstance(num, (int, float)):
                    raise self.error(f"a number {label}", pos, got=repr(s))
                atom = FieldRange(key, _OP_NAMES[op], num)  # type: ignore[arg-type]
        except QuerySyntaxError:
            raise
        except InputError as exc:
            raise QuerySyntaxError(f"{str(exc).rstrip('.')} (at position {i} in {self.text!r}).", position=i) from exc
        return _Tok("ATOM", i, t[i:end], atom), end


def _typed(s: str, quoted: bool) -> WhereScalar:
    if quoted:
        return s
    if _INT_RE.match(s):
        return int(s)
    if _FLOAT_RE.match(s):
        return float(s)
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return s


class _Parser:
    def __init__(self, text: str, toks: list[_Tok]) -> None:
        self.text, self.toks, self.i = text, toks, 0
        self.depth = 0  # open parentheses and NOTs around the current term

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QuerySyntaxError(
                f"The query nests more than {MAX_DEPTH} parentheses and NOTs deep at position {tok.pos} in {_clip(self.text)!r}; "
                "flatten it (a AND b AND c needs no parentheses, and NOT NOT a is a).",
                position=tok.pos,
            )

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, expected: str, tok: _Tok, note: str = "") -> QuerySyntaxError:
        got = "end of input" if tok.kind == "EOF" else repr(tok.raw)
        return QuerySyntaxError(f"Expected {expected} at position {tok.pos} in {self.text!r}, got {got}{note}.", position=tok.pos)

    def parse_or(self, after: _Tok | None = None) -> Expr:
        items = [self.parse_and(after)]
        while self.peek().kind == "OR":
            op = self.take()
            items.append(self.parse_and(op))
        return Q.any_of(*items)

    def parse_and(self, after: _Tok | None) -> Expr:
        items = [self.parse_not(after)]
        while self.peek().kind == "AND":
            op = self.take()
            items.append(self.parse_not(op))
        return Q.all_of(*items)

    def parse_not(self, after: _Tok | None) -> Expr:
        nots: list[_Tok] = []
        while self.peek().kind == "NOT":  # a loop, not recursion: a long run of NOTs is one level each
            nots.append(self.take())
            self.enter(nots[-1])
        expr = self.primary(nots[-1] if nots else after)
        for _ in nots:
            expr = Not(expr)
        self.depth -= len(nots)
        return expr

    def primary(self, after: _Tok | None) -> Expr:
        tok = self.peek()
        if tok.kind == "(":
            self.take()
            self.enter(tok)
            inner = self.parse_or(tok)
            self.depth -= 1
            close = self.peek()
            if close.kind != ")":
                if close.kind == "EOF":
                    raise self.error("')'", close, note=f" (the '(' at position {tok.pos} is not closed)")
                raise self.error("AND, OR or ')'", close)
            self.take()
            return inner
        if tok.kind == "TEXT":
            words: list[str] = []
            while self.peek().kind == "TEXT":
                t = self.take()
                s, quoted = t.value
                if quoted and not s.strip():
                    raise QuerySyntaxError(
                        f"Expected text inside the quotes at position {t.pos} in {self.text!r}, got an empty string.",
                        position=t.pos,
                    )
                words.append(s)
            return Text(" ".join(words))
        if tok.kind == "ATOM":
            return self.take().value  # type: ignore[no-any-return]
        if tok.kind == "*":
            self.take()
            return All()
        where = f" after {after.raw!r}" if after is not None else ""
        raise self.error(f"a term{where}", tok)


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "..."


def parse(text: str) -> Expr:
    """Parse a query string into an expression.

    Syntax (operators are case-insensitive; precedence NOT > AND > OR; parentheses group)::

        cat AND NOT (dog OR wolf)        red car OR "fire truck"       -dog & !wolf | *
        image:photos/a.jpg  image:"my photo.jpg"  id:42  id:[1, 2]  id:<uuid>
        prefix:1.12  modality:image  brand=acme  tags=[a, "b c"]  price<10  rating>=4.5  sale=true

    Consecutive bare words and quoted phrases form one text concept (``red car AND dog`` is
    ``Q.text("red car") & Q.text("dog")``); quote a word that is an operator or holds ``:``,
    ``=``, ``<``, ``>``, parentheses, ``&`` or ``|``. ``&``/``&&`` and ``|``/``||`` alias AND and
    OR; ``-`` and ``!`` at the start of a term alias NOT. Field values are typed: integers,
    floats, ``true``/``false``, else strings; quote a value to keep it a string. ``*`` is every
    document. ``parse(str(expr)) == expr`` for any expression without in-memory images.

    Raises:
        QuerySyntaxError: the string is empty or malformed; the message names the 0-based
            character position (also in ``.position``) and what was expected there; also
            parentheses and NOTs nested more than ``MAX_DEPTH`` (100) deep.
    """
    if not isinstance(text, str):
        raise InputError(f"parse() got {type(text).__name__}; pass the query as a string.")
    if not text.strip():
        raise QuerySyntaxError(_EMPTY_MESSAGE, position=0)
    parser = _Parser(text, _Lexer(text).tokens())
    expr = parser.parse_or()
    tok = parser.peek()
    if tok.kind != "EOF":
        note = " (no '(' is open)" if tok.kind == ")" else ""
        raise parser.error("AND, OR or end of input", tok, note)
    depth = expr_depth(expr)
    if depth > MAX_DEPTH:  # alternating AND/OR inside parentheses nests a level more than the parentheses
        raise QuerySyntaxError(
            f"The query nests {depth} levels deep, more than the limit of {MAX_DEPTH}, in {_clip(text)!r}; flatten it.", position=0
        )
    return expr
