"""mmgr-qdrant: multimodal generative retrieval for Qdrant.

Images and texts get CLIP-style embeddings and hierarchical semantic docids, both stored in Qdrant;
a small decoder turns a query into likely docid prefixes, Qdrant filters to them and ranks by
embedding similarity, and prefix sets compose with AND / OR / NOT.
"""

from ._version import __version__
from .config import IndexConfig
from .errors import (
    ArtifactError,
    CollectionNotFoundError,
    ConfigError,
    DimensionMismatchError,
    EncoderError,
    InputError,
    MissingDependencyError,
    MMGRError,
    NotBuiltError,
    NotFoundError,
    QuerySyntaxError,
    StoreError,
    StoreUnavailableError,
)
from .retriever import MultimodalRetriever
from .setops import Q
from .types import AddResult, Hit, Skipped

__all__ = [
    "AddResult",
    "ArtifactError",
    "CollectionNotFoundError",
    "ConfigError",
    "DimensionMismatchError",
    "EncoderError",
    "Hit",
    "IndexConfig",
    "InputError",
    "MMGRError",
    "MissingDependencyError",
    "MultimodalRetriever",
    "NotBuiltError",
    "NotFoundError",
    "Q",
    "QuerySyntaxError",
    "Skipped",
    "StoreError",
    "StoreUnavailableError",
    "__version__",
]
