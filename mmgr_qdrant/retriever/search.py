"""The search part of a retriever: dense, hybrid and generative modes, and boolean queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import InputError, NotFoundError
from ..filters import Filter, HasId, all_of
from ..generative import GenerativeIndex, docid_of, retag
from ..images import load_image
from ..payload import LibraryFields, hit_fields
from ..store.base import Record, normalize_id, unit_rows
from ..types import Hit, PointId
from ._common import (
    _MATCH_NOTHING,
    MAX_K,
    SearchMode,
    _as_list,
    _check_k,
    _hit,
    _modality_code,
    _modality_filter,
    _where_filter,
)
from .state import Index

if TYPE_CHECKING:
    from ..setops import AtomResolution, Compiled, ConceptCutoff, Expr


class Search:
    """Searching: one batched path for every mode, and boolean expressions."""

    def __init__(self, index: Index) -> None:
        from ..setops import DEFAULT_CUTOFF, DEFAULT_NEGATIVE_CUTOFF

        self.index = index
        self.cutoff: ConceptCutoff = DEFAULT_CUTOFF
        self.negative_cutoff: ConceptCutoff = DEFAULT_NEGATIVE_CUTOFF

    # -- plain queries -------------------------------------------------------------------------------
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
        collapse_links: bool = False,
        text: str | None = None,
        fusion_weight: float | None = None,
        group_by: str | None = None,
        moments: int = 3,
    ) -> list[Hit]:
        from ..setops import Composed, Expr, Image, Text

        if group_by is not None:  # video grouping: the same rule in the library on every backend
            from ..video import check_group_by, group_by_video

            check_group_by(group_by)
            _check_k(k)
            return group_by_video(
                lambda limit: self.search(query, image=image, vector=vector, text=text, k=limit, modality=modality, mode=mode,
                                          where=where, explain=explain, fusion_weight=fusion_weight, collapse_links=collapse_links),
                k, moments)
        if isinstance(query, Composed) and image is None and vector is None and text is None:
            fusion_weight = query.weight if fusion_weight is None else fusion_weight
            image, text, query = query.image.source, query.text.text, None
        if text is not None or (image is not None and isinstance(query, str)):
            if isinstance(query, Expr):
                raise InputError("Give a Q expression alone; a composed query is Q.image(ref) + Q.text(...) or image= with text=.")
            vector, query, image = self._composed_vector(query, image, text, vector, fusion_weight), None, None
        elif fusion_weight is not None:
            raise InputError("fusion_weight= applies to composed queries only; give image= and text= (or Q.image(...) + Q.text(...)).")
        if isinstance(query, Text):  # a lone text atom (a parsed plain string) is an ordinary text query
            query = query.text
        elif isinstance(query, Image) and image is None and vector is None:
            image, query = query.source, None
        if isinstance(query, Expr):
            if image is not None or vector is not None:
                raise InputError("Give a Q expression alone; put images inside it with Q.image(...).")
            _check_k(k)
            hits = self._search_expr(query, _widened(k, collapse_links), modality, where, explain)
            return _collapse(hits, k) if collapse_links else hits
        given = sum(x is not None for x in (query, image, vector))
        if given != 1:
            raise InputError("Give exactly one of query (text), image= or vector= to search.")
        return self.search_batch(
            None if query is None else [query], images=None if image is None else [image],
            vectors=None if vector is None else np.asarray(vector)[None] if np.ndim(vector) == 1 else vector,
            k=k, modality=modality, mode=mode, where=where, explain=explain, collapse_links=collapse_links, _one=True,
        )[0]

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
        explain: bool = False,
        collapse_links: bool = False,
        _one: bool = False,
    ) -> list[list[Hit]]:
        if sum(x is not None for x in (queries, images, vectors)) != 1:
            raise InputError("Give exactly one of queries (texts), images= or vectors= to search_batch.")
        _check_k(k)
        flt = all_of(_modality_filter(modality), _where_filter(where))
        chosen = self._mode(mode)
        vecs = self.embed_queries(queries, images, vectors, single=_one)
        if len(vecs) == 0:
            return []
        wide = _widened(k, collapse_links)
        gen = self.index.generative
        if chosen == "dense" or (chosen == "hybrid" and gen is None):
            results = self._dense(vecs, wide, flt, explain)
        elif chosen == "generative":
            gen = self.index.require_built("mode='generative'")
            if gen.memory is not None and self.index.config.hybrid.query_expansion:  # the decoder reads the expanded query too
                vecs, _ = gen.memory.expand(vecs)
            results = [self._generative(gen, v, wide, modality, flt, explain) for v in vecs]
        else:
            assert gen is not None
            results = self._hybrid(gen, vecs, wide, modality, flt, explain)
        return [_collapse(hits, k) for hits in results] if collapse_links else results

    def embed_queries(self, texts: Sequence[str] | None, images: Sequence[Any] | None, vectors: Any, *, single: bool = False) -> np.ndarray:
        """Query embeddings ``(n, dim)``, unit length, from texts, images or vectors (exactly one given)."""
        encoder = self.index.encoder if vectors is None else None
        if texts is not None:
            items = _as_list(texts, "queries")
            for i, t in enumerate(items):
                if not isinstance(t, str) or not t.strip():
                    what = "The text query" if single else f"Query #{i}"
                    raise InputError(f"{what} {t!r} is empty or not a string; type what to search for.")
            assert encoder is not None
            return encoder.encode_texts(items) if items else np.zeros((0, self.index.config.dim), np.float32)
        if images is not None:
            assert encoder is not None
            loaded = [load_image(im) for im in _as_list(images, "images")]
            return encoder.encode_images(loaded) if loaded else np.zeros((0, self.index.config.dim), np.float32)
        vecs = unit_rows(vectors, self.index.config.dim, "query vector" if single else "query vectors")
        if single and len(vecs) != 1:
            raise InputError(f"vector= holds {len(vecs)} vectors; give one, or use search_batch(vectors=...) for many.")
        return vecs

    # -- composed queries ------------------------------------------------------------------------------
    def _composed_vector(self, query: str | None, image: Any, text: str | None, vector: Any, weight: float | None) -> np.ndarray:
        """The fused query embedding of a reference image and a modification text (see ``fusion.compose``)."""
        from ..fusion import check_weight, compose

        if query is not None and text is not None:
            raise InputError("Give the modification text once, as query or as text=, not both.")
        words = text if text is not None else query
        if image is None or vector is not None or words is None:
            raise InputError("A composed query needs image= (the reference) and text= (the change), and no vector=.")
        if weight is not None:
            check_weight(weight)
        img = self.embed_queries(None, [image], None, single=True)[0]
        txt = self.embed_queries([words], None, None, single=True)[0]
        return compose(img, txt, weight=weight, trained=None if weight is not None else self.index.fusion())

    def train_fusion(
        self, references: Sequence[Any], modifications: Sequence[str], targets: Sequence[PointId], *, progress: Any = None, **params: Any
    ) -> dict[str, Any]:
        from ..fusion import train_and_save

        encoder = self.index.encoder
        module = train_and_save(self.index.store, encoder.encode_images, encoder.encode_texts, references, modifications, targets,
                                progress=progress, **params)
        self.index.set_fusion(module)
        return dict(module.info)

    def _mode(self, mode: str | None) -> SearchMode:
        if mode is None:
            return "hybrid" if self.index.is_built else "dense"
        if mode in ("hybrid", "generative", "dense"):
            return cast(SearchMode, mode)
        raise InputError(f"mode={mode!r} is not known; use 'hybrid', 'generative' or 'dense'.")

    def _dense(self, vecs: np.ndarray, k: int, flt: Filter | None, explain: bool) -> list[list[Hit]]:
        g = self.index.generation
        rows = self.index.store.query_batch(vecs, k, [flt] * len(vecs))
        return [[_hit(r, r.score, {"mode": "dense", "vector_score": r.score} if explain else None, g) for r in row] for row in rows]

    def _hybrid(self, gen: GenerativeIndex, vecs: np.ndarray, k: int, modality: str | None, flt: Filter | None, explain: bool) -> list[list[Hit]]:
        """Decode prefixes, one filtered Qdrant query per query, fuse scores, fall back to dense.

        ``score = cosine + fusion_weight * p(prefix)``, where ``p`` is the decoder's probability of
        the hit's prefix renormalized over the kept prefixes (see docs/architecture.md, "Score
        fusion"). The prefixes kept follow the router's calibrated probability mass between a floor
        and the ``max_fraction`` ceiling (``mmgr_qdrant.routing``; ``HybridConfig.admission="fixed"``
        keeps the earlier fixed budget).
        """
        from ..routing import admit_batch

        store = self.index.store
        hc = self.index.config.hybrid
        g = gen.generation
        # A query near learned ones moves towards the documents they found relevant (memory.py); the
        # router and the ranking both read the moved vector.
        memory = gen.memory
        ranking, nearest = memory.expand(vecs, weight=None if hc.query_expansion else 0.0) if memory is not None else (vecs, None)
        covered = nearest >= memory.min_sim if memory is not None and nearest is not None else None  # near a learned query
        depth, admissions = admit_batch(gen, ranking, hc, k=k, modality=_modality_code(modality), covered=covered)
        filters: list[Filter | None] = []
        probs: list[dict[tuple[int, ...], float]] = []
        for adm in admissions:
            if adm.unfiltered or not adm.pairs:  # unfiltered: the router cannot place this query; every document, by the vector alone
                filters.append(flt if adm.unfiltered else _MATCH_NOTHING)
                probs.append({})
                continue
            prefixes = [pre for pre, _ in adm.pairs]
            lp = np.asarray([s for _, s in adm.pairs], dtype=np.float64)
            p = np.exp(lp - lp.max())
            probs.append(dict(zip(prefixes, (p / p.sum()).tolist())))
            filters.append(all_of(gen.prefix_filter(prefixes), flt))
        # the prefix filter alone needs no ACORN: its documents lie around the query (EngineConfig.hybrid_acorn)
        results = store.query_batch(ranking, k, filters, acorn=flt is not None or self.index.config.engine.hybrid_acorn)
        out: list[list[Hit]] = []
        for i, rows in enumerate(results):
            learned = {"expansion": {"weight": memory.weight if hc.query_expansion else 0.0, "nearest_learned": round(float(nearest[i]), 4),
                                     "min_sim": memory.min_sim}} if memory is not None and nearest is not None and explain else {}
            hits = []
            for r in rows:
                f = hit_fields(r.payload, g)
                prefix = f.docid[:depth]
                p_hit = probs[i].get(prefix, 0.0)
                score = r.score + hc.fusion_weight * p_hit
                info = {"mode": "hybrid", "vector_score": r.score, "prefix": prefix, "prefix_prob": p_hit,
                        "beam": [list(pre) for pre in probs[i]], **admissions[i].explain(), **learned} if explain else None
                hits.append(_hit(r, score, info, g, f))
            if len(hits) < k:  # too few documents behind the prefixes: fill up from dense search
                seen = {h.id for h in hits}
                for r in store.query(ranking[i], k, flt):
                    if r.id not in seen and len(hits) < k:
                        hits.append(_hit(r, r.score, {"mode": "dense-fallback", "vector_score": r.score} if explain else None, gen.generation))
            hits.sort(key=lambda h: -h.score)
            out.append(hits)
        return out

    def _generative(self, gen: GenerativeIndex, vec: np.ndarray, k: int, modality: str | None, flt: Filter | None, explain: bool) -> list[Hit]:
        """The decoder's own ranking: whole docids by beam score, no vector ranking."""
        beam = min(max(k, self.index.config.hybrid.beam_size), max(len(gen.trie), 1))  # never more beams than docids
        pairs = gen.decode(vec[None, :], beam_size=beam, depth=gen.n_levels, modality=_modality_code(modality)).query(0)
        if not pairs:
            return []
        rows = self.index.store.query(vec, len(pairs), all_of(gen.prefix_filter([p for p, _ in pairs]), flt))
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

    # -- boolean queries -------------------------------------------------------------------------------
    def compile(self, expr: Expr | str, *, allow_negative_only: bool = False) -> Compiled:
        from ..setops import compile_expr

        return compile_expr(expr, _Resolver(self), allow_negative_only=allow_negative_only)

    def _search_expr(self, expr: Expr, k: int, modality: str | None, where: dict[str, Any] | None, explain: bool) -> list[Hit]:
        compiled = self.compile(expr, allow_negative_only=True)
        g = self.index.generation
        flt = retag(compiled.filter, g) if g is not None else compiled.filter
        flt = all_of(flt, _modality_filter(modality), _where_filter(where))
        vecs = compiled.ranking_vectors
        info = {"mode": "boolean", "query": compiled.explain()} if explain else None
        if vecs is None:  # nothing positive to rank by: the matching documents in store order
            rows: list[Any] = next(iter(self.index.store.scroll(flt, batch_size=k)), [])[:k]
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
        store = self.index.store
        pool = max(4 * k, 50)
        direct = store.query_batch(vecs, pool, [flt] * len(vecs))
        anywhere = store.query_batch(vecs, pool, [None] * len(vecs))
        found: dict[PointId, Any] = {r.id: r for rows in direct for r in rows}
        via = {x for rows in anywhere for r in rows for x in LibraryFields.of(r.payload).links} - found.keys()
        if via:  # documents reached through a link must pass the filter too
            for r in store.query(vecs[0], len(via), all_of(flt, Filter(must=(HasId(tuple(via)),)))):
                found[r.id] = r
        if not found:
            return []
        if not via and not any(LibraryFields.of(r.payload).links for r in found.values()):
            # no link evidence among the candidates: each document's best direct score is exact for the top k
            best: dict[PointId, tuple[float, int, Any]] = {}
            for v, scored in enumerate(direct):
                for r in scored:
                    if r.id not in best or r.score > best[r.id][0]:
                        best[r.id] = (r.score, v, r)
            ranked = sorted(best.values(), key=lambda t: -t[0])[:k]
            return [(r, s, {"vector_score": s, "linked_score": 0.0, "linked_id": None, "ranking_term": v}) for s, v, r in ranked]
        cands = store.retrieve(list(found), with_vectors=True)
        links_of = [LibraryFields.of(c.payload).links for c in cands]
        linked_ids = list(dict.fromkeys(x for links in links_of for x in links))
        linked = {r.id: r for r in store.retrieve(linked_ids, with_vectors=True)} if linked_ids else {}
        own = np.stack([np.asarray(c.vector, dtype=np.float32) for c in cands]) @ vecs.T  # (n, v)
        best_link = np.zeros_like(own)
        best_link_id: list[list[PointId | None]] = [[None] * len(vecs) for _ in cands]
        if linked:
            link_rows = list(linked)
            link_sim = np.stack([np.asarray(linked[i].vector, dtype=np.float32) for i in link_rows]) @ vecs.T
            row_of = {i: n for n, i in enumerate(link_rows)}
            for n, links in enumerate(links_of):
                rows = [row_of[x] for x in links if x in row_of]
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

    def concept(self, vec: np.ndarray, negated: bool = False) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
        """The prefixes a concept matches, in every modality: a text concept matches images too.

        The decoder, given a text embedding, puts most of its mass on text docids, so the cut-off
        (``self.cutoff``, or ``self.negative_cutoff`` for a concept that appears only under NOT)
        is applied per modality (each decoded with the modality forced) and the sets are joined.
        """
        from ..setops import select_prefixes

        gen = self.index.require_built("a text or image term of a boolean query (it stands for the docid prefixes the decoder assigns it)")
        cut = self.negative_cutoff if negated else self.cutoff
        depth = min(cut.depth or 1 + self.index.config.hybrid.depth, gen.n_levels)

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


