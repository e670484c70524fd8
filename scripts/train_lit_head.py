"""Reproduce the shipped LiT head (``mmgr_qdrant/encoders/lit_head.safetensors``) and its record.

Same library function as ``mmgr train-encoder`` (:func:`mmgr_qdrant.training.train_encoder`), with
the settings below, on data from Debian packages (see ``scripts/prepare_data.py``):

* openclipart train part: real titles (plus "title, keywords" as an alternative caption) and, for
  images whose title is a collection name, a caption from the file name (at most 20 images per
  such caption);
* Fashion-MNIST *train* split: 1,000 images per class, 5 caption templates per class.

Takes about 5-10 minutes on 2 busy CPU cores the first time (image features), seconds after that.

Usage::

    python scripts/train_lit_head.py [--out-dir .cache/lit-data] [--with-benchmark]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prepare_data as data

from mmgr_qdrant.encoders.lit import DEFAULT_HEAD
from mmgr_qdrant.training import train_encoder

logger = logging.getLogger("train_lit_head")
SETTINGS = {"epochs": 25, "batch_size": 512, "lr": 2e-3, "weight_decay": 0.05, "hidden": 512, "resolution": 64, "seed": 0, "val_fraction": 0.1}
FMNIST_PER_CLASS = 1000


def debian_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=data.REPO / ".cache" / "lit-data", help="manifests, Fashion-MNIST PNGs")
    ap.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default: OUT_DIR/cache)")
    ap.add_argument("--output", type=Path, default=DEFAULT_HEAD)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default); 1 is faster on a busy 2-core machine")
    ap.add_argument("--with-benchmark", action="store_true", help="run benchmarks/encoder_quality.py on the new head and keep its figures in the record")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    summary = data.prepare(args.out_dir, FMNIST_PER_CLASS)
    last = [0.0]

    def progress(stage: str, done: int, total: int | None, info: dict[str, float]) -> None:
        if time.monotonic() - last[0] > 10 or done == total:
            last[0] = time.monotonic()
            logger.info("%s %d/%s %s", stage, done, total, {k: round(v, 4) for k, v in info.items()})

    record_data = {
        "openclipart": f"Debian openclipart-png/openclipart-svg {debian_version('openclipart-png')}: train part only "
        f"(held-out list benchmarks/data/openclipart_heldout.tsv excluded), {summary['clipart_train']} images, captions {summary['clipart_caption_kinds']}",
        "fashion_mnist": f"Debian dataset-fashion-mnist {debian_version('dataset-fashion-mnist')}: train split only, {FMNIST_PER_CLASS} images per class "
        f"(seed {data.SPLIT_SEED}), captions {list(data.FMNIST_TEMPLATES)}",
    }
    report = train_encoder(
        [args.out_dir / "clipart-train.jsonl", args.out_dir / "fmnist-train.jsonl"],
        args.output,
        cache_dir=args.cache_dir or args.out_dir / "cache",
        progress=progress,
        record={"sources": "openclipart train part + Fashion-MNIST train split (scripts/train_lit_head.py)"},
        **SETTINGS,
    )
    record = {
        "head": args.output.name,
        "what": "LiT projection head: frozen EfficientNet-Lite0 (ImageNet) image features -> all-MiniLM-L6-v2 text space",
        "reproduce": "python scripts/train_lit_head.py --with-benchmark",
        "settings": SETTINGS,
        "data": record_data,
        "training": {k: v for k, v in report.to_dict().items() if k not in ("output", "skipped")},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
    }
    if args.with_benchmark:
        cmd = [sys.executable, str(data.REPO / "benchmarks" / "encoder_quality.py"), "--json", "--head", str(args.output)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        print(out.stdout)
        record["benchmark"] = json.loads(out.stdout.strip().splitlines()[-1])
    path = args.output.with_suffix(".json")
    path.write_text(json.dumps(record, indent=2) + "\n")
    logger.info("wrote %s (%.2f MB) and %s", args.output, args.output.stat().st_size / 1e6, path)


if __name__ == "__main__":
    main()
