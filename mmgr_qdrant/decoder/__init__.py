"""The docid decoder: a small transformer from query embeddings to docid codes, its training,
the trie of existing docids and the vectorized constrained beam search over it."""

from __future__ import annotations

from .beam import BeamResult, beam_search
from .fast import NumpyDecoder, beam_search_numpy
from .model import DecoderConfig, DocidDecoder, load_checkpoint, save_checkpoint
from .train import TrainReport, train_decoder
from .trie import DocidTrie

__all__ = [
    "BeamResult",
    "DecoderConfig",
    "DocidDecoder",
    "DocidTrie",
    "NumpyDecoder",
    "TrainReport",
    "beam_search",
    "beam_search_numpy",
    "load_checkpoint",
    "save_checkpoint",
    "train_decoder",
]
