"""The docid decoder: a small transformer from query embeddings to docid codes, its training,
the trie of existing docids and the vectorized constrained beam search over it."""

from __future__ import annotations

from .beam import BeamResult, beam_search
from .model import DecoderConfig, DocidDecoder, load_checkpoint, save_checkpoint
from .train import TrainReport, train_decoder
from .trie import DocidTrie

__all__ = [
    "BeamResult",
    "DecoderConfig",
    "DocidDecoder",
    "DocidTrie",
    "TrainReport",
    "beam_search",
    "load_checkpoint",
    "save_checkpoint",
    "train_decoder",
]
