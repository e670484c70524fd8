"""The retriever's first slice on both backends: add, search, idempotent re-add, delete, bad input."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mmgr_qdrant import (
    CollectionNotFoundError,
    ConfigError,
    DimensionMismatchError,
    InputError,
    MultimodalRetriever,
    NotFoundError,
)
from tests.helpers import TINY, make_image

TEXTS = ["a red car on a road", "a bowl of fruit", "a cat sleeping on a sofa", "mountains under snow"]


def test_add_texts_and_search_finds_exact_text(retriever: MultimodalRetriever) -> None:
    ids = retriever.add_texts(TEXTS, payloads=[{"n": i} for i in range(4)])
    assert len(ids) == 4 and len(set(ids)) == 4
    assert retriever.count() == 4
    hits = retriever.search(TEXTS[2], k=2, mode="dense")
    assert hits[0].id == ids[2]
    assert hits[0].text == TEXTS[2]
    assert hits[0].modality == "text"
    assert hits[0].payload == {"n": 2}
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].score >= hits[1].score


def test_re_adding_is_idempotent(retriever: MultimodalRetriever) -> None:
    first = retriever.add_texts(TEXTS)
    second = retriever.add_texts(TEXTS)
    assert list(first) == list(second)
    imgs = [make_image(1), make_image(2)]
    a = retriever.add_images(imgs)
    b = retriever.add_images(imgs)
    assert list(a) == list(b)
    assert retriever.count() == 6
    assert retriever.count("image") == 2
    assert retriever.count("text") == 4


def test_image_inputs_of_every_kind(retriever: MultimodalRetriever, tmp_path: Path) -> None:
    arr = make_image(3)
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    rgba = Image.fromarray(arr).convert("RGBA")
    gray = Image.fromarray(arr).convert("L")
    pal = Image.fromarray(arr).convert("P")
    ids = retriever.add_images([str(path), path, buf.getvalue(), rgba, gray, pal, arr])
    # path, Path and the same bytes hash alike, so the first three are one document
    assert ids[0] == ids[1] == ids[2]
    assert len(set(ids)) == 5
    # rgba and the array hold the same pixels as the file, so they tie with it at the top
    hits = retriever.search(image=path, k=3, mode="dense", modality="image")
    assert ids[0] in [h.id for h in hits]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert retriever.get([ids[0]])[0].uri == str(path)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    from mmgr_qdrant.images import load_image

    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_user_ids_and_get(retriever: MultimodalRetriever) -> None:
    ids = retriever.add_texts(TEXTS[:2], ids=[7, "5b0b3d0e-8f5c-4a53-9a8e-3d5c1f0f4a11"])
    assert list(ids) == [7, "5b0b3d0e-8f5c-4a53-9a8e-3d5c1f0f4a11"]
    got = retriever.get([7])
    assert got[0].text == TEXTS[0]
    with pytest.raises(NotFoundError, match="not in collection"):
        retriever.get([8])


def test_add_embeddings_and_vector_search(retriever: MultimodalRetriever) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, retriever.config.dim)).astype(np.float32)
    ids = retriever.add_embeddings(vecs, modality="image", uris=[f"s3://b/{i}.jpg" for i in range(5)])
    hits = retriever.search(vector=vecs[3], k=1)
    assert hits[0].id == ids[3]
    assert hits[0].uri == "s3://b/3.jpg"
    with pytest.raises(DimensionMismatchError, match="dimension 3"):
        retriever.add_embeddings(np.ones((2, 3)), modality="image")
    with pytest.raises(DimensionMismatchError):
        retriever.search(vector=np.ones(3))


def test_delete(retriever: MultimodalRetriever) -> None:
    ids = retriever.add_texts(TEXTS)
    retriever.delete([ids[0]])
    assert retriever.count() == 3
    assert all(h.id != ids[0] for h in retriever.search(TEXTS[0], k=4, mode="dense"))
    with pytest.raises(NotFoundError, match="nothing was deleted"):
        retriever.delete([ids[1], ids[0]])
    assert retriever.count() == 3


def test_bad_inputs_raise_and_write_nothing(retriever: MultimodalRetriever, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"not an image")
    good = make_image(4)
    with pytest.raises(InputError, match="corrupt.jpg"):
        retriever.add_images([good, bad])
    with pytest.raises(InputError, match="does not exist"):
        retriever.add_images([tmp_path / "missing.png"])
    with pytest.raises(InputError, match="empty"):
        retriever.add_texts(["ok", "  "])
    with pytest.raises(InputError, match="not a string"):
        retriever.add_texts(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InputError, match="reserved key"):
        retriever.add_texts(["ok"], payloads=[{"_mmgr": 1}])
    with pytest.raises(InputError, match="list"):
        retriever.add_texts("just a string")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="empty"):
        retriever.search("   ")
    with pytest.raises(InputError, match="exactly one"):
        retriever.search()
    with pytest.raises(InputError, match="positive"):
        retriever.search("x", k=0)
    assert retriever.count() == 0


def test_skip_mode_stores_good_items_and_reports_bad(retriever: MultimodalRetriever, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG broken")
    res = retriever.add_images([make_image(5), bad, make_image(6)], on_error="skip")
    assert len(res) == 2
    assert [s.index for s in res.skipped] == [1]
    assert "corrupt.png" in res.skipped[0].reason
    assert retriever.count() == 2


def test_batches_in_raise_mode_are_all_or_nothing(retriever: MultimodalRetriever) -> None:
    texts = [f"text number {i}" for i in range(10)] + [""]
    with pytest.raises(InputError):
        retriever.add_texts(texts, batch_size=3)
    assert retriever.count() == 0
    retriever.add_texts(texts[:10], batch_size=3)
    assert retriever.count() == 10


def test_where_filter(retriever: MultimodalRetriever) -> None:
    retriever.add_texts(TEXTS, payloads=[{"tag": "a"}, {"tag": "b"}, {"tag": "a"}, {"tag": "c"}])
    hits = retriever.search(TEXTS[1], k=4, mode="dense", where={"tag": "a"})
    assert {h.payload["tag"] for h in hits} == {"a"} and len(hits) == 2
    hits = retriever.search(TEXTS[1], k=4, mode="dense", where={"tag": ["b", "c"]})
    assert len(hits) == 2


def test_create_twice_and_open_missing(connect: Any, tiny_encoder: Any) -> None:
    r = MultimodalRetriever.create("c1", encoder=tiny_encoder, **connect())
    with pytest.raises(ConfigError, match="already exists"):
        MultimodalRetriever.create("c1", encoder=tiny_encoder, **connect())
    r.close()
    with pytest.raises(CollectionNotFoundError, match="does not exist"):
        MultimodalRetriever.open("nope", **connect())


def test_open_with_other_encoder_names_both(connect: Any, tiny_encoder: Any) -> None:
    MultimodalRetriever.create("c2", encoder=tiny_encoder, **connect()).close()
    with pytest.raises(ConfigError) as info:
        MultimodalRetriever.open("c2", encoder="open_clip:ViT-B-32/laion2b_s34b_b79k", **connect())
    assert TINY in str(info.value) and "ViT-B-32" in str(info.value)


def test_unknown_encoder_name() -> None:
    from mmgr_qdrant.encoders import get_encoder

    with pytest.raises(ConfigError, match="Unknown encoder"):
        get_encoder("clipx:foo")


def test_reopen_in_a_new_process(tmp_path: Path, tiny_encoder: Any) -> None:
    with MultimodalRetriever.create("p", path=tmp_path, encoder=tiny_encoder) as r:
        ids = r.add_texts(TEXTS)
    script = textwrap.dedent(
        f"""
        from mmgr_qdrant import MultimodalRetriever
        with MultimodalRetriever.open("p", path={str(tmp_path)!r}) as r:
            hits = r.search({TEXTS[3]!r}, k=1)
            print(r.count(), hits[0].id)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", str(ids[3])]


