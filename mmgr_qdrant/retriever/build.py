"""Build, rebuild and retrain for :class:`~mmgr_qdrant.retriever.MultimodalRetriever`."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifacts import BuildArtifacts, next_generation, save_build
from ..config import IndexConfig
from ..errors import NotBuiltError
from ..generative import GenerativeIndex, docid_fields, docid_of
from ..learning import training_plan
from ..progress import ProgressCallback, null_progress
from ..store import Store
from ..types import MODALITY_CODES, RESERVED_KEY, BuildReport, PointId
from ._common import logger


class BuildMixin:
    """Fitting docids and training the decoder (part of ``MultimodalRetriever``)."""

    store: Store
    config: IndexConfig
    _gen: GenerativeIndex | None
    _lock: threading.RLock

    if TYPE_CHECKING:  # provided by SearchMixin

        def _require_built(self, mode: str) -> GenerativeIndex: ...

    # -- build -----------------------------------------------------------------------------------
    def build(
        self,
        *,
        seed: int = 0,
        epochs: int | None = None,
        time_budget_s: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> BuildReport:
        """Fit the docid scheme, give every document its docid, train the decoder, save the artifacts.

        The new docids are written beside the previous build's and the switch happens last, so an
        interrupted build leaves the previous one in use, and searches are served throughout.

        Args:
            seed: seeds the scheme's fit and the decoder's training.
            epochs: most decoder training epochs (default from the index's decoder settings, else 30).
            time_budget_s: stop decoder training after this many seconds, keeping the best weights.
            progress: called for each stage ("scan", "fit", "train", "write").

        Returns:
            A :class:`BuildReport` with docid statistics and training figures.

        Raises:
            NotBuiltError: the collection is empty.
            ConfigError: the docid scheme or decoder settings are invalid.
        """
        return self._build(refit=True, seed=seed, epochs=epochs, time_budget_s=time_budget_s, progress=progress)

    def rebuild(
        self, *, seed: int = 0, epochs: int | None = None, time_budget_s: float | None = None, progress: ProgressCallback | None = None
    ) -> BuildReport:
        """Refit docids and retrain the decoder on the current corpus (same as :meth:`build`).

        The new docids are written beside the old ones and switched to atomically, so searches
        keep being served, from the old build, while it runs.
        """
        return self._build(refit=True, seed=seed, epochs=epochs, time_budget_s=time_budget_s, progress=progress)

    def retrain(
        self, *, seed: int = 0, epochs: int | None = None, time_budget_s: float | None = None, progress: ProgressCallback | None = None
    ) -> BuildReport:
        """Retrain the decoder on the current corpus, keeping every docid as it is.

        Use it when documents added since the build are found by their prefixes but the decoder
        has not learned them (see :meth:`stats`, ``staleness``).

        Raises:
            NotBuiltError: the index was never built.
        """
        self._require_built("retrain")
        return self._build(refit=False, seed=seed, epochs=epochs, time_budget_s=time_budget_s, progress=progress)

    def _build(self, *, refit: bool, seed: int, epochs: int | None, time_budget_s: float | None, progress: ProgressCallback | None) -> BuildReport:
        from ..decoder import DocidTrie, save_checkpoint, train_decoder
        from ..docids import add_tiebreak, docid_stats, get_scheme
        from ..routing import fit_temperature

        report = progress or null_progress
        t0 = time.perf_counter()
        with self._lock:
            ids, vecs, metas = self._scan(report)
            n = len(ids)
            if n == 0:
                raise NotBuiltError(f"Collection {self.config.collection!r} is empty; add documents before build().")
            mods = np.asarray([MODALITY_CODES[m.get("modality", "text")] for m in metas], dtype=np.int64)
            t1 = time.perf_counter()
            old = self._gen
            if refit or old is None:
                scheme = get_scheme(self.config.docid_scheme, **self.config.docid_params)
                scheme.fit(vecs, mods, seed=seed, progress=report)
                docids = add_tiebreak(scheme.assign(vecs, mods))
                generation = next_generation(self.store)
            else:  # retrain: the docids stay; documents added since the build already have theirs
                scheme, generation = old.scheme, old.generation
                docids = np.asarray([docid_of({RESERVED_KEY: m}, generation) for m in metas], dtype=np.int64)
            stats = docid_stats(docids, scheme.codebook_sizes())
            t2 = time.perf_counter()
            params = dict(self.config.decoder_params)
            plan = training_plan(  # indexing + link pairs + learned query pairs (mmgr_qdrant/learning.py)
                self.store, ids, vecs, docids, _training_pairs(ids, vecs, docids, metas), seed=seed,
                **{k: params.pop(k) for k in ("query_weight", "calibration_fraction") if k in params},
            )
            vocab = list(scheme.codebook_sizes()) + [max(64, 2 * (int(docids[:, -1].max()) + 1))]  # room for later tie-breaks
            params.update({k: v for k, v in (("epochs", epochs), ("time_budget_s", time_budget_s)) if v is not None})
            # Without a budget from the call or decoder_params, training stops after 4 minutes (best
            # epoch kept), so a build of 100k vectors stays in minutes on a 2-core CPU.
            params.setdefault("time_budget_s", 240.0)
            decoder, train = train_decoder(
                plan.queries, plan.targets, doc_vectors=vecs, doc_index=plan.doc_index, vocab_sizes=vocab, seed=seed, progress=report,
                weights=plan.weights, mix=plan.mix, doc_buckets=plan.buckets, **params,
            )
            t3 = time.perf_counter()
            if refit or old is None:
                self._write_docids(ids, docids, metas, generation, report)
            trie = DocidTrie(docids)
            info = {"n_docs": n, "n_pairs": len(plan.queries), "trained_at": time.time(), "docid_stats": stats.as_dict(),
                    "train": train.to_dict(), "scheme": self.config.docid_scheme, "learned_pairs": plan.n_learned,
                    "routing": fit_temperature(GenerativeIndex(scheme, decoder, trie, generation, {}, {}), plan.cal_queries,
                                               plan.cal_docids, self.config.hybrid)}
            scheme_params, scheme_arrays = scheme.state()
            save_build(self.store, BuildArtifacts(scheme_params, scheme_arrays, trie.to_arrays(), save_checkpoint(decoder), info, generation))
            self.store.flush()
            gen = GenerativeIndex(scheme, decoder, trie, generation, {}, info)
            gen.sync(self.store)
            self._gen = gen  # the switch for this process's searches
            t4 = time.perf_counter()
        result = BuildReport(
            n_docs=n, generation=generation, docid_stats=stats.as_dict(), train=train.to_dict(),
            fit_s=t2 - t1, train_s=t3 - t2, total_s=t4 - t0,
        )
        logger.info("%s %s: %d docs, generation %d, %.1fs", "built" if refit else "retrained", self.config.collection, n, generation, result.total_s)
        return result

    def _scan(self, report: ProgressCallback) -> tuple[list[PointId], np.ndarray, list[dict[str, Any]]]:
        ids: list[PointId] = []
        vecs: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        total = self.store.count()
        for page in self.store.scroll(batch_size=2048, with_vectors=True):
            for r in page:
                ids.append(r.id)
                vecs.append(r.vector)  # type: ignore[arg-type]
                metas.append(dict(r.payload.get(RESERVED_KEY) or {}))
            report("scan", len(ids), total, {})
        arr = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, self.config.dim), np.float32)
        return ids, arr, metas

    def _write_docids(self, ids: list[PointId], docids: np.ndarray, metas: list[dict[str, Any]], generation: int, report: ProgressCallback) -> None:
        step = 2048
        for start in range(0, len(ids), step):
            end = min(len(ids), start + step)
            values = [docid_fields(generation, docids[i], metas[i]) for i in range(start, end)]
            self.store.set_payload(ids[start:end], RESERVED_KEY, values)
            report("write", end, len(ids), {})


def _training_pairs(
    ids: list[PointId], vecs: np.ndarray, docids: np.ndarray, metas: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder training pairs: each document to its own docid, and linked documents to each other's."""
    row = {str(pid): i for i, pid in enumerate(ids)}
    src = list(range(len(ids)))
    dst = list(range(len(ids)))
    for i, meta in enumerate(metas):
        for other in meta.get("links", []) or []:
            j = row.get(str(other))
            if j is not None:
                src.append(i)
                dst.append(j)
    s = np.asarray(src)
    d = np.asarray(dst)
    return vecs[s], docids[d], d

