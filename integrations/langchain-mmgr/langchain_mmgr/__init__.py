"""LangChain integration of mmgr-qdrant: multimodal generative retrieval over Qdrant.

``MMGRRetriever`` is a LangChain ``BaseRetriever`` over an mmgr-qdrant index; it returns
``Document``s for text and image hits alike.
"""

from langchain_mmgr.retrievers import SEARCH_KEYS, MMGRRetriever

__version__ = "0.1.0"
__all__ = ["SEARCH_KEYS", "MMGRRetriever", "__version__"]
