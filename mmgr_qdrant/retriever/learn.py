"""The learning part of a retriever: query supervision stored with the index (``learn``, ``feedback``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from ..learning import encode_queries, feedback, learn
from ..types import PointId, normalize_id
from .build import Builder
from .state import Index

QueryKind = Literal["text", "image", "vector"]


class Learner:
    """Storing query -> relevant-document pairs; training reads them (``Builder``)."""

    def __init__(self, index: Index, builder: Builder) -> None:
        self.index = index
        self.builder = builder

    def learn(
        self,
        queries: Sequence[Any],
        relevant: Sequence[Sequence[PointId]],
        *,
        grades: Sequence[Sequence[float]] | None = None,
        kind: QueryKind | None = None,
        train_s: float | None = None,
    ) -> int:
        index = self.index
        with index.lock:
            n = learn(index.store, index.encoder, index.config.dim, queries, relevant, grades=grades, kind=kind)
        if train_s is not None:
            self.builder.build(refit=False, time_budget_s=train_s)
        return n

    def feedback(
        self, query: str | None = None, id: PointId | None = None, *, image: Any = None, vector: np.ndarray | None = None,
        relevant: bool = True,
    ) -> None:
        given = [x for x in (query, image, vector) if x is not None]
        if len(given) != 1:
            raise InputError("Give exactly one of query (text), image= or vector= to feedback().")
        if id is None:
            raise InputError("feedback() needs the id of the document the judgement is about.")
        kind: QueryKind = "text" if query is not None else "image" if image is not None else "vector"
        index = self.index
        with index.lock:
            pid = normalize_id(id)
            vec = encode_queries(index.encoder, [given[0]], kind, index.config.dim)[0]
            feedback(index.store, vec, pid, relevant=relevant)
