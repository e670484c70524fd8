"""Semantic docids: schemes that fit codebooks on document vectors and assign hierarchical codes.

A docid is ``[modality, c1, ..., c_levels, tiebreak]``: :meth:`DocidScheme.assign` gives the first
``1 + levels`` columns, :func:`add_tiebreak` the last one.

Example:
    >>> scheme = get_scheme("rq", levels=2, k="auto")
    >>> scheme.fit(vectors, modalities, seed=0)
    >>> docids = add_tiebreak(scheme.assign(vectors, modalities))
    >>> docid_stats(docids, scheme.codebook_sizes()).as_dict()
"""

from .base import (
    DocidScheme,
    SchemeBase,
    auto_k,
    available_schemes,
    get_scheme,
    register_scheme,
    scheme_from_state,
)
from .codes import DocidStats, LevelStats, TieBreakState, add_tiebreak, docid_stats, used_from_docids
from .hkmeans import HierarchicalKMeans
from .lsh import LSHScheme
from .pq import ProductQuantizer
from .rq import ResidualQuantizer

__all__ = [
    "DocidScheme",
    "DocidStats",
    "HierarchicalKMeans",
    "LSHScheme",
    "LevelStats",
    "ProductQuantizer",
    "ResidualQuantizer",
    "SchemeBase",
    "TieBreakState",
    "add_tiebreak",
    "auto_k",
    "available_schemes",
    "docid_stats",
    "get_scheme",
    "register_scheme",
    "scheme_from_state",
    "used_from_docids",
]
