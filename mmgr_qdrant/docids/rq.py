"""Residual quantization (TIGER, GENIUS, IRGen): one k-means codebook per level on the residuals.

Level 1 quantizes the (modality-centered) vector, level 2 what level 1 left over, and so on, so a
docid prefix is a coarse-to-fine description of the vector. The codebooks are **shared by both
modalities**: a caption and its image then tend to get the same semantic codes, which is what lets
a text query's decoded prefixes reach image docids (column 0 still separates the modalities).
Per-modality codebooks would make code ``12`` mean different things for images and texts.

``refine=True`` adds an RQ-VAE style refinement (linear encoder and decoder around the quantizer,
straight-through gradients, codebook + commitment losses, trained in torch from the k-means
codebooks). It is kept only if it lowers the reconstruction error on the fitting sample, and it is
off by default: see ``benchmarks/docids.py`` for the measured effect.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import ConfigError, missing_dependency
from ..progress import ProgressCallback
from .base import SchemeBase, check_k, register_scheme, resolve_k
from .kmeans import Codebook, balance_bias, fit_kmeans, nearest, scores

logger = logging.getLogger(__name__)


@register_scheme("rq")
class ResidualQuantizer(SchemeBase):
    """Residual k-means quantization.

    Args:
        levels: semantic levels (2 suits 1k-1M documents; 3 for finer docids).
        k: codes per level: ``"auto"`` (about 4 documents per full docid, at most 256), an int, or
            one int per level. Shrunk, with a warning, when the collection is smaller.
        balanced: balanced assignment (per-code biases from semi-discrete optimal transport), so
            buckets are even; new vectors use the same biases.
        refine: RQ-VAE style refinement of the codebooks (torch); kept only if it helps.
        iters: most Lloyd iterations per level.
        center_modalities: subtract each modality's mean before quantizing (closes the CLIP modality gap).
        sample_size: vectors the codebooks are fitted on.
        refine_epochs: epochs of refinement over the sample.
        refine_lr: Adam learning rate of the refinement.
        refine_beta: commitment loss weight.
    """

    def __init__(
        self,
        *,
        levels: int = 2,
        k: int | str | list[int] = "auto",
        balanced: bool = False,
        refine: bool = False,
        iters: int = 20,
        center_modalities: bool = True,
        sample_size: int = 50000,
        refine_epochs: int = 5,
        refine_lr: float = 3e-4,
        refine_beta: float = 0.25,
    ) -> None:
        super().__init__(levels=levels, center_modalities=center_modalities, sample_size=sample_size)
        self.k = check_k(k, self.levels)
        self.balanced = bool(balanced)
        self.refine = bool(refine)
        if iters < 1 or refine_epochs < 0 or refine_lr <= 0 or refine_beta < 0:
            raise ConfigError(
                f"rq needs iters >= 1, refine_epochs >= 0, refine_lr > 0, refine_beta >= 0, got "
                f"{iters}, {refine_epochs}, {refine_lr}, {refine_beta}."
            )
        self.iters = int(iters)
        self.refine_epochs = int(refine_epochs)
        self.refine_lr = float(refine_lr)
        self.refine_beta = float(refine_beta)
        self.codebooks: list[Codebook] = []
        # Linear encoder applied before quantizing; identity unless the refinement was kept.
        self.enc_w: np.ndarray | None = None
        self.enc_b: np.ndarray | None = None
        self.dec_w: np.ndarray | None = None
        self.dec_b: np.ndarray | None = None
        self.refined = False
        self.fit_info: dict[str, float] = {}

    # -- fitting ---------------------------------------------------------------------------

    def _fit(self, v: np.ndarray, m: np.ndarray, rng: np.random.Generator, progress: ProgressCallback | None) -> None:
        x = self.sample(v, m, rng)
        ks = resolve_k(self.k, self.levels, v.shape[0], self.name)
        self.codebooks = []
        self.enc_w = self.enc_b = self.dec_w = self.dec_b = None
        self.refined = False
        r = x.copy()
        for level, k in enumerate(ks):
            cb = fit_kmeans(r, k, rng=rng, iters=self.iters, balanced=self.balanced)
            self.codebooks.append(cb)
            codes, _ = nearest(r, cb.centroids, cb.bias if self.balanced else None)
            r -= cb.centroids[codes]
            if progress is not None:
                progress("fit", level + 1, self.levels, {"mse": float(np.einsum("md,md->m", r, r).mean())})
        self.fit_info = {"recon_mse": float(np.einsum("md,md->m", r, r).mean())}
        if self.refine and self.refine_epochs > 0:
            self._refine(x, rng, progress)

    def _refine(self, x: np.ndarray, rng: np.random.Generator, progress: ProgressCallback | None) -> None:
        try:
            import torch
        except ImportError as e:  # pragma: no cover - torch is a core dependency
            raise missing_dependency("torch", None) from e
        seed = int(rng.integers(2**31 - 1))
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        d = x.shape[1]
        xt = torch.from_numpy(x)
        books = [torch.nn.Parameter(torch.from_numpy(cb.centroids.copy())) for cb in self.codebooks]
        enc = torch.nn.Linear(d, d)
        dec = torch.nn.Linear(d, d)
        with torch.no_grad():
            for lin in (enc, dec):
                lin.weight.copy_(torch.eye(d))
                lin.bias.zero_()
        params = [*books, *enc.parameters(), *dec.parameters()]
        opt = torch.optim.Adam(params, lr=self.refine_lr)

        def forward(xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = enc(xb)  # (b, d)
            r = z
            q = torch.zeros_like(z)
            vq = z.new_zeros(())
            for book in books:
                dist = (r.detach() ** 2).sum(1, keepdim=True) - 2 * r.detach() @ book.T + (book**2).sum(1)[None, :]  # (b, k)
                e = book[dist.argmin(1)]  # (b, d)
                vq = vq + ((r.detach() - e) ** 2).sum(1).mean() + self.refine_beta * ((r - e.detach()) ** 2).sum(1).mean()
                q = q + e
                r = r - e.detach()
            zq = z + (q - z).detach()  # straight-through: decoder gradients flow to the encoder
            xh = dec(zq)
            return ((xh - xb) ** 2).sum(1).mean(), vq

        def recon_err() -> float:
            with torch.no_grad():
                err = 0.0
                for s in range(0, len(xt), 8192):
                    rec, _ = forward(xt[s : s + 8192])
                    err += float(rec) * len(xt[s : s + 8192])
                return err / len(xt)

        # Baseline with the same (unbiased) assignment the training uses, so balanced fits compare fairly.
        best = start_err = recon_err()
        best_state: list[torch.Tensor] | None = None
        batch = 1024
        for epoch in range(self.refine_epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for s in range(0, len(xt), batch):
                rec, vq = forward(xt[perm[s : s + batch]])
                loss = rec + vq
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            err = recon_err()
            if progress is not None:
                progress("refine", epoch + 1, self.refine_epochs, {"mse": err})
            logger.debug("rq refine epoch %d: recon mse %.5f (k-means %.5f)", epoch + 1, err, start_err)
            if err < best:
                best = err
                best_state = [p.detach().clone() for p in params]
        self.fit_info["refine_start_mse"] = start_err
        self.fit_info["refined_mse"] = best
        if best_state is None:
            logger.info("rq refine: no gain over k-means codebooks (mse %.5f); keeping k-means", start_err)
            return
        logger.info("rq refine: recon mse %.5f -> %.5f", start_err, best)
        n_books = len(books)
        self.codebooks = [Codebook(best_state[i].numpy().astype(np.float32), cb.bias) for i, cb in enumerate(self.codebooks)]
        self.enc_w = best_state[n_books].numpy().T.astype(np.float32).copy()  # x @ enc_w + enc_b
        self.enc_b = best_state[n_books + 1].numpy().astype(np.float32).copy()
        self.dec_w = best_state[n_books + 2].numpy().T.astype(np.float32).copy()
        self.dec_b = best_state[n_books + 3].numpy().astype(np.float32).copy()
        self.refined = True
        if self.balanced:  # the k-means biases belong to the old codebooks: re-solve them level by level
            r = self._encode(x)
            for i, cb in enumerate(self.codebooks):
                bias = balance_bias(scores(r, cb.centroids), np.zeros(cb.k, np.float32), iters=100)
                self.codebooks[i] = Codebook(cb.centroids, bias)
                codes, _ = nearest(r, cb.centroids, bias)
                r = r - cb.centroids[codes]

    # -- assignment ------------------------------------------------------------------------

    def _encode(self, x: np.ndarray) -> np.ndarray:
        if self.enc_w is None or self.enc_b is None:
            return x.copy()
        return (x @ self.enc_w + self.enc_b).astype(np.float32)

    def _codes(self, x: np.ndarray) -> np.ndarray:
        r = self._encode(x)
        out = np.empty((x.shape[0], self.levels), dtype=np.int32)
        for level, cb in enumerate(self.codebooks):
            codes, _ = nearest(r, cb.centroids, cb.bias if self.balanced else None)
            out[:, level] = codes
            r -= cb.centroids[codes]
        return out

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Vectors rebuilt from ``assign()`` codes, in the preprocessed (centered, normalized) space."""
        self._check_fitted()
        c = np.asarray(codes)[:, -self.levels :] if codes.shape[1] > self.levels else np.asarray(codes)
        q = sum(cb.centroids[c[:, i]] for i, cb in enumerate(self.codebooks))
        if self.dec_w is not None and self.dec_b is not None:
            return (q @ self.dec_w + self.dec_b).astype(np.float32)
        return np.asarray(q, dtype=np.float32)

    def level1_centroids(self) -> np.ndarray | None:
        """The first codebook, unless refinement moved it away from the nearest-centroid rule."""
        if self.refined or not self.codebooks:
            return None
        return np.asarray(self.codebooks[0].centroids, dtype=np.float32)

    def _sizes(self) -> list[int]:
        return [cb.k for cb in self.codebooks]

    # -- state -----------------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "balanced": self.balanced,
            "refine": self.refine,
            "refined": self.refined,
            "iters": self.iters,
            "refine_epochs": self.refine_epochs,
            "refine_lr": self.refine_lr,
            "refine_beta": self.refine_beta,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, cb in enumerate(self.codebooks):
            out[f"centroids_{i}"] = cb.centroids
            out[f"bias_{i}"] = cb.bias
        if self.refined:
            assert self.enc_w is not None and self.enc_b is not None and self.dec_w is not None and self.dec_b is not None
            out.update(enc_w=self.enc_w, enc_b=self.enc_b, dec_w=self.dec_w, dec_b=self.dec_b)
        return out

    @classmethod
    def _init_kwargs(cls, params: dict[str, Any]) -> dict[str, Any]:
        kw = super()._init_kwargs(params)
        for key in ("k", "balanced", "refine", "iters", "refine_epochs", "refine_lr", "refine_beta"):
            kw[key] = params[key]
        return kw

    def _load(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.codebooks = [
            Codebook(np.asarray(arrays[f"centroids_{i}"], np.float32), np.asarray(arrays[f"bias_{i}"], np.float32))
            for i in range(self.levels)
        ]
        self.refined = bool(params.get("refined", False))
        if self.refined:
            self.enc_w, self.enc_b = np.asarray(arrays["enc_w"], np.float32), np.asarray(arrays["enc_b"], np.float32)
            self.dec_w, self.dec_b = np.asarray(arrays["dec_w"], np.float32), np.asarray(arrays["dec_b"], np.float32)
