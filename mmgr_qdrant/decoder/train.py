"""Training the docid decoder: generation loss + lambda * contrastive, early stopping, a seed.

Pairs come from the caller: ``queries[i] -> targets[i]`` (a document's own embedding to its docid
for indexing; a caption to its image's docid and back for cross-modal pairs). Every step:

    q     = normalize(queries[batch] + noise)                  # (B, d) augmented queries
    gen   = mean over levels t of CE(logits_t, targets[:, t])  # teacher forced
    z_q   = normalize(query_proj(q)); z_d = normalize(query_proj(doc_vectors[doc_index[batch]]))
    con   = InfoNCE(z_q, z_d), in-batch negatives, both directions, temperature tau
    loss  = gen + contrastive_weight * con

With query supervision (learned query -> document pairs beside the indexing pairs):

    gen   = sum_i w_i * CE_i / sum_i w_i                         # per-pair weights (grades)
    q_i   = normalize(lam * q_i + (1 - lam) * doc_vectors[doc_index[i]]), lam ~ U(0, 1)
                                                               # for pairs in ``mix``, with prob. mix_prob
                                                               # (GENIUS query/target interpolation)
    con  += hard negatives: per pair, a document of the same level-1 bucket (``doc_buckets``)

The contrastive term shares the decoder's query projection between queries and documents, so
a caption is pulled to where its image sits in the space the decoder reads from. Validation uses
clean (noise-free) held-out pairs; the best epoch's weights are kept.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError
from ..progress import ProgressCallback, null_progress
from .model import DecoderConfig, DocidDecoder, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

__all__ = ["TrainReport", "load_checkpoint", "save_checkpoint", "train_decoder"]


@dataclass(frozen=True)
class TrainReport:
    """What a training run did and reached.

    Attributes:
        epochs_run: epochs started (the last may be partial under a time budget).
        best_epoch: 1-based epoch whose weights were kept (0 when none finished).
        steps: optimizer steps taken.
        stop_reason: ``"patience"``, ``"time_budget"`` or ``"max_epochs"``.
        n_train / n_val: training and held-out pairs.
        train_loss: mean total loss of the last epoch.
        train_generation_loss / train_contrastive_loss: its two parts (the second 0 when unused).
        val_loss: held-out generation loss at the best epoch (NaN without a held-out slice).
        val_accuracy: share of held-out pairs whose whole docid is the argmax at every level.
        val_level_accuracy: per-level teacher-forced accuracy at the best epoch.
        seconds: wall time of the run.
        device: where it ran.
        n_parameters: model size.
        history: per epoch ``(train_loss, val_loss, val_accuracy)``.
    """

    epochs_run: int
    best_epoch: int
    steps: int
    stop_reason: str
    n_train: int
    n_val: int
    train_loss: float
    train_generation_loss: float
    train_contrastive_loss: float
    val_loss: float
    val_accuracy: float
    val_level_accuracy: tuple[float, ...]
    seconds: float
    device: str
    n_parameters: int
    history: tuple[tuple[float, float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["val_level_accuracy"] = list(self.val_level_accuracy)
        d["history"] = [list(h) for h in self.history]
        return d


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _default_config(embed_dim: int, vocab_sizes: tuple[int, ...]) -> DecoderConfig:
    return DecoderConfig(embed_dim=embed_dim, vocab_sizes=vocab_sizes)


def _check_inputs(
    queries: np.ndarray,
    targets: np.ndarray,
    doc_vectors: np.ndarray | None,
    doc_index: np.ndarray | None,
) -> None:
    if queries.ndim != 2 or targets.ndim != 2 or len(queries) != len(targets):
        raise InputError(
            f"train_decoder needs queries (m, d) and targets (m, L) with the same m, got "
            f"{queries.shape} and {targets.shape}; pass one docid row per query."
        )
    if len(queries) < 2:
        raise InputError(f"train_decoder needs at least 2 pairs, got {len(queries)}.")
    if not np.issubdtype(targets.dtype, np.integer) or targets.min() < 0:
        raise InputError("Decoder targets must be non-negative integer codes.")
    if (doc_vectors is None) != (doc_index is None):
        raise InputError("Pass doc_vectors and doc_index together (or neither).")
    if doc_vectors is not None and doc_index is not None:
        if doc_vectors.ndim != 2 or doc_vectors.shape[1] != queries.shape[1]:
            raise InputError(
                f"doc_vectors must have shape (n, {queries.shape[1]}), got {doc_vectors.shape}."
            )
        if doc_index.shape != (len(queries),) or doc_index.min() < 0 or doc_index.max() >= len(doc_vectors):
            raise InputError(
                "doc_index must hold one row of doc_vectors per query "
                f"(shape ({len(queries)},), values < {len(doc_vectors)})."
            )


def _info_nce(
    zq: torch.Tensor, zd: torch.Tensor, doc_ids: torch.Tensor, tau: float,
    z_hard: torch.Tensor | None = None, hard_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE; a batch entry with the same document as the positive is not a negative.

    ``z_hard`` (B, e) adds one hard negative per query (query -> document direction only), unless
    it is the positive itself (``hard_ids == doc_ids``).
    """
    zq = F.normalize(zq, dim=-1)
    logits = zq @ F.normalize(zd, dim=-1).T / tau  # (B, B)
    same = doc_ids.unsqueeze(0) == doc_ids.unsqueeze(1)  # (B, B)
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(len(zq), device=zq.device)
    q2d = logits
    if z_hard is not None and hard_ids is not None:
        extra = (zq * F.normalize(z_hard, dim=-1)).sum(-1, keepdim=True) / tau  # (B, 1)
        extra = extra.masked_fill((hard_ids == doc_ids).unsqueeze(1), float("-inf"))
        q2d = torch.cat([logits, extra], dim=1)  # (B, B + 1)
    return 0.5 * (F.cross_entropy(q2d, labels) + F.cross_entropy(logits.T, labels))


