"""Module-level helpers shared by the retriever's parts: store factory, argument checks, filters, hits."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, InputError
from ..filters import Filter, HasId, Match
from ..generative import docid_of
from ..store import ClientStore, EdgeStore, Store
from ..store.base import Record, ScoredRecord
from ..types import F_MODALITY, MODALITY_CODES, RESERVED_KEY, Hit

# The package's name ("mmgr_qdrant.retriever"), the logger name the single module had.
logger = logging.getLogger(__package__)

SearchMode = Literal["hybrid", "generative", "dense"]
OnError = Literal["raise", "skip"]
CONFIG_BLOB = "config.json"
DEFAULT_PATH = "./mmgr_data"


def _make_store(name: str, *, path: Any, client: Any, url: str | None, api_key: str | None) -> Store:
    chosen = sum(x is not None for x in (path, client, url))
    if chosen > 1:
        raise ConfigError("Give only one of path= (embedded), client= or url= (Qdrant server).")
    if client is not None:
        return ClientStore(client, name)
    if url is not None:
        try:
            from qdrant_client import QdrantClient
        except ImportError as exc:
            from ..errors import missing_dependency

            raise missing_dependency("qdrant-client", "client") from exc
        return ClientStore(QdrantClient(url=url, api_key=api_key), name, owns_client=True)
    return EdgeStore(path if path is not None else DEFAULT_PATH, name)



def _validate_scheme_name(name: str) -> None:
    try:
        from ..docids import available_schemes
    except ImportError:  # pragma: no cover - docids always ship
        return
    if name not in available_schemes():
        raise ConfigError(f"Docid scheme {name!r} is not known; use one of {available_schemes()}.")


def _check_k(k: Any) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InputError(f"k={k!r} is not a positive integer; ask for at least one hit.")


def _modality_code(modality: str | None) -> int | None:
    return None if modality is None else MODALITY_CODES[modality]


# A filter no point passes (an empty id set), for a query whose beam found no prefix.
_MATCH_NOTHING = Filter(must=(HasId(()),))


def _as_list(items: Any, what: str) -> list[Any]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise InputError(f"{what} must be a list; wrap a single item in a list.")
    return list(items)


def _check_payload(payload: Any, i: int) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InputError(f"Payload #{i} is a {type(payload).__name__}, not a dict; pass a dict or None.")
    if RESERVED_KEY in payload:
        raise InputError(f"Payload #{i} uses the reserved key {RESERVED_KEY!r}; rename that field.")
    return payload


def _modality_filter(modality: str | None) -> Filter | None:
    if modality is None:
        return None
    if modality not in MODALITY_CODES:
        raise InputError(f"Modality {modality!r} is not known; use one of {sorted(MODALITY_CODES)} or None.")
    return Filter(must=(Match(F_MODALITY, (modality,)),))


def _where_filter(where: dict[str, Any] | None) -> Filter | None:
    if not where:
        return None
    if not isinstance(where, dict):
        raise InputError(f"where= must be a dict of payload conditions, got {type(where).__name__}.")
    conds = []
    for key, value in where.items():
        if key.startswith(RESERVED_KEY):
            raise InputError(f"where= key {key!r} is reserved; filter on your own payload fields.")
        values = tuple(value) if isinstance(value, (list, tuple, set)) else (value,)
        for v in values:
            if not isinstance(v, (str, int, bool)):
                raise InputError(f"where= value {v!r} for {key!r} is a {type(v).__name__}; use str, int or bool values.")
        conds.append(Match(key, values))
    return Filter(must=tuple(conds))


def _hit(record: Record | ScoredRecord, score: float, explain: dict[str, Any] | None = None, generation: int | None = None) -> Hit:
    payload = dict(record.payload)
    meta = payload.pop(RESERVED_KEY, {}) or {}
    return Hit(
        id=record.id,
        score=float(score),
        docid=docid_of({RESERVED_KEY: meta}, generation),
        modality=str(meta.get("modality", "")),
        payload=payload,
        uri=meta.get("uri"),
        text=meta.get("text", meta.get("caption")),
        explain=explain,
        t=meta.get("t"),
        video=_video_id(meta.get("video")),
    )


def _video_id(key: Any) -> Any:
    from ..video import parse_video_key

    return parse_video_key(key)
