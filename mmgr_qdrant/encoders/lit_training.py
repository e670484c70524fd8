"""Contrastive training of the LiT encoder's projection head on captioned images.

Both towers stay frozen, so each image is pushed through EfficientNet-Lite0 once and its pooled
features are cached on disk; each caption is embedded by all-MiniLM-L6-v2 once and cached too.
Training then touches only the small head, which is why a run over thousands of images takes
seconds to minutes on 2 CPU cores.

The loss is CLIP's symmetric InfoNCE with a learned temperature. Captions shared by several images
(``"a photo of a sneaker"``) are one text in a batch with several positive images, not several
copies of one text that would count each other as negatives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError, missing_dependency
from ..progress import ProgressCallback, null_progress
from .base import normalize
from .lit import (
    BACKBONE,
    FEATURES_MEAN,
    FEATURES_PYRAMID,
    STORAGE_INT8,
    TEXT_MODEL,
    HeadSpec,
    build_head,
    check_storage,
    feature_dim,
    image_features,
    load_head,
    resolve_head_path,
    save_head,
    stored_state,
    text_embeddings,
)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MANIFEST_NAMES = ("captions.jsonl", "manifest.jsonl")
MIN_PAIRS = 10


@dataclass(frozen=True)
class CaptionedImage:
    """One training pair: an image file and one or more captions (one is drawn per epoch)."""

    image: Path
    captions: tuple[str, ...]


@dataclass(frozen=True)
class SkippedItem:
    """An item left out of training, and why."""

    item: str
    reason: str


@dataclass(frozen=True)
class CaptionedData:
    """Pairs found in a folder or manifest, and what was skipped."""

    pairs: tuple[CaptionedImage, ...]
    skipped: tuple[SkippedItem, ...] = ()
    source: str = ""

    def __len__(self) -> int:
        return len(self.pairs)

    def __add__(self, other: CaptionedData) -> CaptionedData:
        return CaptionedData(self.pairs + other.pairs, self.skipped + other.skipped, "+".join(s for s in (self.source, other.source) if s))


@dataclass(frozen=True)
class HeadTrainReport:
    """What :func:`train_encoder` did.

    Attributes:
        output: the head file written.
        n_pairs: usable pairs (train + validation).
        n_train, n_val: the split of those pairs.
        n_captions: distinct caption strings.
        skipped: items left out (missing captions, unreadable images).
        epochs: epochs run.
        best_epoch: the epoch whose head was saved (best validation recall, or the last).
        losses: mean training loss per epoch.
        val_t2i_recall10, val_i2t_recall10: validation recall@10 of the saved head (NaN without validation).
        temperature: the learned softmax temperature (1 / logit scale).
        seconds: wall time in all; feature_seconds: of which spent computing image and text features.
        resolution, hidden, seed, features: the settings used.
    """

    output: Path
    n_pairs: int
    n_train: int
    n_val: int
    n_captions: int
    skipped: tuple[SkippedItem, ...]
    epochs: int
    best_epoch: int
    losses: tuple[float, ...]
    val_t2i_recall10: float
    val_i2t_recall10: float
    temperature: float
    seconds: float
    feature_seconds: float
    resolution: int
    hidden: int
    seed: int
    features: str = FEATURES_MEAN
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings, skipped items summarized by reason)."""
        d = asdict(self)
        d["output"] = str(self.output)
        d["skipped"] = [asdict(s) for s in self.skipped[:50]]
        d["n_skipped"] = len(self.skipped)
        return d


# --- reading captioned data ---------------------------------------------------------------------


