"""Walking the docid hierarchy: the children of a docid prefix and how many documents each holds.

Part of the retriever layer: :meth:`~mmgr_qdrant.retriever.MultimodalRetriever.browse` delegates
here. Docids are unique per document (the last code breaks ties), so the rows of the build's trie
are the documents, and counting rows under a prefix counts documents.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError
from .generative import GenerativeIndex


def docid_children(gen: GenerativeIndex, prefix: Sequence[int] = ()) -> list[tuple[tuple[int, ...], int]]:
    """The child prefixes of ``prefix`` that hold documents, with their document counts, by code.

    Args:
        gen: the loaded build.
        prefix: a docid prefix (``()`` for the root, whose children are the modality codes).

    Returns:
        ``[(child_prefix, n_documents), ...]`` in code order; empty when the prefix is a whole
        docid or holds no document.

    Raises:
        InputError: the prefix has a negative or non-integer code, or is longer than a docid.
    """
    pre = tuple(prefix)
    for c in pre:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
            raise InputError(f"Docid prefix {pre!r} holds {c!r}; every code must be a non-negative integer.")
    depth = len(pre)
    if depth > gen.n_levels:
        raise InputError(f"Docid prefix {pre!r} has {depth} codes but docids have {gen.n_levels}; give a shorter prefix.")
    codes = gen.trie.codes  # sorted, unique rows (n, L)
    if depth == gen.n_levels or len(codes) == 0:
        return []
    rows = codes[(codes[:, :depth] == np.asarray(pre, dtype=np.int64)).all(1)] if depth else codes
    if len(rows) == 0:
        return []
    child, counts = np.unique(rows[:, depth], return_counts=True)
    return [((*(int(c) for c in pre), int(c)), int(n)) for c, n in zip(child, counts)]
