"""``MultimodalRetriever``: the one public entry class (split into ingest, search, build and admin parts)."""

from ..filters import HasId
from .core import MultimodalRetriever

__all__ = ["HasId", "MultimodalRetriever"]
