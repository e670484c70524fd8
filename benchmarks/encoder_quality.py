"""Quality and speed of the offline LiT encoder: the shipped head beside the previous one, in one run.

Four held-out sets, none of them trained or tuned on (``scripts/prepare_data.py`` builds them by
construction):

* (a) ``clipart``: the committed held-out rows of openclipart
  (``benchmarks/data/openclipart_heldout.tsv``); each distinct title queries the images.
* (b) ``openmoji``: the whole OpenMoji emoji set (a drawing style never trained on; Twemoji is the
  emoji style in training), queried by each emoji's name (``openmoji_names``) and by its keywords
  (``openmoji_keywords``: one query per keyword, every image tagged with it is relevant).
* (c) ``breeze``: the whole Breeze icon theme (Papirus and Adwaita are the icon themes in
  training), queried by each picture's icon name ("weather storm").
* (d) ``fmnist``: Fashion-MNIST *test*, zero-shot: one prompt per class ("a photo of a sneaker."),
  nearest prompt wins (accuracy).

For (a)-(c): ``t2i`` recall@10 (a query is a hit when a relevant image ranks in its top 10 among the
set's images) and ``i2t`` recall@10 (an image is a hit when one of its own queries ranks in its top
10 among the set's queries). Speed: ``images_per_s`` end to end from the held-out clip-art PNG
files (decode, resize, backbone, head), the two heads timed in alternating rounds so that a busy
machine slows both alike; ``texts_per_s`` (the text tower, the same for both heads).

Also the zero-training baseline on (a) and (d): an image's embedding is its ImageNet class
probabilities (the backbone's own classifier) times the text embeddings of the class names.

Needs ``make lit-data`` (Debian packages and the npm tarballs, prepared under ``data/lit-data``).

Usage::

    python -m benchmarks.encoder_quality [--head PATH] [--old-head lit:v1] [--fmnist-limit N] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]

from mmgr_qdrant.encoders.lit import LitEncoder, image_backbone, image_features, text_embeddings
from mmgr_qdrant.encoders.lit_training import cached_image_features
from scripts import prepare_data as data

FMNIST_PROMPT = "a photo of a {}."
SETS = ("clipart", "openmoji_names", "openmoji_keywords", "breeze_names")


@dataclass(frozen=True)
class HeldOut:
    """One retrieval set: images, text queries, and which images each query should find."""

    name: str
    images: tuple[Path, ...]
    queries: tuple[str, ...]
    relevant: tuple[tuple[int, ...], ...]  # per query: indices into images


def _grouped(name: str, images: Sequence[Path], labels: Sequence[Sequence[str]]) -> HeldOut:
    """Queries = distinct labels (first spelling kept); relevant = the images carrying each."""
    index: dict[str, int] = {}
    queries: list[str] = []
    relevant: list[list[int]] = []
    for i, labs in enumerate(labels):
        for lab in labs:
            key = " ".join(lab.lower().split())
            if key not in index:
                index[key] = len(queries)
                queries.append(" ".join(lab.split()))
                relevant.append([])
            if i not in relevant[index[key]]:
                relevant[index[key]].append(i)
    return HeldOut(name, tuple(images), tuple(queries), tuple(tuple(r) for r in relevant))


def _manifest(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `make lit-data` (or python scripts/prepare_data.py --out {path.parent}) first.")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def heldout_sets(work: Path) -> dict[str, HeldOut]:
    """The held-out retrieval sets (a)-(c), from the committed clip-art list and the prepared manifests."""
    held = data.read_heldout()
    clip = _grouped("clipart", [data.clipart_image(rel, work) for rel, _ in held], [[t] for _, t in held])
    om = _manifest(work / "heldout-openmoji.jsonl")
    om_images = [Path(r["image"]) for r in om]
    breeze = _manifest(work / "heldout-breeze.jsonl")
    return {
        "clipart": clip,
        "openmoji_names": _grouped("openmoji_names", om_images, [[r["caption"][0]] for r in om]),
        "openmoji_keywords": _grouped("openmoji_keywords", om_images, [r["keywords"] for r in om]),
        # the picture's own icon name is the query; an alias naming the same picture counts as relevant
        "breeze_names": _grouped("breeze_names", [Path(r["image"]) for r in breeze], [r["names"][:1] for r in breeze]),
    }


def recall_sets(img: np.ndarray, txt: np.ndarray, relevant: Sequence[Sequence[int]], k: int = 10) -> tuple[float, float]:
    """t2i and i2t recall@k when query ``q`` should find the images ``relevant[q]`` (rows normalized)."""
    sims = txt @ img.T  # (q, n)
    k_i = min(k, sims.shape[1])
    top_img = np.argpartition(-sims, k_i - 1, axis=1)[:, :k_i]  # (q, k)
    t2i = float(np.mean([bool(set(top_img[q].tolist()) & set(rel)) for q, rel in enumerate(relevant)]))
    own: list[set[int]] = [set() for _ in range(img.shape[0])]
    for q, rel in enumerate(relevant):
        for i in rel:
            own[i].add(q)
    k_t = min(k, sims.shape[0])
    top_txt = np.argpartition(-sims.T, k_t - 1, axis=1)[:, :k_t]  # (n, k)
    i2t = float(np.mean([bool(set(top_txt[i].tolist()) & own[i]) for i in range(img.shape[0]) if own[i]]))
    return t2i, i2t


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


class Features:
    """Backbone features per (image list, resolution), computed once (and cached on disk when ``cache`` is set)."""

    def __init__(self, cache: Path | None, batch_size: int, device: str) -> None:
        self.cache, self.batch_size, self.device = cache, batch_size, device
        self._mem: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, images: Sequence[Any], resolution: int, features: str = "mean") -> np.ndarray:
        key = (id(images), resolution, features)
        if key not in self._mem:
            if self.cache is not None and all(isinstance(x, Path) for x in images):
                feats, _ = cached_image_features(list(images), resolution, self.cache, device=self.device, batch_size=self.batch_size, features=features)
            else:
                out = image_features(list(images), resolution, batch_size=self.batch_size, device=self.device, features=features)
                assert isinstance(out, np.ndarray)
                feats = out
            self._mem[key] = feats
        return self._mem[key]


def fmnist_test(limit: int) -> tuple[list[np.ndarray], np.ndarray]:
    images, labels = data.read_idx(data.FMNIST / "t10k-images-idx3-ubyte.gz", data.FMNIST / "t10k-labels-idx1-ubyte.gz")
    return list(images[:limit]), labels[:limit]


def evaluate_head(
    enc: LitEncoder, sets: dict[str, HeldOut], fm: tuple[list[np.ndarray], np.ndarray], feats: Features, text_cache: dict[str, np.ndarray]
) -> dict[str, float]:
    """Every quality figure of one head on the held-out sets."""

    def texts(qs: Sequence[str]) -> np.ndarray:
        todo = [q for q in dict.fromkeys(qs) if q not in text_cache]
        if todo:
            text_cache.update(zip(todo, enc.encode_texts(todo)))
        return np.stack([text_cache[q] for q in qs])

    out: dict[str, float] = {}
    for name, s in sets.items():
        img = enc.project(feats(s.images, enc.resolution, enc.spec.features))
        out[f"{name}_t2i_recall@10"], out[f"{name}_i2t_recall@10"] = recall_sets(img, texts(s.queries), s.relevant)
    prompts = texts([FMNIST_PROMPT.format(n) for n in data.FMNIST_CLASSES])
    out["fmnist_zero_shot_acc"] = float(np.mean(np.argmax(enc.project(feats(fm[0], enc.resolution, enc.spec.features)) @ prompts.T, axis=1) == fm[1]))
    return out


def speed(encs: Sequence[LitEncoder], paths: Sequence[Path], batch_size: int, rounds: int = 5) -> list[float]:
    """Images/s of each encoder end to end from files, median of rounds that alternate which goes first."""
    times: list[list[float]] = [[] for _ in encs]
    for r in range(rounds):
        order = list(enumerate(encs))
        for i, enc in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            enc.encode_images(list(paths), batch_size=batch_size)
            times[i].append(time.perf_counter() - t0)
    return [len(paths) / float(np.median(t)) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head", default="default", help="the head to measure: a shipped name (default, v1) or a head file")
    ap.add_argument("--old-head", default="v1", help="the head to compare with (default: v1, the first shipped head)")
    ap.add_argument("--fmnist-limit", type=int, default=10_000, help="Fashion-MNIST test images to score (all 10,000 by default)")
    ap.add_argument("--speed-images", type=int, default=200, help="held-out clip-art images per timed round")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); 1 is steadier on a busy 2-core machine")
    ap.add_argument("--work", type=Path, default=REPO / "data" / "lit-data", help="the folder `make lit-data` prepared")
    ap.add_argument("--no-cache", action="store_true", help="do not read or write the on-disk feature cache under WORK/cache")
    ap.add_argument("--json", action="store_true", help="print one JSON line last")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    new, old = LitEncoder(args.head), LitEncoder(args.old_head)
    feats = Features(None if args.no_cache else args.work.resolve() / "cache", args.batch_size, new.device)
    sets = heldout_sets(args.work.resolve())
    fm = fmnist_test(args.fmnist_limit)
    text_cache: dict[str, np.ndarray] = {}
    res: dict[str, Any] = {
        "head": new.name,
        "old_head": old.name,
        "resolution": new.resolution,
        "old_resolution": old.resolution,
        "hidden": new.spec.hidden,
        "features": new.spec.features,
        "old_features": old.spec.features,
        "device": new.device,
        "torch_threads": torch.get_num_threads(),
    }
    res.update({f"n_{k}_images": len(s.images) for k, s in sets.items()} | {f"n_{k}_queries": len(s.queries) for k, s in sets.items()})
    res["n_fmnist_test"] = len(fm[1])
    res.update({f"new_{k}": v for k, v in evaluate_head(new, sets, fm, feats, text_cache).items()})
    res.update({f"old_{k}": v for k, v in evaluate_head(old, sets, fm, feats, text_cache).items()})

    base = Baseline(new.device)
    clip = sets["clipart"]
    q = np.stack([text_cache[t] for t in clip.queries])
    res["baseline_clipart_t2i_recall@10"], res["baseline_clipart_i2t_recall@10"] = recall_sets(base.embed(feats(clip.images, old.resolution)), q, clip.relevant)
    prompts = np.stack([text_cache[FMNIST_PROMPT.format(n)] for n in data.FMNIST_CLASSES])
    res["baseline_fmnist_zero_shot_acc"] = float(np.mean(np.argmax(base.embed(feats(fm[0], old.resolution)) @ prompts.T, axis=1) == fm[1]))

    speed_paths = list(clip.images[: args.speed_images])
    new.encode_images(speed_paths[:8])  # warm both towers before timing
    res["new_images_per_s"], res["old_images_per_s"] = speed([new, old], speed_paths, args.batch_size)
    res["images_per_s_ratio"] = res["new_images_per_s"] / res["old_images_per_s"]
    queries = list(dict.fromkeys(t for s in sets.values() for t in s.queries))[:1000]
    t0 = time.perf_counter()
    new.encode_texts(queries)
    res["texts_per_s"] = len(queries) / (time.perf_counter() - t0)
    res["seconds"] = time.perf_counter() - t_start

    print(
        f"LiT encoder quality: {res['head']} ({new.resolution} px, {new.spec.features} features, hidden {new.spec.hidden}) "
        f"vs {res['old_head']} ({old.resolution} px, {old.spec.features} features), {res['device']}, {res['torch_threads']} threads"
    )
    print("held-out sets: " + ", ".join(f"{k} {res[f'n_{k}_images']} images / {res[f'n_{k}_queries']} queries" for k in sets) + f"; Fashion-MNIST test {res['n_fmnist_test']}")
    print(f"{'metric':<34}{'new':>8}{'old':>8}{'ratio':>8}  target")
    targets = {"clipart_t2i_recall@10": ">= 0.50", "openmoji_names_t2i_recall@10": ">= 3x old", "breeze_names_t2i_recall@10": ">= 3x old"}
    for name in SETS:
        for d in ("t2i", "i2t"):
            key = f"{name}_{d}_recall@10"
            n, o = res[f"new_{key}"], res[f"old_{key}"]
            print(f"{key:<34}{n:>8.3f}{o:>8.3f}{n / max(o, 1e-9):>7.2f}x  {targets.get(key, '')}")
    n, o = res["new_fmnist_zero_shot_acc"], res["old_fmnist_zero_shot_acc"]
    print(f"{'fmnist_zero_shot_acc':<34}{n:>8.3f}{o:>8.3f}{n / max(o, 1e-9):>7.2f}x  >= 0.85")
    print(f"{'images_per_s (clip-art PNG files)':<34}{res['new_images_per_s']:>8.1f}{res['old_images_per_s']:>8.1f}{res['images_per_s_ratio']:>7.2f}x  >= 0.8x")
    print(f"{'texts_per_s':<34}{res['texts_per_s']:>8.1f}")
    print(
        f"zero-training baseline: clipart t2i {res['baseline_clipart_t2i_recall@10']:.3f}, i2t {res['baseline_clipart_i2t_recall@10']:.3f}, "
        f"fmnist {res['baseline_fmnist_zero_shot_acc']:.3f}"
    )
    print(f"total {res['seconds']:.1f} s")
    if args.json:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}))


if __name__ == "__main__":
    main()
