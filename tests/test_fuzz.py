"""Property-based fuzz of the public surface, on both backends.

Every call either works or raises an :class:`~mmgr_qdrant.MMGRError` subclass, and a call that
fails leaves ``count()`` and every stored document (payload, text, docid) as they were. Inputs
are random payloads (NaN, infinities, non-string keys, nesting, lone surrogates), ids (ints,
huge ints, UUIDs, garbage), texts, vectors (NaN, 1e20, zeros, wrong dimensions), ``k`` (0, -1,
2**64, floats), query strings for ``Q.parse`` (random tokens, deep nesting) and ``where`` filters.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmgr_qdrant import MMGRError, MultimodalRetriever
from mmgr_qdrant.setops import Q, parse
from tests.helpers import DECODER, clustered

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                derandomize=True, database=None)

# -- strategies ----------------------------------------------------------------------------------
odd_floats = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 1e-320])
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
                    odd_floats, st.text(max_size=8), st.sampled_from(["\ud800", "a\udfffb", "\x00", "_mmgr"]))
keys = st.one_of(st.text(max_size=6), st.sampled_from(["_mmgr", "", "a.b", "\ud800"]), st.integers(-3, 3), st.none(), st.booleans(),
                 st.tuples(st.integers(0, 2)))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=6)
payloads = st.one_of(st.none(), st.dictionaries(keys, values, max_size=4), st.sampled_from([[], "payload", 3]))
ids = st.one_of(st.integers(min_value=-5, max_value=2**64 + 5), st.just(2**64 - 1), st.uuids().map(str), st.uuids(),
                st.sampled_from(["7", "not-a-uuid", "", None, 1.5, True, b"x", "00000000-0000-0000-0000-00000000000g"]))
texts = st.one_of(st.text(max_size=20), st.sampled_from(["", "   ", "\ud800", "a\udcffb", "x" * 5000, "\x00"]), st.integers(0, 3), st.none())
ks = st.one_of(st.integers(min_value=-2, max_value=12), st.sampled_from([2**64, 2**31, 10**6, 1.5, 0.0, math.nan, "3", None, True]))
modalities = st.sampled_from([None, "image", "text", "video", "", 3])
modes = st.sampled_from([None, "hybrid", "dense", "generative", "psychic", ""])
wheres = st.one_of(st.none(), st.dictionaries(keys, values, max_size=3), st.sampled_from([[], "brand=acme", {"n": {"gte": 1}},
                                                                                          {"n": {"gte": "x"}}, {"n": {"bogus": 1}}]))
TOKENS = ["cat", "dog", "AND", "OR", "NOT", "(", ")", "-", "!", "&", "|", "*", '"', "id:", "id:7", "prefix:1.2", "prefix:",
          "modality:image", "modality:", "brand=acme", "n<3", "n>=", "tags=[a,", "image:", "=", "\ud800", "\x00", " "]
query_strings = st.one_of(st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join), st.text(max_size=30),
                          st.integers(1, 1200).map(lambda n: "(" * n + "cat" + ")" * n), st.integers(1, 6000).map(lambda n: "NOT " * n + "cat"))


def vectors(dim: int) -> st.SearchStrategy[Any]:
    good = st.lists(st.floats(-1, 1, allow_nan=False), min_size=dim, max_size=dim).map(lambda v: np.asarray(v, dtype=np.float32))
    bad = st.sampled_from([
        np.full(dim, np.nan), np.full(dim, 1e20), np.full(dim, 1e39), np.zeros(dim), np.ones(dim + 1), np.ones(max(dim - 1, 1)),
        np.ones((2, dim)), np.array([]), np.full(dim, np.inf),
    ])
    return st.one_of(good, bad, st.just("vector"), st.just([0.5] * dim))


# -- the index under test --------------------------------------------------------------------
@pytest.fixture(scope="module", params=["edge", "local"])
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Any) -> Iterator[MultimodalRetriever]:
    """One built index per backend, shared by the properties (failed calls must leave it as it was)."""
    client: Any = None
    if request.param == "edge":
        kw: dict[str, Any] = {"path": tmp_path_factory.mktemp("fuzz")}
    else:
        from qdrant_client import QdrantClient

        client = QdrantClient(":memory:")
        kw = {"client": client}
    r = MultimodalRetriever.create("fuzz", encoder=tiny_encoder, decoder_params=DECODER, **kw)
    x, labels = clustered(r.config.dim, seed=11)
    r.add_embeddings(x[:120], modality="image", payloads=[{"label": int(l), "n": i} for i, l in enumerate(labels[:120])])
    r.add_texts(["a red car", "a blue boat", "a green tree"], ids=[1, 2, 3], payloads=[{"brand": "acme"}, {"n": 2}, None])
    r.build(epochs=2)
    yield r
    r.close()
    if client is not None:
        client.close()


def snapshot(r: MultimodalRetriever, extra: list[Any] = ()) -> tuple[int, dict[Any, Any]]:  # type: ignore[assignment]
    """count() and every stored document, read through the public API (dense search of everything)."""
    n = r.count()
    hits = r.search(vector=np.ones(r.config.dim, dtype=np.float32), k=n + 5, mode="dense")
    return n, {h.id: (h.payload, h.text, h.modality, h.docid) for h in hits}


def call(r: MultimodalRetriever, fn: Callable[[], Any]) -> Any:
    """Run ``fn``: it works, or raises an MMGRError and leaves the index as it was."""
    before = snapshot(r)
    try:
        return fn()
    except MMGRError:
        after = snapshot(r)
        assert after[0] == before[0], "a failed call changed count()"
        assert after[1] == before[1], "a failed call changed stored documents"
        return None


def _undo_adds(r: MultimodalRetriever, before: set[Any], result: Any) -> None:
    new = [i for i in (list(result) if result is not None else []) if i not in before]
    if new:
        r.delete(new)


# -- properties --------------------------------------------------------------------------------
@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_add_texts_works_or_fails_cleanly(base: MultimodalRetriever, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 4))
    items = data.draw(st.lists(texts, min_size=n, max_size=n))
    kw: dict[str, Any] = {}
    if data.draw(st.booleans()):
        kw["payloads"] = data.draw(st.lists(payloads, min_size=n, max_size=n + data.draw(st.integers(0, 1))))
    if data.draw(st.booleans()):
        kw["ids"] = data.draw(st.lists(ids, min_size=n, max_size=n))
    kw["on_error"] = data.draw(st.sampled_from(["raise", "skip", "ignore"]))
    known = set(snapshot(base)[1])
    result = call(base, lambda: base.add_texts(items, **kw))
    _undo_adds(base, known, result)


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_add_embeddings_works_or_fails_cleanly(base: MultimodalRetriever, data: st.DataObject) -> None:
    dim = base.config.dim
    n = data.draw(st.integers(1, 3))
    rows = data.draw(st.lists(vectors(dim), min_size=n, max_size=n))
    try:
        arr: Any = np.stack([np.asarray(v, dtype=np.float64) for v in rows])
    except (ValueError, TypeError):
        arr = rows
    kw: dict[str, Any] = {"modality": data.draw(modalities)}
    if data.draw(st.booleans()):
        kw["payloads"] = data.draw(st.lists(payloads, min_size=n, max_size=n))
    if data.draw(st.booleans()):
        kw["ids"] = data.draw(st.lists(ids, min_size=n, max_size=n))
    known = set(snapshot(base)[1])
    result = call(base, lambda: base.add_embeddings(arr, **kw))
    _undo_adds(base, known, result)


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_search_works_or_fails_cleanly(base: MultimodalRetriever, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["text", "vector", "parsed", "expr"]))
    kw: dict[str, Any] = {"k": data.draw(ks), "modality": data.draw(modalities), "mode": data.draw(modes), "where": data.draw(wheres)}
    if kind == "text":
        args: dict[str, Any] = {"query": data.draw(texts)}
    elif kind == "vector":
        args = {"vector": data.draw(vectors(base.config.dim))}
    elif kind == "parsed":
        args = {"query": data.draw(query_strings)}
    else:
        args = {"query": data.draw(st.sampled_from(["car", "boat"])), "not_ids": data.draw(ids)}

    def run() -> Any:  # building the query is part of the call: Q.ids and parse check their input too
        q = args.get("query")
        if kind == "parsed":
            args["query"] = parse(q)
        elif kind == "expr":
            return base.search(Q.text(q) & ~Q.ids(args["not_ids"]), **kw)
        return base.search(**args, **kw)

    hits = call(base, run)
    if hits is not None:
        assert isinstance(hits, list) and len(hits) <= max(int(kw["k"]), 0)


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_search_batch_works_or_fails_cleanly(base: MultimodalRetriever, data: st.DataObject) -> None:
    dim = base.config.dim
    rows = data.draw(st.lists(vectors(dim), min_size=1, max_size=3))
    try:
        arr: Any = np.stack([np.asarray(v, dtype=np.float64) for v in rows])
    except (ValueError, TypeError):
        arr = rows
    call(base, lambda: base.search_batch(vectors=arr, k=data.draw(ks), mode=data.draw(modes), where=data.draw(wheres)))


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_id_calls_work_or_fail_cleanly(base: MultimodalRetriever, data: st.DataObject) -> None:
    stored = [1, 2, 3]
    some = data.draw(st.lists(st.one_of(ids, st.sampled_from(stored)), max_size=3))
    op = data.draw(st.sampled_from(["get", "related", "link", "update", "delete-missing"]))
    if op == "get":
        call(base, lambda: base.get(some))
    elif op == "related":
        call(base, lambda: base.related(data.draw(st.one_of(ids, st.sampled_from(stored))), k=data.draw(ks), modality=data.draw(modalities)))
    elif op == "link":
        a, b = data.draw(st.one_of(ids, st.sampled_from(stored))), data.draw(ids)
        call(base, lambda: base.link(a, b))
    elif op == "update":
        target = data.draw(st.one_of(ids, st.sampled_from(stored)))
        before = snapshot(base)

        def upd() -> None:
            base.update(target, payload=data.draw(payloads))

        try:
            upd()
        except MMGRError:
            assert snapshot(base) == before
        else:  # restore the seed document's payload for the next example
            base.update(target, payload=before[1][target][0])
    else:
        missing = [i for i in some if i not in stored] or [str(uuid.uuid4())]
        call(base, lambda: base.delete([*missing, 1]))
        assert base.count() >= 3


@settings(FUZZ, max_examples=200)
@given(text=query_strings)
def test_parse_returns_an_expression_or_a_query_error(text: str) -> None:
    try:
        expr = parse(text)
    except MMGRError:
        return
    again = parse(str(expr))  # what it renders reads back to the same expression
    assert again == expr


@FUZZ
@given(data=st.data())
def test_python_built_expressions_compile_or_raise_library_errors(data: st.DataObject) -> None:
    from mmgr_qdrant.setops import compile_expr

    leaves = st.one_of(st.builds(Q.text, st.text(min_size=1, max_size=5)), st.builds(Q.modality, st.sampled_from(["image", "text"])),
                       st.builds(lambda v: Q.where(n=v), scalars), st.builds(lambda i: Q.ids(i), ids))

    def build_expr() -> Any:
        e = data.draw(leaves)
        for _ in range(data.draw(st.integers(0, 300))):
            op = data.draw(st.sampled_from(["and", "or", "not"]))
            other = data.draw(leaves)
            e = e & other if op == "and" else e | other if op == "or" else ~e
        return e

    try:
        compile_expr(build_expr(), None, allow_negative_only=True)
    except MMGRError:
        pass  # an error of the library's own kind: what the property allows
