"""The service's limits and switches: one frozen dataclass, checked when it is made."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class ServiceSettings:
    """Limits and switches of the service.

    Attributes:
        allow_writes: serve ``POST /items`` and ``DELETE /items/{id}`` (they also need ``api_key``).
        api_key: the key write requests must send in the ``X-API-Key`` header.
        feedback: accept ``POST /feedback`` (relevance marks stored through the retriever).
        max_k: the largest ``k`` a request may ask for.
        max_query_chars: the longest text or boolean query accepted.
        max_upload_bytes: the largest uploaded file (an image query or an added image).
        max_request_bytes: the largest request body (all files and fields together).
        max_pixels: the most pixels an uploaded image may have (checked from its header, before decoding).
        max_items: the most files or texts one ``POST /items`` may add.
        thumbnail_px: the longest side of a thumbnail.
        thumbnail_cache: thumbnails kept in memory (least recently used go first).
        browse_samples: sample documents shown per node of ``/browse``.
        browse_limit: the most children ``/browse`` returns per page.
        cors_origins: other web origins allowed to call the API from a browser (e.g. a clip-retrieval
            front end); none by default.
    """

    allow_writes: bool = False
    api_key: str | None = None
    feedback: bool = True
    max_k: int = 100
    max_query_chars: int = 1000
    max_upload_bytes: int = 10 * 2**20
    max_request_bytes: int = 50 * 2**20
    max_pixels: int = 40_000_000
    max_items: int = 256
    thumbnail_px: int = 256
    thumbnail_cache: int = 512
    browse_samples: int = 4
    browse_limit: int = 48
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.allow_writes and not self.api_key:
            raise ConfigError("Writes were allowed without an API key; pass api_key (`mmgr serve --allow-writes --write-key KEY`).")
        for name in ("max_k", "max_query_chars", "max_upload_bytes", "max_request_bytes", "max_pixels", "max_items",
                     "thumbnail_px", "thumbnail_cache", "browse_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServiceSettings.{name}={value!r} is not a positive integer; give one of at least 1.")
        if isinstance(self.browse_samples, bool) or not isinstance(self.browse_samples, int) or not 0 <= self.browse_samples <= 32:
            raise ConfigError(f"ServiceSettings.browse_samples={self.browse_samples!r} is out of range; give 0 to 32.")

    def replace(self, **changes: Any) -> ServiceSettings:
        """A copy with some fields changed (checked again).

        Raises:
            ConfigError: a field is unknown or a value is invalid.
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"ServiceSettings has no field {min(unknown)!r}; use one of its documented fields.")
        return dataclasses.replace(self, **changes) if changes else self