def load_captioned_folder(path: str | Path, *, min_pairs: int = MIN_PAIRS) -> CaptionedData:
    """Read image-caption pairs from a folder or a JSONL manifest.

    Three layouts are read:

    * a ``.jsonl`` file, one ``{"image": "relative/or/absolute/path.png", "caption": "..."}`` per
      line (``caption`` may be a list of alternative captions; relative paths are relative to the
      manifest's folder);
    * a folder holding ``captions.jsonl`` or ``manifest.jsonl`` (read as above);
    * a folder of images (searched recursively) each with a sidecar ``.txt`` of the same stem
      (``cat.png`` + ``cat.txt``); each non-empty line of the ``.txt`` is an alternative caption.

    Images without a caption, missing files, and files that are not readable images are skipped
    and listed in :attr:`CaptionedData.skipped`; a warning sums them up.

    Args:
        path: the folder or manifest.
        min_pairs: fewest usable pairs to accept.

    Returns:
        The usable pairs and the skipped items.

    Raises:
        InputError: the path does not exist, a manifest line is not valid JSON of the right
            shape, or fewer than ``min_pairs`` usable pairs remain.
    """
    root = Path(path).expanduser()
    if root.is_dir():
        manifest = next((root / n for n in MANIFEST_NAMES if (root / n).is_file()), None)
    elif root.is_file() and root.suffix == ".jsonl":
        manifest = root
    elif root.exists():
        raise InputError(f"Training data {str(root)!r} is neither a folder nor a .jsonl manifest; pass a folder of images with .txt captions or a JSONL file.")
    else:
        raise InputError(f"Training data {str(root)!r} does not exist; check the path.")

    candidates, skipped = _read_manifest(manifest) if manifest is not None else _read_sidecars(root)
    pairs: list[CaptionedImage] = []
    for item in candidates:
        reason = _unreadable(item.image)
        if reason:
            skipped.append(SkippedItem(str(item.image), reason))
        else:
            pairs.append(item)
    data = CaptionedData(tuple(pairs), tuple(skipped), str(root))
    if skipped:
        reasons: dict[str, int] = {}
        for s in skipped:
            key = s.reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        logger.warning("skipped %d of %d items in %s: %s", len(skipped), len(skipped) + len(pairs), root, ", ".join(f"{n} {r}" for r, n in reasons.items()))
    _check_enough(data, min_pairs)
    return data


def _check_enough(data: CaptionedData, min_pairs: int) -> None:
    if len(data.pairs) < min_pairs:
        example = f" (for example {data.skipped[0].item}: {data.skipped[0].reason})" if data.skipped else ""
        raise InputError(
            f"Only {len(data.pairs)} usable image-caption pairs in {data.source or 'the training data'}, "
            f"{len(data.skipped)} skipped{example}; training needs at least {min_pairs}, so add images with captions."
        )


def _read_manifest(manifest: Path) -> tuple[list[CaptionedImage], list[SkippedItem]]:
    pairs: list[CaptionedImage] = []
    skipped: list[SkippedItem] = []
    with manifest.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"Line {lineno} of {str(manifest)!r} is not valid JSON ({exc.msg}); write one JSON object per line.") from exc
            if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
                raise InputError(f"Line {lineno} of {str(manifest)!r} has no \"image\" string; write {{\"image\": \"path.png\", \"caption\": \"...\"}} per line.")
            image = Path(rec["image"]).expanduser()
            if not image.is_absolute():
                image = manifest.parent / image
            captions = _clean_captions(rec.get("caption"))
            if not captions:
                skipped.append(SkippedItem(str(image), "missing caption: the manifest line has no non-empty \"caption\""))
                continue
            pairs.append(CaptionedImage(image, captions))
    return pairs, skipped


def _read_sidecars(root: Path) -> tuple[list[CaptionedImage], list[SkippedItem]]:
    pairs: list[CaptionedImage] = []
    skipped: list[SkippedItem] = []
    for image in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        sidecar = image.with_suffix(".txt")
        if not sidecar.is_file():
            skipped.append(SkippedItem(str(image), f"missing caption: no {sidecar.name} beside it"))
            continue
        captions = _clean_captions(sidecar.read_text(encoding="utf-8", errors="replace").splitlines())
        if not captions:
            skipped.append(SkippedItem(str(image), f"missing caption: {sidecar.name} is empty"))
            continue
        pairs.append(CaptionedImage(image, captions))
    return pairs, skipped


def _clean_captions(raw: Any) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else []
    seen: dict[str, None] = {}
    for c in items:
        if isinstance(c, str) and c.strip():
            seen.setdefault(" ".join(c.split()), None)
    return tuple(seen)


def _unreadable(image: Path) -> str:
    """Why ``image`` cannot be used ("" when it can); reads only the header, which is fast."""
    from PIL import Image, UnidentifiedImageError

    if not image.is_file():
        return "missing file"
    try:
        with Image.open(image) as im:
            im.size  # noqa: B018 - forces the header parse
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"unreadable image: {exc}"
    return ""


