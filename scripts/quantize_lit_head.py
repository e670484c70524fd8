"""Rewrite a LiT head file in the int8 storage (format version 2), without retraining.

Weight matrices become int8 with a float16 scale per output row (about 1.4 MB for the shipped
64 px / hidden 512 head instead of 2.7 MB as float16); biases and the standardization statistics
stay float16; the metadata (spec and training record) is kept. Prints how far the new head's
image embeddings move from the old one's on random features (cosine of each row).

Usage::

    python scripts/quantize_lit_head.py                              # the shipped head, in place
    python scripts/quantize_lit_head.py old.safetensors new.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmgr_qdrant.encoders.lit import DEFAULT_HEAD, FEATURE_DIM, STORAGE_INT8, load_head, save_head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_HEAD, help="head file to convert (default: the shipped head)")
    parser.add_argument("output", nargs="?", type=Path, default=None, help="where to write it (default: over the source)")
    args = parser.parse_args(argv)

    import torch

    old, spec = load_head(args.source)
    output = args.output or args.source
    tmp = output.with_name(output.name + ".tmp")
    save_head(old, spec, tmp, storage=STORAGE_INT8)
    new, new_spec = load_head(tmp)
    assert (new_spec.resolution, new_spec.hidden, new_spec.extra) == (spec.resolution, spec.hidden, spec.extra)

    with torch.inference_mode():
        x = old.mean + old.std * torch.randn(4096, FEATURE_DIM, generator=torch.Generator().manual_seed(0))
        cos = torch.nn.functional.cosine_similarity(old(x), new(x), dim=1)
    size_before = args.source.stat().st_size
    tmp.chmod(args.source.stat().st_mode & 0o777)  # safetensors writes 0600; keep the source's mode
    tmp.replace(output)
    print(f"{args.source} ({size_before:,} bytes) -> {output} ({output.stat().st_size:,} bytes)")
    print(f"embedding cosine old vs new on 4096 random features: mean {cos.mean():.6f}, min {cos.min():.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
