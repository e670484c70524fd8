"""Commands that make and keep an index: init, ingest, build, retrain, rebuild, stats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from ..errors import InputError
from . import render
from .connect import ApiKeyOpt, CollectionOpt, PathOpt, UrlOpt, conn, open_index, parse_pairs
from .files import Item, collect
from .render import build_tables, console, docid_table, fmt, human_bytes, kv_table, note


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(ingest)
    app.command()(build)
    app.command()(retrain)
    app.command()(rebuild)
    app.command()(stats)


def init(
    encoder: Annotated[
        str,
        typer.Option("--encoder", "-e", help="Encoder name: lit:default (offline), open_clip:MODEL/TAG, sentence-transformers:NAME, ..."),
    ] = "lit:default",
    docids: Annotated[str, typer.Option("--docids", help="Docid scheme: rq, hkmeans, pq or lsh.")] = "rq",
    levels: Annotated[int, typer.Option("--levels", min=1, max=8, help="Semantic docid levels (after the modality code).")] = 2,
    codebook_size: Annotated[
        str, typer.Option("--codebook-size", help="Codes per level: auto, a number, or one per level (16,32).")
    ] = "auto",
    docid_param: Annotated[
        list[str] | None, typer.Option("--docid-param", help="Another docid scheme setting, KEY=VALUE (repeatable).")
    ] = None,
    decoder_param: Annotated[
        list[str] | None, typer.Option("--decoder-param", help="A decoder/training setting, KEY=VALUE (repeatable), e.g. epochs=20.")
    ] = None,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Open the collection if it exists already (its settings must match).")
    ] = False,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Create an index: a Qdrant collection with its encoder and docid settings.

    Example: mmgr init --collection photos --encoder lit:default --levels 2
    """
    from ..retriever import MultimodalRetriever

    c = conn(collection, path, url, api_key)
    params: dict[str, Any] = {"levels": levels, "k": _codebook(codebook_size)}
    params.update(parse_pairs(docid_param, "--docid-param"))
    dec = parse_pairs(decoder_param, "--decoder-param")
    with render.status(f"loading encoder {encoder} ..."):
        r = MultimodalRetriever.create(
            c.collection, encoder=encoder, docids=docids, docid_params=params, decoder_params=dec, exist_ok=exist_ok, **c.kwargs()
        )
    with r:
        cfg = r.config
        console.print(
            kv_table(
                f"Collection {cfg.collection!r} ready {c.where}",
                [
                    ("encoder", f"{cfg.encoder} ({cfg.dim}-d)"),
                    ("docids", f"{cfg.docid_scheme} {cfg.docid_params}"),
                    ("decoder", str(cfg.decoder_params or "defaults")),
                    ("documents", r.count()),
                ],
            )
        )
    note(f"Next: mmgr ingest PHOTOS/{c.flags()}, then mmgr build{c.flags()}")


