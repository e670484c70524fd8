"""``evaluate``: the metrics on a fake retriever with known rankings, and on a real tiny index."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from mmgr_qdrant import Hit, InputError, NotBuiltError
from mmgr_qdrant.evaluation import EvalQuery, evaluate_search, load_queries, parse_queries
from mmgr_qdrant.setops import Expr, FieldEq

# documents 1..6; labels in payloads
LABELS = {1: "cat", 2: "cat", 3: "dog", 4: "dog", 5: "cat", 6: "bird"}
RANKINGS = {
    "dense": {"cats": [1, 3, 2, 4, 5, 6], "dogs": [1, 2, 5, 6, 3, 4]},
    "hybrid": {"cats": [1, 2, 5, 3, 4, 6], "dogs": [3, 4, 1, 2, 5, 6]},
    "generative": {"cats": [6, 1, 2, 3, 4, 5], "dogs": [4, 3, 1, 2, 5, 6]},
}


class FakeRetriever:
    """Answers ``search`` from fixed rankings; ``Q.where`` expressions from the labels."""

    def __init__(self, built: bool = True) -> None:
        self.built = built
        self.calls: list[tuple[Any, str | None]] = []

    def count(self, modality: str | None = None) -> int:
        return len(LABELS)

    def search(
        self, query: Any = None, *, image: Any = None, k: int = 10, mode: str | None = None, modality: str | None = None
    ) -> list[Hit]:
        self.calls.append((query if query is not None else image, mode))
        if isinstance(query, Expr):
            assert isinstance(query, FieldEq) and query.key == "label"
            return [_hit(i) for i, lab in LABELS.items() if lab in query.values][:k]
        if mode != "dense" and not self.built:
            raise NotBuiltError("not built")
        key = query if query is not None else "cats"
        return [_hit(i) for i in RANKINGS[mode or "dense"][key][:k]]


def _hit(i: int) -> Hit:
    return Hit(id=i, score=1.0 / i, docid=(), modality="image", payload={"label": LABELS[i]})


def test_metrics_by_relevant_ids() -> None:
    report = evaluate_search(FakeRetriever(), [{"query": "cats", "relevant": [1, 2, 5]}, {"query": "dogs", "relevant": ["3", 4]}], k=2)
    d = report.modes["dense"]
    # cats: top2 [1,3] -> 1 relevant, rank 1; dogs: top2 [1,2] -> 0 relevant
    assert d.precision == pytest.approx((1 / 2 + 0) / 2)
    assert d.recall == pytest.approx((1 / 3 + 0) / 2)
    assert d.mrr == pytest.approx((1 + 0) / 2)
    assert d.hit_rate == pytest.approx(0.5)
    h = report.modes["hybrid"]
    # cats: [1,2] -> 2 relevant; dogs: [3,4] -> 2 relevant
    assert (h.precision, h.recall, h.mrr, h.hit_rate) == pytest.approx((1.0, (2 / 3 + 1) / 2, 1.0, 1.0))
    g = report.modes["generative"]
    # cats: [6,1] -> first relevant at rank 2; dogs: [4,3] -> rank 1
    assert g.mrr == pytest.approx((0.5 + 1) / 2)
    assert list(report.modes) == ["hybrid", "generative", "dense"]
    assert report.ratio("recall", "hybrid") == pytest.approx(h.recall / d.recall)
    assert d.latency_ms_mean >= 0 and d.latency_ms_p50 <= d.latency_ms_p95 + 1e-9
    assert report.n_queries == 2 and d.n_queries == 2


def test_metrics_by_label_and_skipped_queries() -> None:
    report = evaluate_search(
        FakeRetriever(),
        [{"query": "cats", "label": "cat"}, {"query": "dogs", "label": "fish"}],
        k=3,
        modes=["dense"],
    )
    d = report.modes["dense"]
    # cats: top3 [1,3,2], relevant {1,2,5}: 2 hits -> P 2/3, R 2/3, RR 1
    assert (d.precision, d.recall, d.mrr) == pytest.approx((2 / 3, 2 / 3, 1.0))
    assert report.n_queries == 1
    assert report.skipped == (("dogs", "no relevant document in the index"),)
    assert report.as_dict()["modes"]["dense"]["recall"] == pytest.approx(2 / 3)


def test_modes_not_built_are_listed_unless_asked() -> None:
    r = FakeRetriever(built=False)
    report = evaluate_search(r, [{"query": "cats", "relevant": [1]}], k=1)
    assert list(report.modes) == ["dense"]
    assert set(report.unavailable) == {"hybrid", "generative"}
    with pytest.raises(NotBuiltError):
        evaluate_search(r, [{"query": "cats", "relevant": [1]}], k=1, modes=["hybrid"])


def test_bad_input() -> None:
    with pytest.raises(InputError):
        evaluate_search(FakeRetriever(), [{"query": "cats"}])  # neither relevant nor label
    with pytest.raises(InputError):
        evaluate_search(FakeRetriever(), [{"query": "cats", "relevant": [1]}], k=0)
    with pytest.raises(InputError):
        evaluate_search(FakeRetriever(), [{"query": "cats", "relevant": [1]}], modes=["psychic"])
    with pytest.raises(InputError):
        parse_queries([{"query": "a", "image": "b.png", "relevant": [1]}])
    assert math.isnan(evaluate_search(FakeRetriever(), [{"query": "dogs", "label": "fish"}], modes=["dense"]).modes["dense"].recall)


def test_load_queries_reads_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text('{"query": "cats", "relevant": [1]}\n\n{"image": "x.png", "label": "cat", "label_field": "kind"}\n')
    qs = load_queries(f)
    assert qs[0] == EvalQuery(query="cats", relevant=(1,))
    assert qs[1].image == str(tmp_path / "x.png") and qs[1].label_field == "kind"
    f.write_text("not json\n")
    with pytest.raises(InputError, match="Line 1"):
        load_queries(f)


def test_evaluate_on_a_real_index(retriever: Any, tiny_encoder: Any) -> None:
    ids = retriever.add_texts(
        ["a red car", "a blue boat", "a green tree"], payloads=[{"label": "car"}, {"label": "boat"}, {"label": "tree"}]
    )
    report = evaluate_search(retriever, [{"query": "a red car", "relevant": [ids[0]]}, {"query": "a blue boat", "label": "boat"}], k=3)
    assert list(report.modes) == ["dense"]  # not built: dense only
    assert report.modes["dense"].recall == pytest.approx(1.0)  # three documents, k=3
    assert report.modes["dense"].mrr == pytest.approx(1.0)  # exact text match ranks first
