"""The generative side of an index: the fitted docid scheme, the docid trie and the decoder.

Part of the retriever layer (only ``retriever`` uses it): it joins ``docids``, ``decoder`` and
``artifacts``, and knows how docids look in the payload.

Docids in the payload are tagged with the build *generation* that assigned them::

    _mmgr.docids   = {"3": [1, 12, 7, 0]}                 # generation -> codes
    _mmgr.prefixes = ["3/1", "3/1.12", "3/1.12.7", "3/1.12.7.0"]

A rebuild writes generation 4 beside 3, then switches the manifest; searches filter on the tags of
the generation they loaded, so they stay correct while a rebuild runs and after one is interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .artifacts import BuildArtifacts, load_build
from .filters import Condition, Filter, Match
from .store.base import Store
from .types import F_PREFIXES, RESERVED_KEY, PointId, prefix_key

if TYPE_CHECKING:  # torch loads only once a build is used, so `import mmgr_qdrant` stays light
    from .decoder import BeamResult, DocidDecoder, DocidTrie
    from .docids import DocidScheme, TieBreakState

logger = logging.getLogger(__name__)


def tag(generation: int, prefix: Sequence[int]) -> str:
    """The payload keyword of one prefix in one generation: ``3/1.12``."""
    return f"{generation}/{prefix_key(prefix)}"


def docid_fields(generation: int, docid: Sequence[int], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``_mmgr`` fields of a docid, keeping the previous generation's (if any) beside it."""
    docids: dict[str, Any] = {str(generation): [int(c) for c in docid]}
    prefixes = [tag(generation, docid[:i]) for i in range(1, len(docid) + 1)]
    if previous:
        for gen, codes in previous.get("docids", {}).items():
            if gen != str(generation) and int(gen) == generation - 1:
                docids[gen] = codes
                prefixes = [p for p in previous.get("prefixes", []) if p.startswith(gen + "/")] + prefixes
    return {"docids": docids, "prefixes": prefixes}


def retag(cond: Condition | None, generation: int) -> Any:
    """Rewrite plain prefix matches (``1.12``) of a filter into this generation's tags (``3/1.12``)."""
    if cond is None:
        return None
    if isinstance(cond, Filter):
        return Filter(
            must=tuple(retag(c, generation) for c in cond.must),
            should=tuple(retag(c, generation) for c in cond.should),
            must_not=tuple(retag(c, generation) for c in cond.must_not),
        )
    if isinstance(cond, Match) and cond.key == F_PREFIXES:
        return replace(cond, values=tuple(v if "/" in str(v) else f"{generation}/{v}" for v in cond.values))
    return cond


