"""open_clip encoders: ``open_clip:<model>/<pretrained>``, ``open_clip:hf-hub:<repo>``,
``open_clip:local-dir:<path>``, and ``open_clip:<model>/none`` for random-init weights (tests,
benchmarks of the real compute cost). ``open_clip:mmgr-tiny/none`` is a tiny config for tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EncoderError, missing_dependency
from ..images import describe, load_image
from .base import best_device, check_texts, normalize, register_encoder

logger = logging.getLogger(__name__)

TINY_NAME = "mmgr-tiny"
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
_RANDOM_SEED = 0  # random-init weights are seeded, so a reopened index gets the same encoder


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise missing_dependency("open_clip_torch", "clip") from exc
    return open_clip


def register_tiny_config() -> None:
    """Make the tiny test config known to open_clip (idempotent)."""
    oc = _open_clip()
    if TINY_NAME in oc.list_models():
        return
    folder = Path(tempfile.mkdtemp(prefix="mmgr-openclip-"))
    cfg = folder / f"{TINY_NAME}.json"
    cfg.write_text(json.dumps(TINY_CONFIG))
    oc.add_model_config(str(cfg))


class OpenClipEncoder:
    """A CLIP model from open_clip, with its own preprocessing and tokenizer.

    Args:
        spec: the part after ``open_clip:``.
        device: ``"cuda"``, ``"cpu"`` or ``None`` for the best available.
    """

    def __init__(self, spec: str, device: str | None = None) -> None:
        import torch

        oc = _open_clip()
        self.name = f"open_clip:{spec}"
        self.device = device or best_device()
        if spec.startswith(("hf-hub:", "local-dir:")):
            model_name, pretrained = spec, None
        else:
            model_name, _, pretrained = spec.partition("/")
            if pretrained.lower() in ("", "none", "random"):
                pretrained = None
                if not spec.endswith(("/none", "/random")):
                    logger.warning("open_clip model %s has no pretrained tag: using random weights", model_name)
        if model_name == TINY_NAME:
            register_tiny_config()
        if model_name not in oc.list_models() and not model_name.startswith(("hf-hub:", "local-dir:")):
            raise EncoderError(
                f"open_clip has no model {model_name!r}; see open_clip.list_models() for the names, e.g. 'open_clip:ViT-B-32/laion2b_s34b_b79k'."
            )
        if pretrained is None and not model_name.startswith(("hf-hub:", "local-dir:")):
            torch.manual_seed(_RANDOM_SEED)
        with _root_logging_untouched(drop_random_init_notice=pretrained is None):
            try:
                model, _, preprocess = oc.create_model_and_transforms(model_name, pretrained=pretrained, device=self.device)
            except Exception as exc:
                raise EncoderError(_load_failure(spec, model_name, pretrained, exc)) from exc
            self.tokenizer = oc.get_tokenizer(model_name)
        self.model = model.eval()
        self.preprocess = preprocess
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["probe"]).to(self.device))
        self.dim = int(probe.shape[-1])

    def encode_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(images), batch_size):
            batch = [self.preprocess(load_image(im)) for im in images[start : start + batch_size]]
            with torch.inference_mode():
                feats = self.model.encode_image(torch.stack(batch).to(self.device))
            out.append(feats.float().cpu().numpy())
        return normalize(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        texts = check_texts(texts)
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start : start + batch_size]).to(self.device)
            with torch.inference_mode():
                feats = self.model.encode_text(tokens)
            out.append(feats.float().cpu().numpy())
        return normalize(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def __repr__(self) -> str:
        return f"OpenClipEncoder({self.name!r}, dim={self.dim}, device={self.device!r})"


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _root_logging_untouched(drop_random_init_notice: bool) -> Iterator[None]:
    """Keep open_clip from configuring the process's logging while it loads a model.

    open_clip logs through the module-level ``logging.warning``/``logging.info``, which install a
    stderr handler on a root logger that has none; a NullHandler for the duration prevents that.
    When random weights were asked for (``/none``), its "No pretrained weights loaded" notice is
    dropped too: it tells the user what they asked for.
    """
    root = logging.getLogger()
    null, notice = logging.NullHandler(), _DropRandomInitNotice()
    root.addHandler(null)
    if drop_random_init_notice:
        root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)
        root.removeHandler(null)


def _load_failure(spec: str, model_name: str, pretrained: str | None, exc: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    where = "the Hugging Face hub is offline (HF_HUB_OFFLINE is set)" if offline else "they could not be downloaded"
    return (
        f"Could not load open_clip weights for {spec!r} because {where} ({type(exc).__name__}: {str(exc)[:200]}); "
        f"pre-download them on a connected machine with `python -c \"import open_clip; open_clip.create_model_and_transforms('{model_name}', pretrained='{pretrained}')\"` "
        "and copy the Hugging Face cache (~/.cache/huggingface) here, point to saved weights with 'open_clip:local-dir:<folder>', "
        "or use the offline encoder 'lit:default', whose weights ship with pip."
    )


@register_encoder("open_clip")
def _factory(spec: str) -> OpenClipEncoder:
    return OpenClipEncoder(spec)


__all__ = ["TINY_NAME", "OpenClipEncoder", "describe", "register_tiny_config"]