def _bucket_sampler(doc_buckets: np.ndarray, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensors to draw, for a document, another document of its bucket: (order, start, size, bucket of each doc)."""
    b = np.asarray(doc_buckets, np.int64)
    _, inv = np.unique(b, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    sizes = np.bincount(inv)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    t = lambda a: torch.as_tensor(a, dtype=torch.long, device=dev)
    return t(order), t(starts), t(sizes), t(inv.reshape(-1))


@torch.no_grad()
def _evaluate(
    model: DocidDecoder, q: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[float, float, tuple[float, ...]]:
    """Generation loss, whole-docid accuracy and per-level accuracy on clean queries."""
    model.eval()
    L = y.size(1)
    loss_sum, n = 0.0, len(q)
    correct = torch.zeros(L, dtype=torch.long)
    all_ok = 0
    for lo in range(0, n, batch_size):
        qb, yb = q[lo : lo + batch_size], y[lo : lo + batch_size]
        logits = model(qb, yb)
        loss_sum += sum(F.cross_entropy(lg, yb[:, t], reduction="sum").item() for t, lg in enumerate(logits)) / L
        hit = torch.stack([lg.argmax(-1) == yb[:, t] for t, lg in enumerate(logits)], dim=1)  # (B, L)
        correct += hit.sum(0).cpu()
        all_ok += int(hit.all(1).sum())
    model.train()
    return loss_sum / n, all_ok / n, tuple(float(c) / n for c in correct)


def train_decoder(
    queries: np.ndarray,
    targets: np.ndarray,
    *,
    doc_vectors: np.ndarray | None = None,
    doc_index: np.ndarray | None = None,
    config: DecoderConfig | None = None,
    vocab_sizes: tuple[int, ...] | list[int] | None = None,
    epochs: int = 30,
    batch_size: int = 1024,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    contrastive_weight: float = 0.1,
    temperature: float = 0.05,
    noise_std: float = 0.1,
    val_fraction: float = 0.05,
    max_val: int = 5000,
    patience: int = 3,
    min_delta: float = 1e-4,
    time_budget_s: float | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    num_threads: int | None = None,
    progress: ProgressCallback | None = None,
    weights: np.ndarray | None = None,
    mix: np.ndarray | None = None,
    mix_prob: float = 0.5,
    doc_buckets: np.ndarray | None = None,
    init: DocidDecoder | None = None,
    exclude: np.ndarray | None = None,
) -> tuple[DocidDecoder, TrainReport]:
    """Train a :class:`DocidDecoder` on ``queries[i] -> targets[i]`` pairs.

    Args:
        queries: (m, d) query embeddings (normalized inside the model).
        targets: (m, L) the docid each query should generate.
        doc_vectors: (n, d) document embeddings for the contrastive term, or ``None`` to skip it.
        doc_index: (m,) row of ``doc_vectors`` holding the target document of each pair.
        config: the architecture; by default a 2-layer, 128-wide model sized from the data.
        vocab_sizes: vocabulary of each level when ``config`` is not given (default: max + 1).
        epochs: most passes over the training pairs.
        batch_size: pairs per step.
        lr: peak AdamW learning rate (linear warm-up, cosine decay to a tenth).
        weight_decay: AdamW weight decay of matrices.
        contrastive_weight: lambda of the contrastive term.
        temperature: InfoNCE temperature.
        noise_std: norm of the Gaussian noise added to each training query before renormalizing
            (per-dimension standard deviation ``noise_std / sqrt(d)``).
        val_fraction: share of pairs held out for early stopping (capped at ``max_val``); 0 keeps all.
        max_val: most held-out pairs.
        patience: epochs without a val-loss gain of ``min_delta`` before stopping.
        min_delta: the smallest val-loss decrease that counts as a gain.
        time_budget_s: stop after this many seconds (checked every step), keeping the best weights.
        seed: seeds the split, the initialization, the batch order and the noise.
        device: ``"cuda"``, ``"cpu"``...; CUDA when present by default.
        num_threads: torch CPU threads while training (restored afterwards); ``None`` leaves it.
        progress: called as ``progress("train", step, total_steps, {...})``.
        weights: (m,) positive weight of each pair in the generation loss (default all 1): learned
            query pairs weighed against indexing pairs, and their grades.
        mix: (m,) bool, the pairs whose query is interpolated towards its target document's
            embedding (GENIUS); needs ``doc_vectors``. Usually the learned query pairs.
        mix_prob: chance that a ``mix`` pair is interpolated in a step.
        doc_buckets: (n,) level-1 code of each row of ``doc_vectors``: the contrastive term gets one
            hard negative per pair, another document of the target's bucket.
        init: a trained decoder to start from (a retrain: same docids, new pairs); used when its
            config equals the one for this data, else training starts from scratch.
        exclude: (m,) bool, pairs the caller holds out (neither trained nor validated on), so
            that a caller can pass a whole array, such as the documents' own vectors, instead
            of a copy without those rows.

    Returns:
        The trained model (eval mode, best epoch's weights) and a :class:`TrainReport`.

    Raises:
        InputError: shapes or codes are unusable.
        ConfigError: the config does not match the data.
    """
    t0 = time.perf_counter()
    queries = np.asarray(queries)
    targets = np.asarray(targets)
    _check_inputs(queries, targets, doc_vectors, doc_index)
    m = len(queries)
    if weights is not None and (np.shape(weights) != (m,) or not np.all(np.isfinite(weights)) or np.min(weights) <= 0):
        raise InputError(f"weights must hold one positive finite number per pair (shape ({m},)); got shape {np.shape(weights)}.")
    if mix is not None and (np.shape(mix) != (m,) or doc_vectors is None):
        raise InputError(f"mix must be a bool array of shape ({m},) and needs doc_vectors and doc_index; pass them together.")
    if doc_buckets is not None and (doc_vectors is None or np.shape(doc_buckets) != (len(doc_vectors),)):
        raise InputError("doc_buckets must hold one bucket per row of doc_vectors; pass doc_vectors with it.")
    if exclude is not None and (np.shape(exclude) != (m,) or np.asarray(exclude).dtype != bool or bool(np.all(exclude))):
        raise InputError(f"exclude must be a bool array of shape ({m},) that leaves at least one pair to train on.")
    extras = (weights, mix, mix_prob, doc_buckets, init, exclude)
    _m, d = queries.shape
    L = targets.shape[1]
    if config is None:
        vs = tuple(vocab_sizes) if vocab_sizes is not None else tuple(int(x) + 1 for x in targets.max(0))
        config = _default_config(d, vs)
    if config.embed_dim != d or config.n_levels != L:
        raise ConfigError(
            f"DecoderConfig expects embed_dim {config.embed_dim} and {config.n_levels} levels, but "
            f"the data has {d} dimensions and {L} levels; build the config from the data."
        )
    over = np.flatnonzero(targets.max(0) >= np.asarray(config.vocab_sizes))
    if over.size:
        raise ConfigError(
            f"Targets hold code {int(targets[:, over[0]].max())} at level {int(over[0])} but the "
            f"vocabulary there is {config.vocab_sizes[over[0]]}; raise vocab_sizes."
        )
    dev = _pick_device(device)
    old_threads = torch.get_num_threads()
    if num_threads is not None and dev.type == "cpu":
        torch.set_num_threads(num_threads)
    progress = progress or null_progress
    try:
        return _train(
            queries, targets, doc_vectors, doc_index, config, dev, epochs, batch_size, lr,
            weight_decay, contrastive_weight, temperature, noise_std, val_fraction, max_val,
            patience, min_delta, time_budget_s, seed, progress, t0, extras,
        )  # fmt: skip
    finally:
        if num_threads is not None and dev.type == "cpu":
            torch.set_num_threads(old_threads)


def _train(
    queries: np.ndarray,
    targets: np.ndarray,
    doc_vectors: np.ndarray | None,
    doc_index: np.ndarray | None,
    config: DecoderConfig,
    dev: torch.device,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    contrastive_weight: float,
    temperature: float,
    noise_std: float,
    val_fraction: float,
    max_val: int,
    patience: int,
    min_delta: float,
    time_budget_s: float | None,
    seed: int,
    progress: ProgressCallback,
    t0: float,
    extras: tuple[np.ndarray | None, np.ndarray | None, float, np.ndarray | None, DocidDecoder | None, np.ndarray | None] = (
        None, None, 0.0, None, None, None,
    ),  # weights, mix, mix_prob, doc_buckets, init, exclude
) -> tuple[DocidDecoder, TrainReport]:
    m, d = queries.shape
    weights, mix, mix_prob, doc_buckets, init, exclude = extras
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    gen = torch.Generator(device=dev).manual_seed(seed)

    perm = rng.permutation(m)
    if exclude is not None:  # held out by the caller: in neither slice
        perm = perm[~exclude[perm]]
    usable = len(perm)
    n_val = min(round(usable * val_fraction), max_val, usable - 1) if val_fraction > 0 else 0
    if mix is not None:  # learned query pairs are all trained on: the held-out slice comes from the others
        perm = np.concatenate([perm[~mix[perm]], perm[mix[perm]]])
        plain = int((~mix[perm]).sum())
        n_val = min(n_val, plain - 1) if plain > 1 else 0
    val_idx, train_idx = np.sort(perm[:n_val]), perm[n_val:]
    n_train = len(train_idx)

    Q = torch.as_tensor(queries, dtype=torch.float32).to(dev)  # (m, d)
    Y = torch.as_tensor(targets, dtype=torch.long).to(dev)  # (m, L)
    use_con = doc_vectors is not None and doc_index is not None and contrastive_weight > 0
    D = torch.as_tensor(doc_vectors, dtype=torch.float32).to(dev) if use_con else None  # (n, d)
    DI = torch.as_tensor(doc_index, dtype=torch.long).to(dev) if use_con else None  # (m,)
    tr = torch.as_tensor(train_idx, dtype=torch.long, device=dev)
    W = torch.as_tensor(weights, dtype=torch.float32).to(dev) if weights is not None else None  # (m,)
    MIX = torch.as_tensor(mix, dtype=torch.bool).to(dev) if mix is not None and mix_prob > 0 and bool(np.any(mix)) else None  # (m,)
    DV = torch.as_tensor(doc_vectors, dtype=torch.float32).to(dev) if MIX is not None else None  # (n, d)
    DIX = torch.as_tensor(doc_index, dtype=torch.long).to(dev) if MIX is not None else None  # (m,)
    buckets = _bucket_sampler(doc_buckets, dev) if doc_buckets is not None and use_con else None
    q_val, y_val = Q[torch.as_tensor(val_idx, device=dev)], Y[torch.as_tensor(val_idx, device=dev)]

    model = DocidDecoder(config).to(dev)
    if init is not None and init.config == config:  # a retrain: start from the decoder the docids were trained with
        model.load_state_dict(init.state_dict())
    elif init is not None:
        log.info("the previous decoder's config %s differs from %s: training from scratch", init.config, config)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.99),
    )
    batch_size = max(1, min(batch_size, n_train))
    steps_per_epoch = max(1, n_train // batch_size)  # drop the ragged tail: fixed batch shapes
    total = steps_per_epoch * epochs
    warmup = min(100, max(1, total // 20))

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, total - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac))))

    log.info(
        "training decoder: %d train / %d val pairs, %d params, %d levels %s, device %s",
        n_train, n_val, model.num_parameters(), config.n_levels, config.vocab_sizes, dev,
    )  # fmt: skip
    noise_scale = noise_std / math.sqrt(d)
    best_loss, best_epoch, best_state = math.inf, 0, None
    best_acc, best_levels = math.nan, tuple(math.nan for _ in range(config.n_levels))
    history: list[tuple[float, float, float]] = []
    step, bad_epochs, stop_reason, epoch = 0, 0, "max_epochs", 0
    ep_loss = ep_gen = ep_con = math.nan
    out_of_time = False
    for epoch in range(1, epochs + 1):
        order = tr[torch.randperm(n_train, generator=gen, device=dev)]
        sums = torch.zeros(3, device=dev)
        done = 0
        for s in range(steps_per_epoch):
            idx = order[s * batch_size : (s + 1) * batch_size]
            q, y = Q[idx], Y[idx]  # (B, d), (B, L)
            if MIX is not None and DV is not None and DIX is not None:  # GENIUS: slide queries towards their targets
                lam = torch.rand((len(idx), 1), generator=gen, device=dev)
                on = MIX[idx] & (torch.rand(len(idx), generator=gen, device=dev) < mix_prob)
                mixed = F.normalize(lam * F.normalize(q, dim=-1) + (1 - lam) * F.normalize(DV[DIX[idx]], dim=-1), dim=-1)
                q = torch.where(on.unsqueeze(1), mixed, q)
            if noise_scale > 0:
                q = q + noise_scale * torch.randn(q.shape, generator=gen, device=dev)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            logits = model(q, y)
            # a tensor: the model has at least one level, so the sum has at least one term
            if W is None:
                gen_loss = cast(torch.Tensor, sum(F.cross_entropy(lg, y[:, t]) for t, lg in enumerate(logits)) / len(logits))
            else:
                per = cast(torch.Tensor, sum(F.cross_entropy(lg, y[:, t], reduction="none") for t, lg in enumerate(logits)))  # (B,)
                w = W[idx]
                gen_loss = (per * w).sum() / (w.sum() * len(logits))
            loss = gen_loss
            con_loss = torch.zeros((), device=dev)
            if use_con:
                assert D is not None and DI is not None
                di = DI[idx]
                z_hard = hard = None
                if buckets is not None:  # another document of the target's level-1 bucket
                    order_b, start_b, size_b, inv_b = buckets
                    bk = inv_b[di]
                    pick = (torch.rand(len(di), generator=gen, device=dev) * size_b[bk]).long()
                    hard = order_b[start_b[bk] + pick]
                    z_hard = model.project(D[hard])
                con_loss = _info_nce(model.project(q), model.project(D[di]), di, temperature, z_hard, hard)
                loss = gen_loss + contrastive_weight * con_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            done += 1
            sums += torch.stack([loss.detach(), gen_loss.detach(), con_loss.detach()])
            if step % 20 == 0 or s == steps_per_epoch - 1:
                progress("train", step, total, {"epoch": float(epoch), "loss": float(loss.detach())})
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                out_of_time = True
                break
        ep_loss, ep_gen, ep_con = (sums / max(1, done)).tolist()
        if n_val:
            v_loss, v_acc, v_levels = _evaluate(model, q_val, y_val, 4096)
        else:
            v_loss, v_acc, v_levels = ep_gen, math.nan, tuple(math.nan for _ in range(config.n_levels))
        history.append((ep_loss, v_loss if n_val else math.nan, v_acc))
        improved = v_loss < best_loss - min_delta
        log.info(
            "epoch %d: train loss %.4f (gen %.4f, con %.4f), val loss %.4f, val acc %.4f, levels %s",
            epoch, ep_loss, ep_gen, ep_con, v_loss, v_acc, ", ".join(f"{a:.3f}" for a in v_levels),
        )  # fmt: skip
        progress(
            "train", step, total,
            {"epoch": float(epoch), "loss": ep_loss, "val_loss": v_loss, "val_accuracy": v_acc},
        )  # fmt: skip
        if improved or best_state is None:
            best_loss, best_epoch, best_acc, best_levels = v_loss, epoch, v_acc, v_levels
            best_state = copy.deepcopy(model.state_dict())
            bad_epochs = 0
        else:
            bad_epochs += 1
        if out_of_time:
            stop_reason = "time_budget"
            break
        if n_val and bad_epochs >= patience:
            stop_reason = "patience"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    report = TrainReport(
        epochs_run=epoch,
        best_epoch=best_epoch,
        steps=step,
        stop_reason=stop_reason,
        n_train=n_train,
        n_val=n_val,
        train_loss=float(ep_loss),
        train_generation_loss=float(ep_gen),
        train_contrastive_loss=float(ep_con),
        val_loss=float(best_loss) if n_val else math.nan,
        val_accuracy=float(best_acc),
        val_level_accuracy=tuple(float(a) for a in best_levels),
        seconds=time.perf_counter() - t0,
        device=str(dev),
        n_parameters=model.num_parameters(),
        history=tuple(history),
    )
    log.info(
        "decoder trained in %.1f s: %d epochs (best %d, %s), val acc %.4f",
        report.seconds, report.epochs_run, report.best_epoch, stop_reason, report.val_accuracy,
    )  # fmt: skip
    return model, report
