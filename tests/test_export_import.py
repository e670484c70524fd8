"""import_file: the archive is checked whole first, and a failed import leaves no collection behind."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from mmgr_qdrant import ArtifactError, MultimodalRetriever
from mmgr_qdrant import admin as admin_module
from mmgr_qdrant.admin import read_export
from mmgr_qdrant.errors import MMGRError
from tests.helpers import clustered


@pytest.fixture(scope="module")
def export_file(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Any) -> Path:
    root = tmp_path_factory.mktemp("export")
    r = MultimodalRetriever.create("src", encoder=tiny_encoder, path=root / "src", decoder_params={"epochs": 1})
    x, labels = clustered(r.config.dim, seed=3)
    r.add_embeddings(x[:60], modality="image", payloads=[{"label": int(l)} for l in labels[:60]])
    r.build(epochs=1)
    file = r.export(root / "idx.mmgr")
    r.close()
    return file


def rewrite(src: Path, dst: Path, change: Callable[[str, bytes], tuple[str, bytes] | None]) -> Path:
    """Copy an archive entry by entry through ``change`` (``None`` drops the entry)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            out = change(name, zin.read(name))
            if out is not None:
                zout.writestr(out[0], out[1])
    return dst


def _targets(connect: Any) -> dict[str, Any]:
    kw = connect()
    return {"path": kw["path"] / "target"} if "path" in kw else kw


def _exists(name: str, kw: dict[str, Any]) -> bool:
    return name in MultimodalRetriever.list_collections(**kw) or (
        "path" in kw and (Path(kw["path"]) / name).exists()
    )


BAD_ARCHIVES: dict[str, Callable[[str, bytes], tuple[str, bytes] | None]] = {
    "unsafe blob name": lambda n, d: ("blobs/../../evil.json", d) if n == "blobs/build.json" else (n, d),
    "unknown blob": lambda n, d: ("blobs/notes.txt", d) if n == "blobs/build.json" else (n, d),
    "config blob": lambda n, d: ("blobs/config.json", d) if n == "blobs/build.json" else (n, d),
    "page without rows": lambda n, d: None if n == "points/000000.jsonl" else (n, d),
    "page without vectors": lambda n, d: None if n == "points/000000.npy" else (n, d),
    "bundle missing": lambda n, d: None if n.startswith("blobs/build-") else (n, d),
    "bundle corrupt": lambda n, d: (n, d[:-10] + b"0" * 10) if n.startswith("blobs/build-") else (n, d),
    "unexpected entry": lambda n, d: ("other/x", d) if n == "blobs/build.json" else (n, d),
    "manifest not an object": lambda n, d: (n, b"[1]") if n == "manifest.json" else (n, d),
    "manifest bad count": lambda n, d: (n, json.dumps({**json.loads(d), "points": "many"}).encode()) if n == "manifest.json" else (n, d),
}


@pytest.mark.parametrize("kind", sorted(BAD_ARCHIVES))
def test_a_bad_archive_is_refused_before_anything_is_written(
    kind: str, export_file: Path, tmp_path: Path, connect: Any
) -> None:
    bad = rewrite(export_file, tmp_path / "bad.mmgr", BAD_ARCHIVES[kind])
    kw = _targets(connect)
    with pytest.raises(ArtifactError):
        MultimodalRetriever.import_file(bad, "copy", **kw)
    assert not _exists("copy", kw)
    with MultimodalRetriever.import_file(export_file, "copy", **kw) as r:  # the retry is not "already exists"
        assert r.count() == 60 and r.stats(probe=False).built


def test_a_corrupt_page_drops_the_half_made_target(export_file: Path, tmp_path: Path, connect: Any) -> None:
    def wrong_dim(name: str, data: bytes) -> tuple[str, bytes]:
        if name == "points/000000.npy":
            import io

            buf = io.BytesIO()
            np.save(buf, np.zeros((60, 3), dtype=np.float32))
            return name, buf.getvalue()
        return name, data

    bad = rewrite(export_file, tmp_path / "bad.mmgr", wrong_dim)
    kw = _targets(connect)
    with pytest.raises(ArtifactError, match="corrupt points page"):
        MultimodalRetriever.import_file(bad, "copy", **kw)
    assert not _exists("copy", kw)
    MultimodalRetriever.import_file(export_file, "copy", **kw).close()


def test_a_store_failure_during_import_drops_the_target(export_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    real = client.upsert
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:  # a server that fails part way through the import
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected server failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "upsert", flaky)
    try:
        with pytest.raises(MMGRError):
            MultimodalRetriever.import_file(export_file, "copy", client=client)
        assert [c.name for c in client.get_collections().collections] == []
        with MultimodalRetriever.import_file(export_file, "copy", client=client) as r:
            assert r.count() == 60
    finally:
        client.close()


class _Tracked(zipfile.ZipFile):
    opened: ClassVar[list[zipfile.ZipFile]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _Tracked.opened.append(self)


@pytest.fixture
def tracked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[zipfile.ZipFile]]:
    _Tracked.opened = []
    monkeypatch.setattr(admin_module.zipfile, "ZipFile", _Tracked)
    yield _Tracked.opened


@pytest.mark.parametrize("kind", ["invalid config", "missing config", "not json", *sorted(BAD_ARCHIVES)])
def test_read_export_never_leaks_its_zipfile(kind: str, export_file: Path, tmp_path: Path, tracked: list[zipfile.ZipFile]) -> None:
    changes: dict[str, Callable[[str, bytes], tuple[str, bytes] | None]] = {
        **BAD_ARCHIVES,
        "invalid config": lambda n, d: (n, b'{"collection": 3}') if n == "config.json" else (n, d),
        "missing config": lambda n, d: None if n == "config.json" else (n, d),
        "not json": lambda n, d: (n, b"\xff{") if n == "manifest.json" else (n, d),
    }
    bad = rewrite(export_file, tmp_path / "bad.mmgr", changes[kind])
    tracked.clear()
    with pytest.raises(ArtifactError):
        read_export(bad)
    assert tracked and all(z.fp is None for z in tracked)


def test_read_export_checks_and_lists_a_good_archive(export_file: Path) -> None:
    archive = read_export(export_file)
    try:
        assert archive.pages == ["points/000000"]
        assert "build.json" in archive.blobs and any(b.startswith("build-") for b in archive.blobs)
        assert archive.config.collection == "src" and archive.manifest["points"] == 60
    finally:
        archive.close()
