"""Index administration behind the retriever's methods: statistics, staleness, export and import.

Part of the retriever layer: :class:`~mmgr_qdrant.retriever.MultimodalRetriever` delegates
``stats()``, ``export()`` and ``import_file()`` here.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._version import __version__
from .config import FORMAT_VERSION, IndexConfig
from .errors import ArtifactError, InputError
from .filters import Filter, Match, Range
from .learning import load_pairs
from .progress import ProgressCallback, null_progress
from .types import F_MODALITY, RESERVED_KEY

if TYPE_CHECKING:
    from .retriever import MultimodalRetriever

logger = logging.getLogger(__name__)
EXPORT_FORMAT = "mmgr-export"
_PROBE = 50


@dataclass(frozen=True)
class IndexStats:
    """What an index holds and how stale its build is.

    Attributes:
        collection, encoder, dim, backend: what and where.
        counts: documents per modality and in total.
        built: whether a build exists; ``generation`` is its docid generation.
        docid_scheme: the scheme's name; ``docid_stats``: per-level usage and balance of the
            current docids (codebook size, used codes, perplexity, largest and mean bucket) and
            the collision rate before tie-breaking.
        staleness: ``added_since_build`` and ``deleted_since_build`` (documents added or removed
            since the decoder was trained), ``bucket_growth`` (largest and mean leaf bucket now
            over at training time), ``recall_probe`` (share of up to 50 recently added documents
            that hybrid search finds in its top 10 by their own embedding; ``None`` when none),
            ``learned_pairs`` (query pairs stored by ``learn``/``feedback``) and
            ``learned_since_training`` (those stored after the decoder was last trained).
        sizes: bytes of the saved artifacts.
    """

    collection: str
    encoder: str
    dim: int
    backend: str
    counts: dict[str, int]
    built: bool
    generation: int | None
    docid_scheme: str
    docid_stats: dict[str, Any] = field(default_factory=dict)
    staleness: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def index_stats(r: MultimodalRetriever, *, probe: bool = True) -> IndexStats:
    """Compute :class:`IndexStats` for an open retriever."""
    from .docids import docid_stats

    store = r.store
    counts = {m: store.count(Filter(must=(Match(F_MODALITY, (m,)),))) for m in ("image", "text")}
    counts["total"] = store.count()
    backend = type(store).__name__.replace("Store", "").lower()
    sizes = {name: len(store.get_blob(name) or b"") for name in store.list_blobs()}
    gen = r._gen
    pairs = load_pairs(store, r.config.dim)
    if gen is None:
        return IndexStats(r.config.collection, r.config.encoder, r.config.dim, backend, counts, False, None,
                          r.config.docid_scheme, staleness={"learned_pairs": len(pairs), "learned_since_training": len(pairs)},
                          sizes={"artifact_bytes": sum(sizes.values())})
    codes = gen.trie.codes
    stats = docid_stats(codes, list(gen.scheme.codebook_sizes())).as_dict() if len(codes) else {}
    trained_at = float(gen.info.get("trained_at", gen.info.get("built_at", 0.0)))
    recent = Filter(must=(Range(f"{RESERVED_KEY}.added", gt=trained_at),))
    added = store.count(recent)
    deleted = max(0, int(gen.info.get("n_docs", 0)) + added - counts["total"])
    before = gen.info.get("docid_stats", {})
    growth = {}
    if stats and before:
        leaf_now, leaf_then = _leaf_sizes(stats), _leaf_sizes(before)
        growth = {k: round(leaf_now[k] / leaf_then[k], 4) if leaf_then[k] else None for k in leaf_now}
    recall = _recall_probe(r, recent) if probe and added else None
    staleness = {"added_since_build": added, "deleted_since_build": deleted, "bucket_growth": growth, "recall_probe": recall,
                 "trained_at": trained_at, "learned_pairs": len(pairs), "learned_since_training": pairs.since(trained_at)}
    return IndexStats(r.config.collection, r.config.encoder, r.config.dim, backend, counts, True, gen.generation,
                      r.config.docid_scheme, stats, staleness, {"artifact_bytes": sum(sizes.values())})


def _leaf_sizes(stats: dict[str, Any]) -> dict[str, float]:
    last = stats["levels"][-1]
    return {"largest_bucket": float(last["largest_bucket"]), "mean_bucket": float(last["mean_bucket"])}


def _recall_probe(r: MultimodalRetriever, recent: Filter) -> float | None:
    rows = next(iter(r.store.scroll(recent, batch_size=_PROBE, with_vectors=True)), [])
    if not rows:
        return None
    vecs = np.stack([row.vector for row in rows])  # type: ignore[misc]
    results = r.search_batch(vectors=vecs, k=10, mode="hybrid")
    return round(sum(row.id in {h.id for h in hits} for row, hits in zip(rows, results)) / len(rows), 4)


# -- export / import ------------------------------------------------------------------------------
def export_index(r: MultimodalRetriever, file: str | Path, progress: ProgressCallback | None = None) -> Path:
    """Write the whole index (config, points with vectors and payloads, build artifacts) to one zip file."""
    report = progress or null_progress
    path = Path(file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    total = r.store.count()
    done = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps({"format": EXPORT_FORMAT, "format_version": FORMAT_VERSION,
                                                "library_version": __version__, "collection": r.config.collection,
                                                "points": total, "exported_at": time.time()}))
        z.writestr("config.json", r.config.to_json())
        for i, page in enumerate(r.store.scroll(batch_size=4096, with_vectors=True)):
            buf = io.BytesIO()
            np.save(buf, np.stack([p.vector for p in page]).astype(np.float32))  # type: ignore[misc]
            z.writestr(f"points/{i:06d}.npy", buf.getvalue())
            z.writestr(f"points/{i:06d}.jsonl", "\n".join(json.dumps({"id": p.id, "payload": p.payload}) for p in page))
            done += len(page)
            report("export", done, total, {})
        for name in r.store.list_blobs():
            if name != "config.json":
                z.writestr(f"blobs/{name}", r.store.get_blob(name) or b"")
    tmp.replace(path)
    return path


def read_export(file: str | os.PathLike[str]) -> tuple[dict[str, Any], IndexConfig, zipfile.ZipFile]:
    """Open an export file and check its format; the caller closes the returned zip."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise InputError(f"Export file {str(path)!r} does not exist; check the path.")
    try:
        z = zipfile.ZipFile(path)
        manifest = json.loads(z.read("manifest.json"))
        config = IndexConfig.from_json(z.read("config.json"), where=f"in {str(path)!r}")
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ArtifactError(f"{str(path)!r} is not an mmgr export ({exc}); export it again with `mmgr export`.") from exc
    if manifest.get("format") != EXPORT_FORMAT:
        z.close()
        raise ArtifactError(f"{str(path)!r} is not an mmgr export (format {manifest.get('format')!r}); export it again with `mmgr export`.")
    return manifest, config, z


def import_points(r: MultimodalRetriever, z: zipfile.ZipFile, total: int, progress: ProgressCallback | None = None) -> None:
    """Copy the points and blobs of an export into an empty, freshly created index."""
    report = progress or null_progress
    pages = sorted(n for n in z.namelist() if n.startswith("points/") and n.endswith(".npy"))
    done = 0
    for name in pages:
        vecs = np.load(io.BytesIO(z.read(name)), allow_pickle=False)
        rows = [json.loads(line) for line in z.read(name[:-4] + ".jsonl").decode().splitlines() if line]
        r.store.upsert([row["id"] for row in rows], vecs, [row["payload"] for row in rows])
        done += len(rows)
        report("import", done, total, {})
    for name in z.namelist():
        if name.startswith("blobs/") and name != "blobs/":
            r.store.put_blob(name[len("blobs/"):], z.read(name))
    r.store.flush()