def _widened(k: int, collapse: bool) -> int:
    """Hits to ask for so that ``k`` remain after linked pairs were folded together."""
    return min(2 * k, MAX_K) if collapse else k


def _collapse(hits: list[Hit], k: int) -> list[Hit]:
    """Fold hits that are linked to a better-scoring hit into it (an image and its caption: one hit)."""
    from dataclasses import replace

    kept: list[Hit] = []
    owner: dict[PointId, int] = {}  # a kept hit's id and its links -> its position in kept
    for h in hits:
        at = owner.get(h.id)
        if at is None:
            at = next((owner[x] for x in h.links if x in owner), None)
        if at is not None:
            kept[at] = replace(kept[at], collapsed=(*kept[at].collapsed, h.id))
            continue
        owner[h.id] = len(kept)
        for x in h.links:
            owner.setdefault(x, len(kept))
        kept.append(h)
    return kept[:k]


class _Resolver:
    """Resolves the atoms of a boolean query against one index (the setops ``Resolver``)."""

    def __init__(self, search: Search) -> None:
        self.search = search

    def embed_text(self, text: str) -> np.ndarray:
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"The text query {text!r} is empty; type what to search for.")
        return self.search.embed_queries([text], None, None, single=True)[0]

    def resolve_text(self, text: str, *, negated: bool = False) -> AtomResolution:
        from ..setops import AtomResolution

        vec = self.embed_text(text)
        prefixes, probs = self.search.concept(vec, negated)
        return AtomResolution(vec, prefixes, probs)

    def resolve_image(self, image: Any, *, negated: bool = False) -> AtomResolution:
        from ..setops import AtomResolution

        vec = self.search.embed_queries(None, [image], None, single=True)[0]
        prefixes, probs = self.search.concept(vec, negated)
        return AtomResolution(vec, prefixes, probs)

    def check_ids(self, ids: Sequence[PointId]) -> None:
        index = self.search.index
        wanted = [normalize_id(i) for i in ids]
        found = {r.id for r in index.store.retrieve(wanted)}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFoundError(f"Ids {missing[:5]} in the query are not in collection {index.config.collection!r}; check them with get().")
