"""Search for :class:`~mmgr_qdrant.retriever.MultimodalRetriever`: dense, hybrid and generative modes, boolean queries."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..config import IndexConfig
from ..encoders.base import Encoder
from ..errors import InputError, NotBuiltError, NotFoundError
from ..filters import Filter, HasId, all_of
from ..generative import GenerativeIndex, docid_of, retag
from ..images import load_image
from ..store import Store
from ..store.base import Record, check_vectors, normalize_id
from ..types import RESERVED_KEY, Hit, PointId
from ._common import _MATCH_NOTHING, SearchMode, _as_list, _check_k, _hit, _modality_code, _modality_filter, _where_filter

if TYPE_CHECKING:
    from ..setops import AtomResolution, Compiled, ConceptCutoff, Expr


class SearchMixin:
    """Searching (part of ``MultimodalRetriever``)."""

    store: Store
    config: IndexConfig
    _gen: GenerativeIndex | None
    _lock: threading.RLock
    cutoff: ConceptCutoff
    negative_cutoff: ConceptCutoff

    if TYPE_CHECKING:  # the lazily loaded property of MultimodalRetriever

        @property
        def encoder(self) -> Encoder: ...

    # -- search --------------------------------------------------------------------------------
    def search(
        self,
        query: str | Expr | None = None,
        *,
        image: Any = None,
        vector: np.ndarray | None = None,
        k: int = 10,
        modality: str | None = None,
        mode: SearchMode | None = None,
        where: dict[str, Any] | None = None,
        explain: bool = False,
    ) -> list[Hit]:
        """Search by text, image or vector.

        Args:
            query: a text query, or a boolean :class:`~mmgr_qdrant.setops.Q` expression
                (``Q.text("cat") & ~Q.text("dog")``; parse a string with ``Q.parse``). A lone
                ``Q.text`` or ``Q.image`` is searched like a plain text or image query. An
                expression's hits score by the expression's best ranking vector over the
                document plus its best linked document (so a score may exceed 1; see
                ``Compiled.ranking_vectors`` and docs/architecture.md, "Boolean queries").
            image: a query image (path, PIL image, bytes or array).
            vector: a query embedding of the index's dimension.
            k: hits to return.
            modality: only documents of this modality (``"image"`` or ``"text"``).
            mode: ``"dense"`` (exact vector search), ``"hybrid"`` or ``"generative"``; the default is
                hybrid once the index is built, dense before.
            where: payload conditions (``{"field": value}`` or ``{"field": [v1, v2]}``).
            explain: attach per-stage figures to each hit's ``explain``.

        Returns:
            Up to ``k`` hits, best first.

        Raises:
            InputError: no query, more than one query, an empty text, an unreadable image, or ``k < 1``.
        """
        from ..setops import Expr, Image, Text

        if isinstance(query, Text):  # a lone text atom (a parsed plain string) is an ordinary text query
            query = query.text
        elif isinstance(query, Image) and image is None and vector is None:
            image, query = query.source, None
        if isinstance(query, Expr):
            if image is not None or vector is not None:
                raise InputError("Give a Q expression alone; put images inside it with Q.image(...).")
            _check_k(k)
            return self._search_expr(query, k, modality, where, explain)
        vec = self._query_vector(query, image, vector)
        _check_k(k)
        flt = all_of(_modality_filter(modality), _where_filter(where))
        chosen = self._mode(mode)
        if chosen == "dense" or (chosen == "hybrid" and self._gen is None):
            return self._dense(vec, k, flt, explain)
        gen = self._require_built(chosen)
        if chosen == "generative":
            return self._generative(gen, vec, k, modality, flt, explain)
        return self._hybrid(gen, vec[None, :], k, modality, [flt], explain)[0]

    def search_batch(
        self,
        queries: Sequence[str] | None = None,
        *,
        images: Sequence[Any] | None = None,
        vectors: np.ndarray | None = None,
        k: int = 10,
        modality: str | None = None,
        mode: SearchMode | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Search many queries at once (texts, images or vectors); one list of hits per query.

        Embedding, beam search and the Qdrant queries each run once for the whole batch.
        """
        given = [x is not None for x in (queries, images, vectors)]
        if sum(given) != 1:
            raise InputError("Give exactly one of queries (texts), images= or vectors= to search_batch.")
        _check_k(k)
        if queries is not None:
            texts = _as_list(queries, "queries")
            for i, t in enumerate(texts):
                if not isinstance(t, str) or not t.strip():
                    raise InputError(f"Query #{i} {t!r} is empty or not a string; type what to search for.")
            vecs = self.encoder.encode_texts(texts)
        elif images is not None:
            vecs = self.encoder.encode_images([load_image(im) for im in _as_list(images, "images")])
        else:
            vecs = check_vectors(np.asarray(vectors, dtype=np.float32), self.config.dim, "query vectors")
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        flt = all_of(_modality_filter(modality), _where_filter(where))
        chosen = self._mode(mode)
        if len(vecs) == 0:
            return []
        if chosen == "dense" or (chosen == "hybrid" and self._gen is None):
            g = self._gen.generation if self._gen is not None else None
            return [[_hit(r, r.score, None, g) for r in rows] for rows in self.store.query_batch(vecs, k, [flt] * len(vecs))]
        gen = self._require_built(chosen)
        if chosen == "generative":
            return [self._generative(gen, v, k, modality, flt, False) for v in vecs]
        return self._hybrid(gen, vecs, k, modality, [flt] * len(vecs), False)

    def _mode(self, mode: str | None) -> SearchMode:
        if mode is None:
            return "hybrid" if self._gen is not None else "dense"
        if mode in ("hybrid", "generative", "dense"):
            return cast(SearchMode, mode)
        raise InputError(f"mode={mode!r} is not known; use 'hybrid', 'generative' or 'dense'.")

    def _require_built(self, mode: str) -> GenerativeIndex:
        gen = self._gen
        if gen is None:
            raise NotBuiltError(
                f"Collection {self.config.collection!r} has no build yet, so mode={mode!r} has no decoder; run build() first."
            )
        return gen

    def _query_vector(self, query: str | None, image: Any, vector: np.ndarray | None) -> np.ndarray:
        given = [x is not None for x in (query, image, vector)]
        if sum(given) != 1:
            raise InputError("Give exactly one of query (text), image= or vector= to search.")
        if query is not None:
            if not isinstance(query, str) or not query.strip():
                raise InputError(f"The text query {query!r} is empty; type what to search for.")
            return self.encoder.encode_texts([query])[0]
        if image is not None:
            return self.encoder.encode_images([load_image(image)])[0]
        arr = check_vectors(np.asarray(vector, dtype=np.float32), self.config.dim, "query vector")[0]
        norm = float(np.linalg.norm(arr))
        if norm == 0:
            raise InputError("The query vector is all zeros; it has no direction to search by.")
        return arr / norm

    # -- boolean queries --------------------------------------------------------------------------
    def compile(self, expr: Expr | str, *, allow_negative_only: bool = False) -> Compiled:
        """Compile a Q expression (or a query string) against this index, without searching.

        Concept atoms (text, image) resolve to the docid prefixes the decoder assigns them, cut off
        by ``self.cutoff``, or by the narrower ``self.negative_cutoff`` for a concept that appears
        only under NOT (both :class:`~mmgr_qdrant.setops.ConceptCutoff`). ``compiled.explain()``
        shows the sets and the filter.

        Raises:
            NotBuiltError: the expression has a text or image atom and the index is not built.
            QuerySyntaxError: a malformed query string.
            NotFoundError: an id in ``Q.ids`` is not in the index.
        """
        from ..setops import compile_expr

        return compile_expr(expr, _Resolver(self), allow_negative_only=allow_negative_only)

    def _search_expr(self, expr: Expr, k: int, modality: str | None, where: dict[str, Any] | None, explain: bool) -> list[Hit]:
        compiled = self.compile(expr, allow_negative_only=True)
        gen = self._gen
        flt = retag(compiled.filter, gen.generation) if gen is not None else compiled.filter
        flt = all_of(flt, _modality_filter(modality), _where_filter(where))
        vecs = compiled.ranking_vectors
        g = gen.generation if gen is not None else None
        info = {"mode": "boolean", "query": compiled.explain()} if explain else None
        if vecs is None:  # nothing positive to rank by: the matching documents in store order
            rows: list[Any] = next(iter(self.store.scroll(flt, batch_size=k)), [])[:k]
            return [_hit(r, 0.0, info, g) for r in rows]
        return [_hit(r, score, {**info, **parts} if info else None, g) for r, score, parts in self._rank_with_links(vecs, k, flt)]

    def _rank_with_links(self, vecs: np.ndarray, k: int, flt: Filter | None) -> list[tuple[Record, float, dict[str, Any]]]:
        """The ``k`` best documents ``flt`` admits, each scored over itself and its linked documents.

        ``score(d) = max over ranking vectors v of [cos(v, d) + max over documents l linked to d
        of cos(v, l)]`` (the second term is 0 for a document without links). So an image whose
        caption says "dog" ranks high for ``dog`` even where its pixels are ambiguous: the
        cross-modal map is evidence, and images and their captions are scored together.
        Candidates are the ``max(4k, 50)`` best admitted documents for each vector and the
        admitted documents linked from the ``max(4k, 50)`` best documents of any kind (their
        captions, usually); every candidate is then scored exactly.
        """
        pool = max(4 * k, 50)
        direct = self.store.query_batch(vecs, pool, [flt] * len(vecs))
        anywhere = self.store.query_batch(vecs, pool, [None] * len(vecs))
        found: dict[PointId, Any] = {r.id: r for rows in direct for r in rows}
        via = {normalize_id(x) for rows in anywhere for r in rows for x in _links(r.payload)} - found.keys()
        if via:  # documents reached through a link must pass the filter too
            for r in self.store.query(vecs[0], len(via), all_of(flt, Filter(must=(HasId(tuple(via)),)))):
                found[r.id] = r
        if not found:
            return []
        if not via and not any(_links(r.payload) for r in found.values()):
            # no link evidence among the candidates: each document's best direct score is exact for the top k
            best: dict[PointId, tuple[float, int, Any]] = {}
            for v, scored in enumerate(direct):
                for r in scored:
                    if r.id not in best or r.score > best[r.id][0]:
                        best[r.id] = (r.score, v, r)
            ranked = sorted(best.values(), key=lambda t: -t[0])[:k]
            return [(r, s, {"vector_score": s, "linked_score": 0.0, "linked_id": None, "ranking_term": v}) for s, v, r in ranked]
        cands = self.store.retrieve(list(found), with_vectors=True)
        linked_ids = list(dict.fromkeys(normalize_id(x) for c in cands for x in _links(c.payload)))
        linked = {r.id: r for r in self.store.retrieve(linked_ids, with_vectors=True)} if linked_ids else {}
        own = np.stack([np.asarray(c.vector, dtype=np.float32) for c in cands]) @ vecs.T  # (n, v)
        best_link = np.zeros_like(own)
        best_link_id: list[list[PointId | None]] = [[None] * len(vecs) for _ in cands]
        if linked:
            link_rows = list(linked)
            link_sim = np.stack([np.asarray(linked[i].vector, dtype=np.float32) for i in link_rows]) @ vecs.T
            row_of = {i: n for n, i in enumerate(link_rows)}
            for n, c in enumerate(cands):
                rows = [row_of[x] for x in (normalize_id(y) for y in _links(c.payload)) if x in row_of]
                if rows:
                    sims = link_sim[rows]  # (links, v)
                    best_link[n] = sims.max(0)
                    best_link_id[n] = [link_rows[rows[j]] for j in sims.argmax(0)]
        total = own + best_link
        which = total.argmax(1)
        score = total[np.arange(len(cands)), which]
        out = []
        for n in np.argsort(-score, kind="stable")[:k]:
            v = int(which[n])
            parts = {"vector_score": float(own[n, v]), "linked_score": float(best_link[n, v]), "linked_id": best_link_id[n][v],
                     "ranking_term": v}
            out.append((cands[n], float(score[n]), parts))
        return out

    def _concept(self, vec: np.ndarray, negated: bool = False) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
        """The prefixes a concept matches, in every modality: a text concept matches images too.

        The decoder, given a text embedding, puts most of its mass on text docids, so the cut-off
        (``self.cutoff``, or ``self.negative_cutoff`` for a concept that appears only under NOT)
        is applied per modality (each decoded with the modality forced) and the sets are joined.
        """
        from ..setops import select_prefixes

        gen = self._gen
        if gen is None:
            raise NotBuiltError(
                f"Collection {self.config.collection!r} has no build yet, and text or image terms in a boolean query "
                "stand for the docid prefixes the decoder assigns them; run build() first."
            )
        cut = self.negative_cutoff if negated else self.cutoff
        depth = min(cut.depth or 1 + self.config.hybrid.depth, gen.n_levels)

        def count(prefixes: Sequence[tuple[int, ...]]) -> Sequence[int]:  # the cut-off's prefixes share one depth
            return gen.prefix_counts(np.asarray(prefixes, dtype=np.int64).reshape(len(prefixes), -1)).tolist()

        modalities = sorted({int(c) for c in gen.trie.prefixes(1)[:, 0]}) if len(gen.trie) else []
        prefixes: list[tuple[int, ...]] = []
        probs: list[float] = []
        for m in modalities:
            pairs = gen.decode(vec[None, :], beam_size=cut.beam_size, depth=depth, modality=m).query(0)
            kept, p = select_prefixes([pre for pre, _ in pairs], [sc for _, sc in pairs], cut, count=count, total=len(gen.trie))
            prefixes.extend(kept)
            probs.extend(p)
        return tuple(prefixes), tuple(probs)

    def _dense(self, vec: np.ndarray, k: int, flt: Filter | None, explain: bool) -> list[Hit]:
        gen = self._gen.generation if self._gen is not None else None
        rows = self.store.query(vec, k, flt)
        return [_hit(r, r.score, {"mode": "dense", "vector_score": r.score} if explain else None, gen) for r in rows]

    def _hybrid(
        self, gen: GenerativeIndex, vecs: np.ndarray, k: int, modality: str | None, flts: list[Filter | None], explain: bool
    ) -> list[list[Hit]]:
        """Decode prefixes, one filtered Qdrant query per query, fuse scores, fall back to dense.

        ``score = cosine + fusion_weight * p(prefix)``, where ``p`` is the decoder's probability of
        the hit's prefix renormalized over the kept prefixes (see docs/architecture.md, "Score
        fusion"). The prefixes kept follow the router's calibrated probability mass between a floor
        and the ``max_fraction`` ceiling (``mmgr_qdrant.routing``).
        """
        from ..routing import admit_batch

        hc = self.config.hybrid
        # the calibrated mass rule (HybridConfig.admission="mass") or the fixed budget ("fixed"): mmgr_qdrant/routing.py
        depth, admissions = admit_batch(gen, vecs, hc, k=k, modality=_modality_code(modality))
        filters, probs, admitted = [], [], []
        for i in range(len(vecs)):
            pairs, n_admitted = admissions[i].pairs, admissions[i].n_admitted
            lp = np.asarray([s for _, s in pairs], dtype=np.float64)
            p = np.exp(lp - lp.max()) if len(lp) else lp
            p = p / p.sum() if len(p) else p
            probs.append({pre: float(pi) for (pre, _), pi in zip(pairs, p)})
            admitted.append(n_admitted)
            filters.append(all_of(gen.prefix_filter([pre for pre, _ in pairs]), flts[i]) if pairs else None)
        results = self.store.query_batch(vecs, k, [f if f is not None else _MATCH_NOTHING for f in filters])
        out: list[list[Hit]] = []
        for i, rows in enumerate(results):
            hits = []
            for r in rows:
                docid = docid_of(r.payload, gen.generation)
                p = probs[i].get(tuple(docid[:depth]), 0.0)
                score = r.score + hc.fusion_weight * p
                info = {"mode": "hybrid", "vector_score": r.score, "prefix": docid[:depth], "prefix_prob": p,
                        "beam": [list(pre) for pre in probs[i]], **admissions[i].explain()} if explain else None
                hits.append(_hit(r, score, info, gen.generation))
            if len(hits) < k:  # too few documents behind the prefixes: fill up from dense search
                seen = {h.id for h in hits}
                for r in self.store.query(vecs[i], k, flts[i]):
                    if r.id not in seen and len(hits) < k:
                        hits.append(_hit(r, r.score, {"mode": "dense-fallback", "vector_score": r.score} if explain else None, gen.generation))
            hits.sort(key=lambda h: -h.score)
            out.append(hits)
        return out

    def _generative(self, gen: GenerativeIndex, vec: np.ndarray, k: int, modality: str | None, flt: Filter | None, explain: bool) -> list[Hit]:
        """The decoder's own ranking: whole docids by beam score, no vector ranking."""
        beam = max(k, self.config.hybrid.beam_size)
        pairs = gen.decode(vec[None, :], beam_size=beam, depth=gen.n_levels, modality=_modality_code(modality)).query(0)
        if not pairs:
            return []
        rows = self.store.query(vec, len(pairs), all_of(gen.prefix_filter([p for p, _ in pairs]), flt))
        by_docid = {docid_of(r.payload, gen.generation): r for r in rows}
        hits = []
        for docid, lp in pairs:
            r = by_docid.get(docid)
            if r is not None:
                info = {"mode": "generative", "beam_logprob": lp, "vector_score": r.score} if explain else None
                hits.append(_hit(r, float(np.exp(lp)), info, gen.generation))
            if len(hits) == k:
                break
        return hits


