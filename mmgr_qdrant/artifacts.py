"""What ``build()`` produces, saved with the index: atomically, checksummed, in generations.

A build is one zip bundle (``build-<generation>.zip``: ``info.json``, ``scheme.json``,
``scheme.npz``, ``trie.npz``, ``decoder.pt``, ``extra.npz``: the router's likeness centres and,
when queries were learned, the query memory) stored through the store's blob area (files beside
the Edge shard, or the ``<collection>__mmgr`` companion collection on a server). A small manifest
(``build.json``: generation, blob name, sha256) is written *after* the bundle, so a reader sees the
old build or the new one, never half of one; an interrupted build leaves the previous one in use.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import FORMAT_VERSION
from .errors import ArtifactError, MMGRError
from .store.base import Store

logger = logging.getLogger(__name__)

MANIFEST = "build.json"


@dataclass(frozen=True)
class BuildArtifacts:
    """The fitted docid scheme, the docid trie, the decoder checkpoint and the build's report."""

    scheme_params: dict[str, Any]
    scheme_arrays: dict[str, np.ndarray]
    trie_arrays: dict[str, np.ndarray]
    decoder: bytes
    info: dict[str, Any] = field(default_factory=dict)
    generation: int = 0
    extra_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # the router's likeness centres, the query memory


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    named: dict[str, Any] = arrays  # numpy's stub types ``**kwds`` against savez's allow_pickle: bool as well
    np.savez(buf, **named)
    return buf.getvalue()


def _from_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def pack(art: BuildArtifacts) -> bytes:
    """Serialize a build into one zip bundle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("info.json", json.dumps({**art.info, "format_version": FORMAT_VERSION, "generation": art.generation}, sort_keys=True))
        z.writestr("scheme.json", json.dumps(art.scheme_params, sort_keys=True))
        z.writestr("scheme.npz", _npz(art.scheme_arrays))
        z.writestr("trie.npz", _npz(art.trie_arrays))
        z.writestr("decoder.pt", art.decoder)
        if art.extra_arrays:
            z.writestr("extra.npz", _npz(art.extra_arrays))
    return buf.getvalue()


def unpack(data: bytes, where: str) -> BuildArtifacts:
    """Read a bundle written by :func:`pack`.

    Raises:
        ArtifactError: the bundle is corrupt or of another format version.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            info = json.loads(z.read("info.json"))
            if info.get("format_version") != FORMAT_VERSION:
                raise ArtifactError(
                    f"The build artifacts {where} have format_version {info.get('format_version')}, this library reads {FORMAT_VERSION}; "
                    "run build() again."
                )
            return BuildArtifacts(
                scheme_params=json.loads(z.read("scheme.json")),
                scheme_arrays=_from_npz(z.read("scheme.npz")),
                trie_arrays=_from_npz(z.read("trie.npz")),
                decoder=z.read("decoder.pt"),
                info=info,
                generation=int(info.get("generation", 0)),
                extra_arrays=_from_npz(z.read("extra.npz")) if "extra.npz" in z.namelist() else {},
            )
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ArtifactError(f"The build artifacts {where} are corrupt ({exc}); run build() again to rewrite them.") from exc


