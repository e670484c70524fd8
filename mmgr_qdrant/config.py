"""The one frozen configuration of an index, saved with it and checked on every open."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ._version import __version__
from .errors import ArtifactError, ConfigError

FORMAT_VERSION = 1
"""Bumped when the stored layout changes incompatibly; an index of another format is refused."""

DEFAULT_ENCODER = "lit:default"

CONFIG_BLOB = "config.json"
"""The blob that holds an index's saved :class:`IndexConfig`; an index without it is not an mmgr index."""


@dataclass(frozen=True)
class HybridConfig:
    """Knobs of hybrid search (see ``docs/architecture.md``, "Score fusion").

    Attributes:
        beam_size: most prefixes the decoder proposes per query (the candidates ``max_fraction`` cuts).
        depth: docid levels (after the modality code) the prefix filter uses.
        fusion_weight: weight of the decoder's prefix probability in the fused score
            ``score = cosine + fusion_weight * p(prefix | query)``.
        max_fraction: the document budget of the prefix filter, as a share of the corpus: the most
            likely prefixes are kept, best first, while the documents under them fit in it (always
            at least ``k`` documents). It sets the filter fraction whatever the corpus size and
            codebook size; the search falls back to dense when the filtered set has fewer than ``k`` hits.
        prior_temperature: temperature of the geometric prior added to the decoder's prefix scores,
            a log-softmax over the scheme's level-1 centroid scores (``GenerativeIndex.route``);
            it keeps text queries of an image-only index on target despite the modality gap. 0 turns it off.
        min_candidates: the budget never goes below this many documents: exact ranking of a few
            hundred documents is cheap, so a small collection gets dense-quality results instead of
            a filter that cuts it to a few clusters.
        admission: ``"mass"`` (default): prefixes are admitted, most probable first, until their
            calibrated probability mass reaches ``mass_target``, between the floor
            (``min_fraction``, ``min_candidates``) and the ceiling (``max_fraction``); see
            ``mmgr_qdrant/routing.py``. ``"fixed"``: the earlier rule, the most likely prefixes
            while their documents fit in ``max_fraction`` (for comparison).
        mass_target: calibrated probability mass the admitted prefixes must reach (``"mass"`` rule).
        min_fraction: the floor of the ``"mass"`` rule, as a share of the corpus.
        query_expansion: after queries were learned (``learn``/``feedback`` and a retrain), move a
            query close to learned ones towards the documents they found relevant before ranking
            (``mmgr_qdrant/memory.py``; its weight and coverage are fitted at build time). ``False``
            ranks by the query's own vector.
        dense_share: when the floor alone admits at least this share of the collection (with the
            defaults, a collection of 2,048 documents or fewer), hybrid search skips the prefix
            filter and searches every document: exact search of a small collection costs little
            more, and a filter there only risks recall. 1.0: only when the floor is the whole collection.
        when_unsure: ``"dense"`` (default): a query the router cannot place (less document-like
            than 99% of the documents against the raw level-1 centres, ``GenerativeIndex.likeness``,
            and near no learned query: a text query of an image-only index before any learning, an
            image of a style never indexed) is searched without the prefix filter, like
            ``mode="dense"``. ``"route"`` filters every query.
    """

    beam_size: int = 64
    depth: int = 1
    fusion_weight: float = 0.05
    max_fraction: float = 0.05
    prior_temperature: float = 0.005
    min_candidates: int = 256
    admission: str = "mass"
    mass_target: float = 0.9
    min_fraction: float = 0.0
    query_expansion: bool = True
    dense_share: float = 0.125
    when_unsure: str = "dense"

    def __post_init__(self) -> None:
        if self.admission not in ("mass", "fixed"):
            raise ConfigError(f"HybridConfig.admission is {self.admission!r}; use 'mass' or 'fixed'.")
        if self.when_unsure not in ("dense", "route"):
            raise ConfigError(f"HybridConfig.when_unsure is {self.when_unsure!r}; use 'dense' or 'route'.")
        if not 0.0 < self.dense_share <= 1.0:
            raise ConfigError(f"HybridConfig.dense_share is {self.dense_share!r}; use a share of the collection in (0, 1].")
        if not 0.0 < self.mass_target <= 1.0:
            raise ConfigError(f"HybridConfig.mass_target is {self.mass_target!r}; use a probability in (0, 1].")
        if not 0.0 <= self.min_fraction <= 1.0 or not 0.0 < self.max_fraction <= 1.0:
            raise ConfigError(
                f"HybridConfig.min_fraction {self.min_fraction!r} / max_fraction {self.max_fraction!r} must be shares of the corpus in [0, 1] / (0, 1]."
            )


