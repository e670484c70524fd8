"""The service with video moments: frame thumbnails, the media endpoint the page plays from ``#t=``; both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmgr_qdrant import MultimodalRetriever
from tests.helpers import SCENE_S, make_clip, picture


@pytest.fixture
def client(connect: Any, tiny_encoder: Any, tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from mmgr_qdrant.service import create_app

    clip = make_clip(tmp_path / "clip.mp4", ["crow.png", "acorn.png"])
    r = MultimodalRetriever.create("vid", encoder=tiny_encoder, **connect())
    r.add_videos([clip], every_s=SCENE_S)
    r.add_images([picture("crow.png")], ids=[7])
    with TestClient(create_app(r)) as c:
        yield c
    r.close()


def test_video_moments_carry_their_time_a_frame_thumbnail_and_a_playable_file(client: Any) -> None:
    hits = client.post("/search", json={"text": "a bird", "k": 10, "modality": "video"}).json()["hits"]
    assert sorted(h["t"] for h in hits) == pytest.approx([0.0, SCENE_S], abs=0.11)
    moment = next(h for h in hits if h["t"] and h["t"] > 1)
    assert moment["media"] == f"/items/{moment['ref']}/media#t={moment['t']:g}" and moment["video"]
    thumb = client.get(moment["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    import io

    assert Image.open(io.BytesIO(thumb.content)).size[0] > 0
    media = client.get(moment["media"].split("#")[0])
    assert media.status_code == 200 and media.headers["content-type"] == "video/mp4" and len(media.content) > 1000
    part = client.get(moment["media"].split("#")[0], headers={"Range": "bytes=0-99"})  # a player seeking to #t= asks for ranges
    assert part.status_code == 206 and len(part.content) == 100


def test_only_video_moments_have_media(client: Any) -> None:
    res = client.get("/items/7/media")
    assert res.status_code == 404 and res.json()["error"] == "NotFoundError"
    image = client.get("/items/7").json()
    assert image["media"] is None and image["t"] is None and image["video"] is None  # an image added from memory: no file either
