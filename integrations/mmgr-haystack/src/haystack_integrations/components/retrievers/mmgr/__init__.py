"""Haystack integration of mmgr-qdrant: multimodal generative retrieval over Qdrant.

``MMGRRetriever`` is a Haystack 2.x component (``run`` and ``run_async``) returning ``Document``s
for text and image hits alike.
"""

from haystack_integrations.components.retrievers.mmgr.retriever import MMGRRetriever

__version__ = "0.1.0"
__all__ = ["MMGRRetriever", "__version__"]