# --- feature caches -----------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$MMGR_CACHE_DIR``, else ``$XDG_CACHE_HOME/mmgr_qdrant``, else ``~/.cache/mmgr_qdrant``."""
    env = os.environ.get("MMGR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "mmgr_qdrant"


class _Cache:
    """A key -> vector store in one ``.npz`` file, grown incrementally (float16 on disk)."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self.index: dict[str, int] = {}
        self.rows = np.zeros((0, dim), np.float16)
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    keys, rows = z["keys"], z["rows"]
                if rows.shape[1:] == (dim,) and len(keys) == len(rows):
                    self.rows = rows
                    self.index = {str(k): i for i, k in enumerate(keys)}
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("ignoring unreadable feature cache %s (%s)", path, exc)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self.index]

    def add(self, keys: Sequence[str], rows: np.ndarray) -> None:
        start = len(self.rows)
        self.rows = np.concatenate([self.rows, rows.astype(np.float16)])
        self.index.update({k: start + i for i, k in enumerate(keys)})

    def get(self, keys: Sequence[str]) -> np.ndarray:
        return self.rows[[self.index[k] for k in keys]].astype(np.float32)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self.index, key=self.index.__getitem__))
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, keys=keys, rows=self.rows)
        tmp.replace(self.path)


def _image_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def cached_image_features(
    images: Sequence[Path],
    resolution: int,
    cache_dir: Path,
    *,
    device: str | None = None,
    batch_size: int = 64,
    features: str = FEATURES_MEAN,
    progress: ProgressCallback = null_progress,
) -> tuple[np.ndarray, list[SkippedItem]]:
    """Backbone features of ``images`` ``(n, FEATURE_DIMS[features])``, from the cache where possible.

    Images that fail to decode get a zero row and a :class:`SkippedItem`.
    """
    dim = feature_dim(features)
    layout = "" if features == FEATURES_MEAN else f"-{features}"
    cache = _Cache(cache_dir / f"features-{BACKBONE}-{resolution}px{layout}.npz", dim)
    keys = [_image_key(p) for p in images]
    todo = cache.missing(keys)
    by_key = {k: p for k, p in zip(keys, images)}
    skipped: list[SkippedItem] = []
    bad: set[str] = set()
    if todo:
        logger.info("computing %s features for %d images at %d px (%d cached)", BACKBONE, len(todo), resolution, len(keys) - len(todo))
    chunk = max(batch_size * 8, 256)
    last_save = time.monotonic()
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        try:
            feats = image_features([by_key[k] for k in part], resolution, batch_size=batch_size, device=device, features=features)
            assert isinstance(feats, np.ndarray)
            cache.add(part, feats)
        except InputError:  # a truncated file whose header looked fine: find it, one by one
            for k in part:
                try:
                    f1 = image_features([by_key[k]], resolution, device=device, features=features)
                    assert isinstance(f1, np.ndarray)
                    cache.add([k], f1)
                except InputError as exc:
                    bad.add(k)
                    skipped.append(SkippedItem(str(by_key[k]), f"unreadable image: {exc}"))
        progress("features", min(start + chunk, len(todo)), len(todo), {})
        if time.monotonic() - last_save > 60:  # long first runs keep their progress if interrupted
            cache.save()
            last_save = time.monotonic()
    if todo:
        cache.save()
    out = np.zeros((len(keys), dim), np.float32)
    good = [i for i, k in enumerate(keys) if k not in bad]
    out[good] = cache.get([keys[i] for i in good])
    return out, skipped


def cached_text_embeddings(texts: Sequence[str], cache_dir: Path, *, device: str | None = None, progress: ProgressCallback = null_progress) -> np.ndarray:
    """Normalized text-model embeddings ``(n, 384)`` of ``texts``, from the cache where possible."""
    cache = _Cache(cache_dir / f"texts-{TEXT_MODEL}.npz", 384)
    todo = cache.missing(texts)
    chunk = 1024
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        cache.add(part, text_embeddings(part, device=device))
        progress("texts", min(start + chunk, len(todo)), len(todo), {})
    if todo:
        cache.save()
    return normalize(cache.get(list(texts)))


# --- training -----------------------------------------------------------------------------------


def _as_data(data: str | Path | CaptionedData | Sequence[str | Path | CaptionedData], min_pairs: int) -> CaptionedData:
    if isinstance(data, CaptionedData):
        return data
    if isinstance(data, (str, Path)):
        return load_captioned_folder(data, min_pairs=0)
    out = CaptionedData(())
    for d in data:
        out = out + _as_data(d, min_pairs)
    return out


def recall_at_k(img: np.ndarray, txt: np.ndarray, img_caption: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Text-to-image and image-to-text recall@k when image ``i``'s caption is text ``img_caption[i]``.

    A text's query is a hit when any image carrying it ranks in its top k; an image's query is a
    hit when its own caption ranks in its top k. Both inputs are normalized rows.
    """
    sims = txt @ img.T  # (t, n)
    k_i = min(k, sims.shape[1])
    top_img = np.argpartition(-sims, k_i - 1, axis=1)[:, :k_i]  # (t, k)
    t2i = float(np.mean([np.any(img_caption[top_img[t]] == t) for t in range(len(txt))]))
    k_t = min(k, sims.shape[0])
    top_txt = np.argpartition(-sims.T, k_t - 1, axis=1)[:, :k_t]  # (n, k)
    i2t = float(np.mean(np.any(top_txt == img_caption[:, None], axis=1)))
    return t2i, i2t


def train_encoder(
    data: str | Path | CaptionedData | Sequence[str | Path | CaptionedData],
    output: str | Path,
    *,
    epochs: int = 25,
    batch_size: int = 512,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    hidden: int = 512,
    dropout: float = 0.2,
    resolution: int = 64,
    features: str = FEATURES_PYRAMID,
    seed: int = 0,
    val_fraction: float = 0.1,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    min_pairs: int = MIN_PAIRS,
    init: str | Path | None = None,
    record: dict[str, Any] | None = None,
    storage: str = STORAGE_INT8,
    progress: ProgressCallback | None = None,
) -> HeadTrainReport:
    """Train the LiT projection head on captioned images and save it as a head file.

    Args:
        data: a folder or JSONL manifest (see :func:`load_captioned_folder`), loaded data, or a
            list of those (concatenated).
        output: the ``.safetensors`` head file to write (its folder is created); load it with
            ``get_encoder("lit:<output>")``.
        epochs: passes over the training pairs.
        batch_size: pairs per step (the contrastive negatives).
        lr: AdamW peak learning rate (cosine decay to zero, short warm-up).
        weight_decay: AdamW weight decay.
        hidden: 0 for a linear head; else the hidden width of a residual GELU MLP branch.
        dropout: share of standardized input features dropped in each training step (a
            regularizer; the saved head is the same shape either way).
        resolution: square input size for the image backbone, in pixels.
        features: what the head reads from the backbone: ``"pyramid"`` (pooled final map, stage
            means and a colour histogram, the shipped head's layout) or ``"mean"`` (the final map's
            mean alone, as the heads lit:v1 and lit:v2 read).
        seed: seeds the split, the sampling and the initialization: same inputs, same head.
        val_fraction: share of pairs held out to pick the best epoch and report recall (0 to skip).
        cache_dir: where image features and text embeddings are cached (default
            :func:`default_cache_dir`).
        device: torch device; the best available when ``None``.
        min_pairs: fewest usable pairs to accept.
        init: a head file to start from instead of a random head (``"default"`` for the shipped
            one): adapting it to a small domain keeps what it already knows. Its resolution and
            hidden width and feature layout replace ``resolution``, ``hidden`` and ``features``.
        record: extra facts (data description, ...) stored in the head file and the report.
        storage: how the file stores the weights (``"int8"``, ``"nf4"`` or ``"float16"``, see
            :func:`~mmgr_qdrant.encoders.lit.save_head`); the validation figures are those of the
            weights as stored.
        progress: called with stages ``"features"``, ``"texts"`` and ``"train"``.

    Returns:
        A :class:`HeadTrainReport`.

    Raises:
        InputError: the data is missing, malformed, or has fewer than ``min_pairs`` usable pairs.
        ConfigError: a setting is out of range.
        MissingDependencyError: the ``lit`` extra is not installed.
    """
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as exc:
        raise missing_dependency("torch", None) from exc
    feature_dim(features)  # a clear error for an unknown layout, before any work
    check_storage(storage)
    if epochs < 1 or batch_size < 2 or lr <= 0 or hidden < 0 or not 0 <= val_fraction < 0.5 or not 16 <= resolution <= 1024 or not 0 <= dropout < 1:
        raise ConfigError(
            f"Invalid training settings (epochs={epochs}, batch_size={batch_size}, lr={lr}, hidden={hidden}, dropout={dropout}, "
            f"val_fraction={val_fraction}, resolution={resolution}); use epochs>=1, batch_size>=2, lr>0, hidden>=0, 0<=dropout<1, "
            "0<=val_fraction<0.5, 16<=resolution<=1024."
        )
    progress = progress or null_progress
    t0 = time.perf_counter()
    start_from = None
    if init is not None:
        start_from, init_spec = load_head(resolve_head_path(str(init)))
        if (init_spec.resolution, init_spec.hidden, init_spec.features) != (resolution, hidden, features):
            logger.info("starting from %s: resolution %d px, hidden %d, %s features", init, init_spec.resolution, init_spec.hidden, init_spec.features)
        resolution, hidden, features = init_spec.resolution, init_spec.hidden, init_spec.features
    output = Path(output).expanduser()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    loaded = _as_data(data, min_pairs)
    _check_enough(loaded, min_pairs)

    # 1. frozen towers, once: features for every image, embeddings for every distinct caption
    feats, bad = cached_image_features([p.image for p in loaded.pairs], resolution, cache, device=device, features=features, progress=progress)
    bad_paths = {s.item for s in bad}
    keep = [i for i, p in enumerate(loaded.pairs) if str(p.image) not in bad_paths]
    pairs = [loaded.pairs[i] for i in keep]
    feats = feats[keep]
    skipped = loaded.skipped + tuple(bad)
    _check_enough(CaptionedData(tuple(pairs), skipped, loaded.source), min_pairs)
    texts = list(dict.fromkeys(c for p in pairs for c in p.captions))
    text_index = {t: i for i, t in enumerate(texts)}
    text_emb = cached_text_embeddings(texts, cache, device=device, progress=progress)
    feature_seconds = time.perf_counter() - t0
    options = [np.array([text_index[c] for c in p.captions]) for p in pairs]

    # 2. split: grouped by first caption, so a validation text never has a training twin
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.captions[0], []).append(i)
    val_idx: list[int] = []
    if val_fraction > 0:
        keys = sorted(groups)
        rng.shuffle(keys)
        target = val_fraction * len(pairs)
        for key in keys:
            if len(val_idx) >= target:
                break
            if len(groups[key]) <= max(4, len(pairs) // 50):  # a dominant caption (a class name) stays in training
                val_idx.extend(groups[key])
    val_set = set(val_idx)
    train_idx = np.array([i for i in range(len(pairs)) if i not in val_set])
    if len(train_idx) < 2:
        raise InputError(f"Only {len(train_idx)} training pairs remain after the validation split of {len(pairs)}; add pairs or lower val_fraction.")

    # 3. the head
    random.seed(seed)
    torch.manual_seed(seed)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    spec = HeadSpec.for_features(features, resolution=resolution, hidden=hidden)
    head = build_head(spec, dropout=dropout).to(dev)
    x_all = torch.from_numpy(feats).to(dev)
    if start_from is not None:
        head.load_state_dict(start_from.state_dict())  # keeps its feature statistics too
    else:
        with torch.no_grad():
            x_tr = x_all[torch.from_numpy(train_idx).to(dev)]
            head.get_buffer("mean").copy_(x_tr.mean(0))
            head.get_buffer("std").copy_(x_tr.std(0).clamp_min(1e-3))
    t_all = torch.from_numpy(text_emb).to(dev)
    logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.07)), device=dev))
    decay = [p for n, p in head.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in head.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay + [logit_scale], "weight_decay": 0.0}], lr=lr
    )
    bs = min(batch_size, len(train_idx))
    steps_per_epoch = max(1, len(train_idx) // bs)
    total_steps = epochs * steps_per_epoch
    warmup = max(1, total_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / total_steps)))
    )

    val_imgs = np.array(val_idx)
    val_caps = [pairs[i].captions[0] for i in val_idx]
    val_texts = list(dict.fromkeys(val_caps))
    val_lookup = {t: j for j, t in enumerate(val_texts)}
    val_target = np.array([val_lookup[c] for c in val_caps], dtype=np.int64)
    val_txt_emb = text_emb[[text_index[t] for t in val_texts]] if val_texts else np.zeros((0, 384), np.float32)

    def evaluate() -> tuple[float, float]:
        head.eval()
        with torch.no_grad():
            emb = F.normalize(head(x_all[torch.from_numpy(val_imgs).to(dev)]), dim=-1).cpu().numpy()
        head.train()
        return recall_at_k(emb, val_txt_emb, val_target, 10)

    losses: list[float] = []
    best = (-1.0, 0, {k: v.detach().clone() for k, v in head.state_dict().items()}, (float("nan"), float("nan")))
    perm_rng = np.random.default_rng(seed + 1)
    head.train()
    for epoch in range(1, epochs + 1):
        order = perm_rng.permutation(train_idx)
        # one caption per image per epoch, drawn from its alternatives
        cap = np.array([options[i][perm_rng.integers(len(options[i]))] for i in order])
        total = 0.0
        for step in range(steps_per_epoch):
            sl = slice(step * bs, (step + 1) * bs)
            idx = torch.from_numpy(order[sl]).to(dev)
            cap_ids = torch.from_numpy(cap[sl]).to(dev)
            uniq, inv = torch.unique(cap_ids, return_inverse=True)  # shared captions -> one text, many positives
            img = F.normalize(head(x_all[idx]), dim=-1)  # (b, 384)
            txt = t_all[uniq]  # (u, 384), already normalized
            logits = logit_scale.exp().clamp(max=100.0) * img @ txt.T  # (b, u)
            loss_i2t = F.cross_entropy(logits, inv)
            pos = F.one_hot(inv, num_classes=len(uniq)).T.float()  # (u, b)
            pos = pos / pos.sum(1, keepdim=True)
            loss_t2i = -(pos * F.log_softmax(logits.T, dim=1)).sum(1).mean()
            loss = 0.5 * (loss_i2t + loss_t2i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        losses.append(total / steps_per_epoch)
        info = {"loss": losses[-1], "temperature": float(1 / logit_scale.detach().exp().clamp(max=100.0))}
        if len(val_idx):
            t2i, i2t = evaluate()
            info.update(val_t2i_recall10=t2i, val_i2t_recall10=i2t)
            if t2i + i2t > best[0]:
                best = (t2i + i2t, epoch, {k: v.detach().clone() for k, v in head.state_dict().items()}, (t2i, i2t))
        logger.debug("epoch %d: %s", epoch, info)
        progress("train", epoch, epochs, info)
    if len(val_idx):
        head.load_state_dict(best[2])
        best_epoch, (f_t2i, f_i2t) = best[1], best[3]
        # the figures reported are those of the weights as the file stores them (int8 or nf4 rounding)
        head.load_state_dict(stored_state(head, storage))
        v_t2i, v_i2t = evaluate()
        head.load_state_dict(best[2])
    else:
        best_epoch, (f_t2i, f_i2t) = epochs, (float("nan"), float("nan"))
        v_t2i, v_i2t = f_t2i, f_i2t
    temperature = float(1 / logit_scale.detach().exp().clamp(max=100.0))

    seconds = time.perf_counter() - t0
    summary = {
        "data": loaded.source,
        "n_pairs": len(pairs),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_captions": len(texts),
        "epochs": epochs,
        "best_epoch": best_epoch,
        "batch_size": bs,
        "lr": lr,
        "weight_decay": weight_decay,
        "dropout": dropout,
        "features": features,
        "seed": seed,
        "init": str(init) if init is not None else None,
        "final_loss": round(losses[-1], 4),
        "val_t2i_recall10": round(v_t2i, 4),
        "val_i2t_recall10": round(v_i2t, 4),
        "val_recall10_before_rounding": [round(f_t2i, 4), round(f_i2t, 4)],
        "storage": storage,
        "temperature": round(temperature, 4),
        "data_fingerprint": _fingerprint(pairs),
        **(record or {}),
    }
    spec = HeadSpec.for_features(features, resolution=resolution, hidden=hidden, extra=(("training", json.dumps(summary, sort_keys=True)),))
    save_head(head.cpu(), spec, output, storage=storage)
    logger.info("saved LiT head to %s (val t2i R@10 %.3f, i2t R@10 %.3f)", output, v_t2i, v_i2t)
    return HeadTrainReport(
        output=output,
        n_pairs=len(pairs),
        n_train=len(train_idx),
        n_val=len(val_idx),
        n_captions=len(texts),
        skipped=skipped,
        epochs=epochs,
        best_epoch=best_epoch,
        losses=tuple(losses),
        val_t2i_recall10=v_t2i,
        val_i2t_recall10=v_i2t,
        temperature=temperature,
        seconds=seconds,
        feature_seconds=feature_seconds,
        resolution=resolution,
        hidden=hidden,
        seed=seed,
        features=features,
        extra=dict(record or {}),
    )


def _fingerprint(pairs: Sequence[CaptionedImage]) -> str:
    """A short hash of the (file name, captions) list: tells whether two runs saw the same data."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(p.image.name.encode())
        h.update("\x1f".join(p.captions).encode())
    return h.hexdigest()[:16]
