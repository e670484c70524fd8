"""Constrained beam search over the docid trie, vectorized over queries and beams.

One Python iteration per docid level; inside it, every hypothesis of every query is scored by one
decoder step and moved down the trie with tensor gathers:

    node (b, B)            trie node of each hypothesis at depth t
    idx  (b, B, C)         its candidate children: ptr[t][node] + arange(C), C = largest fan-out
    code (b, B, C)         their level-t codes: child[t][idx]
    lp   (b, B, C)         the decoder's log-probs of those codes, renormalized over the
                           children that exist (a softmax over the valid entries only)
    top-k over (b, B * C)  -> the next beam, its parents, codes and trie nodes

Scores are therefore log-probabilities of a distribution over existing prefixes: a prefix's score
is the sum over its levels of log p(code | query, earlier codes, code exists in the trie).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError, InputError
from .model import DecoderConfig, DocidDecoder
from .trie import DocidTrie


@dataclass(frozen=True)
class BeamResult:
    """The top docid prefixes of each query.

    Attributes:
        prefixes: (b, beam, depth) int64 codes; rows where ``valid`` is False are zeros.
        scores: (b, beam) float32 cumulative log-probabilities, best first; ``-inf`` where invalid.
        valid: (b, beam) bool, False where the trie holds fewer than ``beam`` prefixes to return.
    """

    prefixes: np.ndarray
    scores: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return int(self.prefixes.shape[0])

    def query(self, i: int) -> list[tuple[tuple[int, ...], float]]:
        """The valid (prefix, score) pairs of query ``i``, best first."""
        keep = np.flatnonzero(self.valid[i])
        return [(tuple(p), s) for p, s in zip(self.prefixes[i, keep].tolist(), self.scores[i, keep].tolist())]


def _as_queries(queries: np.ndarray | torch.Tensor, dim: int, device: torch.device) -> torch.Tensor:
    q = torch.as_tensor(queries)
    if q.ndim == 1:
        q = q.unsqueeze(0)
    if q.ndim != 2 or q.size(1) != dim:
        raise InputError(
            f"Queries must have shape (b, {dim}) for this decoder, got {tuple(q.shape)}; "
            "pass embeddings from the encoder the index was built with."
        )
    return q.to(device=device, dtype=torch.float32)


def check_beam_args(cfg: DecoderConfig, trie: DocidTrie, *, beam_size: int, depth: int, force_prefix: Sequence[int]) -> list[int]:
    """Check a beam search's arguments against the decoder's config and the trie; returns the forced codes.

    Raises:
        InputError: bad depth, beam size or forced prefix.
        ConfigError: the trie and the decoder come from different builds, or the trie holds codes
            outside the decoder's vocabularies.
    """
    if trie.n_levels != cfg.n_levels:
        raise ConfigError(
            f"The trie has {trie.n_levels} levels but the decoder was built for {cfg.n_levels}; "
            "use the trie and decoder of the same build."
        )
    if not 1 <= depth <= cfg.n_levels:
        raise InputError(f"depth must be in 1..{cfg.n_levels}, got {depth}.")
    if beam_size < 1:
        raise InputError(f"beam_size must be at least 1, got {beam_size}.")
    force = [int(c) for c in force_prefix]
    if len(force) > depth:
        raise InputError(f"force_prefix {tuple(force)} is longer than depth {depth}.")
    for t, (top, vocab) in enumerate(zip(trie.max_codes().tolist(), cfg.vocab_sizes)):
        if top >= vocab:
            raise ConfigError(
                f"The trie holds level-{t} code {top} but the decoder's vocabulary there is "
                f"{vocab}; retrain the decoder on these docids."
            )
    return force


@torch.inference_mode()
def beam_search(
    model: DocidDecoder,
    trie: DocidTrie,
    queries: np.ndarray | torch.Tensor,
    *,
    beam_size: int,
    depth: int,
    force_prefix: Sequence[int] = (),
    batch_size: int = 1024,
) -> BeamResult:
    """The ``beam_size`` most likely docid prefixes of length ``depth`` that exist in ``trie``.

    Args:
        model: a trained decoder (switched to eval mode).
        trie: the docids that exist; only their prefixes can be returned.
        queries: (b, d) query embeddings (a single (d,) vector is taken as b = 1).
        beam_size: hypotheses kept per query at every level, and prefixes returned.
        depth: prefix length, 1..L.
        force_prefix: codes every result must start with (e.g. ``(1,)`` for images only); they
            are fed to the decoder but add nothing to the scores.
        batch_size: queries decoded together; bounds memory for large batches.

    Returns:
        A :class:`BeamResult` with exactly ``beam_size`` columns, best first.

    Raises:
        InputError: bad shapes, depth or beam size.
        ConfigError: the trie holds codes outside the decoder's vocabularies.
    """
    cfg = model.config
    force = check_beam_args(cfg, trie, beam_size=beam_size, depth=depth, force_prefix=force_prefix)
    model.eval()
    q = _as_queries(queries, cfg.embed_dim, model.device)
    b = q.size(0)
    prefixes = np.zeros((b, beam_size, depth), dtype=np.int64)
    scores = np.full((b, beam_size), -np.inf, dtype=np.float32)
    valid = np.zeros((b, beam_size), dtype=bool)
    if len(trie) == 0 or b == 0:
        return BeamResult(prefixes, scores, valid)
    for lo in range(0, b, batch_size):
        p, s, v = _search(model, trie, q[lo : lo + batch_size], beam_size, depth, force)
        k = p.size(1)
        prefixes[lo : lo + batch_size, :k] = p.cpu().numpy()
        scores[lo : lo + batch_size, :k] = s.cpu().numpy()
        valid[lo : lo + batch_size, :k] = v.cpu().numpy()
    prefixes[~valid] = 0
    return BeamResult(prefixes, scores, valid)


def _search(
    model: DocidDecoder,
    trie: DocidTrie,
    q: torch.Tensor,
    beam_size: int,
    depth: int,
    force: list[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch: returns prefixes (b, k, depth), scores (b, k), valid (b, k), k <= beam_size."""
    device = q.device
    levels = trie.level_tensors(device)
    b = q.size(0)
    rows = torch.arange(b, device=device).unsqueeze(1)  # (b, 1)
    node = torch.zeros(b, 1, dtype=torch.long, device=device)  # (b, B) trie node per hypothesis
    score = torch.zeros(b, 1, device=device)  # (b, B) cumulative log-prob; -inf: dead
    hist = torch.zeros(b, 1, 0, dtype=torch.long, device=device)  # (b, B, t) codes so far
    parents = rows.view(-1)
    logits, cache = model.start(q)  # (b, V_0)
    for t in range(depth):
        if t > 0:
            logits = model.step(cache, parents, hist[:, :, -1].reshape(-1))  # (b*B, V_t)
        lv = levels[t]
        B, C = node.size(1), lv.offsets.numel()
        idx = lv.start[node].unsqueeze(-1) + lv.offsets  # (b, B, C) candidate child node ids
        bad = lv.offsets >= lv.count[node].unsqueeze(-1)  # (b, B, C) past the last child
        code = lv.child[idx]  # (b, B, C)
        if t < len(force):
            # a forced level keeps one hypothesis and adds nothing to the score
            lp = torch.zeros(bad.shape, device=device).masked_fill_(bad | (code != force[t]), -math.inf)
            k = 1
        else:
            lg = logits.view(b, B, -1).gather(-1, code).masked_fill_(bad, -math.inf)
            # softmax over the children that exist; a dead row (all -inf) gives NaN: refill it
            lp = lg.log_softmax(dim=-1).masked_fill_(bad, -math.inf)  # (b, B, C)
            k = min(beam_size, B * C)
        # a dead hypothesis has score -inf, so its candidates stay -inf
        cand = (score.unsqueeze(-1) + lp).view(b, B * C)  # (b, B*C)
        score, top = cand.topk(k, dim=-1)  # (b, k), sorted best first
        parent = torch.div(top, C, rounding_mode="floor")  # (b, k)
        node = idx.view(b, B * C).gather(1, top)
        new_code = code.view(b, B * C).gather(1, top)
        hist = torch.cat([hist[rows, parent], new_code.unsqueeze(-1)], dim=2)  # (b, k, t+1)
        parents = (parent + rows * B).view(-1)  # cache row of the hypothesis each one extends
    return hist, score, torch.isfinite(score)
