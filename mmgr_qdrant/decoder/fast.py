"""The decoder's inference path in plain numpy: the router's hot path without per-op framework cost.

A query is routed by one decoder start and one step per docid level over a model of a few
hundred thousand parameters; in torch each of the ~60 small operations costs more in dispatch than
in arithmetic. :class:`NumpyDecoder` holds the trained weights as contiguous float32 arrays
(the query projection and the conditioning-token projection folded into one matrix, the
per-level token embeddings with their position added) and runs the same computation as
:meth:`DocidDecoder.start` / :meth:`DocidDecoder.step`; :func:`beam_search_numpy` is
:func:`~mmgr_qdrant.decoder.beam.beam_search` over it, step for step, so its prefixes and
scores equal the torch path's within float tolerance (tests compare them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .beam import BeamResult, check_beam_args
from .model import DocidDecoder
from .trie import DocidTrie

_F = np.float32


def _erf(x: np.ndarray) -> np.ndarray:
    """torch's own erf (the one its GELU uses), reading the array's memory without a copy: its kernel
    is vectorized (98,304 values in 0.08 ms where ``scipy.special.erf`` took 1.8 ms; 1,536 in
    10 us against 16)."""
    return torch.special.erf(torch.from_numpy(x)).numpy()  # type: ignore[no-any-return]


_SQRT_HALF = 1.0 / math.sqrt(2.0)
_add = np.add.reduce


def _gelu_scaled(u: np.ndarray) -> np.ndarray:
    """torch's exact (erf) GELU of ``h = sqrt(2) u``, times ``sqrt(2)``: ``u (1 + erf(u))``.

    The two constant factors are folded into the layers around it (``_Block.fc_*`` and ``out_w``).
    """
    e = _erf(u)
    e += _F(1.0)
    e *= u
    return e


def _softmax_last(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@dataclass(frozen=True)
class _Block:
    """One block's weights, transposed for ``x @ W``, with each LayerNorm's scale and shift folded
    into the linear layer after it and the attention scale folded into the query columns."""

    attn_w: np.ndarray  # (C, 3C)
    attn_b: np.ndarray  # (3C,)
    proj_w: np.ndarray  # (C, C)
    proj_b: np.ndarray  # (C,)
    fc_w: np.ndarray  # (C, hidden), scaled by 1/sqrt(2) for _gelu_scaled
    fc_b: np.ndarray  # (hidden,), scaled likewise
    out_w: np.ndarray  # (hidden, C), scaled by 1/sqrt(2)
    out_b: np.ndarray  # (C,)


def _norm(x: np.ndarray) -> np.ndarray:
    """LayerNorm without its affine part (folded into the next linear layer)."""
    inv = _F(1.0 / x.shape[-1])
    xc = x - _add(x, axis=-1, keepdims=True) * inv
    return xc / np.sqrt(_add(xc * xc, axis=-1, keepdims=True) * inv + _F(1e-5))


def _fold(ln_w: np.ndarray, ln_b: np.ndarray | None, wt: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(norm(x) * ln_w + ln_b) @ wt + bias`` as ``norm(x) @ W' + b'``."""
    w64, b64 = wt.astype(np.float64), np.zeros(wt.shape[1]) if bias is None else bias.astype(np.float64)
    if ln_b is not None:
        b64 = b64 + ln_b.astype(np.float64) @ w64
    return np.ascontiguousarray(ln_w.astype(np.float64)[:, None] * w64, dtype=_F), b64.astype(_F)


@dataclass
class NumpyCache:
    """Keys/values per layer, (N, nh, T, hd), the query state (N, C) and the codes fed so far."""

    k: list[np.ndarray]
    v: list[np.ndarray]
    z: np.ndarray
    codes_fed: int = 0


