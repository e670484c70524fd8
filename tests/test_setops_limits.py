"""Limits of query expressions: nesting depth, and the ranking fallback past MAX_RANKING_TERMS."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant.errors import InputError, QuerySyntaxError
from mmgr_qdrant.setops import AtomResolution, Expr, Q, compile_expr, parse
from mmgr_qdrant.setops.expr import MAX_DEPTH
from mmgr_qdrant.types import PointId


def _vec(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).normal(size=8).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


class Resolver:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def resolve_text(self, text: str, *, negated: bool = False) -> AtomResolution:
        self.calls.append(text)
        return AtomResolution(_vec(text), ((1, len(text) % 4),), (1.0,))

    def resolve_image(self, image: Any, *, negated: bool = False) -> AtomResolution:
        return AtomResolution(_vec(repr(image)), ((1, 2),), (1.0,))

    def embed_text(self, text: str) -> np.ndarray:
        self.calls.append(f"joint:{text}")
        return _vec(text)

    def check_ids(self, ids: Sequence[PointId]) -> None:
        pass


@pytest.mark.parametrize(
    "query",
    ["(" * 300 + "cat" + ")" * 300, "NOT " * 3000 + "cat", "-" * 3000 + "cat", "(" * 5000 + "cat", "cat AND " + "(dog OR (" * 200 + "x" + "))" * 200],
)
def test_deep_strings_are_a_syntax_error_not_a_recursion_error(query: str) -> None:
    with pytest.raises(QuerySyntaxError, match="nests"):
        parse(query)
    with pytest.raises(QuerySyntaxError):
        compile_expr(query, Resolver(), allow_negative_only=True)


def test_nesting_within_the_limit_parses() -> None:
    assert parse("(" * (MAX_DEPTH - 2) + "cat" + ")" * (MAX_DEPTH - 2)) == Q.text("cat")
    e = parse("NOT " * (MAX_DEPTH - 2) + "cat")
    assert str(e).count("NOT") == MAX_DEPTH - 2


def test_deep_python_built_expressions_are_an_input_error() -> None:
    e: Expr = Q.text("cat")
    for _ in range(3000):
        e = ~e
    with pytest.raises(InputError, match="nests 3001 levels"):
        compile_expr(e, Resolver())
    alt: Expr = Q.text("a")
    for i in range(400):
        alt = (alt | Q.text(f"x{i}")) & Q.text(f"y{i}")
    with pytest.raises(InputError, match="nests"):
        compile_expr(alt, Resolver())
    wide = Q.all_of(*[Q.text(f"w{i}") for i in range(5000)])  # long, not deep: fine
    assert compile_expr(wide, Resolver()).filter is not None


def test_past_max_ranking_terms_the_positive_atoms_rank_by_their_mean_not_one_phrase() -> None:
    from mmgr_qdrant.setops import MAX_RANKING_TERMS

    words = ["cat", "dog", "wolf", "car", "boat"]
    expr = Q.all_of(*[Q.text(w) | Q.text(w + " toy") for w in words]) & ~Q.text("grass")  # 2**5 conjunctions
    assert 2 ** len(words) > MAX_RANKING_TERMS
    resolver = Resolver()
    c = compile_expr(expr, resolver)
    assert not any(call.startswith("joint:") for call in resolver.calls)  # no phrase of all the atoms
    assert c.joint_vectors == {}
    vecs = c.ranking_vectors
    positives = [w for word in words for w in (word, word + " toy")]
    mean = _unit(np.mean([_unit(_vec(w)) for w in positives], axis=0))
    assert vecs is not None and vecs.shape == (1, 8) and np.allclose(vecs[0], mean, atol=1e-6)
    assert c.explain()["ranking"].startswith("cosine to the mean of ")
    small = compile_expr(Q.text("cat") & Q.text("dog"), resolver)  # within the limit, a phrase as before
    assert "joint:cat and dog" in resolver.calls and len(small.joint_vectors) == 1


def test_compile_names_stay_importable_after_the_split() -> None:
    from mmgr_qdrant import setops
    from mmgr_qdrant.setops import compile as compile_module

    for name in setops.__all__:
        assert getattr(setops, name) is not None
    for name in ("ConceptCutoff", "DEFAULT_CUTOFF", "select_prefixes", "AtomResolution", "Resolver", "Compiled",
                 "CompiledAtom", "compile_expr", "filter_to_dict", "MAX_RANKING_TERMS", "JOINT_TEXT", "Polarity"):
        assert getattr(compile_module, name) is getattr(setops, name)
    assert setops.evaluate is setops.evaluate_filter


def test_where_strings_with_lone_surrogates_are_input_errors() -> None:
    with pytest.raises(InputError, match="lone surrogate"):
        Q.where(brand="a\ud800")
    with pytest.raises(InputError, match="lone surrogate"):
        Q.where(**{"\udcff": "a"})
    with pytest.raises(InputError, match="lone surrogate"):
        Q.where(tags=["ok", "\ud800"])


def test_check_vectors_refuses_non_numeric_input() -> None:
    from mmgr_qdrant.store.base import check_vectors

    for bad in ("vector", [["a", "b"]], [[1.0], [1.0, 2.0]], {"x": 1}):
        with pytest.raises(InputError, match="not numeric"):
            check_vectors(bad, 2)  # type: ignore[arg-type]