def _codebook(raw: str) -> Any:
    raw = raw.strip()
    if raw == "auto":
        return "auto"
    try:
        sizes = [int(x) for x in raw.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{raw!r} is not 'auto', a number or a comma list of numbers", param_hint="--codebook-size") from None
    return sizes[0] if len(sizes) == 1 else sizes


def ingest(
    inputs: Annotated[
        list[str], typer.Argument(help="Image files, folders, quoted globs ('photos/**/*.jpg') and .jsonl manifests.", show_default=False)
    ],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look into subfolders of the folders given.")] = False,
    captions: Annotated[
        bool, typer.Option("--captions/--no-captions", help="Read captions from sidecar .txt files (cat.png + cat.txt).")
    ] = True,
    caption_docs: Annotated[
        bool, typer.Option("--caption-docs", help="Also store each caption as a text document linked to its image.")
    ] = False,
    folder_label: Annotated[
        str | None,
        typer.Option(
            "--folder-label", metavar="FIELD", help="Store each image's folder name in this payload field (for class-per-folder data)."
        ),
    ] = None,
    payload: Annotated[list[str] | None, typer.Option("--payload", help="A payload field for every item, KEY=VALUE (repeatable).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per encoder batch.")] = 64,
    every: Annotated[float, typer.Option("--every", min=0.01, metavar="SECONDS", help="Videos: keep a frame every SECONDS.")] = 1.0,
    scenes: Annotated[bool, typer.Option("--scenes", help="Videos: keep a frame at each scene cut instead of at a fixed interval.")] = False,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Add images (with captions), videos and texts to an index; unreadable files are skipped and listed.

    Videos (.mp4 .webm .mkv .mov) are stored as moments: a frame every --every seconds, or one per
    scene with --scenes (needs the video extra: pip install 'mmgr-qdrant[video]').

    Captions come from sidecar .txt files (first non-empty line) or from a JSONL manifest:
    {"image": "a.png", "caption": "...", "payload": {...}} or {"text": "...", "payload": {...}}.

    Example: mmgr ingest photos/ --recursive --caption-docs
    """
    c = conn(collection, path, url, api_key)
    found = collect(inputs, recursive=recursive, sidecars=captions, folder_label=folder_label)
    extra = parse_pairs(payload, "--payload")
    if not found.images and not found.texts and not found.videos:
        problems = "; ".join(f"{item}: {why}" for item, why in found.problems[:3])
        raise InputError(
            f"Nothing to ingest in {', '.join(inputs)} ({problems or 'no images or texts'}); pass image files, folders or a .jsonl manifest."
        )
    stored_images = stored_texts = linked = 0
    skipped: list[tuple[str, str]] = list(found.problems)
    with open_index(c) as r, render.ProgressBars() as bars:
        for group in _by_id_presence(found.images):
            res = r.add_images(
                [str(it.image) for it in group],
                captions=[it.caption for it in group],
                payloads=[_merge(it.payload, extra) for it in group],
                ids=[it.id for it in group] if group[0].id is not None else None,
                caption_docs=caption_docs,
                on_error="skip",
                batch_size=batch_size,
                progress=bars.labelled("images"),
            )
            stored_images += len(res)
            bad = {s.index for s in res.skipped}
            linked += sum(1 for i, it in enumerate(group) if i not in bad and it.caption) if caption_docs else 0
            skipped += [(_short(s.item), s.reason) for s in res.skipped]
        for group in _by_id_presence(found.texts):
            res = r.add_texts(
                [it.text for it in group],  # type: ignore[misc]
                payloads=[_merge(it.payload, extra) for it in group],
                ids=[it.id for it in group] if group[0].id is not None else None,
                on_error="skip",
                progress=bars.labelled("texts"),
            )
            stored_texts += len(res)
            skipped += [(_short(s.item), s.reason) for s in res.skipped]
        stored_videos = 0
        for group in _by_id_presence(found.videos):
            res = r.add_videos(
                [str(it.image) for it in group],
                every_s=every,
                scenes=scenes,
                captions=[it.caption for it in group],
                payloads=[_merge(it.payload, extra) for it in group],
                ids=[it.id for it in group] if group[0].id is not None else None,
                on_error="skip",
                batch_size=batch_size,
                progress=bars.labelled("videos"),
            )
            stored_videos += len(res)
            skipped += [(_short(s.item), s.reason) for s in res.skipped]
        total, n_img, n_txt = r.count(), r.count("image"), r.count("text")
        n_moments = r.count("video")
        built = r.stats(probe=False).built
    _ingest_summary(stored_images, linked, stored_texts, skipped, total, n_img, n_txt, stored_videos, n_moments)
    if not built:
        note(f"Next: mmgr build{c.flags()} to fit docids and train the decoder (search works dense-only until then).")
    else:
        note("New documents got docids from the current build; `mmgr stats` shows when a retrain pays off.")


def _by_id_presence(items: list[Item]) -> list[list[Item]]:
    """Items with ids and items without, as separate calls (ids are given for all or none)."""
    with_id = [it for it in items if it.id is not None]
    without = [it for it in items if it.id is None]
    return [g for g in (without, with_id) if g]


def _merge(payload: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any] | None:
    if not extra:
        return payload
    return {**extra, **(payload or {})}


def _short(item: str) -> str:
    try:
        return str(Path(item).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return item


def _ingest_summary(
    images: int, linked: int, texts: int, skipped: list[tuple[str, str]], total: int, n_img: int, n_txt: int, videos: int = 0, n_moments: int = 0
) -> None:
    table = Table(title="Ingest summary", box=box.ROUNDED, title_justify="left", title_style="bold", show_header=False)
    table.add_column(style="cyan")
    table.add_column(justify="right")
    table.add_row("images stored", fmt(images))
    if linked:
        table.add_row("captions stored as texts", fmt(linked))
    if texts:
        table.add_row("texts stored", fmt(texts))
    if videos:
        table.add_row("videos stored", fmt(videos))
    table.add_row("skipped", Text(fmt(len(skipped)), style="yellow" if skipped else ""))
    moments = f", {n_moments:,} video moments" if n_moments else ""
    table.add_row("collection now", f"{total:,} documents ({n_img:,} images, {n_txt:,} texts{moments})")
    console.print(table)
    if skipped:
        st = Table(title=f"Skipped ({len(skipped)})", box=box.SIMPLE_HEAD, title_justify="left", title_style="bold yellow")
        st.add_column("item", overflow="fold", ratio=1)
        st.add_column("reason", overflow="fold", ratio=2)
        for item, why in skipped[:20]:
            st.add_row(item, why)
        if len(skipped) > 20:
            st.caption = f"... and {len(skipped) - 20} more"
        console.print(st)


# -- build --------------------------------------------------------------------------------------------
EpochsOpt = Annotated[
    int | None, typer.Option("--epochs", min=1, help="Most decoder training epochs (default: the index's setting, else 30).")
]
BudgetOpt = Annotated[
    float | None,
    typer.Option("--time-budget", min=0.1, metavar="SECONDS", help="Stop decoder training after this long, keeping the best weights."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seeds the docid fit and the decoder training.")]


def build(
    epochs: EpochsOpt = None,
    time_budget: BudgetOpt = None,
    seed: SeedOpt = 0,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Fit docids on the stored vectors, train the decoder and save the build (searches keep working).

    Example: mmgr build --epochs 20
    """
    _build("build", conn(collection, path, url, api_key), epochs, time_budget, seed)


def retrain(
    epochs: EpochsOpt = None,
    time_budget: BudgetOpt = None,
    seed: SeedOpt = 0,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Retrain the decoder on the current corpus, keeping every docid (after many adds).

    Example: mmgr retrain --time-budget 60
    """
    _build("retrain", conn(collection, path, url, api_key), epochs, time_budget, seed)


def rebuild(
    epochs: EpochsOpt = None,
    time_budget: BudgetOpt = None,
    seed: SeedOpt = 0,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Refit the docids and retrain the decoder from scratch (when buckets have grown unbalanced).

    Example: mmgr rebuild --seed 1
    """
    _build("rebuild", conn(collection, path, url, api_key), epochs, time_budget, seed)


def _build(what: str, c: Any, epochs: int | None, budget: float | None, seed: int) -> None:
    with open_index(c) as r:
        method = {"build": r.build, "retrain": r.retrain, "rebuild": r.rebuild}[what]
        with render.ProgressBars() as bars:
            report = method(seed=seed, epochs=epochs, time_budget_s=budget, progress=bars)
    for table in build_tables(report, what.capitalize()):
        console.print(table)


# -- stats ----------------------------------------------------------------------------------------------
def stats(
    json_out: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Run the recall probe on documents added since the build.")] = True,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Counts by modality, docid balance per level, codebook usage, staleness of the build, sizes.

    Example: mmgr stats --collection photos
    """
    c = conn(collection, path, url, api_key)
    with open_index(c) as r:
        s = r.stats(probe=probe).as_dict()
    if json_out:
        render.print_json(s)
        return
    counts = s.get("counts", {})
    console.print(
        kv_table(
            f"Collection {s['collection']!r} ({s.get('backend', '?')} {c.where})",
            [
                ("encoder", f"{s['encoder']} ({s['dim']}-d)"),
                ("documents", f"{counts.get('total', 0):,} ({counts.get('image', 0):,} images, {counts.get('text', 0):,} texts)"),
                ("built", f"yes, generation {s.get('generation')}" if s.get("built") else Text("no: run `mmgr build`", style="yellow")),
                ("docid scheme", s.get("docid_scheme")),
                ("artifacts", human_bytes(int(s.get("sizes", {}).get("artifact_bytes", 0)))),
            ],
        )
    )
    if not s.get("built"):
        return
    ds = s.get("docid_stats") or {}
    if ds:
        console.print(docid_table(ds))
    st = s.get("staleness") or {}
    growth = st.get("bucket_growth") or {}
    probe_v = st.get("recall_probe")
    added = int(st.get("added_since_build") or 0)
    rows: list[tuple[str, Any]] = [
        ("added since build", added),
        ("deleted since build", st.get("deleted_since_build")),
        ("leaf bucket growth", ", ".join(f"{k.replace('_bucket', '')} x{v:.2f}" for k, v in growth.items() if v is not None) or "-"),
        (
            "recall probe",
            "-"
            if probe_v is None
            else Text(f"{probe_v:.0%} of new documents found by their own vector", style="red" if probe_v < 0.8 else "green"),
        ),
    ]
    console.print(kv_table("Staleness", rows))
    if added and (probe_v is not None and probe_v < 0.8):
        note("Tip: `mmgr retrain` teaches the decoder the new documents; `mmgr rebuild` also refits the docids.")