def _links(payload: dict[str, Any]) -> list[Any]:
    return list((payload.get(RESERVED_KEY) or {}).get("links", []) or [])


class _Resolver:
    """Resolves the atoms of a boolean query against one retriever (the setops ``Resolver``)."""

    def __init__(self, retriever: SearchMixin) -> None:
        self.r = retriever

    def resolve_text(self, text: str, *, negated: bool = False) -> AtomResolution:
        from ..setops import AtomResolution

        vec = self.r._query_vector(text, None, None)
        prefixes, probs = self.r._concept(vec, negated)
        return AtomResolution(vec, prefixes, probs)

    def resolve_image(self, image: Any, *, negated: bool = False) -> AtomResolution:
        from ..setops import AtomResolution

        vec = self.r._query_vector(None, image, None)
        prefixes, probs = self.r._concept(vec, negated)
        return AtomResolution(vec, prefixes, probs)

    def embed_text(self, text: str) -> np.ndarray:
        return self.r._query_vector(text, None, None)

    def check_ids(self, ids: Sequence[PointId]) -> None:
        wanted = [normalize_id(i) for i in ids]
        found = {r.id for r in self.r.store.retrieve(wanted)}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFoundError(f"Ids {missing[:5]} in the query are not in collection {self.r.config.collection!r}; check them with get().")
