"""Index administration behind the retriever's methods: statistics, staleness, export and import.

Part of the retriever layer, below ``retriever``: the retriever's admin part calls these functions
with the store, config and loaded build they need; nothing here imports the retriever.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._version import __version__
from .artifacts import LOG_PREFIX
from .config import CONFIG_BLOB, FORMAT_VERSION, IndexConfig
from .errors import ArtifactError, ConfigError, InputError, MMGRError
from .filters import Filter, Match, Range
from .fusion import FUSION_BLOB
from .learning import PAIRS_BLOB, load_pairs
from .progress import ProgressCallback, null_progress
from .store.base import Store
from .types import F_MODALITY, MODALITY_CODES, RESERVED_KEY, normalize_id

if TYPE_CHECKING:
    from .generative import GenerativeIndex
    from .types import Hit

# Hybrid search of a batch of query vectors (k=10), for the recall probe.
ProbeSearch = Callable[[np.ndarray], list[list["Hit"]]]

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


def index_stats(store: Store, config: IndexConfig, gen: GenerativeIndex | None, probe: ProbeSearch | None = None) -> IndexStats:
    """Compute :class:`IndexStats`; ``probe`` (hybrid search of query vectors) runs the recall probe."""
    from .docids import docid_stats
    counts = {m: store.count(Filter(must=(Match(F_MODALITY, (m,)),))) for m in MODALITY_CODES}
    counts["total"] = store.count()
    backend = type(store).__name__.replace("Store", "").lower()
    sizes = {name: len(store.get_blob(name) or b"") for name in store.list_blobs()}
    pairs = load_pairs(store, config.dim)
    if gen is None:
        return IndexStats(config.collection, config.encoder, config.dim, backend, counts, False, None,
                          config.docid_scheme, staleness={"learned_pairs": len(pairs), "learned_since_training": len(pairs)},
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
    recall = _recall_probe(store, recent, probe) if probe is not None and added else None
    staleness = {"added_since_build": added, "deleted_since_build": deleted, "bucket_growth": growth, "recall_probe": recall,
                 "trained_at": trained_at, "learned_pairs": len(pairs), "learned_since_training": pairs.since(trained_at)}
    return IndexStats(config.collection, config.encoder, config.dim, backend, counts, True, gen.generation,
                      config.docid_scheme, stats, staleness, {"artifact_bytes": sum(sizes.values())})


def _leaf_sizes(stats: dict[str, Any]) -> dict[str, float]:
    last = stats["levels"][-1]
    return {"largest_bucket": float(last["largest_bucket"]), "mean_bucket": float(last["mean_bucket"])}


def _recall_probe(store: Store, recent: Filter, probe: ProbeSearch) -> float | None:
    rows = next(iter(store.scroll(recent, batch_size=_PROBE, with_vectors=True)), [])
    if not rows:
        return None
    vecs = np.stack([np.asarray(row.vector, dtype=np.float32) for row in rows])
    results = probe(vecs)
    return round(sum(row.id in {h.id for h in hits} for row, hits in zip(rows, results)) / len(rows), 4)


# -- export / import ------------------------------------------------------------------------------
def export_index(store: Store, config: IndexConfig, file: str | Path, progress: ProgressCallback | None = None) -> Path:
    """Write the whole index (config, points with vectors and payloads, build artifacts) to one zip file."""
    report = progress or null_progress
    path = Path(file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    total = store.count()
    done = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps({"format": EXPORT_FORMAT, "format_version": FORMAT_VERSION,
                                                "library_version": __version__, "collection": config.collection,
                                                "points": total, "exported_at": time.time()}))
        z.writestr("config.json", config.to_json())
        for i, page in enumerate(store.scroll(batch_size=4096, with_vectors=True)):
            buf = io.BytesIO()
            np.save(buf, np.stack([p.vector for p in page]).astype(np.float32))  # type: ignore[misc]
            z.writestr(f"points/{i:06d}.npy", buf.getvalue())
            z.writestr(f"points/{i:06d}.jsonl", "\n".join(json.dumps({"id": p.id, "payload": p.payload}) for p in page))
            done += len(page)
            report("export", done, total, {})
        for name in store.list_blobs():
            if name != "config.json":
                z.writestr(f"blobs/{name}", store.get_blob(name) or b"")
    tmp.replace(path)
    return path


# Blobs an export may carry: the build manifest and the build bundles (``config.json`` travels
# as the archive's own ``config.json``). A name outside these is refused before anything is written.
KNOWN_BLOBS: tuple[str, ...] = (
    r"build\.json", r"build-\d+(?:-\d+)?(?:-[0-9a-f]+)?\.zip",  # the build manifest and bundles (artifacts.py)
    re.escape(LOG_PREFIX) + r"\d+-\d+-\d+\.npz",  # adds and deletes since the build (the docid log)
    re.escape(PAIRS_BLOB),  # learned query pairs (learning.py)
    re.escape(FUSION_BLOB),  # the trained composed-query fusion module (fusion.py)
)
_SAFE_BLOB = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
_PAGE = re.compile(r"points/(\d{6})\.(npy|jsonl)")


@dataclass(frozen=True)
class ExportArchive:
    """An export file checked whole by :func:`read_export`; the caller closes ``zip``.

    Attributes:
        path: the file.
        manifest: its ``manifest.json``.
        config: the exported index's config.
        pages: the points pages, as ``points/NNNNNN`` stems with both a ``.npy`` and a ``.jsonl``.
        blobs: the blob names (under ``blobs/``), each safe and known.
        zip: the open archive.
    """

    path: Path
    manifest: dict[str, Any]
    config: IndexConfig
    pages: list[str]
    blobs: list[str]
    zip: zipfile.ZipFile

    def close(self) -> None:
        self.zip.close()


def read_export(file: str | os.PathLike[str]) -> ExportArchive:
    """Open an export file and check all of it before anything is imported.

    Checks the manifest, the config, that every points page has both its vectors and its rows,
    and that every blob name is safe and one the library writes (and that the build manifest's
    bundle is in the file). The archive is closed on any error.

    Args:
        file: the export file written by :func:`export_index`.

    Returns:
        The checked, open archive; the caller closes it.

    Raises:
        InputError: the file does not exist.
        ArtifactError: the file is not an mmgr export, or is incomplete or inconsistent.
    """
    path = Path(file).expanduser()
    if not path.is_file():
        raise InputError(f"Export file {str(path)!r} does not exist; check the path.")
    where = repr(str(path))
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArtifactError(f"{where} is not an mmgr export ({exc}); export it again with `mmgr export`.") from exc
    try:
        return _check_export(path, z, where)
    except BaseException:
        z.close()
        raise


def _check_export(path: Path, z: zipfile.ZipFile, where: str) -> ExportArchive:
    try:
        manifest = json.loads(z.read("manifest.json"))
        if not isinstance(manifest, dict):
            raise TypeError("manifest.json is not an object")
        if manifest.get("format") != EXPORT_FORMAT:
            raise ArtifactError(f"{where} is not an mmgr export (format {manifest.get('format')!r}); export it again with `mmgr export`.")
        points = manifest.get("points", 0)
        if isinstance(points, bool) or not isinstance(points, int) or points < 0:
            raise ValueError(f"manifest.json has points={points!r}")
        config = IndexConfig.from_json(z.read("config.json"), where=f"in {where}")
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, UnicodeDecodeError, OSError, RuntimeError) as exc:
        raise ArtifactError(f"{where} is not an mmgr export ({exc}); export it again with `mmgr export`.") from exc
    names = [n for n in z.namelist() if not n.endswith("/")]
    halves: dict[str, set[str]] = {}
    blobs: list[str] = []
    for name in names:
        if name in ("manifest.json", "config.json"):
            continue
        page = _PAGE.fullmatch(name)
        if page is not None:
            halves.setdefault(f"points/{page.group(1)}", set()).add(page.group(2))
        elif name.startswith("blobs/"):
            blob = name[len("blobs/"):]
            if not _SAFE_BLOB.fullmatch(blob) or not any(re.fullmatch(p, blob) for p in KNOWN_BLOBS):
                raise ArtifactError(f"{where} holds an unexpected blob {blob!r}; import only files written by `mmgr export`.")
            blobs.append(blob)
        else:
            raise ArtifactError(f"{where} holds an unexpected entry {name!r}; import only files written by `mmgr export`.")
    broken = sorted(stem for stem, kinds in halves.items() if kinds != {"npy", "jsonl"})
    if broken:
        raise ArtifactError(f"{where} is incomplete: points page {broken[0]!r} lacks its vectors or its rows; export the index again.")
    if "build.json" in blobs:
        try:
            build = json.loads(z.read("blobs/build.json"))
            bundle, digest = str(build["blob"]), str(build["sha256"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{where} has a corrupt build manifest ({exc}); export the index again.") from exc
        if bundle not in blobs:
            raise ArtifactError(f"{where} is incomplete: its build manifest names {bundle!r}, which it does not hold; export the index again.")
        if hashlib.sha256(z.read(f"blobs/{bundle}")).hexdigest() != digest:
            raise ArtifactError(f"{where} has a build bundle {bundle!r} that fails its checksum; export the index again.")
    return ExportArchive(path, manifest, config, sorted(halves), sorted(blobs), z)


def import_export(
    file: str | os.PathLike[str],
    name: str | None,
    make_store: Callable[[str], Store],
    progress: ProgressCallback | None = None,
) -> tuple[Store, IndexConfig]:
    """Create a collection from an export file: all of it, or nothing.

    The archive is checked whole first; the target must not exist; on any failure after the
    target was created, the target is dropped, so a retry starts clean.

    Args:
        file: the export file.
        name: the target collection; ``None`` keeps the exported name.
        make_store: builds the (unopened) store for a collection name.
        progress: called with ``("import", done, total, {})`` as points are written.

    Returns:
        The open store and the target's config (the exported config, renamed).

    Raises:
        ArtifactError: the file is not an mmgr export, or is incomplete or inconsistent.
        ConfigError: the target collection already exists.
    """
    archive = read_export(file)
    try:
        target = name or archive.config.collection
        store = make_store(target)
        try:
            if store.exists():
                raise ConfigError(f"Collection {target!r} already exists; import under another name or drop it first.")
            clear_orphan(store)
        except BaseException:
            store.close()
            raise
        # The imported builds carry the exported index's id; an export from before ids gets a new one.
        config = archive.config.with_(collection=target, index_id=archive.config.index_id or str(uuid.uuid4()))
        try:
            store.create(config.dim, config.engine)
            _import_points(store, archive, config.dim, progress)
            for blob in archive.blobs:
                store.put_blob(blob, archive.zip.read(f"blobs/{blob}"))
            store.put_blob(CONFIG_BLOB, config.to_json().encode())  # last: a collection without it is not an index
            store.flush()
        except BaseException:
            _drop_quietly(store, target)
            raise
    finally:
        archive.close()
    return store, config


def _import_points(store: Store, archive: ExportArchive, dim: int, progress: ProgressCallback | None) -> None:
    report = progress or null_progress
    total = int(archive.manifest.get("points", 0))
    done = 0
    for stem in archive.pages:
        try:
            vecs = np.load(io.BytesIO(archive.zip.read(stem + ".npy")), allow_pickle=False)
            rows = [json.loads(line) for line in archive.zip.read(stem + ".jsonl").decode().splitlines() if line]
            ids = [normalize_id(row["id"]) for row in rows]
            payloads = [row["payload"] for row in rows]
            if vecs.ndim != 2 or vecs.shape != (len(rows), dim) or not all(isinstance(p, dict) for p in payloads):
                raise ValueError(f"vectors of shape {vecs.shape} for {len(rows)} rows of dimension {dim}")
        except (KeyError, ValueError, TypeError, UnicodeDecodeError, zipfile.BadZipFile, OSError, MMGRError) as exc:
            raise ArtifactError(f"{str(archive.path)!r} has a corrupt points page {stem!r} ({exc}); export the index again.") from exc
        store.upsert(ids, vecs, payloads)
        done += len(rows)
        report("import", done, total, {})


def clear_orphan(store: Store) -> None:
    """Delete what a collection deleted outside mmgr left behind (its saved config and builds).

    Call it only when the collection itself does not exist, so nothing live is touched; without
    it, a new index of the same name would load the old index's build.
    """
    left = store.list_blobs()
    if left:
        logger.warning(
            "collection %r was deleted outside mmgr but its saved index data remained (%d blobs); clearing it for the new index",
            store.collection, len(left),
        )
        for name in left:
            store.delete_blob(name)


def _drop_quietly(store: Store, target: str) -> None:
    try:
        store.drop()
        store.close()
    except (MMGRError, OSError) as exc:  # the original error matters more; say what is left behind
        logger.warning("could not drop the half-imported collection %r (%s); drop it before importing again", target, exc)
