"""Quality and speed of the offline LiT encoder, beside a zero-training baseline, in one run.

Figures (one head, one run; ratios are what to compare across machines):

* ``fmnist_zero_shot_acc``: accuracy on the 10,000 Fashion-MNIST *test* images, one prompt per
  class ("a photo of a sneaker."), nearest prompt wins. Target >= 0.85.
* ``clipart_t2i_recall@10`` / ``clipart_i2t_recall@10``: on the committed held-out part of
  openclipart (``benchmarks/data/openclipart_heldout.tsv``, never trained on): each distinct title
  queries the images (a hit when an image with that title ranks in the top 10), and each image
  queries the titles (a hit when its own title ranks in the top 10).
* The same figures for the zero-training baseline: an image's embedding is its ImageNet class
  probabilities (the backbone's own classifier) times the text embeddings of the class names,
  so it uses the same two frozen towers with no training at all. Target: t2i >= 4x the baseline.
  The baseline is also scored at ``--baseline-resolution`` (112 px): the ImageNet classifier
  needs resolution more than the trained head does, so this is the fairer comparison.
* ``images_per_s`` (end to end from PNG files: decode, resize, backbone, head) and ``texts_per_s``.

Needs the Debian packages ``openclipart-png``, ``openclipart-svg`` and ``dataset-fashion-mnist``.

Usage::

    python -m benchmarks.encoder_quality [--head PATH] [--fmnist-limit N] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from importlib import resources
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]

from mmgr_qdrant.encoders.lit import LitEncoder, image_backbone, image_features, text_embeddings
from mmgr_qdrant.training import recall_at_k
from scripts import prepare_data as data

FMNIST_PROMPT = "a photo of a {}."


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names in the classifier's order (from the timm wheel)."""
    info = resources.files("timm") / "data" / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines() if "\t" in line)
    return [lemmas[s].split(",")[0].strip() for s in synsets]


class Baseline:
    """Zero training: image -> ImageNet probabilities -> probability-weighted class-name embeddings."""

    def __init__(self, device: str) -> None:
        fc = image_backbone(device)._fc
        self.weight = fc.weight.detach().float().cpu().numpy()  # (1000, 1280)
        self.bias = fc.bias.detach().float().cpu().numpy()  # (1000,)
        self.class_emb = text_embeddings([f"a photo of a {n}." for n in imagenet_class_names()])  # (1000, 384)

    def embed(self, feats: np.ndarray) -> np.ndarray:
        logits = feats @ self.weight.T + self.bias  # (n, 1000)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        emb = p @ self.class_emb  # (n, 384)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def clipart_eval(enc: LitEncoder, baseline: Baseline, work: Path, batch_size: int, baseline_resolution: int) -> dict[str, float]:
    held = data.read_heldout()
    paths = [data.clipart_image(rel, work) for rel, _ in held]  # renders the few huge PNGs once
    titles = [" ".join(t.split()) for _, t in held]
    uniq = list(dict.fromkeys(t.lower() for t in titles))
    target = np.array([uniq.index(t.lower()) for t in titles])
    first = {t.lower(): t for t in titles}
    queries = [first[u] for u in uniq]

    t0 = time.perf_counter()
    feats = image_features(paths, enc.resolution, batch_size=batch_size, device=enc.device)
    assert isinstance(feats, np.ndarray)
    img = enc.project(feats)
    images_per_s = len(paths) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    txt = enc.encode_texts(queries)
    texts_per_s = len(queries) / (time.perf_counter() - t0)

    t2i, i2t = recall_at_k(img, txt, target, 10)
    b_t2i, b_i2t = recall_at_k(baseline.embed(feats), txt, target, 10)
    # the ImageNet classifier gains more from resolution than the head does: show it at its best too
    hi = image_features(paths, baseline_resolution, batch_size=batch_size, device=enc.device)
    assert isinstance(hi, np.ndarray)
    h_t2i, h_i2t = recall_at_k(baseline.embed(hi), txt, target, 10)
    return {
        f"baseline_{baseline_resolution}px_clipart_t2i_recall@10": h_t2i,
        f"baseline_{baseline_resolution}px_clipart_i2t_recall@10": h_i2t,
        "clipart_t2i_recall@10": t2i,
        "clipart_i2t_recall@10": i2t,
        "baseline_clipart_t2i_recall@10": b_t2i,
        "baseline_clipart_i2t_recall@10": b_i2t,
        "n_heldout_images": len(paths),
        "n_heldout_titles": len(queries),
        "images_per_s": images_per_s,
        "texts_per_s": texts_per_s,
    }


