"""Video documents: frame sampling, moments, grouping by video, deletion, corrupt files; both backends.

Clips are made at test time from the sample clip art with PyAV (mpeg4 in .mp4): each clip shows a
few pictures one after another (a cut between pictures, a small pan within each), so the test
knows at which second each picture appears.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mmgr_qdrant import InputError, MultimodalRetriever, NotFoundError
from mmgr_qdrant.video import Frame, frame_at, group_by_video, sample_frames
from tests.helpers import FPS, SCENE_S, make_clip, picture

SCENES = {
    "a.mp4": ["crow.png", "acorn.png", "8-ball.png"],
    "b.mp4": ["baby-tux.png", "aircraft2.png", "apple-bitten.png"],
    "c.mp4": ["ak47.png", "albero.png", "anelli.png"],
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {name: make_clip(folder / name, pics) for name, pics in SCENES.items()}


# -- sampling (no store) ------------------------------------------------------------------------

def test_interval_sampling_keeps_one_frame_per_interval(clips: dict[str, Path]) -> None:
    frames = list(sample_frames(clips["a.mp4"], every_s=0.5))
    ts = [f.t for f in frames]
    assert len(frames) == 12  # 6 s at one frame per 0.5 s
    assert ts == sorted(ts) and ts[0] == 0.0
    assert np.allclose(np.diff(ts), 0.5, atol=0.11)
    assert [f.index for f in frames] == list(range(12))
    assert all(isinstance(f, Frame) and f.image.size == (96, 96) for f in frames)


def test_scene_sampling_keeps_the_cuts(clips: dict[str, Path]) -> None:
    frames = list(sample_frames(clips["b.mp4"], scenes=True))
    assert [f.t for f in frames] == pytest.approx([0.0, 2.0, 4.0], abs=1 / FPS + 1e-6)


def test_scene_sampling_adds_frames_in_a_long_scene(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "long.mp4", ["crow.png"], scene_s=3.0)
    frames = list(sample_frames(clip, scenes=True, every_s=0.1))  # a frame every 1 s of one long scene
    assert [f.t for f in frames] == pytest.approx([0.0, 1.0, 2.0], abs=1 / FPS + 1e-6)


def test_frame_at_returns_the_picture_shown(clips: dict[str, Path]) -> None:
    frame = np.asarray(frame_at(clips["a.mp4"], 3.0), dtype=np.float32)
    acorn = np.asarray(picture("acorn.png"), dtype=np.float32)
    crow = np.asarray(picture("crow.png"), dtype=np.float32)
    assert np.abs(frame - acorn).mean() < np.abs(frame - crow).mean()


def test_sampling_rejects_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    with pytest.raises(InputError, match="bad.mp4"):
        list(sample_frames(bad))
    with pytest.raises(InputError, match="does not exist"):
        list(sample_frames(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="every_s"):
        list(sample_frames(bad, every_s=0))


def test_sampling_streams_with_progress(clips: dict[str, Path]) -> None:
    calls: list[tuple[str, int, Any]] = []
    it = sample_frames(clips["c.mp4"], every_s=1.0, progress=lambda s, d, t, i: calls.append((s, d, t)))
    first = next(it)  # a generator: the first frame comes before the rest is decoded
    assert first.t == 0.0 and len(calls) == 1
    rest = list(it)
    assert len(rest) == 5 and calls[-1][0] == "decode" and calls[-1][2] in (5, 6)


def test_group_by_video_rule() -> None:
    from mmgr_qdrant import Hit

    hits = [Hit(id=f"m{i}", score=1.0 - i / 10, docid=(), modality="video", t=float(i), video=v)
            for i, v in enumerate([7, 8, 7, 7, 9])]
    hits.insert(2, Hit(id="img", score=0.85, docid=(), modality="image"))
    grouped = group_by_video(lambda limit: hits[:limit], k=3, moments=2)
    assert [h.id for h in grouped] == [7, 8, "img"]
    assert [m.t for m in grouped[0].moments] == [0.0, 2.0] and grouped[0].t == 0.0
    with pytest.raises(InputError, match="moments"):
        group_by_video(lambda limit: hits, k=3, moments=0)


# -- through the retriever, both backends -------------------------------------------------------

def test_add_videos_and_find_the_moment(retriever: MultimodalRetriever, clips: dict[str, Path]) -> None:
    every = 0.5
    ids = retriever.add_videos([str(p) for p in clips.values()], every_s=every, ids=[11, 12, 13],
                               payloads=[{"src": name} for name in clips], captions=["first", None, "third"])
    assert list(ids) == [11, 12, 13] and not ids.skipped
    assert retriever.count("video") == 3 * 12 and retriever.count() == 36
    assert retriever.stats(probe=False).counts["video"] == 36
    for vid, (name, pics) in zip([11, 12, 13], SCENES.items()):
        for scene, pic in enumerate(pics):
            hits = retriever.search(image=picture(pic), k=3, modality="video")
            top = hits[0]
            assert top.modality == "video" and top.video == vid, (pic, [(h.video, h.t) for h in hits])
            assert top.uri == str(clips[name].resolve()) and top.payload == {"src": name}
            cut = scene * SCENE_S
            assert cut - every <= top.t < cut + SCENE_S, (pic, top.t)  # within the scene that shows it
    grouped = retriever.search(image=picture("acorn.png"), k=3, group_by="video", moments=2)
    assert grouped[0].video == 11 and grouped[0].id == 11
    assert len({h.id for h in grouped}) == 3 and all(len(h.moments) == 2 for h in grouped)
    assert grouped[0].moments[0].score >= grouped[0].moments[1].score and grouped[0].t == grouped[0].moments[0].t
    assert grouped[0].text == "first"


def test_video_modality_in_the_docids_and_related(retriever: MultimodalRetriever, clips: dict[str, Path]) -> None:
    retriever.add_videos([str(clips["a.mp4"]), str(clips["b.mp4"])], every_s=1.0, ids=[1, 2])
    retriever.add_images([picture("crow.png")], ids=[100])
    retriever.build(epochs=2)
    moment = retriever.search(image=picture("crow.png"), k=1, modality="video")[0]
    assert moment.docid[0] == 2 and moment.video == 1
    for mode in ("hybrid", "generative"):
        hits = retriever.search(image=picture("crow.png"), k=4, modality="video", mode=mode)
        assert hits and all(h.modality == "video" for h in hits)
    from mmgr_qdrant.setops import Q

    only = retriever.search(Q.modality("video") & Q.text("anything"), k=50)
    assert only and {h.modality for h in only} == {"video"}
    near = retriever.related(moment.id, k=3)
    assert near and moment.id not in [h.id for h in near]
    # added after the build: the new moments get docids of the video modality at once
    retriever.add_videos([str(clips["c.mp4"])], every_s=1.0, ids=[3])
    assert retriever.search(image=picture("anelli.png"), k=1, modality="video")[0].docid[0] == 2


def test_delete_a_video_removes_all_its_moments(retriever: MultimodalRetriever, clips: dict[str, Path]) -> None:
    retriever.add_videos([str(clips["a.mp4"]), str(clips["b.mp4"])], every_s=1.0, ids=[1, 2])
    retriever.add_texts(["a note"], ids=[50])
    assert retriever.count("video") == 12
    retriever.delete([1])
    assert retriever.count("video") == 6
    assert {h.video for h in retriever.search(image=picture("crow.png"), k=20, modality="video")} == {2}
    with pytest.raises(NotFoundError):
        retriever.delete([1])
    retriever.delete([2, 50])
    assert retriever.count() == 0


def test_corrupt_video_is_skipped_with_its_reason(retriever: MultimodalRetriever, clips: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(clips["a.mp4"].read_bytes()[:200])  # a truncated file
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    result = retriever.add_videos([str(bad), str(clips["b.mp4"]), str(empty)], every_s=1.0, on_error="skip")
    assert len(result) == 1 and [s.index for s in result.skipped] == [0, 2]
    assert "broken.mp4" in result.skipped[0].reason and "empty.webm" in result.skipped[1].reason
    assert retriever.count("video") == 6
    with pytest.raises(InputError, match="broken.mp4"):
        retriever.add_videos([str(bad)])
    assert retriever.count("video") == 6
    # on_error="raise": a bad video after good ones leaves nothing new of the call behind
    with pytest.raises(InputError, match="broken.mp4"):
        retriever.add_videos([str(clips["a.mp4"]), str(clips["b.mp4"]), str(bad)], every_s=1.0)
    assert retriever.count("video") == 6
    assert {h.video for h in retriever.search(image=picture("crow.png"), k=20, modality="video")} == {result[0]}


def test_readding_a_video_replaces_its_moments(retriever: MultimodalRetriever, clips: dict[str, Path]) -> None:
    first = retriever.add_videos([str(clips["c.mp4"])], every_s=0.5)
    again = retriever.add_videos([str(clips["c.mp4"])], every_s=0.5)
    assert list(first) == list(again) and retriever.count("video") == 12  # idempotent, id from the bytes
    retriever.add_videos([str(clips["c.mp4"])], every_s=2.0)
    assert retriever.count("video") == 3


def test_add_videos_validates_arguments(retriever: MultimodalRetriever, clips: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="every_s"):
        retriever.add_videos([str(clips["a.mp4"])], every_s=-1)
    with pytest.raises(InputError, match="payloads"):
        retriever.add_videos([str(clips["a.mp4"])], payloads=[{}, {}])
    with pytest.raises(InputError, match="_mmgr"):
        retriever.add_videos([str(clips["a.mp4"])], payloads=[{"_mmgr": 1}])
    with pytest.raises(InputError, match="group_by"):
        retriever.search("x", group_by="album")
    assert retriever.count() == 0


def test_video_survives_reopen(connect: Any, tiny_encoder: Any, clips: dict[str, Path]) -> None:
    kw = connect()
    with MultimodalRetriever.create("vids", encoder=tiny_encoder, **kw) as r:
        r.add_videos([str(clips["a.mp4"])], every_s=1.0, ids=[5])
    with MultimodalRetriever.open("vids", encoder=tiny_encoder, **kw) as r:
        hit = r.search(image=picture("8-ball.png"), k=1, group_by="video")[0]
        assert hit.id == 5 and hit.video == 5 and 4.0 - 1.0 <= (hit.t or 0) < 6.0


# -- the CLI --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_ingests_videos_and_saves_the_moment(clips: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mmgr_qdrant.cli import app

    env = {"MMGR_PATH": None, "MMGR_COLLECTION": None, "QDRANT_URL": None, "QDRANT_API_KEY": None, "COLUMNS": "200"}
    conn = ["--path", str(tmp_path / "store"), "--collection", "vids"]

    def ok(*args: Any) -> Any:
        res = CliRunner().invoke(app, [str(a) for a in args], prog_name="mmgr", env=env)
        assert res.exit_code == 0, f"{args}: {res.output}\n{res.exception!r}"
        return res

    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(clips[name].read_bytes())
    (folder / "broken.mov").write_bytes(b"not a video at all")
    ok("init", "--encoder", "open_clip:mmgr-tiny/none", *conn)
    out = ok("ingest", folder, "--every", "0.5", *conn).output
    assert "videos stored" in out and "24 video moments" in out and "broken.mov" in out
    query = tmp_path / "q.png"
    picture("acorn.png").save(query)
    sheet = tmp_path / "hits.png"
    data = json.loads(ok("search", "--image", query, "--modality", "video", "-k", "2", "--json", "--save", sheet, *conn).stdout)  # notes go to stderr
    assert data[0]["modality"] == "video" and data[0]["uri"].endswith("a.mp4") and 2.0 - 0.5 <= data[0]["t"] < 4.0
    img = np.asarray(Image.open(sheet).convert("RGB"))
    assert img.shape[0] > 100 and (img < 30).all(axis=2).sum() > 50  # the black timestamp badge is drawn
    grouped = json.loads(ok("search", "--image", query, "--group-by", "video", "-k", "5", "--json", *conn).stdout)
    assert [g["video"] for g in grouped] == [g["id"] for g in grouped] and len(grouped) == 2 and grouped[0]["moments"]
    composed = json.loads(ok("search", "an acorn", "--image", query, "--fusion-weight", "0.3", "--json", *conn).stdout)
    assert composed and composed[0]["modality"] == "video"
