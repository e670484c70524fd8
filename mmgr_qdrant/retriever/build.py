"""The build part of a retriever: fit docids, train the decoder, save the artifacts, switch."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .. import bulk
from ..artifacts import BuildArtifacts, last_log_seq, next_generation, prune_docid_log, save_build
from ..errors import NotBuiltError
from ..generative import GenerativeIndex
from ..learning import training_plan
from ..payload import LibraryFields
from ..progress import ProgressCallback, null_progress
from ..types import BuildReport, PointId
from ._common import logger
from .state import Index

RETRAIN_BUDGET_S = 90.0  # default training budget of a retrain (it starts from the current decoder)


class Builder:
    """Building, rebuilding and retraining an index's generative side."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def build(
        self, *, refit: bool, seed: int = 0, epochs: int | None = None, time_budget_s: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> BuildReport:
        """Fit (``refit``) or keep the docids, train the decoder, save the build and switch to it."""
        from ..decoder import DocidTrie, save_checkpoint, train_decoder
        from ..docids import add_tiebreak, docid_stats, get_scheme
        from ..routing import fit_likeness, fit_temperature, level1_centres

        index = self.index
        config = index.config
        report = progress or null_progress
        t0 = time.perf_counter()
        with index.lock:
            old = index.refresh()
            if not refit and old is None:
                raise NotBuiltError(f"Collection {config.collection!r} has no build yet, so retrain() has nothing to keep; run build() first.")
            scanned = bulk.scan(index.store, config.dim, progress=report)  # preallocated arrays, the build's fields only
            ids, vecs, metas, mods = scanned.ids, scanned.vectors, scanned.metas, scanned.modalities
            n = len(ids)
            if n == 0:
                raise NotBuiltError(f"Collection {config.collection!r} is empty; add documents before build().")
            t1 = time.perf_counter()
            if refit or old is None:
                scheme = get_scheme(config.docid_scheme, **config.docid_params)
                scheme.fit(vecs, mods, seed=seed, progress=report)
                docids = add_tiebreak(scheme.assign(vecs, mods))
                generation = next_generation(index.store)
            else:  # retrain: the docids stay; documents without one in this generation get theirs now
                scheme, generation = old.scheme, old.generation
                docids = self._current_docids(old, ids, vecs, mods, metas, report)
            stats = docid_stats(docids, scheme.codebook_sizes())
            t2 = time.perf_counter()
            params = dict(config.decoder_params)
            plan = training_plan(  # indexing + link pairs + learned query pairs (mmgr_qdrant/learning.py)
                index.store, ids, vecs, docids, _training_pairs(ids, vecs, docids, metas), seed=seed,
                **{k: params.pop(k) for k in ("query_weight", "calibration_fraction") if k in params},
            )
            vocab = list(scheme.codebook_sizes()) + [max(64, 2 * (int(docids[:, -1].max()) + 1))]  # room for later tie-breaks
            params.update({k: v for k, v in (("epochs", epochs), ("time_budget_s", time_budget_s)) if v is not None})
            # Without a budget from the call or decoder_params, training stops after 4 minutes (best
            # epoch kept), so a build of 100k vectors stays in minutes on a 2-core CPU; a retrain,
            # which continues from the current decoder, after 90 seconds.
            params.setdefault("time_budget_s", 240.0 if refit or old is None else RETRAIN_BUDGET_S)
            decoder, train = train_decoder(
                plan.queries, plan.targets, doc_vectors=vecs, doc_index=plan.doc_index, vocab_sizes=vocab, seed=seed, progress=report,
                weights=plan.weights, mix=plan.mix, doc_buckets=plan.buckets, exclude=plan.exclude,
                init=None if refit or old is None else old.decoder, **params,  # a retrain continues from the current decoder
            )
            t3 = time.perf_counter()
            if refit or old is None:
                self._write_docids(ids, docids, metas, generation, report)
            trie = DocidTrie(docids)
            centres = level1_centres(vecs, docids)
            fresh = GenerativeIndex(scheme, decoder, trie, generation, {}, {}, None, centres)
            routing = {**fit_temperature(fresh, plan.cal_queries, plan.cal_docids, config.hybrid),
                       "min_likeness": fit_likeness(fresh, vecs, mods, seed=seed)}
            info = {"n_docs": n, "n_pairs": plan.n_pairs, "trained_at": time.time(), "docid_stats": stats.as_dict(),
                    "train": train.to_dict(), "scheme": config.docid_scheme, "index_id": config.index_id, "learned_pairs": plan.n_learned,
                    "routing": routing}
            if plan.memory_info is not None:
                info["memory"] = plan.memory_info
            log_seq = last_log_seq(index.store)
            info["docid_log_seq"] = log_seq  # the docid log up to here is inside this trie
            scheme_params, scheme_arrays = scheme.state()
            extra = {"likeness_centres": centres[0], "likeness_modalities": centres[1], **(plan.memory.arrays() if plan.memory is not None else {})}
            save_build(index.store, BuildArtifacts(scheme_params, scheme_arrays, trie.to_arrays(), save_checkpoint(decoder), info, generation, extra))
            prune_docid_log(index.store, generation, log_seq)
            index.store.flush()
            gen = GenerativeIndex(scheme, decoder, trie, generation, {}, info, plan.memory, centres)
            gen.sync(index.store)
            index.swap(gen)  # the switch for this process's searches
            index.store.ensure_index(threshold=0)  # the engine's HNSW over the built collection (EngineConfig.hnsw)
            t4 = time.perf_counter()
        result = BuildReport(
            n_docs=n, generation=generation, docid_stats=stats.as_dict(), train=train.to_dict(),
            fit_s=t2 - t1, train_s=t3 - t2, total_s=t4 - t0,
        )
        logger.info("%s %s: %d docs, generation %d, %.1fs", "built" if refit else "retrained", config.collection, n, generation, result.total_s)
        return result

    def _current_docids(
        self, gen: GenerativeIndex, ids: list[PointId], vecs: np.ndarray, mods: np.ndarray, metas: list[LibraryFields],
        report: ProgressCallback,
    ) -> np.ndarray:
        """Every document's docid in ``gen``'s generation, assigning the frozen scheme's to those without one."""
        rows = [m.docid(gen.generation) for m in metas]
        missing = [i for i, d in enumerate(rows) if not d]
        if missing:
            sel = np.asarray(missing)
            new = gen.assign(vecs[sel], mods[sel])
            try:
                self._write_docids([ids[i] for i in missing], new, [metas[i] for i in missing], gen.generation, report)
            except BaseException:
                gen.release(new)
                raise
            gen.add(new)
            for i, d in zip(missing, new):
                rows[i] = tuple(int(c) for c in d)
            logger.info("gave %d documents without a generation-%d docid their docid", len(missing), gen.generation)
        return np.asarray(rows, dtype=np.int64)

    def _write_docids(
        self, ids: Sequence[PointId], docids: np.ndarray, metas: Sequence[LibraryFields], generation: int, report: ProgressCallback
    ) -> None:
        bulk.write_docids(self.index.store, ids, docids, metas, generation, progress=report)


def _training_pairs(
    ids: list[PointId], vecs: np.ndarray, docids: np.ndarray, metas: list[LibraryFields]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder training pairs: each document to its own docid, and linked documents to each other's.

    Without links the queries are ``vecs`` itself, not a copy (a million 512-d vectors are 2 GB).
    """
    if not any(meta.links for meta in metas):
        return vecs, docids, np.arange(len(ids))
    row = {pid: i for i, pid in enumerate(ids)}
    src = list(range(len(ids)))
    dst = list(range(len(ids)))
    for i, meta in enumerate(metas):
        for other in meta.links:
            j = row.get(other)
            if j is not None:
                src.append(i)
                dst.append(j)
    s = np.asarray(src)
    d = np.asarray(dst)
    return vecs[s], docids[d], d
