"""The concept cut-off policy: which of the decoder's beam prefixes count as a concept's documents."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputError


@dataclass(frozen=True)
class ConceptCutoff:
    """Which of the decoder's beam prefixes count as "the documents this concept matches".

    A docid cluster is not a concept label: "dog" spreads over several clusters (dogs on
    beaches, dogs on sofas, drawings of dogs), so ``NOT dog`` that excludes only the top beam
    prefix lets most dogs through. Keeping more prefixes makes NOT exclude what the concept
    really matches, but makes a positive atom (and an AND) admit more unrelated documents.
    This class's defaults keep the smallest set of prefixes that covers 90% of the beam's
    probability; the retriever starts from :data:`DEFAULT_CUTOFF` for concepts that rank and
    :data:`DEFAULT_NEGATIVE_CUTOFF` for concepts only under NOT (``retriever.cutoff`` and
    ``retriever.negative_cutoff``).

    Attributes:
        beam_size: beams the decoder searches, and the most prefixes kept (1 = top cluster only).
        min_prob: drop prefixes whose normalized beam probability is below this (the top one is
            always kept); ``None`` keeps all that ``mass`` and ``beam_size`` allow.
        mass: keep the most probable prefixes until their normalized probabilities sum to at
            least this (in (0, 1]); ``None`` keeps up to ``beam_size``.
        depth: truncate prefixes to this many codes and sum the probabilities of those that
            collapse together (shallower = broader concept, a coarser NOT); ``None`` keeps them as
            generated.
        max_fraction: keep prefixes, most probable first, only while the documents under them
            stay within this fraction of the collection (the most probable is always kept);
            ``None`` sets no such bound. A NOT with a small bound excludes only the documents the
            decoder is surest of, which is what keeps ``A AND NOT B`` from losing the many ``A``
            documents that merely resemble ``B``.
    """

    beam_size: int = 32
    min_prob: float | None = None
    mass: float | None = 0.9
    depth: int | None = None
    max_fraction: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise ConfigError(f"ConceptCutoff.beam_size is {self.beam_size!r}; set a positive integer such as 32.")
        if self.min_prob is not None and not 0.0 <= self.min_prob <= 1.0:
            raise ConfigError(f"ConceptCutoff.min_prob is {self.min_prob!r}; set a probability in [0, 1] or None.")
        if self.mass is not None and not 0.0 < self.mass <= 1.0:
            raise ConfigError(f"ConceptCutoff.mass is {self.mass!r}; set a probability mass in (0, 1] or None.")
        if self.depth is not None and (isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1):
            raise ConfigError(f"ConceptCutoff.depth is {self.depth!r}; set a positive number of docid codes or None.")
        if self.max_fraction is not None and not 0.0 < self.max_fraction <= 1.0:
            raise ConfigError(f"ConceptCutoff.max_fraction is {self.max_fraction!r}; set a fraction of the collection in (0, 1] or None.")


DEFAULT_CUTOFF = ConceptCutoff(beam_size=64, mass=None)
"""The retriever's default cut-off for a concept that ranks (not only under NOT): the 64 most
probable prefixes of one code below the modality, per modality. Broad on purpose: documents
outside a positive concept's set are lost to the query, and ranking by the concept's embedding
already puts its documents first. Narrower sets (mass 0.9, beam 32) cost precision@10 on
``A AND B`` in ``benchmarks/setops.py --sweep``: 0.125 vs 0.140 on the sample set, 0.152 vs
0.188 on the Debian held-out set, 0.228 vs 0.328 on the whole Debian set."""

DEFAULT_NEGATIVE_CUTOFF = ConceptCutoff(beam_size=64, mass=None, depth=3, max_fraction=0.02)
"""The retriever's default cut-off for a concept that appears only under NOT: the most probable
prefixes of two codes below the modality, covering at most 2% of the collection. Narrow on
purpose: concepts that co-occur look alike, and a broad NOT removes the ``A`` documents that
merely resemble ``B``. ``A AND NOT B`` precision@10 with this default vs 5% one code shallower:
0.156 vs 0.128 on the sample set, 0.224 vs 0.180 on the whole Debian set (0.084 vs 0.096 on the
Debian held-out set, where the pairs have few answers)."""


def select_prefixes(
    prefixes: Sequence[Sequence[int]],
    logprobs: Sequence[float] | np.ndarray,
    cutoff: ConceptCutoff | None = None,
    *,
    count: Callable[[Sequence[tuple[int, ...]]], Sequence[int]] | None = None,
    total: int | None = None,
) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
    """Apply a :class:`ConceptCutoff` to the decoder's beam for one concept.

    The beam's log-probabilities are normalized to probabilities over the beam (after ``depth``
    truncation, equal prefixes add up). Prefixes are taken most probable first until ``mass`` is
    covered, at most ``beam_size``, then those below ``min_prob`` are dropped; the most probable
    is always kept. A kept prefix that extends another kept prefix is dropped (the shorter one
    already matches it).

    Args:
        prefixes: the beam's docid prefixes (tuples of codes).
        logprobs: their log-probabilities, same length (any constant offset is fine).
        cutoff: the cut-off; the defaults of :class:`ConceptCutoff` when ``None``.
        count: documents under each of a list of prefixes; needed with ``cutoff.max_fraction``.
        total: documents in the collection; needed with ``cutoff.max_fraction``.

    Returns:
        The kept prefixes, most probable first, and their normalized probabilities.

    Raises:
        InputError: the lengths differ, a log-probability is NaN or +inf, or ``max_fraction`` is
            set without ``count`` and ``total``.
    """
    cutoff = cutoff or ConceptCutoff()
    lp = np.asarray(logprobs, dtype=np.float64).reshape(-1)
    if len(prefixes) != lp.shape[0]:
        raise InputError(f"select_prefixes got {len(prefixes)} prefixes but {lp.shape[0]} log-probabilities; pass one per prefix.")
    if lp.shape[0] == 0:
        return (), ()
    if np.isnan(lp).any() or np.isposinf(lp).any():
        raise InputError("select_prefixes got a NaN or +inf log-probability; pass finite log-probabilities or -inf.")
    top = lp.max()
    probs = np.full(lp.shape, 1.0 / lp.shape[0]) if np.isneginf(top) else np.exp(lp - top)
    probs = probs / probs.sum()

    merged: dict[tuple[int, ...], float] = {}
    for p, pr in zip(prefixes, probs):
        key = tuple(int(c) for c in p)
        if cutoff.depth is not None:
            key = key[: cutoff.depth]
        merged[key] = merged.get(key, 0.0) + float(pr)
    ranked = sorted(merged.items(), key=lambda kv: -kv[1])  # stable: ties keep beam order

    n = len(ranked)
    if cutoff.mass is not None:
        cum = np.cumsum([pr for _, pr in ranked])
        n = int(np.searchsorted(cum, cutoff.mass - 1e-12)) + 1
    kept = ranked[: max(1, min(n, cutoff.beam_size))]
    if cutoff.min_prob is not None:
        kept = kept[:1] + [kv for kv in kept[1:] if kv[1] >= cutoff.min_prob]
    if cutoff.max_fraction is not None:
        if count is None or total is None:
            raise InputError("ConceptCutoff.max_fraction needs the documents per prefix; pass count= and total= to select_prefixes.")
        budget, admitted = cutoff.max_fraction * total, 0
        sizes = [int(c) for c in count([k for k, _ in kept])]
        for n_kept, size in enumerate(sizes):
            if n_kept and admitted + size > budget:
                kept = kept[:n_kept]
                break
            admitted += size

    keys = {k for k, _ in kept}
    kept = [(k, pr) for k, pr in kept if not any(k[:d] in keys for d in range(1, len(k)))]
    return tuple(k for k, _ in kept), tuple(pr for _, pr in kept)
