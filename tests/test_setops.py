"""Tests of the set algebra: Expr expressions, the string syntax, compilation, cut-off and laws.

The algebra laws are checked with ``evaluate_filter`` on a random payload corpus, against a reference
interpreter that computes each atom's set directly; a sibling test runs them on real stores.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmgr_qdrant.errors import ConfigError, InputError, NotFoundError, QuerySyntaxError
from mmgr_qdrant.filters import Filter, HasId, Match, Range
from mmgr_qdrant.setops import (
    All,
    And,
    AtomResolution,
    Compiled,
    ConceptCutoff,
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
    compile_expr,
    evaluate_filter,
    filter_to_dict,
    matches,
    parse,
    select_prefixes,
)
from mmgr_qdrant.types import F_MODALITY, F_PREFIXES, PointId, prefix_keys

P = F_PREFIXES

# --------------------------------------------------------------------------------------------
# A fake resolver standing in for the retriever, and a random corpus of stored payloads
# --------------------------------------------------------------------------------------------

CONCEPTS: dict[str, tuple[tuple[int, ...], ...]] = {
    "cat": ((1, 0), (1, 2, 1)),
    "dog": ((1, 1), (0, 2)),
    "wolf": ((1, 1, 0), (1, 3)),
    "car": ((0,),),
    "red car": ((0, 1), (1, 3, 2)),
    "zzz": (),  # a concept the decoder resolves to nothing
}


def _vec(seed_text: str, dim: int = 8) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)


class FakeResolver:
    """Deterministic: concept prefix sets from a table, vectors from a hash of the term."""

    def __init__(self, known_ids: set[PointId]) -> None:
        self.known_ids = known_ids
        self.calls: list[str] = []
        self.negated: dict[str, bool] = {}

    def resolve_text(self, text: str, *, negated: bool = False) -> AtomResolution:
        self.calls.append(text)
        self.negated[text] = negated
        prefixes = CONCEPTS.get(text, ((1, 0, 0),))
        return AtomResolution(_vec(text), prefixes, tuple(1.0 / (i + 1) for i in range(len(prefixes))))

    def resolve_image(self, image: Any, *, negated: bool = False) -> AtomResolution:
        if isinstance(image, str) and not image.endswith(".jpg"):
            raise InputError(f"Image file {image!r} does not exist; check the path.")
        return AtomResolution(_vec(repr(image)), ((1, 2),), (0.0,))

    def embed_text(self, text: str) -> np.ndarray:
        self.calls.append(f"joint:{text}")
        return _vec(text)

    def check_ids(self, ids: Sequence[PointId]) -> None:
        missing = [i for i in ids if i not in self.known_ids]
        if missing:
            raise NotFoundError(f"Point ids {missing} are not in the index; check the ids.")


def _make_corpus(n: int = 240, seed: int = 7) -> dict[PointId, dict[str, Any]]:
    rng = random.Random(seed)
    out: dict[PointId, dict[str, Any]] = {}
    for i in range(n):
        pid: PointId = i if i % 10 else str(uuid.UUID(int=rng.getrandbits(128)))
        docid = (rng.randrange(2), rng.randrange(4), rng.randrange(3))
        p: dict[str, Any] = {
            "_mmgr": {"modality": "text" if docid[0] == 0 else "image", "prefixes": prefix_keys(docid), "docid": list(docid)}
        }
        r = rng.random()
        if r < 0.35:
            p["brand"] = rng.choice(["acme", "globex"])
        elif r < 0.55:
            p["brand"] = rng.sample(["acme", "globex", "initech"], 2)
        elif r < 0.6:
            p["brand"] = None
        r = rng.random()
        if r < 0.4:
            p["price"] = rng.randrange(20)
        elif r < 0.7:
            p["price"] = round(rng.uniform(0, 20), 1)
        elif r < 0.75:
            p["price"] = "cheap"
        if rng.random() < 0.7:
            p["tags"] = rng.sample(["a", "b", "c", "d"], rng.randrange(4))
        if rng.random() < 0.6:
            p["sale"] = rng.random() < 0.5
        if rng.random() < 0.5:
            p["meta"] = {"color": rng.choice(["red", "blue"])}
        out[pid] = p
    return out


CORPUS = _make_corpus()
KNOWN_IDS = set(CORPUS)
SOME_IDS = [pid for pid in CORPUS][:30:3]


@pytest.fixture()
def resolver() -> FakeResolver:
    return FakeResolver(KNOWN_IDS)


# -- a reference interpreter: each atom's set computed directly, combined with Python sets ---------


def _field_values(payload: Mapping[str, Any], key: str) -> list[Any]:
    cur: Any = payload
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return []
        cur = cur[part]
    if cur is None:
        return []
    return list(cur) if isinstance(cur, list) else [cur]


def _ref_atom(atom: Expr, pid: PointId, payload: dict[str, Any]) -> bool:
    docid = tuple(payload["_mmgr"]["docid"])
    if isinstance(atom, Text):
        return any(docid[: len(p)] == p for p in CONCEPTS.get(atom.text, ((1, 0, 0),)))
    if isinstance(atom, Image):
        return docid[:2] == (1, 2)
    if isinstance(atom, Prefix):
        return docid[: len(atom.codes)] == atom.codes
    if isinstance(atom, Modality):
        return payload["_mmgr"]["modality"] == atom.modality
    if isinstance(atom, Ids):
        return pid in atom.ids
    if isinstance(atom, All):
        return True
    vals = _field_values(payload, atom.key)  # type: ignore[attr-defined]
    if isinstance(atom, FieldRange):
        nums = [v for v in vals if type(v) in (int, float)]
        cmp = {"lt": lambda v: v < atom.value, "lte": lambda v: v <= atom.value,
               "gt": lambda v: v > atom.value, "gte": lambda v: v >= atom.value}[atom.op]
        return any(cmp(v) for v in nums)
    assert isinstance(atom, FieldEq)
    for w in atom.values:
        for v in vals:
            if type(w) is float and type(v) in (int, float) and v == w:
                return True
            if type(w) is not float and type(v) is type(w) and v == w:
                return True
    return False


def ref(expr: Expr) -> set[PointId]:
    universe = set(CORPUS)
    if isinstance(expr, And):
        out = universe
        for c in expr.children:
            out = out & ref(c)
        return out
    if isinstance(expr, Or):
        out = set()
        for c in expr.children:
            out = out | ref(c)
        return out
    if isinstance(expr, Not):
        return universe - ref(expr.child)
    return {pid for pid, p in CORPUS.items() if _ref_atom(expr, pid, p)}


def ev(expr: Expr, resolver: FakeResolver) -> set[PointId]:
    """The set the compiled filter admits; empty when compile proves it matches nothing."""
    try:
        compiled = compile_expr(expr, resolver, allow_negative_only=True)
    except InputError as exc:
        assert "can match no document" in str(exc)
        return set()
    return evaluate_filter(compiled, CORPUS)


# --------------------------------------------------------------------------------------------
# Q expressions
# --------------------------------------------------------------------------------------------


def test_operators_build_and_flatten() -> None:
    a, b, c = Q.text("a"), Q.text("b"), Q.text("c")
    assert (a & b) & c == And((a, b, c))
    assert a & (b & c) == And((a, b, c))
    assert (a | b) | (c | a) == Or((a, b, c, a))
    assert ~~a == Not(Not(a))
    assert (a & b) | c == Or((And((a, b)), c))
    assert hash(a & b) == hash(Q.text("a") & Q.text("b"))


def test_combining_with_non_expressions_and_truth_value_fail() -> None:
    with pytest.raises(InputError, match="Q.text"):
        Q.text("a") & "b"  # type: ignore[operator]
    with pytest.raises(InputError, match="no truth value"):
        bool(Q.text("a"))
    with pytest.raises(InputError, match="no truth value"):
        Q.text("a") and Q.text("b")
    with pytest.raises(InputError, match="at least two"):
        And((Q.text("a"),))


def test_atom_constructors_validate_and_normalize() -> None:
    u = "550E8400-E29B-41D4-A716-446655440000"
    assert Q.ids([3, u, 3]).ids == (3, u.lower())
    assert Q.ids(5) == Ids((5,))
    assert Q.ids([np.uint64(7), uuid.UUID(u)]).ids == (7, u.lower())  # type: ignore[list-item]
    assert Q.prefix("1.12") == Q.prefix((1, 12)) == Prefix((1, 12))
    assert Q.prefix([np.int64(1)]).codes == (1,)  # type: ignore[list-item]
    assert Q.modality("IMAGE").modality == "image"
    assert Q.all() == All()
    bad_calls: list[Any] = [
        lambda: Q.text("  "), lambda: Q.text(3), lambda: Q.ids([]), lambda: Q.ids([-1]),  # type: ignore[arg-type]
        lambda: Q.ids(["nope"]), lambda: Q.ids([True]), lambda: Q.prefix(()), lambda: Q.prefix((1, -2)),
        lambda: Q.prefix("1.x"), lambda: Q.modality("audio"), lambda: Q.image(3.5), lambda: Q.image(""),
        lambda: Q.all_of(), lambda: Q.any_of(),
    ]
    for bad in bad_calls:
        with pytest.raises(InputError):
            bad()


def test_image_atoms_compare_paths_by_value_and_memory_by_identity() -> None:
    from pathlib import Path

    from PIL import Image as PILImage

    assert Q.image(Path("a.jpg")) == Q.image("a.jpg")
    assert Q.image(b"xy") == Q.image(bytearray(b"xy"))
    pil = PILImage.new("RGB", (4, 3))
    assert Q.image(pil) == Q.image(pil)
    assert Q.image(pil) != Q.image(PILImage.new("RGB", (4, 3)))
    assert len({Q.image(pil), Q.image(pil), Q.image("a.jpg")}) == 2
    text = str(Q.image(pil) & Q.text("cat"))
    assert text.startswith("image:<PIL image 4x3 RGB>")
    with pytest.raises(QuerySyntaxError, match="in-memory images"):
        parse("image:<PIL")


def test_where_builds_field_atoms() -> None:
    e = Q.where({"brand": "acme", "price": {"gte": 3, "lt": 10.5}, "tags": ["a", "b"], "sale": True})
    assert e == And((
        FieldEq("brand", ("acme",)),
        FieldRange("price", "gte", 3),
        FieldRange("price", "lt", 10.5),
        FieldEq("tags", ("a", "b")),
        FieldEq("sale", (True,)),
    ))
    assert Q.where(brand="acme") == FieldEq("brand", ("acme",))
    assert Q.where({"n": np.int64(3)}) == FieldEq("n", (3,))


@pytest.mark.parametrize(
    ("conditions", "fragment"),
    [
        ({}, "no condition"),
        ({"brand": None}, "None"),
        ({"when": date(2024, 1, 1)}, "type date"),
        ({"meta": {"color": "red"}}, "unknown bound 'color'"),
        ({"price": {}}, "empty dict"),
        ({"price": {"lt": "10"}}, "must be a number"),
        ({"price": {"lt": True}}, "must be a number"),
        ({"price": float("nan")}, "finite"),
        ({"tags": []}, "empty list"),
        ({"tags": ["a", None]}, "None"),
        ({"_mmgr.prefixes": "1"}, "reserved"),
        ({"": 1}, "non-empty string"),
        ({"n": 2**70}, "64 bits"),
    ],
)
def test_where_rejects_values_a_field_filter_cannot_take(conditions: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        Q.where(conditions)


def test_where_converts_neutral_and_qdrant_filters() -> None:
    flt = Filter(
        must=(Match("brand", ("acme",)), Range("price", gte=1, lt=5)),
        should=(Match(P, ("1.2",)), Match(F_MODALITY, ("text",))),
        must_not=(HasId((1, 2)),),
    )
    assert Q.where(flt) == And((
        FieldEq("brand", ("acme",)),
        FieldRange("price", "gte", 1),
        FieldRange("price", "lt", 5),
        Or((Prefix((1, 2)), Modality("text"))),
        Not(Ids((1, 2))),
    ))
    assert Q.where(Filter()) == All()
    with pytest.raises(InputError, match="cannot convert"):
        Q.where(42)
    with pytest.raises(InputError, match="not both"):
        Q.where(flt, brand="x")

    models = pytest.importorskip("qdrant_client.models")
    qf = models.Filter(
        must=[models.FieldCondition(key="brand", match=models.MatchAny(any=["acme", "globex"]))],
        must_not=[models.FieldCondition(key="price", range=models.Range(lt=3))],
        should=[models.HasIdCondition(has_id=[4])],
    )
    assert Q.where(qf) == And((FieldEq("brand", ("acme", "globex")), Ids((4,)), Not(FieldRange("price", "lt", 3))))
    single = models.Filter(must=models.FieldCondition(key="sale", match=models.MatchValue(value=True)))
    assert Q.where(single) == FieldEq("sale", (True,))


# --------------------------------------------------------------------------------------------
# String syntax
# --------------------------------------------------------------------------------------------

t = Q.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("cat", t("cat")),
        ("cat AND NOT (dog OR wolf)", t("cat") & ~(t("dog") | t("wolf"))),
        ("red car AND NOT dog", t("red car") & ~t("dog")),
        ('"red car" OR "fire  truck"', t("red car") | t("fire  truck")),
        ('"AND" gate', t("AND gate")),
        ("a OR b AND NOT c", t("a") | (t("b") & ~t("c"))),
        ("NOT a AND b", ~t("a") & t("b")),
        ("NOT NOT a", ~~t("a")),
        ("a AND b OR c AND d", (t("a") & t("b")) | (t("c") & t("d"))),
        ("(a OR b) AND c", (t("a") | t("b")) & t("c")),
        ("a and not b or c", (t("a") & ~t("b")) | t("c")),
        ("a & !b | -c", (t("a") & ~t("b")) | ~t("c")),
        ("a && b || c", (t("a") & t("b")) | t("c")),
        ("t-shirt AND NOT -dog", t("t-shirt") & ~~t("dog")),
        ("(((a)))", t("a")),
        ("* AND NOT dog", Q.all() & ~t("dog")),
        ("image:photos/a.jpg", Q.image("photos/a.jpg")),
        ('image:"my photos/a b.jpg" AND cat', Q.image("my photos/a b.jpg") & t("cat")),
        ("id:42", Q.ids([42])),
        ("ID:[1, 2,3]", Q.ids([1, 2, 3])),
        ("id:550e8400-e29b-41d4-a716-446655440000", Q.ids(["550e8400-e29b-41d4-a716-446655440000"])),
        ("prefix:1.12", Q.prefix((1, 12))),
        ("modality:Image", Q.modality("image")),
        ("brand=acme", Q.where({"brand": "acme"})),
        ('brand="acme corp"', Q.where({"brand": "acme corp"})),
        ('code="42"', Q.where({"code": "42"})),
        ("n=42 AND x=4.5 AND ok=TRUE AND s=yes", Q.where({"n": 42, "x": 4.5, "ok": True, "s": "yes"})),
        ('tags=[a, "b c", 3]', Q.where({"tags": ["a", "b c", 3]})),
        ("price<10 AND price>=2.5", Q.where({"price": {"lt": 10, "gte": 2.5}})),
        ("t>-5 AND t<=1e3", Q.where({"t": {"gt": -5, "lte": 1000.0}})),
        ('"my key"=3', Q.where({"my key": 3})),
        ("meta.color=red", Q.where({"meta.color": "red"})),
        ("cat&dog", t("cat") & t("dog")),
        ("(cat)AND(dog)", t("cat") & t("dog")),
    ],
)
def test_parse(query: str, expected: Expr) -> None:
    assert parse(query) == expected
    assert parse(str(expected)) == expected


@pytest.mark.parametrize(
    ("query", "position", "fragment"),
    [
        ("", 0, "The query is empty"),
        ("   ", 0, "The query is empty"),
        ("cat AND (dog OR wolf", 20, "Expected ')' at position 20 in 'cat AND (dog OR wolf', got end of input (the '(' at position 8"),
        ("a AND (b OR (c)", 15, "Expected ')' at position 15"),
        ("cat AND", 7, "Expected a term after 'AND' at position 7 in 'cat AND', got end of input"),
        ("AND cat", 0, "Expected a term at position 0 in 'AND cat', got 'AND'"),
        ("cat OR OR dog", 7, "Expected a term after 'OR' at position 7"),
        ("NOT", 3, "Expected a term after 'NOT' at position 3"),
        ("()", 1, "Expected a term after '(' at position 1"),
        ("cat)", 3, "Expected AND, OR or end of input at position 3 in 'cat)', got ')' (no '(' is open)"),
        ("cat (dog)", 4, "Expected AND, OR or end of input at position 4"),
        ("cat -dog", 4, "Expected AND, OR or end of input at position 4"),
        ("(cat id:1)", 5, "Expected AND, OR or ')' at position 5"),
        ('"red car', 8, "Expected a closing '\"' at position 8"),
        ('cat AND ""', 8, "Expected text inside the quotes at position 8"),
        ("cat , dog", 4, "Expected a term at position 4"),
        ("foo:bar", 0, "Expected one of image:, id:, prefix:, modality: at position 0 in 'foo:bar', got 'foo:'"),
        ("id:", 3, "Expected a point id after 'id:' at position 3 in 'id:', got end of input"),
        ("id: 3", 3, "Expected a point id after 'id:' at position 3"),
        ("id:abc", 3, "Expected an unsigned integer or UUID point id at position 3"),
        ("id:-3", 3, "Expected an unsigned integer or UUID point id at position 3"),
        ("id:[1, x]", 7, "Expected an unsigned integer or UUID point id at position 7"),
        ("id:[1, 2", 8, "Expected ',' or ']' at position 8"),
        ("id:[1 2]", 6, "Expected ',' or ']' at position 6"),
        ("id:[]", 4, "Expected a point id after 'id:' at position 4"),
        ("prefix:1.x", 7, "Expected a docid prefix like 1.12 after 'prefix:' at position 7"),
        ("modality:audio", 9, "Expected 'image', 'text' or 'video' after 'modality:' at position 9"),
        ("image:)", 6, "Expected an image path after 'image:' at position 6"),
        ("brand=", 6, "Expected a value after 'brand=' at position 6"),
        ("tags=[a,]", 8, "Expected a value after 'tags=' at position 8"),
        ("price<abc", 6, "Expected a number after 'price<' at position 6"),
        ('price<"3"', 6, "Expected a number after 'price<' at position 6"),
        ("price>=", 7, "Expected a number after 'price>=' at position 7"),
        ("=5", 0, "Expected a term or field name at position 0"),
        ("3x=1", 0, "Expected a field name"),
        ("cat AND _mmgr.prefixes=1", 8, "reserved for the library"),
        ("x=99999999999999999999", 0, "beyond 64 bits"),
    ],
)
def test_syntax_errors_name_position_and_expectation(query: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(query)
    assert info.value.position == position
    assert fragment in str(info.value)
    assert isinstance(info.value, InputError)
    assert str(info.value).endswith(".")


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InputError, match="as a string"):
        parse(None)  # type: ignore[arg-type]


# -- round trips over random expressions ------------------------------------------------------

_chars = st.sampled_from(list("abcXYZ019 _-.:=<>!&|()\"\\,[]*'é\t"))
_texts = st.text(_chars, min_size=1, max_size=8).filter(lambda s: s.strip() != "")
_words = st.sampled_from(["cat", "and", "NOT", "or", "true", "42", "-1", "1.5", "a:b", "*", "x y", "<p>"])
_keys = st.one_of(
    st.sampled_from(["brand", "meta.color", "a-b", "and", "image", "my key", "x:y", '"q"']),
    st.text(_chars, min_size=1, max_size=5).filter(lambda k: not k.startswith("_mmgr")),
)
_scalars = st.one_of(
    st.text(_chars, max_size=6),
    _words,
    st.integers(-(2**63) + 1, 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
_rt_atoms = st.one_of(
    st.builds(Text, st.one_of(_texts, _words)),
    st.builds(Image, st.one_of(_texts, _words)),
    st.builds(Ids, st.lists(st.one_of(st.integers(0, 2**64 - 1), st.uuids().map(str)), min_size=1, max_size=3).map(tuple)),
    st.builds(Prefix, st.lists(st.integers(0, 300), min_size=1, max_size=4).map(tuple)),
    st.builds(Modality, st.sampled_from(["image", "text"])),
    st.builds(FieldEq, _keys, st.lists(_scalars, min_size=1, max_size=3).map(tuple)),
    st.builds(FieldRange, _keys, st.sampled_from(["lt", "lte", "gt", "gte"]),
              st.one_of(st.integers(-(2**63) + 1, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False))),
    st.just(All()),
)


def _tree(atoms: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.recursive(
        atoms,
        lambda sub: st.one_of(
            st.tuples(sub, sub).map(lambda ab: ab[0] & ab[1]),
            st.tuples(sub, sub).map(lambda ab: ab[0] | ab[1]),
            sub.map(lambda a: ~a),
        ),
        max_leaves=8,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree(_rt_atoms))
def test_round_trip(expr: Expr) -> None:
    text = str(expr)
    assert parse(text) == expr, text
    assert str(parse(text)) == text


# --------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------


def _m(name: str) -> Match:
    return Match(P, tuple(".".join(map(str, p)) for p in CONCEPTS[name]))


def test_compile_concepts_to_prefix_matches(resolver: FakeResolver) -> None:
    c = compile_expr("cat AND NOT (dog OR wolf)", resolver)
    assert c.filter == Filter(must=(_m("cat"),), must_not=(Match(P, ("1.1", "0.2", "1.1.0", "1.3")),))
    assert not c.negative_only
    assert len(c.positive_vectors) == 1 and np.allclose(c.positive_vectors[0], _vec("cat"))
    assert len(c.negative_vectors) == 2
    assert [a.polarity for a in c.atoms] == ["positive", "negative", "negative"]
    assert c.atoms[0].resolution is not None and c.atoms[0].resolution.prefixes == CONCEPTS["cat"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("cat OR dog", Filter(must=(Match(P, ("1.0", "1.2.1", "1.1", "0.2")),))),
        ("NOT NOT cat", Filter(must=(_m("cat"),))),
        ("NOT (cat AND dog)", Filter(must_not=(Filter(must=(_m("cat"), _m("dog"))),))),
        ("* AND NOT dog", Filter(must_not=(_m("dog"),))),
        ("cat AND *", Filter(must=(_m("cat"),))),
        ("cat OR NOT *", Filter(must=(_m("cat"),))),
        ("cat AND NOT zzz", Filter(must=(_m("cat"),))),
        ("cat OR zzz", Filter(must=(_m("cat"),))),
        ("prefix:1.12", Filter(must=(Match(P, ("1.12",)),))),
        (
            "modality:image AND brand=acme AND price<10",
            Filter(must=(Match(F_MODALITY, ("image",)), Match("brand", ("acme",)), Range("price", lt=10))),
        ),
        ("id:1 OR id:2 OR brand=x OR brand=y", Filter(should=(HasId((1, 2)), Match("brand", ("x", "y"))))),
        ("NOT id:1 AND NOT id:2 AND cat", Filter(must=(_m("cat"),), must_not=(HasId((1, 2)),))),
        (
            "tags=[a, 3, true, 2.5, b]",
            Filter(should=(Match("tags", ("a", "b")), Match("tags", (3,)), Match("tags", (True,)), Range("tags", gte=2.5, lte=2.5))),
        ),
        (
            "(cat OR brand=acme) AND (dog OR price<3)",
            Filter(must=(Filter(should=(_m("dog"), Range("price", lt=3))),), should=(_m("cat"), Match("brand", ("acme",)))),
        ),
        ("cat AND NOT (dog AND NOT wolf)", Filter(must=(_m("cat"),), must_not=(Filter(must=(_m("dog"),), must_not=(_m("wolf"),)),))),
    ],
)
def test_compile_filter_structure(query: str, expected: Filter, resolver: FakeResolver) -> None:
    c = compile_expr(query, resolver, allow_negative_only=True)
    assert c.filter == expected
    assert evaluate_filter(c, CORPUS) == ref(parse(query))


def test_compile_everything_is_no_filter(resolver: FakeResolver) -> None:
    c = compile_expr(Q.all(), resolver)
    assert c.filter is None and c.ranking_vector is None
    assert evaluate_filter(c, CORPUS) == set(CORPUS)


def test_negative_only_needs_opt_in(resolver: FakeResolver) -> None:
    with pytest.raises(InputError, match="only negative terms.*allow_negative_only=True"):
        compile_expr("NOT dog", resolver)
    with pytest.raises(InputError, match="only negative"):
        compile_expr(~(Q.text("dog") | ~~Q.text("cat")), resolver)
    c = compile_expr("NOT dog", resolver, allow_negative_only=True)
    assert c.negative_only and c.positive_vectors == () and c.ranking_vector is None
    assert c.filter == Filter(must_not=(_m("dog"),))
    assert c.explain()["ranking"].startswith("none")
    # A positive term, even a filter-only one, makes the query ordinary.
    assert not compile_expr("modality:image AND NOT dog", resolver).negative_only
    assert not compile_expr("NOT (dog AND NOT cat)", resolver).negative_only


def test_queries_that_match_nothing_by_construction_fail(resolver: FakeResolver) -> None:
    with pytest.raises(InputError, match="'zzz' resolved to no docid prefix"):
        compile_expr("zzz", resolver)
    with pytest.raises(InputError, match="can match no document"):
        compile_expr("cat AND zzz", resolver)
    with pytest.raises(InputError, match="NOT \\*"):
        compile_expr("cat AND NOT *", resolver)


def test_ids_are_checked_once_and_unknown_ids_propagate(resolver: FakeResolver) -> None:
    seen: list[tuple[PointId, ...]] = []
    original = resolver.check_ids

    def spy(ids: Sequence[PointId]) -> None:
        seen.append(tuple(ids))
        original(ids)

    resolver.check_ids = spy  # type: ignore[method-assign]
    compile_expr(Q.ids([1, 2]) | ~Q.ids([2, 3]) & Q.text("cat"), resolver)
    assert seen == [(1, 2, 3)]
    with pytest.raises(NotFoundError, match="not in the index"):
        compile_expr("cat AND NOT id:123456", resolver)


def test_resolver_errors_and_missing_resolver(resolver: FakeResolver) -> None:
    with pytest.raises(InputError, match="does not exist"):
        compile_expr("image:missing.png AND cat", resolver)
    with pytest.raises(InputError, match="needs a resolver"):
        compile_expr("cat", None)
    c = compile_expr("modality:text AND id:1", None)  # no concept: no resolver needed
    assert c.filter == Filter(must=(Match(F_MODALITY, ("text",)), HasId((1,))))
    with pytest.raises(InputError, match="compile_expr got"):
        compile_expr(3, resolver)  # type: ignore[arg-type]


def test_concepts_resolve_once_and_rank_by_positive_mean(resolver: FakeResolver) -> None:
    c = compile_expr("(cat AND dog) OR (cat AND NOT dog) OR image:x.jpg", resolver)
    assert resolver.calls == ["cat", "dog", "joint:cat and dog"]  # each atom once, plus the phrase that ranks
    assert [[str(t) for t in terms] for terms in c.ranking_terms] == [["cat", "dog"], ["cat"], ["image:x.jpg"]]
    assert [a.polarity for a in c.atoms] == ["positive", "both", "positive"]
    assert len(c.positive_vectors) == 3 and c.negative_vectors == ()
    unit = [v / np.linalg.norm(v) for v in c.positive_vectors]
    expected = np.mean(unit, axis=0)
    assert c.ranking_vector is not None
    assert np.allclose(c.ranking_vector, expected / np.linalg.norm(expected), atol=1e-6)


def test_explain_is_readable_json(resolver: FakeResolver) -> None:
    c = compile_expr("cat AND NOT dog AND price<5", resolver)
    info = c.explain()
    json.dumps(info)
    assert info["query"] == "cat AND NOT dog AND price<5"
    assert info["filter"] == {
        "must": [{"key": P, "match": {"any": ["1.0", "1.2.1"]}}, {"key": "price", "range": {"lt": 5}}],
        "must_not": [{"key": P, "match": {"any": ["1.1", "0.2"]}}],
    }
    assert info["atoms"][0] == {
        "term": "cat", "kind": "text", "polarity": "positive",
        "condition": {"key": P, "match": {"any": ["1.0", "1.2.1"]}},
        "prefixes": ["1.0", "1.2.1"], "scores": [1.0, 0.5],
    }
    assert info["atoms"][2]["kind"] == "field" and "prefixes" not in info["atoms"][2]
    assert info["ranking"] == "cosine to cat"
    assert info["warnings"] == []
    # "wolf" (1.1.0) lies inside "dog" (1.1): NOT dog removes all of wolf's documents.
    overlap = compile_expr("wolf AND NOT dog", FakeResolver(KNOWN_IDS)).explain()["warnings"]
    assert overlap == ["'dog' under NOT covers prefixes 1.1.0 of 'wolf'; those documents are excluded."]
    assert filter_to_dict(HasId((1,))) == {"has_id": [1]}
    assert filter_to_dict(None) is None


def test_atom_resolution_validates() -> None:
    r = AtomResolution(np.ones((1, 4)), [[1, 2]], [0.5])  # type: ignore[arg-type]
    assert r.vector.shape == (4,) and r.prefixes == ((1, 2),) and r.scores == (0.5,)
    with pytest.raises(InputError, match="one score per prefix"):
        AtomResolution(np.ones(4), ((1,), (2,)), (0.5,))


# --------------------------------------------------------------------------------------------
# evaluate_filter mirrors Qdrant semantics
# --------------------------------------------------------------------------------------------


def test_matches_semantics() -> None:
    p = {"tags": ["a", "b"], "n": 3, "f": 2.5, "s": "3", "flag": True, "none": None, "meta": {"c": "red"}}
    assert matches(Match("tags", ("b", "z")), 1, p)  # any element of an array
    assert not matches(Match("missing", ("a",)), 1, p)  # missing field: no match
    assert matches(Filter(must_not=(Match("missing", ("a",)),)), 1, p)  # ...so must_not matches
    assert not matches(Match("none", ("a",)), 1, p)
    assert not matches(Match("s", (3,)), 1, p) and not matches(Match("n", ("3",)), 1, p)  # typed
    assert not matches(Match("n", (True,)), 1, p) and not matches(Match("flag", (1,)), 1, p)
    assert matches(Match("flag", (True,)), 1, p)
    assert matches(Range("f", gte=2.5, lte=2.5), 1, p) and not matches(Range("s", lt=10), 1, p)
    assert matches(Match("meta.c", ("red",)), 1, p)
    assert matches(HasId((1, 2)), 1, p) and not matches(HasId(("1",)), 1, p)
    assert matches(Filter(), 1, p)
    assert matches(Filter(should=(Match("n", (9,)), Match("n", (3,)))), 1, p)
    assert evaluate_filter(None, {1: p, 2: {}}) == {1, 2}
    assert evaluate_filter(Match("n", (3,)), {1: p, 2: {}}) == {1}
    assert evaluate_filter("modality:image", {1: {"_mmgr": {"modality": "image"}}, 2: {}}) == {1}


# --------------------------------------------------------------------------------------------
# Algebra laws on a random stored corpus
# --------------------------------------------------------------------------------------------

_law_atoms = st.sampled_from([
    Q.text("cat"), Q.text("dog"), Q.text("wolf"), Q.text("car"), Q.text("red car"), Q.text("zzz"),
    Q.image("x.jpg"), Q.prefix((1,)), Q.prefix((0, 2)), Q.modality("image"), Q.ids(SOME_IDS[:4]),
    Q.ids(SOME_IDS[3:]), Q.where({"brand": "acme"}), Q.where({"brand": ["globex", "initech"]}),
    Q.where({"price": {"lt": 8}}), Q.where({"price": {"gte": 4.5}}), Q.where({"price": 3}),
    Q.where({"price": 3.5}), Q.where({"tags": ["a", "c"]}), Q.where({"sale": True}),
    Q.where({"sale": False}), Q.where({"meta.color": "red"}), Q.all(),
])
_law_exprs = _tree(_law_atoms)
_law_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_law_settings
@given(_law_exprs)
def test_compiled_filter_admits_the_reference_set(e: Expr) -> None:
    assert ev(e, FakeResolver(KNOWN_IDS)) == ref(e)


@_law_settings
@given(_law_exprs, _law_exprs)
def test_de_morgan(a: Expr, b: Expr) -> None:
    r = FakeResolver(KNOWN_IDS)
    assert ev(~(a & b), r) == ev(~a | ~b, r) == set(CORPUS) - ev(a & b, r)
    assert ev(~(a | b), r) == ev(~a & ~b, r) == set(CORPUS) - ev(a | b, r)


@_law_settings
@given(_law_exprs)
def test_double_negation_and_complement(a: Expr) -> None:
    r = FakeResolver(KNOWN_IDS)
    assert ev(~~a, r) == ev(a, r)
    assert ev(a | ~a, r) == set(CORPUS)
    assert ev(a & ~a, r) == set()


@_law_settings
@given(_law_exprs, _law_exprs, _law_exprs)
def test_distribution(a: Expr, b: Expr, c: Expr) -> None:
    r = FakeResolver(KNOWN_IDS)
    assert ev(a & (b | c), r) == ev((a & b) | (a & c), r)
    assert ev(a | (b & c), r) == ev((a | b) & (a | c), r)


def test_corpus_exercises_the_edge_cases() -> None:
    kinds = {type(p.get("brand")).__name__ for p in CORPUS.values()} | {type(p.get("price")).__name__ for p in CORPUS.values()}
    assert {"str", "list", "NoneType", "int", "float"} <= kinds
    assert any(isinstance(pid, str) for pid in CORPUS)
    for q in ("cat", "brand=acme", "price<8", "NOT sale=true"):
        assert 0 < len(ref(parse(q))) < len(CORPUS), q


# --------------------------------------------------------------------------------------------
# Concept cut-off
# --------------------------------------------------------------------------------------------

BEAM = [(1, 0, 0), (1, 0, 1), (1, 2, 0), (0, 3, 1)]
LOGP = np.log([0.5, 0.3, 0.15, 0.05])


@pytest.mark.parametrize(
    ("cutoff", "kept"),
    [
        (ConceptCutoff(), [(1, 0, 0), (1, 0, 1), (1, 2, 0)]),  # 0.5 + 0.3 < 0.9 <= 0.95
        (ConceptCutoff(mass=0.8), [(1, 0, 0), (1, 0, 1)]),  # exactly 0.8 is enough
        (ConceptCutoff(mass=None), BEAM),
        (ConceptCutoff(mass=None, beam_size=2), [(1, 0, 0), (1, 0, 1)]),
        (ConceptCutoff(beam_size=1), [(1, 0, 0)]),
        (ConceptCutoff(mass=None, min_prob=0.2), [(1, 0, 0), (1, 0, 1)]),
        (ConceptCutoff(min_prob=0.99), [(1, 0, 0)]),  # the top prefix is always kept
        (ConceptCutoff(mass=None, depth=2), [(1, 0), (1, 2), (0, 3)]),
        (ConceptCutoff(mass=0.9, depth=1), [(1,)]),  # 0.95 after merging
        (ConceptCutoff(mass=0.96, depth=1), [(1,), (0,)]),
    ],
)
def test_select_prefixes(cutoff: ConceptCutoff, kept: list[tuple[int, ...]]) -> None:
    prefixes, scores = select_prefixes(BEAM, LOGP, cutoff)
    assert list(prefixes) == kept
    assert list(scores) == sorted(scores, reverse=True)


def test_select_prefixes_normalizes_sorts_and_merges() -> None:
    logp = np.array([-3.0, -1.0, -1.0]) + 100.0  # any offset: probabilities are normalized over the beam
    prefixes, scores = select_prefixes([(2, 1), (1, 0, 1), (1, 0, 2)], logp, ConceptCutoff(mass=None, depth=2))
    assert prefixes == ((1, 0), (2, 1))
    assert np.isclose(sum(scores), 1.0) and np.isclose(scores[0], 2 * np.e**2 / (2 * np.e**2 + 1))
    # A prefix that extends a kept one adds nothing to the filter.
    prefixes, _ = select_prefixes([(1, 2), (1, 2, 3), (4,)], [-1.0, -1.5, -2.0], ConceptCutoff(mass=None))
    assert prefixes == ((1, 2), (4,))
    # Unsorted input comes out most probable first; ties keep beam order.
    prefixes, scores = select_prefixes([(3,), (1,), (2,)], [-2.0, -1.0, -2.0], ConceptCutoff(mass=None))
    assert prefixes == ((1,), (3,), (2,))
    prefixes, scores = select_prefixes([(1,), (2,)], [-np.inf, -np.inf], ConceptCutoff(mass=None))
    assert scores == (0.5, 0.5)
    assert select_prefixes([], [], None) == ((), ())


def test_select_prefixes_and_cutoff_reject_bad_input() -> None:
    with pytest.raises(InputError, match="one per prefix"):
        select_prefixes([(1,)], [0.0, 1.0])
    with pytest.raises(InputError, match="NaN"):
        select_prefixes([(1,)], [float("nan")])
    for kwargs in ({"beam_size": 0}, {"beam_size": 2.5}, {"mass": 0.0}, {"mass": 1.5}, {"min_prob": -0.1}, {"depth": 0}):
        with pytest.raises(ConfigError):
            ConceptCutoff(**kwargs)  # type: ignore[arg-type]


def test_compiled_is_a_frozen_value(resolver: FakeResolver) -> None:
    c = compile_expr("cat", resolver)
    assert isinstance(c, Compiled)
    with pytest.raises(AttributeError):
        c.filter = None  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Polarity-aware cut-offs and structure-aware ranking
# --------------------------------------------------------------------------------------------

SIZES = {(1, 0, 0): 10, (1, 0, 1): 30, (1, 2, 0): 5, (0, 3, 1): 1}


@pytest.mark.parametrize(
    ("fraction", "kept"),
    [
        (0.5, [(1, 0, 0), (1, 0, 1), (1, 2, 0), (0, 3, 1)]),  # 46 documents fit in 50
        (0.4, [(1, 0, 0), (1, 0, 1)]),  # 40 fit; adding (1, 2, 0) would make 45
        (0.2, [(1, 0, 0)]),
        (0.01, [(1, 0, 0)]),  # the most probable is kept even past the budget
    ],
)
def test_select_prefixes_max_fraction(fraction: float, kept: list[tuple[int, ...]]) -> None:
    cut = ConceptCutoff(mass=None, max_fraction=fraction)
    prefixes, _ = select_prefixes(BEAM, LOGP, cut, count=lambda ps: [SIZES[p] for p in ps], total=100)
    assert list(prefixes) == kept


def test_select_prefixes_max_fraction_needs_counts() -> None:
    with pytest.raises(InputError, match="count= and total="):
        select_prefixes(BEAM, LOGP, ConceptCutoff(max_fraction=0.1))
    with pytest.raises(ConfigError, match="max_fraction"):
        ConceptCutoff(max_fraction=0.0)


def test_resolver_is_told_which_concepts_are_only_negated(resolver: FakeResolver) -> None:
    compile_expr("cat AND NOT (dog OR wolf)", resolver)
    assert resolver.negated == {"cat": False, "dog": True, "wolf": True}
    compile_expr("dog OR NOT dog", resolver)  # both polarities: the positive cut-off, so the two sides partition
    assert resolver.negated["dog"] is False
    compile_expr("NOT NOT wolf", resolver)
    assert resolver.negated["wolf"] is False


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("cat", [["cat"]]),
        ("cat AND NOT dog", [["cat"]]),  # excluded documents are not ranked by what excludes them
        ("cat OR dog", [["cat"], ["dog"]]),  # OR ranks by the nearer term
        ("(cat OR dog) AND car", [["cat", "car"], ["dog", "car"]]),
        ("NOT (NOT cat OR dog)", [["cat"]]),  # = cat AND NOT dog
        ("NOT (cat AND dog) AND modality:image", None),  # only negated concepts: nothing ranks
        ("cat OR modality:text", [["cat"]]),
        ("cat AND cat", [["cat"]]),
    ],
)
def test_ranking_terms_follow_the_expression(resolver: FakeResolver, query: str, expected: list[list[str]] | None) -> None:
    c = compile_expr(query, resolver, allow_negative_only=True)
    got = [[t.text for t in terms if isinstance(t, Text)] for terms in c.ranking_terms]
    assert got == (expected or [])
    vecs = c.ranking_vectors
    if expected is None:
        assert vecs is None
        return
    assert vecs is not None and vecs.shape == (len(expected), 8)
    for row, terms in zip(vecs, expected):
        want = _unit(_vec(" and ".join(terms))) if len(terms) > 1 else _unit(_vec(terms[0]))
        assert np.allclose(row, want, atol=1e-6)


def test_a_conjunction_of_texts_is_read_as_one_phrase(resolver: FakeResolver) -> None:
    c = compile_expr(Q.text("cat") & Q.text("dog") & Q.image("a.jpg"), resolver)
    assert "joint:cat and dog" in resolver.calls
    vecs = c.ranking_vectors
    assert vecs is not None and vecs.shape == (1, 8)
    phrase, image = _unit(_vec("cat and dog")), _unit(_vec(repr("a.jpg")))
    assert np.allclose(vecs[0], _unit((phrase + image) / 2), atol=1e-6)
    assert c.explain()["ranking"] == "cosine to the phrase 'cat and dog' averaged with 1 image term"
    assert compile_expr("cat OR dog", resolver).explain()["ranking"] == "the best of: cosine to cat; cosine to dog"


def test_ranking_terms_are_bounded(resolver: FakeResolver) -> None:
    from mmgr_qdrant.setops import MAX_RANKING_TERMS

    words = ["cat", "dog", "wolf", "car", "red car"]
    expr = Q.all_of(*[Q.text(w) | Q.text(w + " x") for w in words])  # 2**5 = 32 conjunctions
    assert 2 ** len(words) > MAX_RANKING_TERMS
    c = compile_expr(expr, resolver)
    assert len(c.ranking_terms) == 1 and len(c.ranking_terms[0]) == 2 * len(words)  # all positives, one vector
    assert c.ranking_vectors is not None and c.ranking_vectors.shape[0] == 1