@dataclass
class GenerativeIndex:
    """A loaded build: assigns docids to new vectors and decodes queries into docid prefixes."""

    scheme: "DocidScheme"
    decoder: "DocidDecoder"
    trie: "DocidTrie"
    generation: int
    used: "TieBreakState"
    info: dict[str, Any] = field(default_factory=dict)
    _decodable: "DocidTrie | None" = field(default=None, repr=False)

    @property
    def n_levels(self) -> int:
        return int(self.trie.n_levels)

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.decoder.config.vocab_sizes)

    @classmethod
    def from_artifacts(cls, art: BuildArtifacts, device: str | None = None) -> "GenerativeIndex":
        from .decoder import DocidTrie, load_checkpoint
        from .docids import scheme_from_state, used_from_docids

        scheme = scheme_from_state(art.scheme_params, art.scheme_arrays)
        decoder = load_checkpoint(art.decoder, device=device)
        trie = DocidTrie.from_arrays(art.trie_arrays)
        return cls(scheme, decoder, trie, art.generation, used_from_docids(trie.codes) if len(trie) else {}, dict(art.info))

    @classmethod
    def load(cls, store: Store, device: str | None = None) -> "GenerativeIndex | None":
        """The current build of a collection, brought up to date with documents added since."""
        art = load_build(store)
        if art is None:
            return None
        index = cls.from_artifacts(art, device)
        index.sync(store)
        return index

    def sync(self, store: Store) -> None:
        """Make the trie hold exactly the docids of this generation that are in the store now."""
        from .decoder import DocidTrie
        from .docids import used_from_docids

        key = str(self.generation)
        rows = []
        for page in store.scroll(batch_size=4096):
            for rec in page:
                codes = (rec.payload.get(RESERVED_KEY) or {}).get("docids", {}).get(key)
                if codes is not None:
                    rows.append(codes)
        codes = np.asarray(rows, dtype=np.int64).reshape(-1, self.n_levels)
        self.trie = DocidTrie(codes, n_levels=self.n_levels)
        self.used = used_from_docids(codes) if len(codes) else {}
        self._decodable = None

    # -- docids ----------------------------------------------------------------------------------
    # Writers replace the trie with a new object (copy on write), so a search that holds the old
    # one decodes against a consistent trie while a writer adds or deletes.
    def assign(self, vectors: np.ndarray, modalities: np.ndarray) -> np.ndarray:
        """Docids for new vectors with the frozen scheme (nearest code per level, a free tie-break)."""
        from .decoder import DocidTrie
        from .docids import add_tiebreak

        docids = add_tiebreak(self.scheme.assign(vectors, modalities), self.used)
        trie = DocidTrie(self.trie.codes, n_levels=self.n_levels)
        trie.add(docids)
        self.trie, self._decodable = trie, None
        return docids

    def forget(self, docids: np.ndarray) -> None:
        """Remove deleted documents' docids from the trie and free their tie-break codes."""
        if len(docids) == 0:
            return
        from .decoder import DocidTrie

        trie = DocidTrie(self.trie.codes, n_levels=self.n_levels)
        trie.remove(docids)
        self.trie, self._decodable = trie, None
        for row in np.asarray(docids):
            codes = self.used.get(tuple(int(c) for c in row[:-1]))
            if codes is not None:
                codes.discard(int(row[-1]))

    def decodable(self) -> DocidTrie:
        """The trie restricted to codes inside the decoder's vocabularies.

        Documents added after the build can get a tie-break code past the decoder's vocabulary;
        they stay reachable through their shorter prefixes, which other documents share.
        """
        from .decoder import DocidTrie

        cached = self._decodable
        if cached is None:
            trie = self.trie
            limits = np.asarray(self.vocab_sizes)
            codes = trie.codes
            if len(codes) == 0 or bool((codes.max(0) < limits).all()):
                cached = trie
            else:
                cached = DocidTrie(codes[(codes < limits).all(1)], n_levels=self.n_levels)
            self._decodable = cached
        return cached

    # -- decoding --------------------------------------------------------------------------------
    def decode(self, queries: np.ndarray, *, beam_size: int, depth: int, modality: int | None = None) -> BeamResult:
        """The ``beam_size`` most likely existing prefixes of ``depth`` codes for each query."""
        from .decoder import beam_search

        return beam_search(
            self.decoder, self.decodable(), queries, beam_size=beam_size, depth=depth,
            force_prefix=() if modality is None else (modality,),
        )

    def prefix_filter(self, prefixes: Sequence[Sequence[int]]) -> Filter:
        """One ``MatchAny`` over this generation's tags of ``prefixes``."""
        return Filter(must=(Match(F_PREFIXES, tuple(tag(self.generation, p) for p in prefixes)),))


def docid_of(payload: dict[str, Any], generation: int | None) -> tuple[int, ...]:
    """The docid of a stored point in a generation, or ``()``."""
    if generation is None:
        return ()
    codes = (payload.get(RESERVED_KEY) or {}).get("docids", {}).get(str(generation))
    return tuple(int(c) for c in codes) if codes else ()


__all__ = ["GenerativeIndex", "PointId", "docid_fields", "docid_of", "retag", "tag"]
