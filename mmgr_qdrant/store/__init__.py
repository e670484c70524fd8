"""Qdrant access: one interface, two backends (Qdrant Edge embedded, QdrantClient)."""

from .base import Record, ScoredRecord, Store
from .client import ClientStore, list_client_collections
from .edge import EdgeStore, list_edge_collections

__all__ = ["ClientStore", "EdgeStore", "Record", "ScoredRecord", "Store", "list_client_collections", "list_edge_collections"]
