"""Write the sample data in ``examples/data/``: small openclipart PNGs with captions and keywords.

The images are drawn (fixed seed) from the *held-out* part of openclipart
(``benchmarks/data/openclipart_heldout.tsv``), which the shipped LiT head never saw, so the demo
shows how the encoder does on images it was not trained on. One image per distinct title.

Usage::

    python scripts/make_examples.py [--n 300] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil

import numpy as np
import prepare_data as data

logger = logging.getLogger("make_examples")
OUT = data.REPO / "examples" / "data"
SEED = 0


def slug(text: str) -> str:
    s = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    return "-".join(p for p in s.split("-") if p)[:40] or "image"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=128, help="longest side in pixels")
    ap.add_argument("--colors", type=int, default=64, help="palette size (keeps the files small)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from PIL import Image

    items = {c.rel: c for c in data.read_openclipart()}
    held = data.read_heldout()
    by_title: dict[str, str] = {}
    for rel, title in held:
        by_title.setdefault(data.norm_title(title), rel)
    rels = sorted(by_title.values())
    rng = np.random.default_rng(SEED)
    chosen = sorted(rng.choice(rels, size=min(args.n, len(rels)), replace=False))

    folder = OUT / "clipart"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    work = data.REPO / ".cache" / "lit-data"
    used: set[str] = set()
    with (OUT / "clipart.jsonl").open("w", encoding="utf-8") as f:
        for rel in chosen:
            item = items[rel]
            name = slug(item.title)
            while name in used:
                name += "-2"
            used.add(name)
            with Image.open(data.clipart_image(rel, work)) as im:
                im = im.convert("RGBA")
                im.thumbnail((args.size, args.size), Image.LANCZOS)
                im = im.quantize(colors=args.colors, method=Image.Quantize.FASTOCTREE)
                im.save(folder / f"{name}.png", optimize=True)
            rec = {"file": f"clipart/{name}.png", "caption": item.title, "keywords": data.good_keywords(item), "source": f"openclipart 0.18: {rel}.svg"}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    logger.info("wrote %d images to %s (%.2f MB in examples/data)", len(chosen), folder, total / 1e6)


if __name__ == "__main__":
    main()
