"""Composed queries: a reference image plus a text modification fused into one query embedding.

Two fusions, both returning an L2-normalized vector in the index's space:

- :func:`weighted_fusion`, which needs no training: ``normalize((1 - w) * image + w * text)`` of the
  two normalized embeddings; ``w`` (``fusion_weight``, 0..1) moves the query from the picture
  (0) to the words (1).
- :class:`TrainedFusion`, a small early-fusion module trained from (reference, modification,
  target) triples: an MLP reads the concatenated embeddings and adds a correction to a learned
  mix of the two, ``normalize(a * image + b * text + mlp([image, text, image * text]))``.
  It starts as the weighted sum (the MLP's last layer is zero), so a few triples cannot make it
  worse than untrained fusion by much, and it is trained with an InfoNCE loss against the
  target embeddings. It is saved with the index (:data:`FUSION_BLOB`) with its config and a SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import pickle
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .encoders.base import normalize
from .errors import ArtifactError, InputError
from .progress import ProgressCallback, null_progress

logger = logging.getLogger(__name__)

FUSION_BLOB = "fusion.pt"
"""The artifact name a trained fusion module is saved under, beside the index's other artifacts."""

DEFAULT_FUSION_WEIGHT = 0.5


def check_weight(weight: Any) -> float:
    """``weight`` as a float in [0, 1].

    Raises:
        InputError: it is not a number in [0, 1].
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)) or not math.isfinite(float(weight)):
        raise InputError(f"fusion_weight={weight!r} is not a number; give a weight between 0 (image only) and 1 (text only).")
    w = float(weight)
    if not 0.0 <= w <= 1.0:
        raise InputError(f"fusion_weight={w} is outside 0..1; give a weight between 0 (image only) and 1 (text only).")
    return w


def weighted_fusion(image: np.ndarray, text: np.ndarray, weight: float = DEFAULT_FUSION_WEIGHT) -> np.ndarray:
    """The untrained fusion ``normalize((1 - w) * image + w * text)`` of ``(d,)`` or ``(n, d)`` embeddings.

    Raises:
        InputError: the weight is outside 0..1, or the shapes differ.
    """
    w = check_weight(weight)
    a, b = normalize(image), normalize(text)
    if a.shape != b.shape:
        raise InputError(f"Image and text embeddings have shapes {a.shape} and {b.shape}; fuse embeddings of one encoder.")
    out = normalize((1.0 - w) * a + w * b)
    if not np.isfinite(out).all() or (np.linalg.norm(out, axis=-1) < 0.5).any():
        raise InputError("The image and text embeddings cancel out at this weight; choose another fusion_weight.")
    return out


@dataclass(frozen=True)
class FusionConfig:
    """The trained fusion module's shape and training settings (saved with its weights)."""

    dim: int
    # Small and strongly regularized: on benchmarks/composed.py a 512-wide head (lr 2e-3) memorized
    # the training keywords and fell to R@10 0.35 on unseen ones, this one to 0.40 (start: 0.42).
    hidden: int = 32
    dropout: float = 0.5
    epochs: int = 60
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.1
    temperature: float = 0.05
    init_weight: float = DEFAULT_FUSION_WEIGHT
    seed: int = 0
    time_budget_s: float = 120.0
    threads: int = 1  # a module this small trains fastest on one CPU thread (no contention with other work)
    val_fraction: float = 0.1  # held-out triples that pick the best epoch (none below 10 triples)
    patience: int = 10  # epochs without a better held-out loss before stopping


def _build(cfg: FusionConfig) -> Any:
    import torch
    from torch import nn

    class FusionNet(nn.Module):
        """``normalize(a * image + b * text + mlp([image, text, image * text]))`` over ``(n, d)`` inputs."""

        def __init__(self) -> None:
            super().__init__()
            w = min(max(cfg.init_weight, 1e-3), 1 - 1e-3)
            self.a = nn.Parameter(torch.tensor(1.0 - w))
            self.b = nn.Parameter(torch.tensor(w))
            out = nn.Linear(cfg.hidden, cfg.dim)
            nn.init.zeros_(out.weight)  # starts as the weighted sum
            nn.init.zeros_(out.bias)
            self.mlp = nn.Sequential(nn.Linear(3 * cfg.dim, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout), out)

        def forward(self, image: Any, text: Any) -> Any:
            x = torch.cat([image, text, image * text], dim=-1)  # (n, 3d)
            out = self.a * image + self.b * text + self.mlp(x)  # (n, d)
            return nn.functional.normalize(out, dim=-1)

    return FusionNet()