@dataclass(frozen=True)
class EngineConfig:
    """How Qdrant indexes and searches the collection's vectors (its own HNSW index, quantization).

    Attributes:
        hnsw: have the engine build its HNSW index after ``build()`` and once enough documents
            arrive unindexed (``MultimodalRetriever`` calls ``Store.ensure_index``); without it
            every search scores all admitted documents exactly.
        hnsw_m: edges per node of the HNSW graph.
        hnsw_ef_construct: candidates considered while building the graph.
        hnsw_ef: candidates considered per search; ``None`` keeps the engine's default (its
            ``ef_construct``), which gave recall@10 1.0 against exact search on clustered data.
        exact: score every admitted document exactly even where an HNSW index exists.
        acorn: use ACORN (filter-aware graph traversal) for filtered searches: ``where=`` and
            ``modality=`` filters, and the hybrid prefix filter when one of those comes with it; it
            keeps recall where a filter admits documents away from the query.
        hybrid_acorn: use ACORN for the hybrid prefix filter alone too. Off by default: the
            admitted prefixes are the ones around the query (the router picks them from it), and
            the engine's plain filtered HNSW (the prefix field is keyword-indexed before the graph
            is built) found the same top 10 as exact filtered search there at a fraction of the cost.
            Measured at 100,000 x 512 (``benchmarks.speed``'s set, 100 queries, a loaded machine):
            the router's top 1 / 8 / 32 prefixes (700 / 6,700 / 25,800 documents) took 0.29 / 0.60
            / 0.72 ms plain and 0.66 / 3.5 / 3.6 ms with ACORN, recall@10 against exact filtered
            search 1.0 for both; random prefixes (documents away from the query) are where ACORN
            keeps recall (0.95-0.99 against plain's 0.56-0.77), which is why user filters keep it.
        acorn_max_selectivity: the share of documents a filter may admit for ACORN to be used
            (``None``: the engine's default).
        quantization: ``"int8"`` stores scalar-quantized copies of the vectors beside them
            (4x less memory for the scored copy); fixed at ``create()``.
        rescore: with quantization, rescore the top candidates with the original vectors.
        oversampling: with quantization, candidates fetched per wanted hit before rescoring.
        index_threshold: documents added without an index after which ``ensure_index`` builds it.
        indexing_threshold_kb: segments smaller than this (KB of vectors) get no HNSW graph
            (the engine's default, 10 MB: about 5,000 512-d vectors).
        full_scan_threshold_kb: a filtered search whose admitted documents hold fewer KB of
            vectors than this scores them exactly instead of walking the graph (engine default).
            At 100,000 x 512 with the hybrid filter (5%), unloaded, 10,000 and 40,000 gave the same
            filtered query time (2.1 and 2.7 ms p50, two runs of ``benchmarks.speed``); an earlier
            run on a heavily loaded machine had suggested a large gap, which this did not confirm.
    """

    hnsw: bool = True
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_ef: int | None = None
    exact: bool = False
    acorn: bool = True
    hybrid_acorn: bool = False
    acorn_max_selectivity: float | None = None
    quantization: str | None = None
    rescore: bool = True
    oversampling: float | None = None
    index_threshold: int = 20_000
    indexing_threshold_kb: int = 10_000
    full_scan_threshold_kb: int = 10_000

    def __post_init__(self) -> None:
        if self.quantization not in (None, "int8"):
            raise ConfigError(f"EngineConfig.quantization={self.quantization!r} is not known; use None or 'int8'.")
        for name in ("hnsw_m", "hnsw_ef_construct", "index_threshold", "indexing_threshold_kb", "full_scan_threshold_kb"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"EngineConfig.{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.hnsw_ef is not None and self.hnsw_ef < 1:
            raise ConfigError(f"EngineConfig.hnsw_ef must be None or a positive integer, got {self.hnsw_ef!r}.")

    @classmethod
    def coerce(cls, value: EngineConfig | dict[str, Any] | None) -> EngineConfig:
        """An :class:`EngineConfig` from itself, a dict of its fields, or ``None`` (the defaults).

        Raises:
            ConfigError: a dict has a field this class does not know.
        """
        if value is None:
            return cls()
        if isinstance(value, EngineConfig):
            return value
        try:
            return cls(**dict(value))
        except TypeError as exc:
            raise ConfigError(f"engine={value!r} has an unknown field ({exc}); use the fields of EngineConfig.") from None


@dataclass(frozen=True)
class IndexConfig:
    """Everything needed to reopen an index, saved as ``config.json`` with it.

    Attributes:
        collection: the Qdrant collection name.
        encoder: the encoder's registry name (``lit:default``, ``open_clip:ViT-B-32/...``).
        dim: the embedding dimension.
        docid_scheme: the docid scheme's registry name (``rq``, ``hkmeans``, ``pq``, ``lsh``).
        docid_params: the scheme's parameters (levels, codebook size, ...).
        decoder_params: overrides of the decoder's config and training settings.
        hybrid: hybrid search knobs.
        format_version: the stored layout's version.
        library_version: the mmgr-qdrant version that created the index.
        encoder_fingerprint: a digest of the encoder's weights when the name alone does not pin
            them (a ``lit:`` head file), checked when the encoder is loaded.
        index_id: a random id given at ``create()``, saved in every build bundle and checked on
            load, so a build left behind by a deleted collection of the same name is never used.
        engine: the engine's own index and search settings (HNSW, ACORN, quantization).
    """

    collection: str
    encoder: str
    dim: int
    docid_scheme: str = "rq"
    docid_params: dict[str, Any] = field(default_factory=dict)
    decoder_params: dict[str, Any] = field(default_factory=dict)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    format_version: int = FORMAT_VERSION
    library_version: str = __version__
    encoder_fingerprint: str | None = None
    index_id: str | None = None
    engine: EngineConfig = field(default_factory=EngineConfig)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "config.json") -> IndexConfig:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"The index config {where} is not valid JSON ({exc}); restore it from an export or recreate the index.") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"The index config {where} is not a JSON object; restore it from an export or recreate the index.")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"The index has format_version {version} but this mmgr-qdrant {__version__} reads format_version {FORMAT_VERSION}; "
                "install the mmgr-qdrant version that wrote it, or export and re-import the index."
            )
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ArtifactError(f"The index config {where} has unknown fields {sorted(unknown)}; it was written by a newer mmgr-qdrant.")
        try:
            data["hybrid"] = HybridConfig(**data.get("hybrid", {}))
            data["engine"] = EngineConfig(**data.get("engine", {}))
            return cls(**data)
        except TypeError as exc:
            raise ArtifactError(f"The index config {where} does not match this version ({exc}); recreate the index.") from exc

    def with_(self, **changes: Any) -> IndexConfig:
        return replace(self, **changes)


def check_encoder_weights(config: IndexConfig, fingerprint: str | None) -> None:
    """Refuse an encoder whose weights differ from those the index was embedded with."""
    if config.encoder_fingerprint and fingerprint and fingerprint != config.encoder_fingerprint:
        raise ConfigError(
            f"Encoder {config.encoder!r} now has weights {fingerprint} but collection {config.collection!r} was embedded with "
            f"{config.encoder_fingerprint}; install the weights that built it, or re-ingest into a new collection."
        )


def check_encoder_matches(config: IndexConfig, encoder_name: str | None) -> None:
    """Refuse to open an index with another encoder than the one that built it."""
    if encoder_name is not None and encoder_name != config.encoder:
        raise ConfigError(
            f"Collection {config.collection!r} was built with encoder {config.encoder!r} but {encoder_name!r} was given; "
            f"open it with encoder={config.encoder!r} (or leave encoder out), or create a new collection."
        )
