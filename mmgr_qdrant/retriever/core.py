"""``MultimodalRetriever``: the one public entry class, a facade over the parts that share one :class:`Index`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from ..config import CONFIG_BLOB, DEFAULT_ENCODER, EngineConfig, HybridConfig, IndexConfig, check_encoder_matches, check_encoder_weights
from ..encoders.base import Encoder, get_encoder
from ..errors import ArtifactError, CollectionNotFoundError, ConfigError
from ..progress import ProgressCallback
from ..store import Store
from ..types import AddResult, BuildReport, Hit, PointId
from ._common import DEFAULT_PATH, OnError, SearchMode, _make_store, _validate_scheme_name, logger
from .admin import Admin, clear_orphan, drop_collection, import_collection, list_collections
from .build import Builder
from .ingest import Ingest
from .learn import Learner, QueryKind
from .links import Links
from .search import Search
from .state import Index

if TYPE_CHECKING:
    from ..admin import IndexStats
    from ..setops import Compiled, ConceptCutoff, Expr


class MultimodalRetriever:
    """Multimodal generative retrieval over one Qdrant collection.

    Build one with :meth:`create` or :meth:`open`; both take either ``path=`` (embedded Qdrant Edge,
    the default) or ``client=`` / ``url=`` (a Qdrant server, cloud, or ``QdrantClient`` local mode).
    Use it as a context manager, or call :meth:`close`.

    The retriever is a facade: ingest, search, build, links and admin are separate parts that share
    one :class:`~mmgr_qdrant.retriever.state.Index` (store, config, encoder, lock, loaded build),
    available as :attr:`index`.
    """

    def __init__(self, store: Store, config: IndexConfig, encoder: Encoder | None = None) -> None:
        """Use :meth:`create` or :meth:`open`; this joins an opened store and its config."""
        self.index = Index.load(store, config, encoder)
        self._links = Links(self.index)
        self._ingest = Ingest(self.index, self._links)
        self._search = Search(self.index)
        self._builder = Builder(self.index)
        self._admin = Admin(self.index, self._search)
        self._learner = Learner(self.index, self._builder)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        *,
        path: str | os.PathLike[str] | None = None,
        client: Any = None,
        url: str | None = None,
        api_key: str | None = None,
        encoder: str | Encoder = DEFAULT_ENCODER,
        docids: str = "rq",
        docid_params: dict[str, Any] | None = None,
        decoder_params: dict[str, Any] | None = None,
        hybrid: HybridConfig | dict[str, Any] | None = None,
        exist_ok: bool = False,
        engine: EngineConfig | dict[str, Any] | None = None,
    ) -> MultimodalRetriever:
        """Create a new index (a Qdrant collection plus its saved config).

        Args:
            name: the collection name.
            path: folder of the embedded store (Qdrant Edge); the default when no client is given.
            client: an open ``qdrant_client.QdrantClient`` (server, cloud or local mode).
            url: a Qdrant server URL (a client is made for it); ``api_key`` goes with it.
            encoder: an encoder name (``lit:default``, ``open_clip:ViT-B-32/laion2b_s34b_b79k``, ...) or object.
            docids: the docid scheme used by :meth:`build` (``rq``, ``hkmeans``, ``pq``, ``lsh``).
            docid_params: parameters of the docid scheme.
            decoder_params: decoder and training settings.
            hybrid: hybrid-search knobs (a :class:`~mmgr_qdrant.config.HybridConfig` or its fields as a dict).
            exist_ok: open the collection if it already exists (its config must match).
            engine: the engine's index settings (an :class:`~mmgr_qdrant.config.EngineConfig` or its
                fields as a dict): HNSW, ACORN, int8 quantization.

        Returns:
            The open retriever.

        Raises:
            ConfigError: the collection exists (and ``exist_ok`` is false) or the settings are invalid.
            EncoderError: the encoder could not be loaded.
            StoreUnavailableError: the store cannot be reached or is locked.
        """
        _validate_scheme_name(docids)
        hybrid_config = _hybrid_config(hybrid)
        store = _make_store(name, path=path, client=client, url=url, api_key=api_key)
        try:
            if store.exists():
                if not exist_ok:
                    raise ConfigError(
                        f"Collection {name!r} already exists; open it with MultimodalRetriever.open({name!r}, ...) or pass exist_ok=True."
                    )
                store.close()
                return cls.open(name, path=path, client=client, url=url, api_key=api_key, encoder=encoder)
            enc = get_encoder(encoder)
            config = IndexConfig(
                collection=name,
                encoder=enc.name,
                dim=int(enc.dim),
                docid_scheme=docids,
                docid_params=dict(docid_params or {}),
                decoder_params=dict(decoder_params or {}),
                hybrid=hybrid_config,
                encoder_fingerprint=getattr(enc, "fingerprint", None),
                index_id=str(uuid.uuid4()),
                engine=EngineConfig.coerce(engine),
            )
            clear_orphan(store)
            store.create(config.dim, config.engine)
            store.put_blob(CONFIG_BLOB, config.to_json().encode())
        except BaseException:
            store.close()
            raise
        logger.info("created collection %s (encoder %s, dim %d)", name, config.encoder, config.dim)
        return cls(store, config, enc)

    @classmethod
    def open(
        cls,
        name: str,
        *,
        path: str | os.PathLike[str] | None = None,
        client: Any = None,
        url: str | None = None,
        api_key: str | None = None,
        encoder: str | Encoder | None = None,
    ) -> MultimodalRetriever:
        """Open an existing index, in this process or another, on this machine or another.

        Args:
            name: the collection name.
            path / client / url / api_key: where it lives, as in :meth:`create`.
            encoder: leave out to use the saved encoder; if given it must be the same.

        Raises:
            CollectionNotFoundError: no such collection.
            ConfigError: ``encoder`` differs from the one the index was built with.
            ArtifactError: the saved config is missing, corrupt or of another format.
        """
        store = _make_store(name, path=path, client=client, url=url, api_key=api_key)
        try:
            if not store.exists():
                where = f"under {str(Path(path or DEFAULT_PATH))!r}" if client is None and url is None else "on the Qdrant server"
                raise CollectionNotFoundError(f"Collection {name!r} does not exist {where}; create it with MultimodalRetriever.create({name!r}, ...).")
            store.connect()
            raw = store.get_blob(CONFIG_BLOB)
            if raw is None:
                raise ArtifactError(
                    f"Collection {name!r} has no mmgr config (it was not created by mmgr-qdrant, or the config was deleted); "
                    "create a new collection with MultimodalRetriever.create()."
                )
            config = IndexConfig.from_json(raw, where=f"of collection {name!r}")
            store.configure(config.engine)
            enc: Encoder | None = None
            if encoder is not None and not isinstance(encoder, str):
                check_encoder_matches(config, getattr(encoder, "name", None))
                check_encoder_weights(config, getattr(encoder, "fingerprint", None))
                enc = encoder
            else:
                check_encoder_matches(config, encoder)
            return cls(store, config, enc)
        except BaseException:
            store.close()
            raise

    # -- state ---------------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The collection's store (the only way the library talks to Qdrant)."""
        return self.index.store

    @property
    def config(self) -> IndexConfig:
        """The frozen config saved with the index."""
        return self.index.config

    @property
    def encoder(self) -> Encoder:
        """The index's encoder, loaded on first use (opening an index for dense vectors needs none)."""
        return self.index.encoder

    @property
    def cutoff(self) -> ConceptCutoff:
        """How many decoder prefixes stand for a concept in boolean queries (tunable)."""
        return self._search.cutoff

    @cutoff.setter
    def cutoff(self, value: ConceptCutoff) -> None:
        self._search.cutoff = value

    @property
    def negative_cutoff(self) -> ConceptCutoff:
        """The cut-off for a concept that appears only under NOT: narrower, the documents the decoder is surest of."""
        return self._search.negative_cutoff

    @negative_cutoff.setter
    def negative_cutoff(self, value: ConceptCutoff) -> None:
        self._search.negative_cutoff = value

    # -- ingest ----------------------------------------------------------------------------------
    def add_images(
        self,
        images: Sequence[Any],
        *,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[PointId] | None = None,
        captions: Sequence[str | None] | None = None,
        caption_docs: bool = False,
        on_error: OnError = "raise",
        batch_size: int = 64,
        progress: ProgressCallback | None = None,
    ) -> AddResult:
        """Embed and store images.

        Args:
            images: file paths, ``pathlib.Path``, PIL images, raw bytes or numpy arrays.
            payloads: one dict (or ``None``) per image, stored as given (JSON values: finite
                numbers, strings, bools, lists, dicts with string keys).
            ids: point ids (unsigned ints or UUID strings); derived from the content when left out,
                so adding the same image twice stores it once.
            captions: one caption (or ``None``) per image, returned as the hit's ``text``.
            caption_docs: also store each caption as a text document linked to its image, so text
                search finds captions and the decoder learns caption -> image pairs.
            on_error: ``"raise"`` (nothing of the call is written when an item is bad) or
                ``"skip"`` (good items are stored, bad ones listed in ``result.skipped``).
            batch_size: images per encoder batch and per upsert.
            progress: called as batches are stored.

        Returns:
            The ids stored, in input order (an :class:`AddResult`, a list with ``.skipped``).

        Raises:
            InputError: an image is missing or unreadable, or a payload, caption or id is invalid (``on_error="raise"``).
        """
        return self._ingest.add_images(images, payloads=payloads, ids=ids, captions=captions, caption_docs=caption_docs,
                                       on_error=on_error, batch_size=batch_size, progress=progress)

    def add_videos(
        self,
        paths: Sequence[Any],
        *,
        every_s: float = 1.0,
        scenes: bool = False,
        scene_threshold: float | None = None,
        captions: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[PointId] | None = None,
        on_error: OnError = "raise",
        batch_size: int = 32,
        progress: ProgressCallback | None = None,
    ) -> AddResult:
        """Sample frames of videos and store each kept frame as a moment (modality ``"video"``).

        One video is one logical document: its id (``ids[i]``, or derived from the file's bytes)
        is returned, and each moment carries it (``Hit.video``) with its timestamp (``Hit.t``) and
        file (``Hit.uri``). ``delete([video_id])`` removes every moment;
        ``search(..., group_by="video")`` returns one hit per video. Frames are decoded one at a
        time (PyAV), so long videos stream in bounded memory.

        Args:
            paths: video files (``.mp4``, ``.webm``, ``.mkv``, ``.mov``, anything FFmpeg reads).
            every_s: keep a frame every this many seconds.
            scenes: keep one frame per scene cut instead (long scenes get extra frames).
            scene_threshold: how different two frames must be to count as a cut.
            captions / payloads / ids / on_error / batch_size / progress: as in :meth:`add_images`, per video.

        Returns:
            The video ids stored, in input order (an :class:`AddResult` with ``.skipped``).

        Raises:
            InputError: a video is missing, corrupt or empty (``on_error="raise"``), or an argument is invalid.
            MissingDependencyError: PyAV is not installed (``pip install 'mmgr-qdrant[video]'``).
        """
        return self._ingest.add_videos(paths, every_s=every_s, scenes=scenes, scene_threshold=scene_threshold, captions=captions,
                                       payloads=payloads, ids=ids, on_error=on_error, batch_size=batch_size, progress=progress)

    def add_texts(
        self,
        texts: Sequence[str],
        *,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[PointId] | None = None,
        on_error: OnError = "raise",
        batch_size: int = 256,
        progress: ProgressCallback | None = None,
    ) -> AddResult:
        """Embed and store texts; arguments and result as in :meth:`add_images`.

        Raises:
            InputError: a text is empty, not a string or not valid Unicode, or a payload or id is invalid (``on_error="raise"``).
        """
        return self._ingest.add_texts(texts, payloads=payloads, ids=ids, on_error=on_error, batch_size=batch_size, progress=progress)

    def add_embeddings(
        self,
        vectors: np.ndarray,
        *,
        modality: str,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[PointId] | None = None,
        texts: Sequence[str | None] | None = None,
        uris: Sequence[str | None] | None = None,
        on_error: OnError = "raise",
        batch_size: int = 1024,
        progress: ProgressCallback | None = None,
    ) -> AddResult:
        """Store vectors you embedded yourself (with this index's encoder, or the same space).

        Args:
            vectors: an ``(n, dim)`` array; rows are scaled to unit length before storing.
            modality: ``"image"`` or ``"text"`` for all rows.
            texts / uris: optional text or source URI per row, returned in hits.
            Other arguments as in :meth:`add_images`.

        Raises:
            DimensionMismatchError: the vectors' dimension is not the index's.
            InputError: a row is all zeros or not finite (``on_error="raise"``).
        """
        return self._ingest.add_embeddings(vectors, modality=modality, payloads=payloads, ids=ids, texts=texts, uris=uris,
                                           on_error=on_error, batch_size=batch_size, progress=progress)

    def get(self, ids: Sequence[PointId]) -> list[Hit]:
        """The stored documents with these ids, in the order asked (``score`` is 1.0).

        Raises:
            NotFoundError: an id is not in the collection.
        """
        return self._ingest.get(ids)

    def count(self, modality: str | None = None) -> int:
        """Documents stored, all or of one modality."""
        return self._ingest.count(modality)

    def delete(self, ids: Sequence[PointId]) -> None:
        """Delete documents and the links other documents have to them.

        Every id is checked first: with an unknown id nothing is deleted.

        Raises:
            NotFoundError: an id is not in the collection.
        """
        self._ingest.delete(ids)

    def update(
        self,
        id: PointId,
        *,
        image: Any = None,
        text: str | None = None,
        vector: np.ndarray | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Replace a document's content (re-embedded, docid re-assigned) and/or its payload.

        Links to other documents are kept. Without a new payload the old one is kept.

        Raises:
            NotFoundError: ``id`` is not in the collection.
            InputError: the new content is unusable or of the other modality.
        """
        self._ingest.update(id, image=image, text=text, vector=vector, payload=payload)

    # -- links -----------------------------------------------------------------------------------
    def link(self, a: PointId, b: PointId) -> None:
        """Link two documents (an image and its caption, say), stored both ways in their payloads.

        Links feed :meth:`related`, boolean-query ranking and the decoder's cross-modal training pairs.

        Raises:
            NotFoundError: either id is not in the collection.
        """
        self._links.link_many([(a, b)])

    def link_many(self, pairs: Sequence[tuple[PointId, PointId]]) -> None:
        """Link many pairs at once; see :meth:`link`."""
        self._links.link_many(pairs)

    def related(self, id: PointId, *, modality: str | None = None, k: int = 10) -> list[Hit]:
        """Documents related to ``id``: its linked documents first, then its nearest neighbours.

        Args:
            id: the document.
            modality: only documents of this modality (``"image"`` or ``"text"``).
            k: hits to return.

        Raises:
            NotFoundError: ``id`` is not in the collection.
        """
        return self._links.related(id, modality=modality, k=k)

    # -- search ----------------------------------------------------------------------------------
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
        """Search by text, image or vector, by an image changed by a text, optionally one hit per video.

        Args:
            query: a text query, or a boolean :class:`~mmgr_qdrant.setops.Q` expression
                (``Q.text("cat") & ~Q.text("dog")``; parse a string with ``Q.parse``). A lone
                ``Q.text`` or ``Q.image`` is searched like a plain text or image query. An
                expression's hits score by the expression's best ranking vector over the
                document plus its best linked document (so a score may exceed 1; see
                ``Compiled.ranking_vectors`` and docs/architecture.md, "Boolean queries").
            image: a query image (path, PIL image, bytes or array).
            vector: a query embedding of the index's dimension.
            k: hits to return (at most 100,000).
            modality: only documents of this modality (``"image"`` or ``"text"``).
            mode: ``"dense"`` (exact vector search), ``"hybrid"`` or ``"generative"``; the default is
                hybrid once the index is built, dense before.
            where: payload conditions (``{"field": value}`` or ``{"field": [v1, v2]}``).
            explain: attach per-stage figures to each hit's ``explain``.
            collapse_links: fold linked documents that both match (an image and its caption) into
                one hit, the better-scoring one, with the other's id in ``Hit.collapsed``. Off by
                default in the library; on by default in the LangChain, LlamaIndex and Haystack retrievers.
            text: with ``image=``, a composed query: the reference image changed by this text
                (``search(image=ref, text="in red")``; a plain ``query`` string with ``image=`` is
                the same). ``Q.image(ref) + Q.text("in red")`` as ``query`` too.
            fusion_weight: for a composed query, 0 (image only) to 1 (text only) in the weighted
                sum of the two embeddings; ``None`` uses the index's trained fusion module
                (:meth:`train_fusion`) when it has one, else 0.5.
            group_by: ``"video"``: one hit per video (its best moment's score, ``t`` and ``uri``,
                the hit's ``id`` the video id, ``moments`` its best moments); other documents stay
                single hits.
            moments: with ``group_by="video"``, moments kept per video.

        Returns:
            Up to ``k`` hits, best first.

        Raises:
            InputError: no query, more than one query, an empty text, an unreadable image, a bad ``k``,
                a ``fusion_weight`` outside 0..1 or without a composed query, or an unknown ``group_by``.
            NotBuiltError: ``mode="generative"`` (or a boolean text or image term) before :meth:`build`.
        """
        return self._search.search(query, image=image, vector=vector, k=k, modality=modality, mode=mode, where=where,
                                   explain=explain, collapse_links=collapse_links, text=text, fusion_weight=fusion_weight,
                                   group_by=group_by, moments=moments)

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
    ) -> list[list[Hit]]:
        """Search many queries at once (texts, images or vectors); one list of hits per query.

        Embedding, beam search and the Qdrant queries each run once for the whole batch;
        :meth:`search` is this with one query, so both accept and refuse the same input.
        """
        return self._search.search_batch(queries, images=images, vectors=vectors, k=k, modality=modality, mode=mode,
                                         where=where, explain=explain, collapse_links=collapse_links)

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
        return self._search.compile(expr, allow_negative_only=allow_negative_only)

    def train_fusion(
        self,
        references: Sequence[Any],
        modifications: Sequence[str],
        targets: Sequence[PointId],
        *,
        progress: ProgressCallback | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Train the composed-query fusion module from (reference image, text, target id) triples and save it with the index.

        Composed searches (``search(image=ref, text="in red")``) use it whenever no
        ``fusion_weight`` is given. See :func:`mmgr_qdrant.fusion.train_and_save` for the arguments.

        Returns:
            Training figures: triples, epochs, final loss, seconds.

        Raises:
            InputError: the lists differ in length, or an item is unusable.
            NotFoundError: a target id is not in the index.
        """
        return self._search.train_fusion(references, modifications, targets, progress=progress, **params)

    # -- build -----------------------------------------------------------------------------------
    def build(
        self, *, seed: int = 0, epochs: int | None = None, time_budget_s: float | None = None, progress: ProgressCallback | None = None
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
        return self._builder.build(refit=True, seed=seed, epochs=epochs, time_budget_s=time_budget_s, progress=progress)

    def rebuild(
        self, *, seed: int = 0, epochs: int | None = None, time_budget_s: float | None = None, progress: ProgressCallback | None = None
    ) -> BuildReport:
        """Refit docids and retrain the decoder on the current corpus (same as :meth:`build`).

        The new docids are written beside the old ones and switched to atomically, so searches
        keep being served, from the old build, while it runs.
        """
        return self._builder.build(refit=True, seed=seed, epochs=epochs, time_budget_s=time_budget_s, progress=progress)

    def retrain(
        self, *, seed: int = 0, epochs: int | None = None, time_budget_s: float | None = None, progress: ProgressCallback | None = None
    ) -> BuildReport:
        """Retrain the decoder on the current corpus, keeping every docid as it is.

        Use it when documents added since the build are found by their prefixes but the decoder
        has not learned them, or queries were learned since (see :meth:`stats`, ``staleness``).
        Documents that have no docid in the current generation (added by a retriever opened before
        the build) get one from the frozen scheme. Training continues from the current decoder and,
        without ``time_budget_s`` here or in ``decoder_params``, stops after 90 seconds (a build's
        is 240).

        Raises:
            NotBuiltError: the index was never built.
        """
        return self._builder.build(refit=False, seed=seed, epochs=epochs, time_budget_s=time_budget_s, progress=progress)

    # -- learning from queries ----------------------------------------------------------------------
    def learn(
        self,
        queries: Sequence[Any],
        relevant: Sequence[Sequence[PointId]],
        *,
        grades: Sequence[Sequence[float]] | None = None,
        kind: QueryKind | None = None,
        train_s: float | None = None,
    ) -> int:
        """Store query -> relevant-document pairs with the index; the next build or retrain learns them.

        Pairs survive reopen and ``export``/``import_file``, and leave with deleted documents;
        ``stats()`` counts those learned since the last training.

        Args:
            queries: texts, images (path, PIL image, bytes, array) or query vectors.
            relevant: per query, the ids of the documents that answer it.
            grades: per query, a positive weight per relevant id (default 1.0).
            kind: how to read every query (``"text"``, ``"image"``, ``"vector"``); by default a
                string is text, a 1-D float array of the index's width a vector, anything else an image.
            train_s: retrain the decoder now, for at most this many seconds (needs a build).

        Returns:
            The number of pairs stored.

        Raises:
            InputError: mismatched lengths, an empty query, an empty id list, a bad grade.
            NotFoundError: an id is not in the collection (nothing is stored then).
            NotBuiltError: ``train_s`` was given and the index was never built.
        """
        return self._learner.learn(queries, relevant, grades=grades, kind=kind, train_s=train_s)

    def feedback(
        self, query: str | None = None, id: PointId | None = None, *, image: Any = None, vector: np.ndarray | None = None,
        relevant: bool = True,
    ) -> None:
        """Record a judgement on a hit (a click, a thumbs up or down) for a query.

        A positive judgement stores one learned pair; a negative one removes the pairs learned for
        the same query (cosine >= 0.98) and this document.

        Raises:
            InputError: not exactly one of ``query``, ``image``, ``vector``, or no ``id``.
            NotFoundError: ``id`` is not in the collection (for instance deleted since the search).
        """
        self._learner.feedback(query, id, image=image, vector=vector, relevant=relevant)

    # -- administration ----------------------------------------------------------------------------
    def stats(self, *, probe: bool = True) -> IndexStats:
        """Counts, docid balance, staleness of the build and artifact sizes.

        Args:
            probe: run the recall probe (hybrid search of up to 50 documents added since the
                decoder was trained, by their own embeddings).
        """
        return self._admin.stats(probe=probe)

    def export(self, file: str | os.PathLike[str], *, progress: ProgressCallback | None = None) -> Path:
        """Write the index (config, points with vectors and payloads, build artifacts) to one file.

        :meth:`import_file` reads it into any backend, so an index moves between an embedded
        store and a server without rebuilding.
        """
        return self._admin.export(file, progress=progress)

    def browse(self, prefix: Sequence[int] = ()) -> list[tuple[tuple[int, ...], int]]:
        """The children of a docid prefix with their document counts (modality -> category -> instance).

        Args:
            prefix: a docid prefix; ``()`` lists the modality codes.

        Returns:
            ``[(child_prefix, n_documents), ...]`` in code order.

        Raises:
            NotBuiltError: the index has no build yet, so documents have no docids.
            InputError: the prefix is malformed or longer than a docid.
        """
        return self._admin.browse(prefix)

    @classmethod
    def import_file(
        cls,
        file: str | os.PathLike[str],
        name: str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        client: Any = None,
        url: str | None = None,
        api_key: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> MultimodalRetriever:
        """Create a collection from an :meth:`export` file, with its build; returns it open.

        The archive is checked before anything is written, and a failed import drops the
        collection it started, so it can simply be retried.

        Raises:
            ArtifactError: the file is not an mmgr export, is damaged, or is of another format.
            ConfigError: the target collection already exists.
        """
        store, config = import_collection(file, name, path=path, client=client, url=url, api_key=api_key, progress=progress)
        try:
            return cls(store, config)
        except BaseException:
            store.close()
            raise

    @classmethod
    def list_collections(
        cls, *, path: str | os.PathLike[str] | None = None, client: Any = None, url: str | None = None, api_key: str | None = None
    ) -> list[str]:
        """The collections at a location that hold an mmgr index."""
        return list_collections(path=path, client=client, url=url, api_key=api_key)

    @classmethod
    def drop(
        cls, name: str, *, path: str | os.PathLike[str] | None = None, client: Any = None, url: str | None = None, api_key: str | None = None
    ) -> None:
        """Delete a collection and everything saved with it.

        Raises:
            CollectionNotFoundError: no such collection.
        """
        drop_collection(name, path=path, client=client, url=url, api_key=api_key)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Flush and close the store; the retriever cannot be used afterwards."""
        self.index.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MultimodalRetriever({self.config.collection!r}, encoder={self.config.encoder!r})"


def _hybrid_config(hybrid: HybridConfig | dict[str, Any] | None) -> HybridConfig:
    if hybrid is None:
        return HybridConfig()
    if isinstance(hybrid, HybridConfig):
        return hybrid
    if not isinstance(hybrid, dict):
        raise ConfigError(f"hybrid= is a {type(hybrid).__name__}; pass a HybridConfig or a dict of its fields.")
    try:
        return HybridConfig(**hybrid)
    except TypeError as exc:
        raise ConfigError(f"hybrid={hybrid!r} has an unknown field ({exc}); use the fields of HybridConfig.") from None
