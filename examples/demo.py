"""The `make demo` job: multimodal generative retrieval on the embedded default, offline.

1. ingests the 300 sample clip-art images (examples/data) with their captions into an embedded
   Qdrant Edge store (./mmgr_data, collection "demo"), using the offline encoder ``lit:default``;
2. builds the index: fits semantic docids, trains the decoder (about a minute on 2 cores);
3. runs text queries (hybrid: decoder prefixes, Qdrant filter, vector ranking), one image query,
   and a boolean query, printing readable result tables.

Afterwards, explore the same index from the shell: ``mmgr search "a flag" --collection demo``.

Run: ``python examples/demo.py [--path ./mmgr_data] [--encoder lit:default] [--epochs 30]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mmgr_qdrant import Hit, MultimodalRetriever
from mmgr_qdrant.setops import Q

DATA = Path(__file__).resolve().parent / "data"
QUERIES = ["a flag", "a bird", "a musical instrument", "food on a plate", "a car"]
console = Console()


def table(title: str, hits: list[Hit], root: Path) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    t.add_column("rank", justify="right")
    t.add_column("score", justify="right")
    t.add_column("caption")
    t.add_column("file", style="dim")
    for i, h in enumerate(hits, 1):
        file = str(Path(h.uri).relative_to(root)) if h.uri and Path(h.uri).is_relative_to(root) else (h.uri or "")
        t.add_row(str(i), f"{h.score:.3f}", h.text or "", file)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default="./mmgr_data")
    ap.add_argument("--collection", default="demo")
    ap.add_argument("--encoder", default=None, help="default: the library default, lit:default")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows = [json.loads(line) for line in (DATA / "clipart.jsonl").read_text().splitlines() if line.strip()]
    images = [DATA / r["file"] for r in rows]
    if args.collection in MultimodalRetriever.list_collections(path=args.path):
        MultimodalRetriever.drop(args.collection, path=args.path)  # a fresh demo each run
    options = {"encoder": args.encoder} if args.encoder else {}

    with Progress(TextColumn("{task.description:>8}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int | None, info: dict[str, float]) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        t0 = time.perf_counter()
        r = MultimodalRetriever.create(args.collection, path=args.path, **options)
        ids = r.add_images(images, captions=[x["caption"] for x in rows], caption_docs=True,
                           payloads=[{"keywords": x["keywords"]} for x in rows], progress=progress)
        t1 = time.perf_counter()
        report = r.build(epochs=args.epochs, progress=progress)
        t2 = time.perf_counter()

    with r:
        lvl = report.docid_stats["levels"][1]
        console.print(
            f"\n[bold]{r.count('image')} images and {r.count('text')} captions[/] embedded with {r.config.encoder} "
            f"in {t1 - t0:.1f}s; built in {t2 - t1:.1f}s: docids {r.config.docid_scheme}, "
            f"{lvl['used']}/{lvl['codebook_size']} level-1 codes used, decoder val accuracy per level "
            f"{[round(a, 2) for a in report.train['val_level_accuracy']]}\n"
        )
        for q in QUERIES:
            hits = r.search(q, k=5, modality="image")
            dense = r.search(q, k=5, modality="image", mode="dense")
            same = len({h.id for h in hits} & {h.id for h in dense})
            console.print(table(f"text -> image: {q!r}  (hybrid; {same}/5 shared with exact dense search)", hits, DATA))
        probe = images[rows.index(next(x for x in rows if "bird" in x["keywords"]))]
        console.print(table(f"image -> image: {probe.name}", r.search(image=probe, k=5, modality="image"), DATA))
        expr = Q.text("a flag") & Q.modality("image") & ~Q.where({"keywords": "europe"})
        console.print(table(f"boolean: {expr}", r.search(expr, k=5), DATA))
        # Teach the router from judged queries (clicks): stored with the index, learned by retrain().
        taught = [i for i, x in zip(ids, rows) if "flag" in x["keywords"]][:8]
        if taught:
            r.learn(["the banner of a country"], [taught])
            r.retrain(epochs=args.epochs)
            console.print(table("after learn(): 'the banner of a country'", r.search("the banner of a country", k=5, modality="image"), DATA))
        console.print(f"\nExplore it: [bold]mmgr search \"a flag\" --collection {args.collection} --path {args.path}[/]")
    assert len(ids) == len(images)


if __name__ == "__main__":
    main()
