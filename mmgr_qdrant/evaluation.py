"""Retrieval quality of an index: precision@k, recall@k, MRR and latency, per search mode side by side.

Queries name their relevant documents by id, or by a label that a payload field holds::

    {"query": "a red car", "relevant": ["5d1c...", "9a0f..."]}
    {"query": "a sneaker", "label": "sneaker", "label_field": "class"}
    {"image": "query.png", "label": "sneaker"}

All modes run the same queries in one pass, query by query in turn, so the figures compare on a
shared, noisy machine (a slow moment hits every mode alike). Uses only the public retriever API.

Example:
    >>> report = evaluate_search(r, [{"query": "a red car", "relevant": [car_id]}], k=10)
    >>> report.modes["hybrid"].recall, report.ratio("recall", "hybrid", "dense")
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, NotBuiltError
from .store.base import normalize_id
from .types import PointId

if TYPE_CHECKING:
    from .retriever import MultimodalRetriever

ALL_MODES = ("hybrid", "generative", "dense")
DEFAULT_LABEL_FIELD = "label"


@dataclass(frozen=True)
class EvalQuery:
    """One query and what counts as a right answer.

    Attributes:
        query: the text query (or ``None`` for an image query).
        image: a query image path (or ``None`` for a text query).
        relevant: ids of the relevant documents, or ``None`` when ``label`` decides.
        label: a hit is relevant when its payload field ``label_field`` equals ``label`` (or, for an
            array field, holds it).
        label_field: the payload field that holds labels.
        modality: only documents of this modality count and are searched (``None``: all).
    """

    query: str | None = None
    image: str | None = None
    relevant: tuple[PointId, ...] | None = None
    label: Any = None
    label_field: str = DEFAULT_LABEL_FIELD
    modality: str | None = None

    @property
    def name(self) -> str:
        """A short name for tables: the query text or image path."""
        return self.query if self.query is not None else f"image:{self.image}"


@dataclass(frozen=True)
class ModeMetrics:
    """The figures of one search mode, averaged over the evaluated queries.

    Attributes:
        precision: mean precision@k (relevant hits in the top k, over k).
        recall: mean recall@k (relevant hits in the top k, over all relevant documents).
        mrr: mean reciprocal rank of the first relevant hit (0 when none is in the top k).
        hit_rate: share of queries with at least one relevant hit in the top k.
        latency_ms_mean, latency_ms_p50, latency_ms_p95: wall time of one ``search`` call,
            including the query's embedding.
        n_queries: queries averaged.
    """

    precision: float
    recall: float
    mrr: float
    hit_rate: float
    latency_ms_mean: float
    latency_ms_p50: float
    latency_ms_p95: float
    n_queries: int


@dataclass(frozen=True)
class EvalReport:
    """What :func:`evaluate_search` measured.

    Attributes:
        k: the cut-off.
        modes: figures per mode, in the order asked.
        n_queries: queries evaluated (those with at least one relevant document).
        skipped: queries left out, with the reason (no relevant document in the index).
        unavailable: modes asked by default that the index cannot serve yet (not built), with why.
        per_query: per mode, one ``{"query", "precision", "recall", "rr", "latency_ms"}`` per query.
    """

    k: int
    modes: dict[str, ModeMetrics]
    n_queries: int
    skipped: tuple[tuple[str, str], ...] = ()
    unavailable: dict[str, str] = field(default_factory=dict)
    per_query: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def ratio(self, metric: str, mode: str, base: str = "dense") -> float | None:
        """``metric`` of ``mode`` over that of ``base`` (``None`` when either is missing or 0)."""
        a, b = self.modes.get(mode), self.modes.get(base)
        if a is None or b is None:
            return None
        den = float(getattr(b, metric))
        return float(getattr(a, metric)) / den if den else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "k": self.k,
            "n_queries": self.n_queries,
            "modes": {m: asdict(v) for m, v in self.modes.items()},
            "skipped": [list(s) for s in self.skipped],
            "unavailable": dict(self.unavailable),
            "per_query": self.per_query,
        }


def parse_queries(
    records: Iterable[EvalQuery | Mapping[str, Any]], *, label_field: str = DEFAULT_LABEL_FIELD, where: str = "queries"
) -> list[EvalQuery]:
    """Turn dicts (``{"query": ..., "relevant": [...]}`` or ``{"query": ..., "label": ...}``) into :class:`EvalQuery`.

    Args:
        records: the dicts; ``image`` may replace ``query``; ``label_field`` and ``modality`` are optional.
        label_field: the payload field for labels when a record does not name one.
        where: names the source in error messages.

    Raises:
        InputError: a record has no query or image, or neither relevant ids nor a label.
    """
    out: list[EvalQuery] = []
    for i, rec in enumerate(records, 1):
        if isinstance(rec, EvalQuery):
            out.append(rec)
            continue
        if not isinstance(rec, Mapping):
            raise InputError(f"Entry {i} of {where} is a {type(rec).__name__}; write one JSON object per query.")
        query, image = rec.get("query"), rec.get("image")
        if (query is None) == (image is None) or not isinstance(query if query is not None else image, str):
            raise InputError(f'Entry {i} of {where} needs exactly one of "query" (text) or "image" (a path), as a string.')
        relevant = rec.get("relevant")
        if relevant is not None:
            if isinstance(relevant, (str, int)):
                relevant = [relevant]
            if not isinstance(relevant, list):
                raise InputError(f'Entry {i} of {where}: "relevant" must be a list of ids, got {type(relevant).__name__}.')
            relevant = tuple(relevant)
        elif "label" not in rec:
            raise InputError(f'Entry {i} of {where} has neither "relevant" ids nor a "label"; give one of them.')
        out.append(
            EvalQuery(
                query=query,
                image=image,
                relevant=relevant,
                label=rec.get("label"),
                label_field=str(rec.get("label_field") or label_field),
                modality=rec.get("modality"),
            )
        )
    return out


def load_queries(file: str | Path, *, label_field: str = DEFAULT_LABEL_FIELD) -> list[EvalQuery]:
    """Read a JSONL file of queries (one object per line; see :func:`parse_queries`).

    Relative ``image`` paths are relative to the file's folder.

    Raises:
        InputError: the file is missing, a line is not JSON, or an entry is malformed.
    """
    path = Path(file).expanduser()
    if not path.is_file():
        raise InputError(f"Query file {str(path)!r} does not exist; write one JSON object per line.")
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"Line {lineno} of {str(path)!r} is not valid JSON ({exc.msg}); write one JSON object per line.") from exc
        if isinstance(rec, dict) and isinstance(rec.get("image"), str) and not Path(rec["image"]).is_absolute():
            rec["image"] = str(path.parent / rec["image"])
        records.append(rec)
    if not records:
        raise InputError(f"Query file {str(path)!r} holds no queries; write one JSON object per line.")
    return parse_queries(records, label_field=label_field, where=repr(str(path)))


def evaluate_search(
    retriever: MultimodalRetriever,
    queries: Sequence[EvalQuery | Mapping[str, Any]],
    *,
    k: int = 10,
    modes: Sequence[str] | None = None,
    modality: str | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
) -> EvalReport:
    """Measure precision@k, recall@k, MRR, hit rate and latency of each search mode.

    Args:
        retriever: the open index.
        queries: :class:`EvalQuery` objects or dicts (see :func:`parse_queries`).
        k: hits per query.
        modes: the modes to compare; by default hybrid, generative and dense, leaving out (and
            listing in ``report.unavailable``) the generative ones when the index is not built.
        modality: search and count only documents of this modality (a query's own ``modality`` wins).
        label_field: the payload field for label queries that do not name one.

    Each mode first runs one untimed query (loading the encoder and decoder), then every query
    runs in every mode in turn.

    Returns:
        An :class:`EvalReport`.

    Raises:
        InputError: ``k < 1``, no queries, an unknown mode, or a malformed query.
        NotBuiltError: a generative mode was asked explicitly and the index is not built.
    """
    from .setops import Q

    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError(f"k={k!r} is not a positive integer; ask for at least one hit.")
    qs = parse_queries(queries, label_field=label_field)
    if not qs:
        raise InputError("No queries to evaluate; give at least one.")
    explicit = modes is not None
    wanted = list(modes) if modes is not None else list(ALL_MODES)
    for m in wanted:
        if m not in ALL_MODES:
            raise InputError(f"Mode {m!r} is not known; use some of {list(ALL_MODES)}.")

    # relevant sets: ids as given, or every document whose payload holds the label
    label_cache: dict[tuple[str, str, str | None], set[PointId]] = {}
    total = retriever.count()
    relevant: list[set[PointId]] = []
    for q in qs:
        mod = q.modality or modality
        if q.relevant is not None:
            relevant.append({_norm(x) for x in q.relevant})
            continue
        key = (q.label_field, json.dumps(q.label, sort_keys=True, default=str), mod)
        if key not in label_cache:
            expr = Q.where({q.label_field: q.label})
            hits = retriever.search(expr, k=max(1, total), modality=mod) if total else []
            label_cache[key] = {h.id for h in hits}
        relevant.append(label_cache[key])

    active = [i for i, rel in enumerate(relevant) if rel]
    skipped = tuple((qs[i].name, "no relevant document in the index") for i in range(len(qs)) if not relevant[i])

    unavailable: dict[str, str] = {}
    usable: list[str] = []
    built = _is_built(retriever)
    for m in wanted:
        if m != "dense" and built is False:
            # hybrid search on an unbuilt index quietly runs dense: measuring it would mislabel dense figures
            why = "the index is not built, so it has no docids or decoder; run build() first"
            if explicit:
                raise NotBuiltError(f"Mode {m!r} cannot be evaluated: {why}.")
            unavailable[m] = why
            continue
        try:
            if active:  # the warm-up, and the check that the mode can run
                _run(retriever, qs[active[0]], k, m, modality)
            usable.append(m)
        except NotBuiltError as exc:
            if explicit:
                raise
            unavailable[m] = str(exc)
    if not usable and not explicit:
        usable = ["dense"]
        unavailable.pop("dense", None)

    per_query: dict[str, list[dict[str, Any]]] = {m: [] for m in usable}
    for i in active:
        q, rel = qs[i], relevant[i]
        for m in usable:
            t0 = time.perf_counter()
            hits = _run(retriever, q, k, m, modality)
            ms = (time.perf_counter() - t0) * 1000.0
            ranks = [r for r, h in enumerate(hits[:k], 1) if h.id in rel]
            per_query[m].append(
                {
                    "query": q.name,
                    "precision": len(ranks) / k,
                    "recall": len(ranks) / len(rel),
                    "rr": 1.0 / ranks[0] if ranks else 0.0,
                    "latency_ms": ms,
                }
            )
    metrics = {m: _summarize(rows) for m, rows in per_query.items()}
    return EvalReport(k=k, modes=metrics, n_queries=len(active), skipped=skipped, unavailable=unavailable, per_query=per_query)


def _is_built(r: Any) -> bool | None:
    """Whether the index has a build (``None`` when the object cannot tell: a stand-in for tests)."""
    index = getattr(r, "index", None)
    return None if index is None else bool(index.is_built)


def _run(r: MultimodalRetriever, q: EvalQuery, k: int, mode: str, modality: str | None) -> list[Any]:
    mod = q.modality or modality
    if q.query is not None:
        return r.search(q.query, k=k, mode=mode, modality=mod)  # type: ignore[arg-type]
    return r.search(image=q.image, k=k, mode=mode, modality=mod)  # type: ignore[arg-type]


def _summarize(rows: list[dict[str, Any]]) -> ModeMetrics:
    n = len(rows)
    if not n:
        nan = math.nan
        return ModeMetrics(nan, nan, nan, nan, nan, nan, nan, 0)
    lat = sorted(r["latency_ms"] for r in rows)
    return ModeMetrics(
        precision=sum(r["precision"] for r in rows) / n,
        recall=sum(r["recall"] for r in rows) / n,
        mrr=sum(r["rr"] for r in rows) / n,
        hit_rate=sum(r["rr"] > 0 for r in rows) / n,
        latency_ms_mean=sum(lat) / n,
        latency_ms_p50=_quantile(lat, 0.5),
        latency_ms_p95=_quantile(lat, 0.95),
        n_queries=n,
    )


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _norm(pid: Any) -> PointId:
    """Ids from JSON: integers (also as digit strings) or UUID strings, in the form hits carry."""
    if isinstance(pid, str) and pid.strip().isdigit():
        pid = int(pid.strip())
    return normalize_id(pid)


evaluate = evaluate_search
"""Alias of :func:`evaluate_search`, the name it had before (``setops`` has an ``evaluate`` too)."""

__all__ = ["ALL_MODES", "EvalQuery", "EvalReport", "ModeMetrics", "evaluate", "evaluate_search", "load_queries", "parse_queries"]