class TrainedFusion:
    """A trained early-fusion module: ``fuse(image, text)`` -> one normalized query embedding."""

    def __init__(self, config: FusionConfig, net: Any, info: dict[str, Any] | None = None) -> None:
        self.config = config
        self._net = net.eval()
        self.info: dict[str, Any] = dict(info or {})

    @property
    def dim(self) -> int:
        """The embedding dimension it fuses."""
        return self.config.dim

    def fuse(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        """Fuse ``(d,)`` or ``(n, d)`` image and text embeddings into normalized query embeddings.

        Raises:
            InputError: the shapes differ or are not of the module's dimension.
        """
        import torch

        a, b = normalize(image), normalize(text)
        if a.shape != b.shape or a.shape[-1] != self.dim:
            raise InputError(f"Fusion of {self.dim}-d embeddings got shapes {a.shape} and {b.shape}; use the index's encoder.")
        single = a.ndim == 1
        with torch.no_grad():
            out = self._net(torch.from_numpy(a.reshape(-1, self.dim)), torch.from_numpy(b.reshape(-1, self.dim))).numpy()
        return out[0] if single else out

    def to_bytes(self) -> bytes:
        """The module as bytes: config, weights, training figures and a SHA-256 of the weights."""
        import torch

        buf = io.BytesIO()
        torch.save(self._net.state_dict(), buf)
        weights = buf.getvalue()
        out = io.BytesIO()
        torch.save({"format": 1, "config": asdict(self.config), "info": self.info, "weights": weights,
                    "sha256": hashlib.sha256(weights).hexdigest()}, out)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedFusion:
        """Load what :meth:`to_bytes` wrote.

        Raises:
            ArtifactError: the bytes are not a fusion module or fail their checksum.
        """
        import torch

        try:
            blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            weights = blob["weights"]
            if hashlib.sha256(weights).hexdigest() != blob["sha256"]:
                raise ArtifactError(f"The saved fusion module {FUSION_BLOB!r} fails its checksum; train it again with train_fusion().")
            cfg = FusionConfig(**blob["config"])
            net = _build(cfg)
            net.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise ArtifactError(f"The saved fusion module {FUSION_BLOB!r} cannot be read ({type(exc).__name__}); train it again with train_fusion().") from None
        return cls(cfg, net, blob.get("info"))


def train_fusion(
    references: np.ndarray,
    modifications: np.ndarray,
    targets: Any,
    *,
    corpus: np.ndarray | None = None,
    groups: Any = None,
    config: FusionConfig | None = None,
    progress: ProgressCallback | None = None,
    **params: Any,
) -> TrainedFusion:
    """Train the early-fusion module from (reference image, modification text, target) embeddings.

    The loss is a multi-positive InfoNCE: the fused query should score its target(s) above the
    negatives, which are the other targets of the batch, or the whole ``corpus`` when given (the
    documents the query will be ranked among). A ``val_fraction`` of the triples is held out; the
    weights kept are those of the epoch with the lowest held-out loss, epoch 0 (the plain
    weighted sum at ``init_weight``) included, so the held-out *loss* never ends above the
    untrained start's (held-out recall can still drop; see benchmarks/composed.py). Pass
    ``groups=`` to hold out whole groups (unseen modification keywords).

    Args:
        references: ``(n, d)`` embeddings of the reference images.
        modifications: ``(n, d)`` embeddings of the modification texts.
        targets: ``(n, d)`` target embeddings; or, with ``corpus``, one corpus row index (or a
            list of indices: several correct targets) per triple.
        corpus: ``(m, d)`` embeddings of the documents to rank (the negatives).
        groups: one hashable per triple (the modification's keyword, say); the held-out triples
            are whole groups, so the best epoch is the one that generalizes to unseen groups.
        config: the module's settings (``dim`` is taken from the data when left out).
        progress: called as ``("fusion", epoch, epochs, {"loss": ..., "val_loss": ...})``.
        **params: :class:`FusionConfig` fields overriding ``config`` (``epochs=``, ``hidden=``, ...).

    Returns:
        The trained module (in eval mode); ``info`` holds the triples, epochs, best epoch, losses and time.

    Raises:
        InputError: the arrays differ in shape, hold fewer than 2 triples, an index is out of range,
            or a setting is unknown.
    """
    import torch

    a, b = normalize(references), normalize(modifications)
    if a.ndim != 2 or a.shape != b.shape:
        raise InputError(f"References and modifications need two (n, d) arrays of one shape, got {a.shape} and {b.shape}.")
    n = a.shape[0]
    if corpus is None:
        t = normalize(targets)
        if t.shape != a.shape:
            raise InputError(f"Targets need shape {a.shape} (one embedding per triple), got {t.shape}; or pass corpus= and indices.")
        cands, positives = t, [[i] for i in range(n)]
    else:
        cands = normalize(corpus)
        if cands.ndim != 2 or cands.shape[1] != a.shape[1]:
            raise InputError(f"corpus= needs shape (m, {a.shape[1]}), got {cands.shape}.")
        positives = [[int(x) for x in (tg if isinstance(tg, (list, tuple, np.ndarray)) else [tg])] for tg in targets]
        if len(positives) != n or any(not p or min(p) < 0 or max(p) >= len(cands) for p in positives):
            raise InputError(f"Targets need one non-empty list of corpus rows (0..{len(cands) - 1}) per triple ({n}).")
    if n < 2:
        raise InputError(f"Training fusion needs at least 2 triples, got {n}; add more (reference, text, target) triples.")
    base = asdict(config) if config is not None else {"dim": int(a.shape[1])}
    unknown = set(params) - set(FusionConfig.__dataclass_fields__)
    if unknown:
        raise InputError(f"Unknown fusion settings {sorted(unknown)}; use fields of FusionConfig.")
    cfg = FusionConfig(**{**base, **params})
    if cfg.dim != a.shape[1]:
        raise InputError(f"Fusion config is for {cfg.dim}-d embeddings, got {a.shape[1]}-d; use the index's encoder.")
    check_weight(cfg.init_weight)
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise InputError(f"val_fraction={cfg.val_fraction} is outside [0, 1); use e.g. 0.1.")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)))
    try:
        return _train(cfg, a, b, cands, positives, corpus is not None, progress, None if groups is None else list(groups))
    finally:
        torch.set_num_threads(threads)


