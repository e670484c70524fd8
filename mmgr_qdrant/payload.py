"""The library's own payload fields (``_mmgr``): one typed accessor for reading and writing them.

User payloads are stored at the top level exactly as given; everything the library keeps about a
point lives under :data:`~mmgr_qdrant.types.RESERVED_KEY` and is read and written only through
:class:`LibraryFields` (the schema table in ``docs/architecture.md`` describes this class)::

    _mmgr.modality  = "image"
    _mmgr.uri       = "/photos/a.jpg"            # images from files
    _mmgr.text      = "a red car"                # text documents
    _mmgr.caption   = "a dog on a beach"         # an image's caption
    _mmgr.links     = [7, "9c1e...-..."]         # linked ids, each kept as its own type
    _mmgr.added     = 1764540000.0               # ingest time
    _mmgr.docids    = {"3": [1, 12, 7, 0]}       # generation -> codes
    _mmgr.prefixes  = ["3/1", "3/1.12", ...]     # generation-tagged prefixes (the filter field)
    _mmgr.video     = "42"                       # a video moment: its video's id, as a keyword
    _mmgr.t         = 12.5                       # a video moment: seconds from the video's start

Fields this module does not know (written by a newer version) are kept as they are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from .errors import InputError
from .types import RESERVED_KEY, PointId, normalize_id, prefix_key

_KNOWN = ("modality", "uri", "text", "caption", "links", "added", "docids", "prefixes", "video", "t")


def tag(generation: int, prefix: Sequence[int]) -> str:
    """The payload keyword of one prefix in one generation: ``3/1.12``."""
    return f"{generation}/{prefix_key(prefix)}"


def link_value(pid: PointId) -> PointId:
    """How a linked id is stored: as itself, so an int id stays an int."""
    return normalize_id(pid)


def read_link(raw: Any) -> PointId:
    """A stored link back as a point id (older indexes stored ``"7"`` for the int id 7)."""
    if isinstance(raw, str) and raw.isdigit():
        return normalize_id(int(raw))
    return normalize_id(raw)


@dataclass(frozen=True)
class LibraryFields:
    """The ``_mmgr`` fields of one point."""

    modality: str = ""
    uri: str | None = None
    text: str | None = None
    caption: str | None = None
    links: tuple[PointId, ...] = ()
    added: float | None = None
    docids: Mapping[str, Sequence[int]] = field(default_factory=dict)
    prefixes: tuple[str, ...] = ()
    video: str | None = None
    t: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, payload: Mapping[str, Any] | None) -> LibraryFields:
        """The fields stored in a whole point payload (missing fields take their defaults)."""
        return cls.from_dict((payload or {}).get(RESERVED_KEY) or {})

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any]) -> LibraryFields:
        return cls(
            modality=str(meta.get("modality", "")),
            uri=meta.get("uri"),
            text=meta.get("text"),
            caption=meta.get("caption"),
            links=tuple(read_link(x) for x in meta.get("links") or ()),
            added=meta.get("added"),
            docids=dict(meta.get("docids") or {}),
            prefixes=tuple(meta.get("prefixes") or ()),
            video=None if meta.get("video") is None else str(meta["video"]),
            t=None if meta.get("t") is None else float(meta["t"]),
            extra={k: v for k, v in meta.items() if k not in _KNOWN},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored under ``_mmgr`` (empty fields left out)."""
        out: dict[str, Any] = dict(self.extra)
        out["modality"] = self.modality
        for key in ("uri", "text", "caption", "added", "video", "t"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.links:
            out["links"] = [link_value(x) for x in self.links]
        if self.docids:
            out["docids"] = {str(g): [int(c) for c in codes] for g, codes in self.docids.items()}
            out["prefixes"] = list(self.prefixes)
        return out

    @property
    def display_text(self) -> str | None:
        """The text a hit shows: a text document's text, or an image's caption."""
        return self.text if self.text is not None else self.caption

    def docid(self, generation: int | None) -> tuple[int, ...]:
        """The docid this point has in ``generation``, or ``()``."""
        return docid_in({"docids": self.docids}, generation)

    def with_docid(self, generation: int, docid: Sequence[int]) -> LibraryFields:
        """These fields with ``docid`` as the docid of ``generation``.

        The previous generation's docid (``generation - 1``) stays beside it, so searches of a
        process that still holds the previous build keep matching while a rebuild switches over.
        """
        codes = [int(c) for c in docid]
        docids: dict[str, Sequence[int]] = {str(generation): codes}
        prefixes, key = [], ""
        for c in codes:  # tag(generation, docid[:i]) for each i, built incrementally (this runs for every added point)
            key = f"{key}.{c}" if key else str(c)
            prefixes.append(f"{generation}/{key}")
        prev = str(generation - 1)
        if prev in self.docids:
            docids[prev] = self.docids[prev]
            prefixes = [p for p in self.prefixes if p.startswith(prev + "/")] + prefixes
        return replace(self, docids=docids, prefixes=tuple(prefixes))

    def with_links(self, links: Iterable[PointId]) -> LibraryFields:
        return replace(self, links=tuple(dict.fromkeys(normalize_id(x) for x in links)))

    def docid_dict(self) -> dict[str, Any]:
        """Only the docid fields, for a partial payload write."""
        return {"docids": {str(g): [int(c) for c in codes] for g, codes in self.docids.items()}, "prefixes": list(self.prefixes)}


def docid_in(meta: Mapping[str, Any], generation: int | None) -> tuple[int, ...]:
    """The docid of ``generation`` in a stored ``_mmgr`` object, or ``()`` (``LibraryFields.docid``)."""
    if generation is None:
        return ()
    docids = meta.get("docids")
    codes = docids.get(str(generation)) if docids else None
    return tuple(int(c) for c in codes) if codes else ()


class HitFields(NamedTuple):
    """What a search hit shows of a stored payload (the ``Hit`` fields of the same names)."""

    user: dict[str, Any]
    modality: str
    uri: str | None
    text: str | None
    links: tuple[PointId, ...]
    t: float | None
    video: str | None
    docid: tuple[int, ...]


def hit_fields(payload: Mapping[str, Any], generation: int | None) -> HitFields:
    """:func:`split` reduced to what a hit shows, read straight from the payload.

    The same values as ``split`` and :class:`LibraryFields` give (tests compare them) at a fraction
    of the cost: search builds one of these per hit, and a full :class:`LibraryFields` took about
    as long as the engine's query for ten hits.
    """
    meta = payload.get(RESERVED_KEY) or {}
    text, links, t, video = meta.get("text"), meta.get("links"), meta.get("t"), meta.get("video")
    return HitFields(
        {k: v for k, v in payload.items() if k != RESERVED_KEY}, str(meta.get("modality", "")), meta.get("uri"),
        text if text is not None else meta.get("caption"), tuple(read_link(x) for x in links) if links else (),
        None if t is None else float(t), None if video is None else str(video), docid_in(meta, generation),
    )


def split(payload: Mapping[str, Any]) -> tuple[dict[str, Any], LibraryFields]:
    """A stored payload as (the user's payload, the library's fields)."""
    user = {k: v for k, v in payload.items() if k != RESERVED_KEY}
    return user, LibraryFields.of(payload)


def join(user: Mapping[str, Any], fields: LibraryFields) -> dict[str, Any]:
    """The payload to store: the user's fields at the top level, the library's under ``_mmgr``."""
    return {**user, RESERVED_KEY: fields.to_dict()}


def check_user_payload(payload: Any, i: int) -> dict[str, Any]:
    """A user payload that Qdrant stores and returns exactly: a JSON object of finite values.

    Raises:
        InputError: not a dict, a reserved or non-string key, NaN or infinity, a value JSON cannot
            hold, or text that is not valid Unicode (a lone surrogate).
    """
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InputError(f"Payload #{i} is a {type(payload).__name__}, not a dict; pass a dict or None.")
    if RESERVED_KEY in payload:
        raise InputError(f"Payload #{i} uses the reserved key {RESERVED_KEY!r}; rename that field.")
    _check_json(payload, f"payload #{i}", depth=0)
    return payload


def check_text(text: str, what: str) -> None:
    """Refuse text that cannot be stored as UTF-8 (a lone surrogate from a bad decode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} is not valid Unicode (it has a lone surrogate); decode the source text correctly.") from None


_MAX_DEPTH = 64


def _check_json(value: Any, where: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise InputError(f"The {where} is nested more than {_MAX_DEPTH} levels deep; flatten it.")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"The {where} has the key {key!r} of type {type(key).__name__}; payload keys must be strings.")
            check_text(key, f"A key of the {where}")
            _check_json(item, f"{where} field {key!r}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_json(item, where, depth + 1)
    elif isinstance(value, str):
        check_text(value, f"The {where}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"The {where} is {value!r}; JSON payloads hold finite numbers only.")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**64:
            raise InputError(f"The {where} is an integer beyond 64 bits; store it as a string.")
    elif value is not None and not isinstance(value, bool):
        raise InputError(f"The {where} is a {type(value).__name__}, which JSON cannot hold; use str, number, bool, list or dict.")
