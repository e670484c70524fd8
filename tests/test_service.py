"""The REST API (``mmgr_qdrant.service``) through FastAPI's test client, on both store backends."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mmgr_qdrant import MultimodalRetriever
from mmgr_qdrant.errors import ConfigError
from mmgr_qdrant.service import ServiceSettings, create_app
from mmgr_qdrant.service.models import SearchResponse
from mmgr_qdrant.service.thumbs import ThumbnailCache
from tests.helpers import CLIPART, sample_rows

N_IMAGES = 16
DECODER = {"epochs": 4, "patience": 2}
KEY = "s3cret-key"


@pytest.fixture(scope="module", params=["edge", "local"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Any) -> Iterator[MultimodalRetriever]:
    """A built index of clip-art images (copied to a temp folder) with caption documents linked to them."""
    from qdrant_client import QdrantClient

    root = tmp_path_factory.mktemp("svc")
    client = QdrantClient(":memory:") if request.param == "local" else None
    kwargs: dict[str, Any] = {"client": client} if client is not None else {"path": root / "edge"}
    r = MultimodalRetriever.create("svc", encoder=tiny_encoder, decoder_params=DECODER, **kwargs)
    rows = sample_rows(N_IMAGES)
    files = []
    for row in rows:
        dst = root / "img" / Path(row["file"]).name
        dst.parent.mkdir(exist_ok=True)
        shutil.copy(CLIPART / row["file"], dst)
        files.append(str(dst))
    r.add_images(files, captions=[row["caption"] for row in rows], caption_docs=True, payloads=[{"n": i} for i in range(len(rows))])
    r.build()
    yield r
    r.close()
    if client is not None:
        client.close()


@pytest.fixture(scope="module")
def client(built: MultimodalRetriever) -> Iterator[Any]:
    with TestClient(create_app(built)) as c:
        yield c


def png_bytes(size: tuple[int, int] = (32, 32), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def assert_error(res: Any, status: int, error: str, *words: str) -> dict[str, Any]:
    assert res.status_code == status, res.text
    body = res.json()
    assert body["error"] == error, body
    assert "Traceback" not in res.text and 'File "' not in res.text
    for w in words:
        assert w in body["message"], body["message"]
    return dict(body)


def first_image(client: Any) -> dict[str, Any]:
    hits = client.post("/search", json={"text": "a picture", "k": 5, "modality": "image"}).json()["hits"]
    return dict(hits[0])


# -- service and page -------------------------------------------------------------------------
def test_health_stats_page_and_openapi(client: Any, built: MultimodalRetriever) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["collection"] == "svc" and h["writes"] is False
    stats = client.get("/stats").json()
    assert stats["counts"]["image"] == N_IMAGES and stats["counts"]["total"] == built.count() and stats["built"] is True
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="search-form"' in page.text and "/static/app.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for asset in ("app.js", "style.css"):
        res = client.get(f"/static/{asset}")
        assert res.status_code == 200 and len(res.content) > 1000
        assert "https://" not in res.text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/search", "/items/{id}", "/items/{id}/thumbnail", "/items/{id}/related", "/browse", "/feedback", "/stats", "/health",
            "/items"} <= set(paths)
    assert set(paths["/search"]["post"]["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert client.get("/docs").status_code == 200


# -- search -----------------------------------------------------------------------------------
def test_text_search_returns_hits_with_every_field(client: Any, built: MultimodalRetriever) -> None:
    res = client.post("/search", json={"text": "a bird", "k": 7})
    assert res.status_code == 200, res.text
    body = res.json()
    SearchResponse.model_validate(body)  # the route skips re-validation; its shape is still the documented one
    assert body["kind"] == "text" and body["explain"] is None and body["took_ms"] > 0
    hits = body["hits"]
    assert len(hits) == 7
    direct = built.search("a bird", k=7)
    assert [h["ref"] for h in hits] == [str(h.id) for h in direct]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in direct])
    for h in hits:
        assert set(h) >= {"id", "ref", "score", "docid", "docid_str", "modality", "payload", "text", "thumbnail"}
        assert h["docid_str"] == ".".join(str(c) for c in h["docid"]) and len(h["docid"]) > 1
        if h["modality"] == "image":
            assert h["thumbnail"] == f"/items/{h['ref']}/thumbnail" and h["file"].endswith(".png") and "/" not in h["file"]
            assert "n" in h["payload"]
        else:
            assert h["thumbnail"] is None and h["text"]


def test_modality_mode_and_where(client: Any) -> None:
    texts = client.post("/search", json={"text": "a bird", "k": 5, "modality": "text", "mode": "dense"}).json()["hits"]
    assert texts and {h["modality"] for h in texts} == {"text"}
    both = client.post("/search", json={"text": "a bird", "k": 5, "where": {"n": 3}}).json()["hits"]
    assert sorted(h["modality"] for h in both) == ["image", "text"] and {h["payload"]["n"] for h in both} == {3}  # an image and its caption
    only = client.post("/search", json={"text": "a bird", "k": 5, "where": {"n": 3}, "modality": "image"}).json()["hits"]
    assert [h["payload"]["n"] for h in only] == [3]
    gen = client.post("/search", json={"text": "a bird", "k": 3, "mode": "generative"})
    assert gen.status_code == 200 and len(gen.json()["hits"]) == 3


def test_explain_summary_has_prefixes_fraction_and_score_parts(client: Any, built: MultimodalRetriever) -> None:
    body = client.post("/search", json={"text": "a bird", "k": 4, "explain": True, "mode": "hybrid"}).json()
    info = body["explain"]
    assert info["mode"] == "hybrid" and info["documents"] == built.count()
    if info["stopped"] in ("small", "unsure"):  # a sample collection this small is searched without a filter
        assert info["prefixes"] == [] and info["filter_fraction"] == 1.0
    else:
        assert info["prefixes"] and all(p.count(".") >= 1 for p in info["prefixes"])
        assert 0 < info["filter_fraction"] <= 1 and info["admitted"] >= 1
    assert [s["ref"] for s in info["scores"]] == [h["ref"] for h in body["hits"]]
    for s, h in zip(info["scores"], body["hits"]):
        if s["mode"] == "hybrid":
            assert s["vector"] <= s["score"] and 0 <= s["prefix_prob"] <= 1
        assert h["explain"]["mode"] == s["mode"]


def test_explain_summary_of_a_routed_search(built: MultimodalRetriever) -> None:
    """With the filter in use (small-collection rule off), the summary lists the admitted prefixes."""
    from dataclasses import replace

    routed = MultimodalRetriever(built.store, built.config.with_(hybrid=replace(built.config.hybrid, dense_share=1.0, min_candidates=0,
                                                                                when_unsure="route")), built.encoder)
    with TestClient(create_app(routed)) as c:
        info = c.post("/search", json={"text": "a bird", "k": 4, "explain": True, "mode": "hybrid"}).json()["explain"]
    assert info["stopped"] in ("mass", "floor", "ceiling", "beam")
    assert info["prefixes"] and all(p.count(".") >= 1 for p in info["prefixes"])
    assert 0 < info["filter_fraction"] < 1 and info["admitted"] >= 1


def test_boolean_query_with_explain(client: Any, built: MultimodalRetriever) -> None:
    from mmgr_qdrant.setops import Q

    body = client.post("/search", json={"query": "bird AND NOT modality:text", "k": 5, "explain": True}).json()
    assert body["kind"] == "boolean"
    assert body["hits"] and {h["modality"] for h in body["hits"]} == {"image"}
    direct = built.search(Q.parse("bird AND NOT modality:text"), k=5)
    assert [h["ref"] for h in body["hits"]] == [str(h.id) for h in direct]
    info = body["explain"]
    assert info["mode"] == "boolean" and info["atoms"] and "filter" in info
    assert all("query" not in (h["explain"] or {}) for h in body["hits"])  # the compiled query is in the summary once


def test_vector_search_and_dimension_error(client: Any, built: MultimodalRetriever) -> None:
    target = built.get([first_image(client)["id"]])[0]
    vec = built.store.retrieve([target.id], with_vectors=True)[0].vector
    hits = client.post("/search", json={"vector": [float(x) for x in vec], "k": 1, "mode": "dense"}).json()["hits"]
    assert hits[0]["ref"] == str(target.id) and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert_error(client.post("/search", json={"vector": [0.1, 0.2], "k": 1}), 400, "DimensionMismatchError")


def test_image_upload_search(client: Any, built: MultimodalRetriever) -> None:
    hit = first_image(client)
    path = Path(str(built.get([hit["id"]])[0].uri))
    data = path.read_bytes()
    res = client.post("/search", files={"image": ("q.png", data, "image/png")}, data={"k": "3", "mode": "dense", "modality": "image"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["kind"] == "image" and len(body["hits"]) == 3
    assert body["hits"][0]["file"] == path.name and body["hits"][0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_upload_errors_corrupt_oversized_and_too_many_pixels(built: MultimodalRetriever) -> None:
    app = create_app(built, max_upload_bytes=20_000, max_pixels=100_000, max_request_bytes=200_000)
    with TestClient(app) as c:
        assert_error(c.post("/search", files={"image": ("bad.png", b"not an image at all", "image/png")}), 400, "InputError", "not a readable image")
        assert_error(c.post("/search", files={"image": ("empty.png", b"", "image/png")}), 400, "InputError", "empty")
        big = png_bytes((120, 120))  # random pixels: about 43 kB, over the 20 kB upload limit
        assert len(big) > 20_000
        assert_error(c.post("/search", files={"image": ("big.png", big, "image/png")}), 400, "InputError", "20,000 bytes")
        huge = io.BytesIO()
        Image.new("RGB", (1000, 1000), "white").save(huge, format="PNG")  # compresses to a few kB, but 1M pixels
        assert len(huge.getvalue()) < 20_000
        assert_error(c.post("/search", files={"image": ("huge.png", huge.getvalue(), "image/png")}), 400, "InputError", "1,000,000 pixels")
        assert_error(c.post("/search", content=b"x" * 300_000, headers={"content-type": "application/json"}), 413, "PayloadTooLarge")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as the body arrives
            for _ in range(30):
                yield b"y" * 10_000

        assert_error(c.post("/search", content=chunks(), headers={"content-type": "application/json"}), 413, "PayloadTooLarge")
        assert_error(c.post("/search", files={"image": ("q.png", png_bytes(), "image/png")}, data={"k": "many"}), 400, "InputError", "k=")
        assert_error(c.post("/search", files={"image": ("q.png", png_bytes(), "image/png")}, data={"colour": "red"}), 400, "InputError", "colour")


def test_search_errors_are_json_with_the_library_message(client: Any, built: MultimodalRetriever) -> None:
    assert_error(client.post("/search", json={"k": 3}), 400, "InputError", "exactly one")
    assert_error(client.post("/search", json={"text": "a", "query": "b"}), 400, "InputError", "text, query")
    assert_error(client.post("/search", json={"text": "a", "k": 0}), 400, "InputError", "k=0")
    assert_error(client.post("/search", json={"text": "a", "k": 101}), 400, "InputError", "1 to 100")
    assert_error(client.post("/search", json={"text": "x" * 1001}), 400, "InputError", "1,001 characters")
    assert_error(client.post("/search", json={"text": "   "}), 400, "InputError", "empty")
    err = assert_error(client.post("/search", json={"query": "cat AND (dog"}), 400, "QuerySyntaxError")
    assert err["message"][0].isupper()
    assert_error(client.post("/search", json={"text": "a", "where": {"_mmgr.modality": "text"}}), 400, "InputError", "reserved")
    assert_error(client.post("/search", json={"text": "a", "colour": "red"}), 422, "ValidationError", "colour")
    assert_error(client.post("/search", json={"text": "a", "mode": "magic"}), 422, "ValidationError", "mode")
    assert_error(client.post("/search", content=b"{not json", headers={"content-type": "application/json"}), 400, "InputError", "not valid JSON")
    assert_error(client.post("/search", content=b'{"text": "\x80"}', headers={"content-type": "application/json"}), 400, "InputError", "UTF-8")
    assert_error(client.post("/search"), 400, "InputError", "empty")
    assert_error(client.get("/nowhere"), 404, "NotFound")


def test_unexpected_errors_are_500_json_without_a_traceback(built: MultimodalRetriever) -> None:
    class Broken:  # stands in for a library bug: the real retriever has no failure to trigger here
        config = built.config

        def get(self, ids: Any) -> Any:
            raise RuntimeError("internal detail /secret/path")

    with TestClient(create_app(Broken()), raise_server_exceptions=False) as c:  # type: ignore[arg-type]
        body = assert_error(c.get("/items/1"), 500, "InternalError", "RuntimeError")
        assert "/secret/path" not in body["message"]


# -- items, thumbnails, related ---------------------------------------------------------------
def test_get_item_and_its_errors(client: Any, built: MultimodalRetriever) -> None:
    hit = first_image(client)
    item = client.get(f"/items/{hit['ref']}").json()
    assert item["ref"] == hit["ref"] and item["docid"] == hit["docid"] and item["payload"] == hit["payload"]
    assert_error(client.get("/items/6f1c1a36-1b0a-4a4a-9c8e-000000000000"), 404, "NotFoundError", "not in collection")
    assert_error(client.get("/items/not-an-id"), 400, "InputError", "neither an unsigned int nor a UUID")


def test_thumbnail_is_resized_cached_and_only_from_the_index(built: MultimodalRetriever, tmp_path: Path) -> None:
    app = create_app(built, thumbnail_px=48, thumbnail_cache=2)
    cache: ThumbnailCache = app.state.thumbnails
    with TestClient(app) as c:
        hits = c.post("/search", json={"text": "a picture", "k": 4, "modality": "image"}).json()["hits"]
        res = c.get(hits[0]["thumbnail"])
        assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
        img = Image.open(io.BytesIO(res.content))
        assert max(img.size) == 48
        assert c.get(hits[0]["thumbnail"]).content == res.content and cache.hits == 1 and cache.misses == 1
        for h in hits[1:]:
            assert c.get(h["thumbnail"]).status_code == 200
        assert len(cache) == 2  # bounded: the least recently used went
        # The request never names a path: a query parameter is ignored, a path-like id is refused.
        same = c.get(hits[0]["thumbnail"], params={"path": "/etc/passwd", "uri": "/etc/passwd"})
        assert same.status_code == 200 and Image.open(io.BytesIO(same.content)).size == img.size
        for bad in ("/items/..%2F..%2F..%2Fetc%2Fpasswd/thumbnail", "/items/%2Fetc%2Fpasswd/thumbnail"):
            res = c.get(bad)
            assert 400 <= res.status_code < 500 and b"root:" not in res.content
        assert c.get("/items/../../etc/passwd/thumbnail").status_code == 404
        text = c.post("/search", json={"text": "a picture", "k": 1, "modality": "text"}).json()["hits"][0]
        assert_error(c.get(f"/items/{text['ref']}/thumbnail"), 404, "NotFoundError", "text document")
        # A file that left the disk: 404 with the reason, not a 500.
        gone = tmp_path / "gone.png"
        gone.write_bytes(png_bytes(seed=9))
        [gid] = built.add_images([str(gone)])
        gone.unlink()
        try:
            assert_error(c.get(f"/items/{gid}/thumbnail"), 404, "NotFoundError", "gone")
        finally:
            built.delete([gid])


def test_related_lists_linked_caption_first(client: Any, built: MultimodalRetriever) -> None:
    hit = first_image(client)
    res = client.get(f"/items/{hit['ref']}/related", params={"k": 4}).json()["hits"]
    assert res[0]["relation"] == "linked" and res[0]["modality"] == "text" and res[0]["text"] == built.get([hit["id"]])[0].text
    assert {h["relation"] for h in res[1:]} <= {"nearest", "linked"} and len(res) == 4
    only_images = client.get(f"/items/{hit['ref']}/related", params={"k": 3, "modality": "image"}).json()["hits"]
    assert {h["modality"] for h in only_images} == {"image"} and hit["ref"] not in {h["ref"] for h in only_images}
    assert_error(client.get(f"/items/{hit['ref']}/related", params={"k": 1000}), 400, "InputError", "k=1000")
    assert_error(client.get(f"/items/{hit['ref']}/related", params={"modality": "audio"}), 400, "InputError", "audio")


# -- browse -----------------------------------------------------------------------------------
def test_browse_walks_the_docid_hierarchy(client: Any, built: MultimodalRetriever) -> None:
    root = client.get("/browse").json()
    assert root["prefix"] == "" and root["codes"] == []
    labels = {n["label"]: n for n in root["children"]}
    assert set(labels) == {"image", "text"}
    assert labels["image"]["count"] == built.count("image") and labels["text"]["count"] == built.count("text")
    node = labels["image"]
    for _ in range(2):  # two levels down: counts add up, samples sit under the prefix
        assert len(node["samples"]) == min(4, node["count"]) and node["leaf"] is False
        for s in node["samples"]:
            assert s["docid_str"].startswith(node["prefix"] + ".") and s["modality"] == "image"
        level = client.get("/browse", params={"prefix": node["prefix"]}).json()
        assert level["prefix"] == node["prefix"] and level["total"] == len(level["children"])
        assert sum(n["count"] for n in level["children"]) == node["count"]
        assert all(n["codes"][:-1] == node["codes"] for n in level["children"])
        node = max(level["children"], key=lambda n: n["count"])
    leaf = node
    while not leaf["leaf"]:
        leaf = client.get("/browse", params={"prefix": leaf["prefix"]}).json()["children"][0]
    assert leaf["count"] == 1 and leaf["samples"][0]["docid_str"] == leaf["prefix"]
    assert client.get("/browse", params={"prefix": leaf["prefix"]}).json()["children"] == []
    paged = client.get("/browse", params={"prefix": "1", "offset": 1, "limit": 1}).json()
    assert paged["offset"] == 1 and paged["limit"] == 1 and len(paged["children"]) <= 1
    assert_error(client.get("/browse", params={"prefix": "1.x"}), 400, "InputError", "dot-separated")
    assert_error(client.get("/browse", params={"prefix": ".".join(["1"] * 12)}), 400, "InputError", "shorter prefix")
    assert client.get("/browse", params={"prefix": "7"}).json()["children"] == []


def test_browse_before_build_is_409(retriever: MultimodalRetriever) -> None:
    retriever.add_texts(["one", "two"])
    with TestClient(create_app(retriever)) as c:
        assert_error(c.get("/browse"), 409, "NotBuiltError", "build()")
        hits = c.post("/search", json={"text": "one", "k": 2}).json()["hits"]  # dense before a build
        assert hits[0]["text"] == "one" and hits[0]["docid"] == []
        assert_error(c.post("/search", json={"text": "one", "mode": "generative"}), 409, "NotBuiltError")


# -- feedback ---------------------------------------------------------------------------------
def test_feedback_stores_or_says_it_is_not_available(client: Any, built: MultimodalRetriever) -> None:
    hit = first_image(client)
    res = client.post("/feedback", json={"id": hit["id"], "query": "a picture", "relevant": True})
    if hasattr(built, "feedback"):
        assert res.status_code == 200 and res.json() == {"stored": True}
        assert_error(client.post("/feedback", json={"id": hit["id"]}), 400, "InputError", "exactly one")
        assert_error(client.post("/feedback", json={"id": "6f1c1a36-1b0a-4a4a-9c8e-000000000000", "query": "x"}), 404, "NotFoundError")
    else:
        assert_error(res, 501, "NotImplemented", "no feedback API")
    assert_error(client.post("/feedback", json={"query": "a picture"}), 422, "ValidationError", "id")
    with TestClient(create_app(built, feedback=False)) as off:
        assert_error(off.post("/feedback", json={"id": hit["id"], "query": "x"}), 403, "Forbidden", "--no-feedback")


# -- clip-retrieval's shape --------------------------------------------------------------------
def test_knn_service_in_clip_retrievals_shape(client: Any, built: MultimodalRetriever) -> None:
    import base64

    assert client.get("/indices-list").json() == ["svc"]
    res = client.post("/knn-service", json={"text": "a bird", "modality": "image", "num_images": 3, "indice_name": "svc",
                                            "deduplicate": True, "use_safety_model": True})
    assert res.status_code == 200, res.text
    rows = res.json()
    direct = built.search("a bird", k=3, modality="image")
    assert [str(x["id"]) for x in rows] == [str(h.id) for h in direct]
    assert rows[0]["similarity"] == pytest.approx(direct[0].score) and rows[0]["caption"] == direct[0].text
    assert rows[0]["url"] == f"http://testserver/items/{direct[0].id}/thumbnail" and client.get(rows[0]["url"]).status_code == 200
    texts = client.post("/knn-service", json={"text": "a bird", "modality": "text", "num_images": 2}).json()
    assert len(texts) == 2 and all(x["url"] is None and x["caption"] for x in texts)
    data = Path(str(built.get([rows[0]["id"]])[0].uri)).read_bytes()
    by_image = client.post("/knn-service", json={"image": base64.b64encode(data).decode(), "num_images": 1}).json()
    assert str(by_image[0]["id"]) == str(rows[0]["id"])
    assert_error(client.post("/knn-service", json={"text": "x", "indice_name": "other"}), 404, "NotFoundError", "/indices-list")
    assert_error(client.post("/knn-service", json={"image_url": "http://example.invalid/a.jpg"}), 400, "InputError", "base64")
    assert_error(client.post("/knn-service", json={"image": "%%%not base64"}), 400, "InputError", "not base64")
    assert_error(client.post("/knn-service", json={"text": "x", "num_images": 1000}), 400, "InputError", "k=1000")
    front = "http://front.example"
    assert "access-control-allow-origin" not in client.get("/indices-list", headers={"Origin": front}).headers
    with TestClient(create_app(built, cors_origins=(front,))) as c:
        assert c.get("/indices-list", headers={"Origin": front}).headers["access-control-allow-origin"] == front


# -- writes -----------------------------------------------------------------------------------
def test_writes_need_the_switch_and_the_key(retriever: MultimodalRetriever) -> None:
    with TestClient(create_app(retriever)) as ro:
        assert_error(ro.post("/items", json={"texts": ["x"]}, headers={"X-API-Key": KEY}), 403, "Forbidden", "--allow-writes")
        assert_error(ro.delete("/items/1", headers={"X-API-Key": KEY}), 403, "Forbidden")
    with TestClient(create_app(retriever, allow_writes=True, api_key=KEY)) as c:
        assert_error(c.post("/items", json={"texts": ["x"]}), 401, "Unauthorized", "X-API-Key")
        assert_error(c.post("/items", json={"texts": ["x"]}, headers={"X-API-Key": "wrong"}), 401, "Unauthorized")
        assert retriever.count() == 0
    with pytest.raises(ConfigError, match="API key"):
        create_app(retriever, allow_writes=True)


def test_add_and_delete_over_http_all_or_nothing(retriever: MultimodalRetriever) -> None:
    auth = {"X-API-Key": KEY}
    with TestClient(create_app(retriever, allow_writes=True, api_key=KEY, max_items=3)) as c:
        res = c.post("/items", json={"texts": ["a red car", "a blue boat"], "payloads": [{"tag": "car"}, None]}, headers=auth)
        assert res.status_code == 200, res.text
        ids = res.json()["ids"]
        assert len(ids) == 2 and retriever.count("text") == 2
        assert c.get(f"/items/{ids[0]}").json()["payload"] == {"tag": "car"}
        files = [("files", ("a.png", png_bytes(seed=1), "image/png")), ("files", ("b.png", png_bytes(seed=2), "image/png"))]
        res = c.post("/items", files=files, data={"captions": ["first", ""]}, headers=auth)
        assert res.status_code == 200, res.text
        img_ids = res.json()["ids"]
        assert retriever.count("image") == 2 and c.get(f"/items/{img_ids[0]}").json()["text"] == "first"
        # A bad file anywhere in the batch: an error, and nothing of the batch is written.
        bad = [("files", ("c.png", png_bytes(seed=3), "image/png")), ("files", ("d.png", b"broken", "image/png"))]
        assert_error(c.post("/items", files=bad, headers=auth), 400, "InputError")
        assert_error(c.post("/items", json={"texts": ["ok", ""]}, headers=auth), 400, "InputError", "empty")
        assert_error(c.post("/items", json={"texts": ["1", "2", "3", "4"]}, headers=auth), 400, "InputError", "1 to 3")
        assert_error(c.post("/items", json={"texts": ["x"], "payloads": [{"_mmgr": 1}]}, headers=auth), 400, "InputError", "reserved")
        assert retriever.count() == 4
        assert c.delete(f"/items/{ids[1]}", headers=auth).json() == {"deleted": ids[1]}
        assert_error(c.get(f"/items/{ids[1]}"), 404, "NotFoundError")
        assert_error(c.delete(f"/items/{ids[1]}", headers=auth), 404, "NotFoundError", "nothing was deleted")
        assert retriever.count() == 3


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_k"):
        ServiceSettings(max_k=0)
    with pytest.raises(ConfigError, match="no field 'colour'"):
        ServiceSettings().replace(colour="red")
    assert ServiceSettings().replace(max_k=5).max_k == 5