def _train(
    cfg: FusionConfig, a: np.ndarray, b: np.ndarray, cands: np.ndarray, positives: list[list[int]], shared: bool,
    progress: ProgressCallback | None, groups: list[Any] | None = None,
) -> TrainedFusion:
    import copy

    import torch

    report = progress or null_progress
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = _build(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    A, B, C = (torch.from_numpy(x) for x in (a, b, cands))
    n = A.shape[0]
    pos = torch.zeros((n, len(cands)), dtype=torch.bool)  # (n, m) which candidates are correct for each triple
    for i, p in enumerate(positives):
        pos[i, p] = True
    order0 = torch.randperm(n, generator=gen)
    n_val = round(cfg.val_fraction * n) if n >= 10 else 0
    if groups is not None and n_val:  # hold out whole groups, in a seeded random order of the groups
        if len(groups) != n:
            raise InputError(f"Got {len(groups)} groups for {n} triples; give one group per triple.")
        names = sorted(set(groups), key=str)
        held: set[Any] = set()
        count = 0
        for j in torch.randperm(len(names), generator=gen).tolist():
            if count >= n_val:
                break
            held.add(names[j])
            count += sum(1 for g in groups if g == names[j])
        mask = torch.tensor([g in held for g in groups])
        val, fit = order0[mask[order0]], order0[~mask[order0]]
        n_val = len(val)
    else:
        val, fit = order0[:n_val], order0[n_val:]

    def loss_of(idx: Any) -> Any:
        q = net(A[idx], B[idx])  # (k, d)
        if shared:  # every corpus document is a candidate
            logits, ok = q @ C.T / cfg.temperature, pos[idx]  # (k, m)
        else:  # the batch's own targets are the candidates; triples sharing a target are not negatives
            cols = torch.tensor([positives[int(i)][0] for i in idx])
            tgt = C[cols]  # (k, d)
            logits, ok = q @ tgt.T / cfg.temperature, (tgt @ tgt.T) > 0.9999  # (k, k)
        return (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~ok, float("-inf")), 1)).mean()

    def val_loss() -> float:
        if not n_val:
            return float("nan")
        net.eval()
        with torch.no_grad():
            v = float(loss_of(val))
        net.train()
        return v

    best, best_epoch, best_state = val_loss(), 0, copy.deepcopy(net.state_dict())
    start = time.perf_counter()
    loss_v, epoch, stale = float("nan"), 0, 0
    net.train()
    for epoch in range(1, cfg.epochs + 1):
        order = fit[torch.randperm(len(fit), generator=gen)]
        total, batches = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            if len(idx) < 2:
                continue
            loss = loss_of(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            batches += 1
        loss_v = total / max(batches, 1)
        v = val_loss()
        report("fusion", epoch, cfg.epochs, {"loss": loss_v, "val_loss": v})
        if n_val and v < best - 1e-4:
            best, best_epoch, best_state, stale = v, epoch, copy.deepcopy(net.state_dict()), 0
        elif n_val:
            stale += 1
            if stale >= cfg.patience:
                break
        if time.perf_counter() - start > cfg.time_budget_s:
            logger.info("fusion training stopped by its time budget after %d epochs", epoch)
            break
    if n_val:
        net.load_state_dict(best_state)
    else:
        best_epoch = epoch
    info = {"n_triples": int(n), "n_val": int(n_val), "epochs": epoch, "best_epoch": best_epoch, "loss": round(loss_v, 5),
            "val_loss": None if not n_val else round(best, 5), "train_s": round(time.perf_counter() - start, 3), "trained_at": time.time()}
    logger.info("trained fusion on %d triples: best epoch %d of %d, loss %.4f in %.1f s", n, best_epoch, epoch, loss_v, info["train_s"])
    return TrainedFusion(cfg, net, info)


def load_fusion(store: Any) -> TrainedFusion | None:
    """The trained fusion module saved with the index, or ``None`` when there is none.

    Raises:
        ArtifactError: the saved module is unreadable.
    """
    raw = store.get_blob(FUSION_BLOB)
    return TrainedFusion.from_bytes(raw) if raw is not None else None


def compose(image: np.ndarray, text: np.ndarray, *, weight: float | None, trained: TrainedFusion | None) -> np.ndarray:
    """One composed query embedding: the trained module when given and no weight is asked, else the weighted sum.

    Raises:
        InputError: the weight is outside 0..1.
    """
    if weight is None and trained is not None and trained.dim == np.asarray(image).shape[-1]:
        return trained.fuse(image, text)
    return weighted_fusion(image, text, DEFAULT_FUSION_WEIGHT if weight is None else weight)


def train_and_save(
    store: Any,
    encode_images: Any,
    encode_texts: Any,
    references: Any,
    modifications: Any,
    targets: Any,
    *,
    progress: ProgressCallback | None = None,
    **params: Any,
) -> TrainedFusion:
    """Embed (reference image, modification text, target id) triples, train the fusion module, save it with the index.

    Args:
        store: the index's store (targets' vectors are read from it, the module is saved to it).
        encode_images / encode_texts: the index encoder's embedding functions.
        references: the reference images (paths, PIL images, bytes or arrays), one per triple.
        modifications: the modification texts, one per triple.
        targets: the point id of each triple's target document in the index.
        progress: called per epoch.
        **params: :class:`FusionConfig` fields (``epochs=``, ``hidden=``, ``time_budget_s=``, ...).

    Returns:
        The trained module, already saved (the previous one is replaced only once training succeeded).

    Raises:
        InputError: the three lists differ in length, a text is empty, or an image is unreadable.
        NotFoundError: a target id is not in the index.
    """
    from .errors import NotFoundError
    from .images import load_image
    from .types import normalize_id

    refs, mods, tgts = list(references), list(modifications), list(targets)
    if not (len(refs) == len(mods) == len(tgts)):
        raise InputError(f"Got {len(refs)} references, {len(mods)} modifications and {len(tgts)} targets; give one of each per triple.")
    for i, m in enumerate(mods):
        if not isinstance(m, str) or not m.strip():
            raise InputError(f"Modification #{i} {m!r} is empty or not a string; give the text that changes the reference.")
    ids = [normalize_id(t) for t in tgts]
    unique = list(dict.fromkeys(ids))
    found = {r.id: r.vector for r in store.retrieve(unique, with_vectors=True)}
    missing = [i for i in unique if i not in found]
    if missing:
        raise NotFoundError(f"Target ids {missing[:5]} are not in the index; add the target documents before training fusion.")
    ref_vecs = np.concatenate([encode_images([load_image(x) for x in refs[s:s + 64]]) for s in range(0, len(refs), 64)]) if refs else np.zeros((0, 1))
    mod_vecs = np.concatenate([encode_texts(mods[s:s + 256]) for s in range(0, len(mods), 256)]) if mods else np.zeros((0, 1))
    tgt_vecs = np.stack([np.asarray(found[i], dtype=np.float32) for i in ids]) if ids else np.zeros((0, 1))
    module = train_fusion(ref_vecs, mod_vecs, tgt_vecs, progress=progress, **params)
    store.put_blob(FUSION_BLOB, module.to_bytes())
    return module