def read_manifest(store: Store) -> dict[str, Any] | None:
    raw = store.get_blob(MANIFEST)
    if raw is None:
        return None
    try:
        manifest = json.loads(raw)
        int(manifest["generation"])
        str(manifest["blob"])
        str(manifest["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"The build manifest of collection {store.collection!r} is corrupt ({exc}); run build() again.") from exc
    return dict(manifest)


def next_generation(store: Store) -> int:
    """The generation number the next build will get."""
    current = read_manifest_quiet(store)
    return (int(current["generation"]) if current else 0) + 1


def save_build(store: Store, art: BuildArtifacts) -> None:
    """Write ``art`` as generation ``art.generation``, then switch the manifest to it.

    The bundle's name is unique to this write, so two builders never overwrite each other's
    bundle; after the switch, only bundles of older (generation, revision) pairs are removed,
    never one another builder may be about to switch to. If a newer build switched the manifest
    while this one was writing, this one leaves it in place and removes its own bundle.
    """
    generation = art.generation
    data = pack(art)
    current = read_manifest_quiet(store)
    revision = int(current.get("revision", 0)) + 1 if current else 1
    # A retrain keeps the generation (the docids) and bumps the revision (the decoder).
    blob = f"build-{generation:06d}-{revision:04d}-{uuid.uuid4().hex[:12]}.zip"
    store.put_blob(blob, data)
    latest = read_manifest_quiet(store)
    if latest is not None and _order(latest) > (generation, revision):
        store.delete_blob(blob)
        logger.warning("build generation %d revision %d was superseded by a newer build while saving; kept the newer one",
                       generation, revision)
        return
    manifest = {
        "generation": generation, "revision": revision, "blob": blob, "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data), "format_version": FORMAT_VERSION, "index_id": art.info.get("index_id"),
    }
    store.put_blob(MANIFEST, json.dumps(manifest).encode())  # the switch
    try:
        for name in store.list_blobs():
            order = _bundle_order(name)
            if order is not None and name != blob and order < (generation, revision):
                store.delete_blob(name)
    except MMGRError as exc:  # the new build is in place; an old bundle left behind only costs space
        logger.warning("could not remove an earlier build bundle of collection %r (%s)", store.collection, exc)
    logger.info("saved build generation %d (%d bytes)", generation, len(data))


def _order(manifest: dict[str, Any]) -> tuple[int, int]:
    return int(manifest["generation"]), int(manifest.get("revision", 0))


def _bundle_order(name: str) -> tuple[int, int] | None:
    """``(generation, revision)`` of a bundle's blob name, ``None`` for other blobs."""
    match = re.fullmatch(r"build-(\d+)(?:-(\d+))?(?:-[0-9a-f]+)?\.zip", name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def read_manifest_quiet(store: Store) -> dict[str, Any] | None:
    try:
        return read_manifest(store)
    except ArtifactError:
        return None


def load_build(store: Store, index_id: str | None = None) -> BuildArtifacts | None:
    """The current build, or ``None`` when the index was never built.

    Args:
        store: the collection's store.
        index_id: the index's id (``IndexConfig.index_id``); a build saved for another index with
            the same name (one whose collection was deleted outside mmgr) is refused.

    Raises:
        ArtifactError: the manifest points to a missing or corrupt bundle, or to another index's build.
    """
    manifest = read_manifest(store)
    if manifest is None:
        return None
    where = f"of collection {store.collection!r} ({manifest['blob']})"
    saved_id = manifest.get("index_id")
    if index_id is not None and saved_id is not None and saved_id != index_id:
        raise ArtifactError(
            f"The build artifacts {where} belong to another index ({saved_id}, this one is {index_id}); "
            "run build() again to replace them."
        )
    data = store.get_blob(manifest["blob"])
    if data is None:
        raise ArtifactError(f"The build artifacts {where} are missing; run build() again.")
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ArtifactError(f"The build artifacts {where} fail their checksum; run build() again to rewrite them.")
    return unpack(data, where)


# -- the docid log: adds and deletes since the build, so opening needs no scan ------------------
# The build's trie (``trie.npz``) is the generation's docid table at build time. Every later add
# or delete appends one small blob ``docidlog-<generation>-<first>-<last>.npz`` (arrays ``added``
# and ``removed``, each (n, L)); opening replays them in order onto the trie instead of reading
# every payload. The build records the last sequence number its trie already holds
# (``info["docid_log_seq"]``), so a log written before the switch is never applied twice. Every
# ``LOG_COMPACT_AT`` entries are merged into one blob (written first, pieces deleted after).
LOG_PREFIX = "docidlog-"
LOG_COMPACT_AT = 64


def _log_name(generation: int, first: int, last: int) -> str:
    return f"{LOG_PREFIX}{generation:06d}-{first:010d}-{last:010d}.npz"


def _log_entries(store: Store) -> list[tuple[int, int, int, str]]:
    """``(generation, first, last, blob)`` of every log blob, covered pieces of a merge dropped."""
    out = []
    for name in store.list_blobs():
        if name.startswith(LOG_PREFIX) and name.endswith(".npz"):
            try:
                gen, first, last = (int(p) for p in name[len(LOG_PREFIX) : -4].split("-"))
            except ValueError:
                continue
            out.append((gen, first, last, name))
    kept = [e for e in out if not any(o is not e and o[0] == e[0] and o[1] <= e[1] and e[2] <= o[2] and (o[1], o[2]) != (e[1], e[2]) for o in out)]
    return sorted(kept, key=lambda e: (e[0], e[1]))


def last_log_seq(store: Store) -> int:
    """The highest sequence number of the docid log (0 when it is empty)."""
    entries = _log_entries(store)
    return max((e[2] for e in entries), default=0)


def append_docid_log(
    store: Store, generation: int, added: np.ndarray | None = None, removed: np.ndarray | None = None, *, after: int = 0
) -> int:
    """Record docids added to and removed from ``generation`` since its build; returns the entry's sequence number.

    Call it after the points are written (a crash before it loses the entry; a scan repairs that,
    see :meth:`GenerativeIndex.sync`). ``after``: the build's ``docid_log_seq``; numbering goes on
    past it even when the build pruned every earlier entry.
    """
    a = np.zeros((0, 0), np.int64) if added is None else np.asarray(added, dtype=np.int64)
    r = np.zeros((0, 0), np.int64) if removed is None else np.asarray(removed, dtype=np.int64)
    if a.size == 0 and r.size == 0:
        return last_log_seq(store)
    entries = _log_entries(store)
    seq = max([after, *(e[2] for e in entries)]) + 1
    store.put_blob(_log_name(generation, seq, seq), _npz({"added": a, "removed": r}))
    mine = [e for e in entries if e[0] == generation] + [(generation, seq, seq, _log_name(generation, seq, seq))]
    if len(mine) >= LOG_COMPACT_AT:
        _compact(store, generation, mine)
    return seq


def _compact(store: Store, generation: int, entries: list[tuple[int, int, int, str]]) -> None:
    """Merge a generation's log blobs into one, keeping the order of adds and removes."""
    steps: list[np.ndarray] = []
    for _, _, _, name in entries:
        data = store.get_blob(name)
        if data is None:
            return  # a concurrent compaction removed it; leave the log as it is
        for added, removed in _steps(_from_npz(data)):
            steps.extend((added, removed))
    # the merged blob keeps every step (even-numbered: added, odd: removed), in order
    merged = {f"s{i:06d}": a for i, a in enumerate(steps)}
    store.put_blob(_log_name(generation, entries[0][1], entries[-1][2]), _npz(merged))
    for _, first, last, name in entries:
        if (first, last) != (entries[0][1], entries[-1][2]):
            store.delete_blob(name)


def read_docid_log(store: Store, generation: int, after: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(added, removed)`` steps of ``generation``'s log with sequence numbers past ``after``, in order.

    Raises:
        ArtifactError: a log blob is unreadable.
    """
    steps: list[tuple[np.ndarray, np.ndarray]] = []
    for gen, first, last, name in _log_entries(store):
        if gen != generation or last <= after:
            continue
        if first <= after:
            raise ArtifactError(f"The docid log {name} of collection {store.collection!r} straddles the build; run build() again.")
        data = store.get_blob(name)
        if data is None:
            continue  # deleted by a compaction that wrote its merge first: the merge is in the list
        try:
            arrays = _from_npz(data)
        except (ValueError, OSError) as exc:
            raise ArtifactError(f"The docid log {name} of collection {store.collection!r} is corrupt ({exc}); run build() again.") from exc
        steps.extend(_steps(arrays))
    return steps


def _steps(arrays: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(added, removed)`` steps of one log blob: a single entry, or a merge of many."""
    if "added" in arrays:
        return [(arrays["added"], arrays["removed"])]
    keys = sorted(arrays)
    return [(arrays[keys[i]], arrays[keys[i + 1]]) for i in range(0, len(keys), 2)]


def prune_docid_log(store: Store, generation: int, upto: int) -> None:
    """Delete log blobs the current build already holds: other generations', and this one's up to ``upto``."""
    for gen, _first, last, name in _log_entries(store):
        if gen != generation or last <= upto:
            store.delete_blob(name)
