"""Value objects shared by every part: hits, add results, modalities and the payload schema."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import InputError

PointId = int | str
"""A Qdrant point id: an unsigned integer or a UUID string."""

U64_MAX = 2**64 - 1


def normalize_id(raw: Any) -> PointId:
    """A point id as an int or a canonical UUID string (backends return int, str or ``uuid.UUID``).

    Raises:
        InputError: a bool, a negative or over-64-bit int, or a string that is not a UUID.
    """
    if isinstance(raw, bool):
        raise InputError(f"Point id {raw!r} is a bool; use an unsigned int or a UUID string.")
    if isinstance(raw, (int, np.integer)):
        value = int(raw)
        if not 0 <= value <= U64_MAX:
            raise InputError(f"Point id {value} is out of range; Qdrant ids are unsigned 64-bit ints or UUID strings.")
        return value
    if isinstance(raw, uuid.UUID):
        return str(raw)
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise InputError(
                f"Point id {raw!r} is neither an unsigned int nor a UUID string; "
                "use one of those, or leave ids out to derive them from the content."
            ) from None
    raise InputError(f"Point id {raw!r} has type {type(raw).__name__}; use an unsigned int or a UUID string.")

Modality = Literal["image", "text", "video"]

MODALITY_CODES: dict[str, int] = {"text": 0, "image": 1, "video": 2}
"""The first docid code of every document is its modality (GENIUS)."""
CODE_MODALITIES: dict[int, str] = {v: k for k, v in MODALITY_CODES.items()}

RESERVED_KEY = "_mmgr"
"""The one payload key that holds the library's own fields; user payloads may not use it."""

# Fields under RESERVED_KEY. Dotted paths are what filters use.
F_MODALITY = f"{RESERVED_KEY}.modality"
F_PREFIXES = f"{RESERVED_KEY}.prefixes"
F_LINKS = f"{RESERVED_KEY}.links"
F_VIDEO = f"{RESERVED_KEY}.video"
F_DOCID = f"{RESERVED_KEY}.docid"
F_BATCH = f"{RESERVED_KEY}.batch"


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        id: the point id.
        score: the final score (higher is better); its meaning depends on the search mode.
        docid: the document's semantic docid, or ``()`` before the index is built.
        modality: ``"image"``, ``"text"`` or ``"video"`` (a video moment: one kept frame).
        payload: the user payload exactly as it was given.
        uri: the image or video file the document came from, when it came from a file.
        text: the text of a text document, or an image's (or video's) caption.
        explain: per-stage figures when ``explain=True`` was asked (beam and vector scores).
        links: ids of the documents linked to this one (an image's caption document, say).
        collapsed: with ``collapse_links=True``, the ids of linked documents that also matched and
            were folded into this hit (it is the better-scoring one of them).
        t: a video moment's timestamp in seconds from the start of its video, else ``None``.
        video: a video moment's video id, else ``None``.
        moments: with ``search(..., group_by="video")``, a video's best moments (moment hits,
            best first); the hit's own ``id`` is then the video id. Empty otherwise.
    """

    id: PointId
    score: float
    docid: tuple[int, ...]
    modality: str
    payload: dict[str, Any] = field(default_factory=dict)
    uri: str | None = None
    text: str | None = None
    explain: dict[str, Any] | None = None
    links: tuple[PointId, ...] = ()
    collapsed: tuple[PointId, ...] = ()
    t: float | None = None
    video: PointId | None = None
    moments: tuple[Hit, ...] = ()


@dataclass(frozen=True)
class BuildReport:
    """What ``build()`` did: documents, the new generation, docid statistics, training figures, times."""

    n_docs: int
    generation: int
    docid_stats: dict[str, Any]
    train: dict[str, Any]
    fit_s: float
    train_s: float
    total_s: float


@dataclass(frozen=True)
class Skipped:
    """An item of a batch that was not stored, with the reason."""

    index: int
    item: str
    reason: str


class AddResult(list):  # type: ignore[type-arg]
    """The ids stored by an ``add_*`` call, in input order, plus the items skipped.

    It is a plain ``list`` of ids, so ``ids = r.add_texts([...])`` reads naturally;
    ``result.skipped`` lists what ``on_error="skip"`` left out and why.
    """

    def __init__(self, ids: list[PointId] | None = None, skipped: list[Skipped] | None = None) -> None:
        super().__init__(ids or [])
        self.skipped: list[Skipped] = list(skipped or [])


def prefix_keys(docid: tuple[int, ...] | list[int]) -> list[str]:
    """All prefixes of a docid as keyword strings: ``(1, 12, 7)`` -> ``["1", "1.12", "1.12.7"]``."""
    out: list[str] = []
    for i in range(1, len(docid) + 1):
        out.append(".".join(str(int(c)) for c in docid[:i]))
    return out


def prefix_key(prefix: Sequence[int]) -> str:
    """One prefix as its keyword string."""
    return ".".join(str(int(c)) for c in prefix)
