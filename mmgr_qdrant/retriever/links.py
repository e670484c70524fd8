"""The links part of a retriever: the cross-modal map between documents (an image and its caption)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError, NotFoundError
from ..payload import LibraryFields, link_value
from ..store.base import Record, normalize_id
from ..types import RESERVED_KEY, Hit, PointId
from ._common import _check_k, _hit, _modality_filter
from .state import Index

# The links to write after a delete: remaining document id -> its links without the deleted ones.
UnlinkPlan = dict[PointId, tuple[PointId, ...]]


class Links:
    """Linking documents both ways, and reading the links back."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def link_many(self, pairs: Sequence[tuple[PointId, PointId]]) -> None:
        norm = [(normalize_id(a), normalize_id(b)) for a, b in pairs]
        for a, b in norm:
            if a == b:
                raise InputError(f"Cannot link document {a!r} to itself; give two different ids.")
        store = self.index.store
        with self.index.lock:
            wanted = list(dict.fromkeys(x for p in norm for x in p))
            records = {r.id: r for r in store.retrieve(wanted)}
            missing = [i for i in wanted if i not in records]
            if missing:
                raise NotFoundError(f"Ids {missing[:5]} are not in collection {self.index.config.collection!r}; nothing was linked.")
            links = {i: list(LibraryFields.of(records[i].payload).links) for i in wanted}
            for a, b in norm:
                for x, y in ((a, b), (b, a)):
                    if y not in links[x]:
                        links[x].append(y)
            self._write({i: tuple(links[i]) for i in wanted})

    def related(self, id: PointId, *, modality: str | None = None, k: int = 10) -> list[Hit]:
        _check_k(k)
        pid = normalize_id(id)
        store = self.index.store
        found = store.retrieve([pid], with_vectors=True)
        if not found:
            raise NotFoundError(f"Id {pid!r} is not in collection {self.index.config.collection!r}; check it with get().")
        rec = found[0]
        g = self.index.generation
        hits = []
        for r in store.retrieve(list(LibraryFields.of(rec.payload).links)):
            if modality is None or LibraryFields.of(r.payload).modality == modality:
                hits.append(_hit(r, 1.0, {"relation": "linked"}, g))
        seen = {pid, *(h.id for h in hits)}
        if len(hits) < k:
            assert rec.vector is not None  # retrieved with vectors
            for s in store.query(rec.vector, k + len(seen), _modality_filter(modality)):
                if s.id not in seen and len(hits) < k:
                    seen.add(s.id)
                    hits.append(_hit(s, s.score, {"relation": "nearest"}, g))
        return hits[:k]

    # -- deletes -----------------------------------------------------------------------------------
    def unlink_plan(self, records: dict[PointId, Record]) -> UnlinkPlan:
        """The link lists the remaining documents will have once ``records`` are deleted (read before the delete)."""
        gone = set(records)
        others = {x for r in records.values() for x in LibraryFields.of(r.payload).links} - gone
        if not others:
            return {}
        remaining = self.index.store.retrieve(list(others))
        return {r.id: tuple(x for x in LibraryFields.of(r.payload).links if x not in gone) for r in remaining}

    def apply(self, plan: UnlinkPlan) -> None:
        if plan:
            self._write(plan)

    def _write(self, links: dict[PointId, tuple[PointId, ...]]) -> None:
        ids = list(links)
        self.index.store.set_payload(ids, RESERVED_KEY, [{"links": [link_value(x) for x in links[i]]} for i in ids])