class NumpyDecoder:
    """A trained :class:`DocidDecoder`'s inference as numpy array code (CPU, float32).

    Args:
        model: the decoder whose weights are copied (later changes to it are not seen).
    """

    def __init__(self, model: DocidDecoder) -> None:
        cfg = model.config
        self.config = cfg
        sd = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}

        def w(name: str) -> np.ndarray:
            return np.ascontiguousarray(sd[name].T, dtype=_F)

        def b(name: str) -> np.ndarray | None:
            return np.ascontiguousarray(sd[name], dtype=_F) if name in sd else None

        C, P = cfg.n_embd, cfg.n_prefix
        self.n_head, self.hd = cfg.n_head, C // cfg.n_head

        def zeros_if_none(x: np.ndarray | None, n: int) -> np.ndarray:
            return np.zeros(n, dtype=_F) if x is None else x

        # query_proj and prefix_proj in one matmul: [z | x] = q @ [Wq | Wq Wp] + [bq | bq Wp + bp]
        wq, bq = w("query_proj.weight").astype(np.float64), zeros_if_none(b("query_proj.bias"), C).astype(np.float64)
        wp, bp = w("prefix_proj.weight").astype(np.float64), zeros_if_none(b("prefix_proj.bias"), P * C).astype(np.float64)
        self.qz_w = np.ascontiguousarray(np.concatenate([wq, wq @ wp], axis=1), dtype=_F)  # (d, C + P*C)
        self.qz_b = np.concatenate([bq, bq @ wp + bp]).astype(_F)
        pos = sd["pos_emb.weight"].astype(_F)
        self.prefix_pos = np.ascontiguousarray(pos[:P])  # (P, C)
        # each level's token rows with that level's position already added: one gather per step
        offsets = np.concatenate([[0], np.cumsum(cfg.vocab_sizes)[:-1]]).astype(np.int64)
        tok = sd["tok_emb.weight"].astype(_F)
        self.level_tok = [
            np.ascontiguousarray(tok[offsets[t] : offsets[t] + cfg.vocab_sizes[t]] + pos[P + t]) for t in range(cfg.n_levels - 1)
        ]
        scale = np.ones(3 * C)
        scale[:C] = 1.0 / math.sqrt(self.hd)  # softmax(q k / sqrt(hd)): scale q's columns once
        self.blocks = []
        for i in range(cfg.n_layer):
            pre = f"blocks.{i}."
            aw, ab = _fold(sd[pre + "ln_1.weight"], b(pre + "ln_1.bias"), w(pre + "attn.c_attn.weight"), b(pre + "attn.c_attn.bias"))
            fw, fb = _fold(sd[pre + "ln_2.weight"], b(pre + "ln_2.bias"), w(pre + "mlp.c_fc.weight"), b(pre + "mlp.c_fc.bias"))
            fw, fb = (fw * _F(_SQRT_HALF)).astype(_F), (fb * _F(_SQRT_HALF)).astype(_F)  # u = h / sqrt(2): see _gelu_scaled
            self.blocks.append(
                _Block(
                    (aw * scale).astype(_F), (ab * scale).astype(_F),
                    w(pre + "attn.c_proj.weight"), zeros_if_none(b(pre + "attn.c_proj.bias"), C),
                    fw, fb, (w(pre + "mlp.c_proj.weight") * _F(_SQRT_HALF)).astype(_F), zeros_if_none(b(pre + "mlp.c_proj.bias"), C),
                )
            )
        self.heads = [_fold(sd["ln_f.weight"], b("ln_f.bias"), w(f"heads.{t}.weight"), b(f"heads.{t}.bias")) for t in range(cfg.n_levels)]
        self.causal = np.triu(np.full((P, P), -np.inf, dtype=_F), 1)  # (P, P) additive mask
        self._masks: dict[int, np.ndarray] = {P: self.causal}  # (L, L) masks of path_states, by length

    def _mlp(self, blk: _Block, x: np.ndarray) -> np.ndarray:
        return _gelu_scaled(_norm(x) @ blk.fc_w + blk.fc_b) @ blk.out_w + blk.out_b

    def _head(self, t: int, x: np.ndarray) -> np.ndarray:
        wt, bias = self.heads[t]
        return _norm(x) @ wt + bias

    def start(self, queries: np.ndarray, logits: bool = True) -> tuple[np.ndarray | None, NumpyCache]:
        """Level-0 logits (b, V_0) and a cache with one hypothesis per query (see ``DocidDecoder.start``).

        ``logits=False`` skips the level-0 head (a forced modality code needs no scores).
        """
        cfg = self.config
        b, P, C, nh, hd = len(queries), cfg.n_prefix, cfg.n_embd, self.n_head, self.hd
        q = queries / np.maximum(np.sqrt(_add(queries * queries, axis=1, keepdims=True)), _F(1e-12))
        zx = q @ self.qz_w + self.qz_b  # (b, C + P*C)
        z = zx[:, :C]  # (b, C)
        x = zx[:, C:].reshape(b, P, C) + self.prefix_pos  # (b, P, C)
        cache = NumpyCache(k=[], v=[], z=z)
        causal = self.causal
        for blk in self.blocks:
            qkv = _norm(x) @ blk.attn_w + blk.attn_b  # (b, P, 3C), q pre-scaled
            qkv = qkv.reshape(b, P, 3, nh, hd).transpose(2, 0, 3, 1, 4)  # 3 x (b, nh, P, hd)
            qh, kh, vh = qkv[0], np.ascontiguousarray(qkv[1]), np.ascontiguousarray(qkv[2])
            att = _softmax_last(qh @ kh.transpose(0, 1, 3, 2) + causal)  # (b, nh, P, P)
            y = (att @ vh).transpose(0, 2, 1, 3).reshape(b, P, C)
            x = x + y @ blk.proj_w + blk.proj_b
            x = x + self._mlp(blk, x)
            cache.k.append(kh)
            cache.v.append(vh)
        return (self._head(0, x[:, -1]) if logits else None), cache

    def path_states(self, queries: np.ndarray, paths: np.ndarray, positions: Sequence[int]) -> np.ndarray:
        """Hidden states (b, n, len(positions), C), before the final norm, at ``positions`` of each query
        followed by each code path (n, T).

        One causal pass over whole sequences: the states :meth:`start` and :meth:`step` build one
        code at a time (position ``P - 1 + t`` gives level ``t``'s logits through :meth:`head`). The
        last block runs only at ``positions`` (the others feed nothing after it).
        """
        cfg = self.config
        b, P, C, nh, hd = len(queries), cfg.n_prefix, cfg.n_embd, self.n_head, self.hd
        n, T = paths.shape
        L, N = P + T, b * n
        q = queries / np.maximum(np.sqrt(_add(queries * queries, axis=1, keepdims=True)), _F(1e-12))
        zx = q @ self.qz_w + self.qz_b  # (b, C + P*C)
        x = np.empty((b, n, L, C), dtype=_F)
        x[:, :, :P] = zx[:, None, C:].reshape(b, 1, P, C) + self.prefix_pos  # the conditioning tokens, for every path
        for t in range(T):  # each code's token row (its position added) plus the query state
            x[:, :, P + t] = self.level_tok[t][paths[:, t]] + zx[:, None, :C]  # (b, n, C)
        x = x.reshape(N, L, C)
        causal = self._masks.get(L)
        if causal is None:
            causal = self._masks[L] = np.triu(np.full((L, L), -np.inf, dtype=_F), 1)
        last = len(self.blocks) - 1
        keep = list(positions)
        for i, blk in enumerate(self.blocks):
            qkv = (_norm(x) @ blk.attn_w + blk.attn_b).reshape(N, L, 3, nh, hd).transpose(2, 0, 3, 1, 4)  # q pre-scaled
            qh, mask = (qkv[0][:, :, keep], causal[keep]) if i == last else (qkv[0], causal)
            att = _softmax_last(qh @ qkv[1].transpose(0, 1, 3, 2) + mask)  # (N, nh, L or kept, L)
            y = (att @ qkv[2]).transpose(0, 2, 1, 3).reshape(N, -1, C)
            x = (x[:, keep] if i == last else x) + y @ blk.proj_w + blk.proj_b
            x = x + self._mlp(blk, x)
        return x.reshape(b, n, len(keep), C)

    def head(self, level: int, states: np.ndarray) -> np.ndarray:
        """Level ``level``'s logits (..., V) from hidden states (..., C)."""
        return self._head(level, states)

    def step(self, cache: NumpyCache, parents: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Feed one code per hypothesis; the next level's logits (N, V_{t+1}) (see ``DocidDecoder.step``)."""
        t = cache.codes_fed
        N, C, nh, hd = len(tokens), self.config.n_embd, self.n_head, self.hd
        cache.z = cache.z[parents]
        x = self.level_tok[t][tokens] + cache.z  # (N, C)
        for i, blk in enumerate(self.blocks):
            qkv = (_norm(x) @ blk.attn_w + blk.attn_b).reshape(N, 3, nh, 1, hd)  # q pre-scaled
            kc = np.concatenate([cache.k[i][parents], qkv[:, 1]], axis=2)  # (N, nh, T+1, hd)
            vc = np.concatenate([cache.v[i][parents], qkv[:, 2]], axis=2)
            att = _softmax_last(qkv[:, 0] @ kc.transpose(0, 1, 3, 2))  # (N, nh, 1, T+1)
            y = (att @ vc).reshape(N, C)
            x = x + y @ blk.proj_w + blk.proj_b
            x = x + self._mlp(blk, x)
            cache.k[i], cache.v[i] = kc, vc
        cache.codes_fed = t + 1
        return self._head(t + 1, x)


def as_query_rows(queries: np.ndarray, dim: int) -> np.ndarray:
    """Queries as float32 rows ``(b, dim)`` (a single ``(dim,)`` vector is one row).

    Raises:
        InputError: another shape.
    """
    q = np.asarray(queries, dtype=_F)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise InputError(
            f"Queries must have shape (b, {dim}) for this decoder, got {tuple(q.shape)}; "
            "pass embeddings from the encoder the index was built with."
        )
    return q


def beam_search_numpy(
    decoder: NumpyDecoder,
    trie: DocidTrie,
    queries: np.ndarray,
    *,
    beam_size: int,
    depth: int,
    force_prefix: Sequence[int] = (),
    batch_size: int = 1024,
) -> BeamResult:
    """:func:`~mmgr_qdrant.decoder.beam.beam_search` over a :class:`NumpyDecoder`: the same
    arguments, checks and result (within float tolerance).

    Raises:
        InputError: bad shapes, depth or beam size.
        ConfigError: the trie does not fit the decoder.
    """
    cfg = decoder.config
    force = check_beam_args(cfg, trie, beam_size=beam_size, depth=depth, force_prefix=force_prefix)
    q = as_query_rows(queries, cfg.embed_dim)
    b = len(q)
    prefixes = np.zeros((b, beam_size, depth), dtype=np.int64)
    scores = np.full((b, beam_size), -np.inf, dtype=_F)
    valid = np.zeros((b, beam_size), dtype=bool)
    if len(trie) == 0 or b == 0:
        return BeamResult(prefixes, scores, valid)
    levels = trie.level_arrays()
    for lo in range(0, b, batch_size):
        p, s = _search(decoder, levels, q[lo : lo + batch_size], beam_size, depth, force)
        k = p.shape[1]
        prefixes[lo : lo + batch_size, :k] = p
        scores[lo : lo + batch_size, :k] = s
        valid[lo : lo + batch_size, :k] = np.isfinite(s)
    prefixes[~valid] = 0
    return BeamResult(prefixes, scores, valid)


def _search(
    decoder: NumpyDecoder, levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], q: np.ndarray,
    beam_size: int, depth: int, force: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """One batch, as ``beam._search``: prefixes (b, k, depth) and scores (b, k)."""
    b = len(q)
    rows = np.arange(b)[:, None]  # (b, 1)
    node = np.zeros((b, 1), dtype=np.int64)  # (b, B) trie node per hypothesis
    score = np.zeros((b, 1), dtype=_F)  # (b, B) cumulative log-prob; -inf: dead
    hist = np.zeros((b, 1, 0), dtype=np.int64)  # (b, B, t)
    parents = rows.ravel()
    logits, cache = decoder.start(q, logits=not force)  # (b, V_0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for t in range(depth):
            if t > 0:
                logits = decoder.step(cache, parents, hist[:, :, -1].ravel())  # (b*B, V_t)
            start, count, child, offsets = levels[t]
            B, C = node.shape[1], len(offsets)
            idx = start[node][..., None] + offsets  # (b, B, C)
            bad = offsets >= count[node][..., None]  # (b, B, C)
            code = child[idx]  # (b, B, C)
            if t < len(force):
                lp = np.where(bad | (code != force[t]), _F(-np.inf), _F(0.0))
                k = 1
            else:
                assert logits is not None
                lg = np.take_along_axis(logits.reshape(b, B, -1), code, axis=-1)
                lg = np.where(bad, _F(-np.inf), lg)
                m = lg.max(-1, keepdims=True)
                m = np.where(np.isfinite(m), m, _F(0.0))
                lse = m + np.log(np.exp(lg - m).sum(-1, keepdims=True))
                lp = np.where(bad, _F(-np.inf), lg - lse)  # log-softmax over the children that exist
                k = min(beam_size, B * C)
            cand = (score[..., None] + lp).reshape(b, B * C)
            # best first; among equal scores the lower index first (torch.topk's order on CPU)
            top = np.argmax(cand, axis=1)[:, None] if k == 1 else np.argsort(-cand, axis=1, kind="stable")[:, :k]
            score = cand[rows, top].astype(_F, copy=False)
            parent = top // C
            node = idx.reshape(b, B * C)[rows, top]
            new_code = code.reshape(b, B * C)[rows, top]
            hist = np.concatenate([hist[rows, parent], new_code[..., None]], axis=2)
            parents = (parent + rows * B).ravel()
    return hist, score


@dataclass(frozen=True)
class _LevelPlan:
    """Moving from the live nodes of depth t to those of depth t + 1 (children in trie order)."""

    scored: bool  # False: the level adds 0 (its code is forced, or every live node has one child)
    parent: np.ndarray  # (n_next,) position of each child's parent among the depth-t live nodes
    code: np.ndarray  # (n_next,) each child's level-t code
    starts: np.ndarray  # (n_live,) where each parent's children begin in the child list
    rep: np.ndarray  # (n_live,) a path (below) through each depth-t live node: its states give the level's logits


@dataclass(frozen=True)
class PrefixPlan:
    """Every existing prefix of one depth (with a forced start) and how to score them: the
    query-independent part of routing, made once per trie, depth and forced prefix.

    Attributes:
        prefixes: (P, depth) the prefixes, in trie (lexicographic) order.
        paths: (n, depth - 1) the live prefixes one level up, whose sequences the decoder runs.
        levels: one step per level.
    """

    prefixes: np.ndarray
    paths: np.ndarray
    levels: tuple[_LevelPlan, ...]

    def __len__(self) -> int:
        return int(self.prefixes.shape[0])


def prefix_plan(trie: DocidTrie, depth: int, force_prefix: Sequence[int] = ()) -> PrefixPlan:
    """The :class:`PrefixPlan` of ``trie``'s prefixes of ``depth`` codes that start with ``force_prefix``."""
    live = np.zeros(1 if len(trie) else 0, dtype=np.int64)  # depth-0 node ids: the root
    codes = np.zeros((len(live), 0), dtype=np.int64)
    paths, above = codes, [np.zeros(len(live), dtype=np.int64)]  # above[t]: each path's depth-t ancestor
    moves = []
    for t in range(depth):
        ptr, child = trie.csr(t)
        n = ptr[live + 1] - ptr[live]
        parent = np.repeat(np.arange(len(live)), n)
        ids = np.repeat(ptr[live] - np.cumsum(n) + n, n) + np.arange(int(n.sum()))  # the children, in order
        code = child[ids]
        forced = t < len(force_prefix)
        if forced:
            keep = code == int(force_prefix[t])
            parent, ids, code = parent[keep], ids[keep], code[keep]
        starts = np.searchsorted(parent, np.arange(len(live)))
        moves.append((not forced and bool((n > 1).any()), parent, code, starts, len(live)))
        codes = np.concatenate([codes[parent], code[:, None]], axis=1)
        live = ids
        if t < depth - 1:  # the live nodes one level above the prefixes are the paths
            paths = codes
            above = [a[parent] for a in above] + [np.arange(len(live))]
    levels = tuple(
        _LevelPlan(scored, parent, code, starts, np.minimum(np.searchsorted(above[t], np.arange(n_live)), max(len(paths) - 1, 0)))
        for t, (scored, parent, code, starts, n_live) in enumerate(moves)
    )
    return PrefixPlan(np.ascontiguousarray(codes), np.ascontiguousarray(paths), levels)


def score_prefixes_numpy(decoder: NumpyDecoder, plan: PrefixPlan, queries: np.ndarray) -> np.ndarray:
    """The score of every prefix of ``plan`` for each query, (b, P) float32.

    The scores :func:`beam_search_numpy` gives these prefixes when its beam holds them all (then it
    prunes nothing): at each level a log-softmax over the children that exist, summed. Without a
    beam there is nothing to sort or prune between levels, so the decoder runs once over whole
    code paths (:meth:`NumpyDecoder.path_states`) and the trie bookkeeping is ``plan``'s.
    """
    q = np.asarray(queries, dtype=_F)
    b = len(q)
    if len(plan) == 0 or b == 0:
        return np.full((b, len(plan)), -np.inf, dtype=_F)
    P = decoder.config.n_prefix
    scored = [t for t, lv in enumerate(plan.levels) if lv.scored]
    states = decoder.path_states(q, plan.paths, [P - 1 + t for t in scored]) if scored else None
    score = np.zeros((b, 1), dtype=_F)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for t, lv in enumerate(plan.levels):
            if not lv.scored:  # a forced code, or one child: log-softmax over one candidate is 0
                score = score[:, lv.parent]
                continue
            assert states is not None
            lg = decoder.head(t, states[:, lv.rep, scored.index(t)])[:, lv.parent, lv.code]  # (b, n_next)
            if len(lv.starts) == 1:
                m = lg.max(1, keepdims=True)
                lse = m + np.log(np.exp(lg - m).sum(1, keepdims=True))
            else:
                m = np.maximum.reduceat(lg, lv.starts, axis=1)[:, lv.parent]
                lse = m + np.log(np.add.reduceat(np.exp(lg - m), lv.starts, axis=1)[:, lv.parent])
            score = score[:, lv.parent] + (lg - lse)
    return score.astype(_F, copy=False)