def fmnist_eval(enc: LitEncoder, baseline: Baseline, limit: int, batch_size: int) -> dict[str, float]:
    images, labels = data.read_idx(data.FMNIST / "t10k-images-idx3-ubyte.gz", data.FMNIST / "t10k-labels-idx1-ubyte.gz")
    images, labels = images[:limit], labels[:limit]
    feats = image_features(list(images), enc.resolution, batch_size=batch_size, device=enc.device)
    assert isinstance(feats, np.ndarray)
    prompts = enc.encode_texts([FMNIST_PROMPT.format(n) for n in data.FMNIST_CLASSES])  # (10, 384)
    acc = float(np.mean(np.argmax(enc.project(feats) @ prompts.T, axis=1) == labels))
    b_acc = float(np.mean(np.argmax(baseline.embed(feats) @ prompts.T, axis=1) == labels))
    return {"fmnist_zero_shot_acc": acc, "baseline_fmnist_zero_shot_acc": b_acc, "n_fmnist_test": len(labels)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head", default=None, help="head file (default: the one shipped in the package)")
    ap.add_argument("--fmnist-limit", type=int, default=10_000, help="Fashion-MNIST test images to score (all 10,000 by default)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--baseline-resolution", type=int, default=112, help="also score the baseline at this resolution (clip art only)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); 1 is faster on a busy 2-core machine")
    ap.add_argument("--work", type=Path, default=REPO / ".cache" / "lit-data", help="where the few huge PNGs are re-rendered small")
    ap.add_argument("--json", action="store_true", help="print one JSON line last")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    enc = LitEncoder(args.head)
    baseline = Baseline(enc.device)
    res = {"head": enc.name, "resolution": enc.resolution, "hidden": enc.spec.hidden, "device": enc.device, "torch_threads": torch.get_num_threads()}
    res.update(clipart_eval(enc, baseline, args.work, args.batch_size, args.baseline_resolution))
    res.update(fmnist_eval(enc, baseline, args.fmnist_limit, args.batch_size))
    res["t2i_ratio_vs_baseline"] = res["clipart_t2i_recall@10"] / max(res["baseline_clipart_t2i_recall@10"], 1e-9)
    res["seconds"] = time.perf_counter() - t_start

    rows = [
        ("fmnist_zero_shot_acc", "fmnist_zero_shot_acc", ">= 0.85"),
        ("clipart_t2i_recall@10", "clipart_t2i_recall@10", ">= 4x baseline"),
        ("clipart_i2t_recall@10", "clipart_i2t_recall@10", ""),
    ]
    print(f"LiT encoder quality: {res['head']} ({res['resolution']} px, hidden {res['hidden']}, {res['device']}, {res['torch_threads']} threads)")
    print(f"held-out openclipart: {res['n_heldout_images']} images, {res['n_heldout_titles']} titles; Fashion-MNIST test: {res['n_fmnist_test']} images")
    print(f"{'metric':<24}{'LiT head':>10}{'baseline':>10}{'ratio':>8}  target")
    for label, key, target in rows:
        ours, base = res[key], res[f"baseline_{key}"]
        print(f"{label:<24}{ours:>10.3f}{base:>10.3f}{ours / max(base, 1e-9):>7.1f}x  {target}")
    hr = args.baseline_resolution
    for key in ("clipart_t2i_recall@10", "clipart_i2t_recall@10"):
        base = res[f"baseline_{hr}px_{key}"]
        print(f"{key:<24}{res[key]:>10.3f}{base:>10.3f}{res[key] / max(base, 1e-9):>7.1f}x  (baseline at {hr} px)")
    print(f"{'images_per_s':<24}{res['images_per_s']:>10.1f}   (PNG decode + resize + backbone + head)")
    print(f"{'texts_per_s':<24}{res['texts_per_s']:>10.1f}")
    print(f"total {res['seconds']:.1f} s")
    if args.json:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}))


if __name__ == "__main__":
    main()
