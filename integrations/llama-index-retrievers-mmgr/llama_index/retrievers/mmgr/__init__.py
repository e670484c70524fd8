"""LlamaIndex integration of mmgr-qdrant: multimodal generative retrieval over Qdrant.

``MMGRRetriever`` returns ``NodeWithScore`` (``TextNode`` for texts, ``ImageNode`` with
``image_path`` for images); ``MMGRMultiModalRetriever`` adds text, text-to-image and
image-to-image retrieval, sync and async.
"""

from llama_index.retrievers.mmgr.base import MMGRMultiModalRetriever, MMGRRetriever

__version__ = "0.1.0"
__all__ = ["MMGRMultiModalRetriever", "MMGRRetriever", "__version__"]