def test_reopen_local_path_client(tmp_path: Path, tiny_encoder: Any) -> None:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "local"))
    with MultimodalRetriever.create("q", client=client, encoder=tiny_encoder) as r:
        r.add_texts(TEXTS)
    client.close()
    client = QdrantClient(path=str(tmp_path / "local"))
    try:
        with MultimodalRetriever.open("q", client=client, encoder=tiny_encoder) as r:
            assert r.count() == 4
            assert r.config.encoder == TINY
    finally:
        client.close()


def test_second_writer_on_edge_gets_clear_error(tmp_path: Path, tiny_encoder: Any) -> None:
    from mmgr_qdrant import StoreUnavailableError

    with MultimodalRetriever.create("w", path=tmp_path, encoder=tiny_encoder) as r:
        r.add_texts(TEXTS[:1])
        script = f"from mmgr_qdrant import MultimodalRetriever; MultimodalRetriever.open('w', path={str(tmp_path)!r})"
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode != 0
        assert "StoreUnavailableError" in out.stderr and "another process" in out.stderr
        assert r.count() == 1
    _ = StoreUnavailableError


def test_unreachable_server_is_clear() -> None:
    from mmgr_qdrant import StoreUnavailableError

    with pytest.raises(StoreUnavailableError, match="unreachable"):
        from qdrant_client import QdrantClient

        client = QdrantClient(url="http://127.0.0.1:9", timeout=1)
        from mmgr_qdrant.store import ClientStore

        ClientStore(client, "x", retries=1, backoff=0.01).exists()
