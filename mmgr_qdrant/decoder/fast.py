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

from ..errors import InputError
from .beam import BeamResult, check_beam_args
from .model import DocidDecoder
from .trie import DocidTrie

_F = np.float32


def _erf_poly(x: np.ndarray) -> np.ndarray:
    """erf to within 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), where scipy is missing."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    r = 1.0 - t * np.exp(poly)
    return np.where(x >= 0, r, -r)


_ERF: list[object] = []  # scipy's erf ufunc, imported on first use (it takes a second to import)


def _erf(x: np.ndarray) -> np.ndarray:
    """One ufunc call instead of a dozen array operations (scipy ships with the docid schemes)."""
    if not _ERF:
        try:
            from scipy.special import erf
        except ImportError:  # pragma: no cover
            erf = _erf_poly
        _ERF.append(erf)
    return _ERF[0](x)  # type: ignore[operator,no-any-return]


_SQRT_HALF = _F(1.0 / math.sqrt(2.0))
_add = np.add.reduce


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch's exact (erf) GELU."""
    return (_F(0.5) * x * (_F(1.0) + _erf(x * _SQRT_HALF))).astype(_F, copy=False)


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
    fc_w: np.ndarray  # (C, hidden)
    fc_b: np.ndarray  # (hidden,)
    out_w: np.ndarray  # (hidden, C)
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
            self.blocks.append(
                _Block(
                    (aw * scale).astype(_F), (ab * scale).astype(_F),
                    w(pre + "attn.c_proj.weight"), zeros_if_none(b(pre + "attn.c_proj.bias"), C),
                    fw, fb, w(pre + "mlp.c_proj.weight"), zeros_if_none(b(pre + "mlp.c_proj.bias"), C),
                )
            )
        self.heads = [_fold(sd["ln_f.weight"], b("ln_f.bias"), w(f"heads.{t}.weight"), b(f"heads.{t}.bias")) for t in range(cfg.n_levels)]
        self.causal = np.triu(np.full((P, P), -np.inf, dtype=_F), 1)  # (P, P) additive mask

    def _mlp(self, blk: _Block, x: np.ndarray) -> np.ndarray:
        return _gelu(_norm(x) @ blk.fc_w + blk.fc_b) @ blk.out_w + blk.out_b

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
    q = np.asarray(queries, dtype=_F)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != cfg.embed_dim:
        raise InputError(
            f"Queries must have shape (b, {cfg.embed_dim}) for this decoder, got {tuple(q.shape)}; "
            "pass embeddings from the encoder the index was built with."
        )
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
