"""QdrantClient backend: a Qdrant server, cluster or cloud, or the client's local mode.

The index's artifacts are stored in Qdrant itself, in a companion collection
``<collection>__mmgr`` (one-dimensional dummy vectors, payload chunks), so a second machine that
knows only the server URL can open the index.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from ..config import EngineConfig
from ..errors import CollectionNotFoundError, ConfigError, StoreError, StoreUnavailableError, missing_dependency
from ..filters import Condition, Filter, HasId, Match, Range
from ..types import F_LINKS, F_MODALITY, F_PREFIXES, F_VIDEO, PointId
from .base import QUERY_PAYLOAD_EXCLUDES, IndexInfo, IndexTrigger, Record, ScoredRecord, to_record, to_scored
from .edge import check_collection_name

logger = logging.getLogger(__name__)

META_SUFFIX = "__mmgr"
_CHUNK = 512 * 1024  # bytes of a blob per meta point; keeps requests well under server limits
_NS = uuid.UUID("6f1d7d0e-3b9e-4f6c-9a53-0c1a5f0b7e21")
T = TypeVar("T")


def _models() -> Any:
    try:
        from qdrant_client import models
    except ImportError as exc:
        raise missing_dependency("qdrant-client", None) from exc
    return models


def is_local_client(client: Any) -> bool:
    """True for ``QdrantClient(":memory:")`` or ``QdrantClient(path=...)``: no server behind it."""
    inner = getattr(client, "_client", None)
    return type(inner).__name__ == "QdrantLocal"


class ClientStore:
    """A collection reached through ``qdrant_client.QdrantClient``.

    Args:
        client: an open ``QdrantClient`` (the caller keeps ownership unless ``owns_client``).
        collection: the collection's name.
        retries: attempts for a call that fails with a transient network error.
        backoff: seconds before the first retry; doubled each time.
        owns_client: close the client in :meth:`close`.
    """

    def __init__(self, client: Any, collection: str, *, retries: int = 3, backoff: float = 0.5, owns_client: bool = False) -> None:
        self.client = client
        self.collection = check_collection_name(collection)
        self.meta_collection = collection + META_SUFFIX
        self.retries = retries
        self.backoff = backoff
        self.owns_client = owns_client
        self.local = is_local_client(client)
        # Local mode keeps numpy arrays that a concurrent write resizes under a reader: serialize
        # its calls. A server client is thread-safe and runs calls concurrently.
        self._serial = threading.RLock() if self.local else contextlib.nullcontext()
        self.engine = EngineConfig()
        self._params: tuple[Any, Any] | None = None  # (unfiltered, filtered) SearchParams, built once
        self._index_trigger = IndexTrigger()  # when ensure_index optimizes

    # -- lifecycle -------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self._call(lambda: self.client.collection_exists(self.collection)))

    def create(self, dim: int, engine: EngineConfig | None = None) -> None:
        m = _models()
        if self.exists():
            raise ConfigError(f"Collection {self.collection!r} already exists on the Qdrant server; open it instead, or drop it first.")
        if engine is not None:
            self.configure(engine)
        eng = self.engine
        extra: dict[str, Any] = {}
        if not self.local:  # local mode has no index and ignores (and warns about) these settings
            extra["hnsw_config"] = m.HnswConfigDiff(
                m=eng.hnsw_m, ef_construct=eng.hnsw_ef_construct, full_scan_threshold=eng.full_scan_threshold_kb
            )
            # a server indexes in the background; 0 turns that off
            extra["optimizers_config"] = m.OptimizersConfigDiff(indexing_threshold=eng.indexing_threshold_kb if eng.hnsw else 0)
            if eng.quantization == "int8":
                extra["quantization_config"] = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=0.99))
        vectors = m.VectorParams(size=int(dim), distance=m.Distance.COSINE)
        self._call(functools.partial(self.client.create_collection, self.collection, vectors_config=vectors, **extra))
        if not self.local:  # local mode ignores payload indexes (and warns); a server needs them before ingest
            for field in (F_PREFIXES, F_MODALITY, F_LINKS, F_VIDEO):
                index = functools.partial(self.client.create_payload_index, self.collection, field, m.PayloadSchemaType.KEYWORD, wait=True)
                self._call(index)
        self._ensure_meta()

    def _ensure_meta(self) -> None:
        m = _models()
        if not self._call(lambda: self.client.collection_exists(self.meta_collection)):
            self._call(lambda: self.client.create_collection(self.meta_collection, vectors_config=m.VectorParams(size=1, distance=m.Distance.DOT)))
            if not self.local:
                for field in ("key", "blob", "version"):
                    index = functools.partial(self.client.create_payload_index, self.meta_collection, field, m.PayloadSchemaType.KEYWORD, wait=True)
                    self._call(index)

    # -- the engine's index ------------------------------------------------------------------
    def configure(self, engine: EngineConfig) -> None:
        """Use ``engine``'s search settings (``hnsw_ef``, exact, ACORN, rescoring) from now on."""
        self.engine = engine
        self._params = None

    def _search_params(self, filtered: bool) -> Any:
        if self.local:  # local mode scores exactly and warns about search params
            return None
        params = self._params
        if params is None:
            m = _models()
            eng = self.engine
            quant = m.QuantizationSearchParams(rescore=eng.rescore, oversampling=eng.oversampling) if eng.quantization else None
            plain = m.SearchParams(hnsw_ef=eng.hnsw_ef, exact=eng.exact, quantization=quant)
            acorn = m.AcornSearchParams(enable=True, max_selectivity=eng.acorn_max_selectivity) if eng.acorn else None
            params = self._params = (plain, m.SearchParams(hnsw_ef=eng.hnsw_ef, exact=eng.exact, quantization=quant, acorn=acorn))
        return params[1] if filtered else params[0]

    def _query_payload(self) -> Any:
        """Query hits' payloads without the prefix tags (``QUERY_PAYLOAD_EXCLUDES``)."""
        return _models().PayloadSelectorExclude(exclude=list(QUERY_PAYLOAD_EXCLUDES))

    def optimize(self) -> bool:
        """Ask the server to index now (it builds HNSW in the background); local mode has no index.

        Returns:
            True when the server was asked to index, False in local mode or with HNSW off.
        """
        if self.local or not self.engine.hnsw:
            return False
        m = _models()
        eng = self.engine
        self._call(
            functools.partial(
                self.client.update_collection, self.collection,
                hnsw_config=m.HnswConfigDiff(m=eng.hnsw_m, ef_construct=eng.hnsw_ef_construct, full_scan_threshold=eng.full_scan_threshold_kb),
                optimizers_config=m.OptimizersConfigDiff(indexing_threshold=eng.indexing_threshold_kb),
            )
        )
        return True

    def ensure_index(self, threshold: int | None = None) -> bool:
        """:meth:`optimize` when at least ``threshold`` (default ``engine.index_threshold``) points are unindexed."""
        if self.local or not self.engine.hnsw:
            return False
        return self._index_trigger.ensure(threshold, self.engine.index_threshold, self.index_info, self.optimize)

    def index_info(self) -> IndexInfo:
        """Points, HNSW-indexed vectors and segments, as the server reports them (local mode: none indexed)."""
        info = self._call(lambda: self.client.get_collection(self.collection))
        points = int(info.points_count or 0)
        return IndexInfo(points=points, indexed_vectors=int(info.indexed_vectors_count or 0), segments=int(info.segments_count or 0))

    def connect(self) -> None:
        """Fail now if the server is unreachable or the collection is missing."""
        if not self.exists():
            raise CollectionNotFoundError(f"Collection {self.collection!r} does not exist on the Qdrant server; create it with MultimodalRetriever.create().")

    def flush(self) -> None:
        """Writes are sent with ``wait=True``; nothing is buffered here."""

    def close(self) -> None:
        if self.owns_client:
            self.client.close()

    def drop(self) -> None:
        for name in (self.collection, self.meta_collection):
            if self._call(functools.partial(self.client.collection_exists, name)):
                self._call(functools.partial(self.client.delete_collection, name))

    # -- points -----------------------------------------------------------------------------
    def upsert(self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        m = _models()
        vecs = np.asarray(vectors, dtype=np.float32)
        points = [m.PointStruct(id=pid, vector=vecs[i].tolist(), payload=payloads[i]) for i, pid in enumerate(ids)]
        self._call(lambda: self.client.upsert(self.collection, points=points, wait=True))

    def set_payload(self, ids: Sequence[PointId], key: str, values: Sequence[dict[str, Any]]) -> None:
        m = _models()
        ops = [m.SetPayloadOperation(set_payload=m.SetPayload(payload=v, points=[pid], key=key)) for pid, v in zip(ids, values)]
        if ops:
            self._call(lambda: self.client.batch_update_points(self.collection, ops, wait=True))

    def delete(self, ids: Sequence[PointId]) -> None:
        m = _models()
        if ids:
            self._call(lambda: self.client.delete(self.collection, points_selector=m.PointIdsList(points=list(ids)), wait=True))

    def retrieve(self, ids: Sequence[PointId], with_vectors: bool = False) -> list[Record]:
        if not ids:
            return []
        rows = self._call(lambda: self.client.retrieve(self.collection, ids=list(ids), with_payload=True, with_vectors=with_vectors))
        return [to_record(r, with_vectors) for r in rows]

    def scroll(
        self, filter: Filter | None = None, batch_size: int = 1024, with_vectors: bool = False, fields: Sequence[str] | None = None
    ) -> Iterator[list[Record]]:
        offset: Any = None
        flt = to_client_filter(filter)
        payload: bool | list[str] = list(fields) if fields is not None else True
        while True:
            rows, offset = self._call(
                functools.partial(
                    self.client.scroll,
                    self.collection, scroll_filter=flt, limit=batch_size, offset=offset, with_payload=payload, with_vectors=with_vectors,
                )
            )
            if rows:
                yield [to_record(r, with_vectors) for r in rows]
            if offset is None or not rows:
                return

    def count(self, filter: Filter | None = None) -> int:
        res = self._call(lambda: self.client.count(self.collection, count_filter=to_client_filter(filter), exact=True))
        return int(res.count)

    def query(
        self, vector: np.ndarray, k: int, filter: Filter | None = None, with_vectors: bool = False, *, acorn: bool = True
    ) -> list[ScoredRecord]:
        vec = np.asarray(vector, dtype=np.float32).ravel().tolist()
        res = self._call(
            lambda: self.client.query_points(
                self.collection, query=vec, limit=int(k), query_filter=to_client_filter(filter), with_payload=self._query_payload(), with_vectors=with_vectors,
                search_params=self._search_params(filter is not None and not filter.is_empty() and acorn),
            )
        )
        return [to_scored(p, with_vectors) for p in res.points]

    def query_batch(
        self, vectors: np.ndarray, k: int, filters: Sequence[Filter | None], *, acorn: bool = True
    ) -> list[list[ScoredRecord]]:
        m = _models()
        vecs = np.asarray(vectors, dtype=np.float32)
        reqs = [
            m.QueryRequest(
                query=vecs[i].tolist(), limit=int(k), filter=to_client_filter(f), with_payload=self._query_payload(),
                params=self._search_params(f is not None and not f.is_empty() and acorn),
            )
            for i, f in enumerate(filters)
        ]
        res = self._call(lambda: self.client.query_batch_points(self.collection, requests=reqs))
        return [[to_scored(p, False) for p in r.points] for r in res]

    # -- blobs ------------------------------------------------------------------------------
    # A blob is a pointer point (``{"key", "version", "n"}``, id derived from the key) and chunk
    # points (``{"blob", "version", "chunk", "n", "data"}``) under a version unique to the writer.
    # A write stores its chunks first, then switches the pointer (one point, one atomic upsert),
    # then deletes the chunks of the version it replaced: a failure at any step leaves the old
    # value readable, and two writers of one key never delete each other's chunks before a switch.
    # Blobs written before pointers existed (chunks carrying ``key``) are still read.
    def put_blob(self, key: str, data: bytes) -> None:
        m = _models()
        self._ensure_meta()
        version = uuid.uuid4().hex
        chunks = [data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""]
        points = [
            m.PointStruct(
                id=str(uuid.uuid5(_NS, f"{key}/{version}/{i}")),
                vector=[0.0],
                payload={"blob": key, "version": version, "chunk": i, "n": len(chunks), "data": base64.b64encode(c).decode("ascii")},
            )
            for i, c in enumerate(chunks)
        ]
        previous = self._pointer(key)
        try:
            for start in range(0, len(points), 8):
                self._call(functools.partial(self.client.upsert, self.meta_collection, points=points[start : start + 8], wait=True))
            pointer = m.PointStruct(id=_pointer_id(key), vector=[0.0], payload={"key": key, "version": version, "n": len(chunks)})
            self._call(functools.partial(self.client.upsert, self.meta_collection, points=[pointer], wait=True))  # the switch
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the old value is intact either way
                self._delete_chunks(key, version)
            raise
        try:
            if previous is not None:
                self._delete_chunks(key, str(previous["version"]))
            else:
                self._delete_legacy(key)
        except StoreError as exc:  # the new value is in place; leftovers only cost space
            logger.warning("could not remove the replaced chunks of blob %r (%s)", key, exc)

    def get_blob(self, key: str) -> bytes | None:
        if not self._call(lambda: self.client.collection_exists(self.meta_collection)):
            return None
        for _ in range(3):  # a writer may switch and delete the chunks under a reader: read again
            pointer = self._pointer(key)
            if pointer is None:
                return self._get_legacy(key)
            parts = self._chunks(self._blob_filter(key, str(pointer["version"])))
            n = int(pointer["n"])
            if sorted(parts) == list(range(n)):
                return b"".join(base64.b64decode(parts[i][1]) for i in range(n))
        return None

    def delete_blob(self, key: str) -> None:
        if not self._call(lambda: self.client.collection_exists(self.meta_collection)):
            return
        m = _models()
        self._call(lambda: self.client.delete(self.meta_collection, points_selector=m.PointIdsList(points=[_pointer_id(key)]), wait=True))
        self._delete_chunks(key, None)
        self._delete_legacy(key)

    def list_blobs(self) -> list[str]:
        if not self._call(lambda: self.client.collection_exists(self.meta_collection)):
            return []
        keys: set[str] = set()
        offset: Any = None
        while True:
            rows, offset = self._call(
                functools.partial(self.client.scroll, self.meta_collection, limit=256, offset=offset, with_payload=["key"])
            )
            keys.update(r.payload["key"] for r in rows if r.payload and "key" in r.payload)
            if offset is None or not rows:
                return sorted(keys)

    def _pointer(self, key: str) -> dict[str, Any] | None:
        rows = self._call(lambda: self.client.retrieve(self.meta_collection, ids=[_pointer_id(key)], with_payload=True))
        return dict(rows[0].payload) if rows and rows[0].payload and "version" in rows[0].payload else None

    def _blob_filter(self, key: str, version: str | None) -> Any:
        m = _models()
        must = [m.FieldCondition(key="blob", match=m.MatchValue(value=key))]
        if version is not None:
            must.append(m.FieldCondition(key="version", match=m.MatchValue(value=version)))
        return m.Filter(must=must)

    def _chunks(self, flt: Any) -> dict[int, tuple[int, str]]:
        parts: dict[int, tuple[int, str]] = {}
        offset: Any = None
        while True:
            rows, offset = self._call(
                functools.partial(self.client.scroll, self.meta_collection, scroll_filter=flt, limit=64, offset=offset, with_payload=True)
            )
            for r in rows:
                parts[int(r.payload["chunk"])] = (int(r.payload["n"]), r.payload["data"])
            if offset is None or not rows:
                return parts

    def _delete_chunks(self, key: str, version: str | None) -> None:
        m = _models()
        flt = self._blob_filter(key, version)
        self._call(lambda: self.client.delete(self.meta_collection, points_selector=m.FilterSelector(filter=flt), wait=True))

    def _legacy_filter(self, key: str) -> Any:
        m = _models()
        return m.Filter(must=[m.FieldCondition(key="key", match=m.MatchValue(value=key)), m.FieldCondition(key="chunk", range=m.Range(gte=0))])

    def _get_legacy(self, key: str) -> bytes | None:
        parts = self._chunks(self._legacy_filter(key))
        if not parts:
            return None
        n = next(iter(parts.values()))[0]
        if sorted(parts) != list(range(n)):
            return None  # a half-written blob is treated as absent; checksums upstream catch the rest
        return b"".join(base64.b64decode(parts[i][1]) for i in range(n))

    def _delete_legacy(self, key: str) -> None:
        m = _models()
        flt = self._legacy_filter(key)
        self._call(lambda: self.client.delete(self.meta_collection, points_selector=m.FilterSelector(filter=flt), wait=True))

    # -- errors -----------------------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                with self._serial:
                    return fn()
            except Exception as exc:
                kind = classify(exc)
                if kind == "transient" and attempt < self.retries:
                    logger.warning("Qdrant call failed (%s); retrying in %.1fs", exc, delay)
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise self._translate(exc, kind) from exc
        raise AssertionError("unreachable")

    def _translate(self, exc: Exception, kind: str) -> Exception:
        msg = str(exc).strip() or type(exc).__name__
        if kind == "transient":
            return StoreUnavailableError(
                f"The Qdrant server is unreachable after {self.retries + 1} attempts ({msg}); check the URL, API key and that the server is running."
            )
        if kind == "not_found":
            return CollectionNotFoundError(f"Collection {self.collection!r} does not exist on the Qdrant server; create it with MultimodalRetriever.create().")
        if kind == "dimension":
            from ..errors import DimensionMismatchError

            return DimensionMismatchError(f"Qdrant refused a vector ({msg}); embed with the collection's encoder.")
        return StoreError(f"Qdrant failed on collection {self.collection!r} ({msg}).")


def _pointer_id(key: str) -> str:
    return str(uuid.uuid5(_NS, f"pointer/{key}"))


def classify(exc: Exception) -> str:
    """Sort a client exception into ``transient``, ``not_found``, ``dimension`` or ``other``."""
    name = type(exc).__name__
    msg = str(exc).lower()
    if name in {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "ResponseHandlingException", "ConnectionError", "TimeoutException"}:
        return "transient"
    status = getattr(exc, "status_code", None)
    if status in (502, 503, 504, 429):
        return "transient"
    if "dimension" in msg:
        return "dimension"
    if status == 404 or "not found" in msg:
        return "not_found"
    if "grpc" in name.lower() and "unavailable" in msg:
        return "transient"
    return "other"


def to_client_filter(flt: Filter | None) -> Any:
    """Translate the neutral filter model into ``qdrant_client.models`` types."""
    if flt is None or flt.is_empty():
        return None
    m = _models()

    def cond(c: Condition) -> Any:
        if isinstance(c, Filter):
            return m.Filter(must=[cond(x) for x in c.must] or None, should=[cond(x) for x in c.should] or None,
                            must_not=[cond(x) for x in c.must_not] or None)
        if isinstance(c, Match):
            if len(c.values) == 1:
                return m.FieldCondition(key=c.key, match=m.MatchValue(value=c.values[0]))
            return m.FieldCondition(key=c.key, match=m.MatchAny(any=list(c.values)))
        if isinstance(c, Range):
            return m.FieldCondition(key=c.key, range=m.Range(gt=c.gt, gte=c.gte, lt=c.lt, lte=c.lte))
        if isinstance(c, HasId):
            return m.HasIdCondition(has_id=list(c.ids))
        raise TypeError(f"unknown condition {c!r}")

    return cond(flt)


def list_client_collections(client: Any) -> list[str]:
    """Collections on the server that hold an mmgr index (they have a companion meta collection)."""
    names = {c.name for c in client.get_collections().collections}
    return sorted(n[: -len(META_SUFFIX)] for n in names if n.endswith(META_SUFFIX) and n[: -len(META_SUFFIX)] in names)
