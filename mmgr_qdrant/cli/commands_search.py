"""Commands that read an index: search, related, delete, eval."""

from __future__ import annotations

import re
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from ..errors import InputError
from . import render
from .connect import ApiKeyOpt, CollectionOpt, PathOpt, UrlOpt, conn, open_index, parse_id, parse_pairs
from .render import console, fmt, note


class Mode(str, Enum):
    hybrid = "hybrid"
    generative = "generative"
    dense = "dense"


class GroupBy(str, Enum):
    video = "video"


class Modality(str, Enum):
    image = "image"
    text = "text"
    video = "video"


def register(app: typer.Typer) -> None:
    app.command()(search)
    app.command()(related)
    app.command()(delete)
    app.command(name="eval")(eval_)


KOpt = Annotated[int, typer.Option("-k", "--k", min=1, help="Hits to return.")]
ModalityOpt = Annotated[Modality | None, typer.Option("--modality", "-m", help="Only documents of this modality.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the hits as a JSON list (for scripts).")]
SaveOpt = Annotated[
    Path | None, typer.Option("--save", metavar="FILE.png", help="Also save a contact sheet of the hits (thumbnails with rank and score).")
]
_SHEET_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_BOOLEAN_HINT = re.compile(r"(^|\s)(AND|OR|NOT)(\s|$)")


def search(
    text: Annotated[
        str | None, typer.Argument(help="A text query (plain text, never parsed as boolean syntax).", show_default=False)
    ] = None,
    query: Annotated[
        str | None,
        typer.Option("--query", "-q", help="A boolean query: 'cat AND NOT (dog OR wolf)', 'red car OR modality:text', 'brand=acme'."),
    ] = None,
    image: Annotated[Path | None, typer.Option("--image", "-i", help="Search by this query image.")] = None,
    k: KOpt = 10,
    mode: Annotated[
        Mode | None, typer.Option("--mode", help="hybrid (default once built), generative (decoder only) or dense (plain vector search).")
    ] = None,
    modality: ModalityOpt = None,
    where: Annotated[list[str] | None, typer.Option("--where", "-w", help="A payload condition FIELD=VALUE (repeatable, ANDed).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show docids, decoder prefixes and per-stage scores.")] = False,
    json_out: JsonOpt = False,
    save: SaveOpt = None,
    fusion_weight: Annotated[
        float | None,
        typer.Option("--fusion-weight", min=0.0, max=1.0, help="TEXT with --image: 0 = the image only, 1 = the text only (default: trained fusion, else 0.5)."),
    ] = None,
    group_by: Annotated[
        GroupBy | None, typer.Option("--group-by", help="video: one hit per video with its best moments.")
    ] = None,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Search by text, by image, by an image changed by a text, or with a boolean query; print a table, JSON, and/or a contact sheet.

    TEXT with --image is a composed query ("this picture, but in red"); --fusion-weight sets the
    mix. Video hits are moments (a file and a timestamp); --group-by video gives one per video.

    A positional TEXT is always plain text ("cats and dogs" is one concept); boolean syntax
    (AND, OR, NOT, parentheses, modality:image, field=value) is read only from --query/-q.

    Example: mmgr search "a red car" -k 5 --save results.png
    """
    composed = text is not None and image is not None
    given = [x is not None for x in (text, query, image)]
    if sum(given) != 1 and not (composed and query is None):
        raise typer.BadParameter("give exactly one of TEXT, --query/-q or --image (or TEXT with --image)", param_hint="TEXT / --query / --image")
    if fusion_weight is not None and not composed:
        raise typer.BadParameter("--fusion-weight needs TEXT and --image together", param_hint="--fusion-weight")
    if save is not None and save.suffix.lower() not in _SHEET_SUFFIXES:
        raise typer.BadParameter(f"{save} must end in one of {', '.join(_SHEET_SUFFIXES)}", param_hint="--save")
    c = conn(collection, path, url, api_key)
    conditions = parse_pairs(where, "--where")
    expr = _parse(query) if query is not None else None
    if expr is not None and mode is not None:
        note("[yellow]--mode is ignored with --query: boolean queries filter by docid prefix sets and rank by vector.[/]")
    if text is not None and _BOOLEAN_HINT.search(text) and not render.ui.quiet:
        note(f"[dim]Searching for the plain text {text!r}; for boolean syntax use: mmgr search -q {text!r}[/]")
    mod = modality.value if modality else None
    with open_index(c) as r:
        boolean_info = None
        if expr is not None:
            hits = r.search(expr, k=k, modality=mod, where=conditions or None, explain=explain,
                            group_by=group_by.value if group_by else None)
            shown_mode = "boolean"
            if explain:
                boolean_info = r.compile(expr, allow_negative_only=True).explain()
        else:
            hits = r.search(
                text,
                image=str(image) if image else None,
                k=k,
                modality=mod,
                mode=mode.value if mode else None,
                where=conditions or None,
                explain=explain,
                fusion_weight=fusion_weight,
                group_by=group_by.value if group_by else None,
            )
            shown_mode = mode.value if mode else ("hybrid" if r.stats(probe=False).built else "dense")
    label = query if query is not None else (f"image {image} + {text!r}" if composed else text if text is not None else f"image {image}")
    title = f"{label!r} · {shown_mode} · {len(hits)} hits"
    if json_out:
        render.print_json([_hit_dict(h, explain) for h in hits])
    else:
        console.print(hits_table(hits, title, explain))
        if boolean_info is not None:
            _print_boolean_explain(boolean_info)
    if save is not None:
        from .sheet import save_sheet

        out = save_sheet(hits, save, title)
        note(f"Saved a contact sheet of {len(hits)} hits to {out}")


def _parse(query: str) -> Any:
    """``Q.parse``, with a caret under the position of a syntax error."""
    from ..errors import QuerySyntaxError
    from ..setops import Q

    try:
        return Q.parse(query)
    except QuerySyntaxError as exc:
        render.error(str(exc))
        if 0 <= exc.position <= len(query):
            render.err_console.print(Text(f"  {query}\n  {' ' * exc.position}") + Text("^", style="bold red"))
        raise typer.Exit(1) from None


def _hit_dict(hit: Any, explain: bool) -> dict[str, Any]:
    d = asdict(hit)
    d["docid"] = list(hit.docid)
    if not explain:
        d.pop("explain", None)
    return d


def hits_table(hits: list[Any], title: str, explain: bool = False, relation: bool = False) -> Table:
    """Hits as a table: rank, score, kind, id, then the caption or text and the file.

    ``relation`` adds how a :meth:`related` hit relates (linked or nearest) under its kind.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold", expand=False)
    table.add_column("#", justify="right", style="bold cyan", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    id_column = console.width >= 100  # a UUID is 36 characters: below 100 columns it goes under the document
    if id_column:
        table.add_column("id", no_wrap=True, style="dim")
    table.add_column("document", overflow="fold", min_width=24)
    for i, h in enumerate(hits, 1):
        doc = Text()
        if h.text:
            doc.append(h.text if len(h.text) <= 160 else h.text[:157] + "...")
        if h.uri:
            at = f" @ {h.t:.1f} s" if getattr(h, "t", None) is not None else ""
            doc.append(("\n" if h.text else "") + _display_path(h.uri) + at, style="dim")
        if getattr(h, "moments", ()):
            doc.append("\nmoments " + ", ".join(f"{m.t:.1f} s ({m.score:.3f})" for m in h.moments), style="dim")
        if h.payload:
            # one line in the document column (what the id column leaves of the terminal)
            limit = max(30, console.width - (64 if id_column else 26))
            doc.append(("\n" if len(doc) else "") + _payload_line(h.payload, limit), style="green")
        if explain:
            doc.append(("\n" if len(doc) else "") + _explain_line(h), style="magenta")
        if not id_column:
            doc.append(("\n" if len(doc) else "") + f"id {h.id}", style="dim")
        kind = Text(h.modality or "-")
        if relation:
            kind.append("\n" + str((h.explain or {}).get("relation", "")), style="dim")
        table.add_row(str(i), f"{h.score:.3f}", kind, *([str(h.id)] if id_column else []), doc)
    if not hits:
        table.caption = "no hits"
    return table


def _display_path(uri: str) -> str:
    try:
        return str(Path(uri).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return uri


def _payload_line(payload: dict[str, Any], limit: int = 64) -> str:
    """The payload on one short line: ``keywords=animal,bird · source=...`` cut at ``limit`` characters."""
    parts = []
    for key, value in payload.items():
        shown = ",".join(str(x) for x in value) if isinstance(value, (list, tuple)) else str(value)
        parts.append(f"{key}={shown}")
    line = " · ".join(parts)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _explain_line(h: Any) -> str:
    e = h.explain or {}
    parts = [f"docid {'.'.join(str(x) for x in h.docid) or '-'}"]
    mode = e.get("mode") or e.get("relation")
    if mode:
        parts.append(str(mode))
    if "vector_score" in e:
        parts.append(f"cos {e['vector_score']:.3f}")
    if e.get("linked_id") is not None:
        parts.append(f"+ linked doc cos {e.get('linked_score', 0):.3f}")  # its id is in --json output
    if "prefix" in e:
        parts.append(f"prefix {'.'.join(str(x) for x in e['prefix'])} p={e.get('prefix_prob', 0):.2f}")
    if "beam_logprob" in e:
        parts.append(f"beam logp {e['beam_logprob']:.2f}")
    return " · ".join(parts)


def _print_boolean_explain(info: dict[str, Any]) -> None:
    table = Table(title="Boolean query terms", box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")
    table.add_column("term")
    table.add_column("kind")
    table.add_column("polarity")
    table.add_column("docid prefixes", overflow="fold")
    for atom in info.get("atoms", []):
        prefixes = atom.get("prefixes")
        table.add_row(
            str(atom.get("term")),
            str(atom.get("kind")),
            str(atom.get("polarity")),
            ", ".join(prefixes[:12]) + (" ..." if len(prefixes) > 12 else "") if prefixes else "-",
        )
    if info.get("ranking"):
        table.caption = f"ranking: {info['ranking']}"
        table.caption_justify = "left"
    console.print(table)


def related(
    id: Annotated[str, typer.Argument(help="The document's id (as search prints it).", show_default=False)],
    k: KOpt = 10,
    modality: ModalityOpt = None,
    json_out: JsonOpt = False,
    save: SaveOpt = None,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Documents related to one: its linked documents (an image's caption) first, then its neighbours.

    Example: mmgr related 1b4e28ba-2fa1-11d2-883f-0016d3cca427 --modality text
    """
    c = conn(collection, path, url, api_key)
    with open_index(c) as r:
        hits = r.related(parse_id(id), modality=modality.value if modality else None, k=k)
    title = f"related to {id} · {len(hits)} hits"
    if json_out:
        render.print_json([_hit_dict(h, True) for h in hits])
    else:
        console.print(hits_table(hits, title, relation=True))
    if save is not None:
        from .sheet import save_sheet

        note(f"Saved a contact sheet to {save_sheet(hits, save, title)}")


def delete(
    ids: Annotated[list[str], typer.Argument(help="Ids of the documents to delete.", show_default=False)],
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Delete documents by id (all or none: an unknown id deletes nothing).

    Example: mmgr delete 1b4e28ba-2fa1-11d2-883f-0016d3cca427 42
    """
    c = conn(collection, path, url, api_key)
    wanted = [parse_id(i) for i in ids]
    with open_index(c) as r:
        r.delete(wanted)
        left = r.count()
    console.print(f"Deleted {len(wanted)} document{'s' if len(wanted) != 1 else ''}; {left:,} left in {c.collection!r}.")


def eval_(
    queries: Annotated[
        Path,
        typer.Argument(
            help='JSONL: {"query": ..., "relevant": [ids]} or {"query": ..., "label": ..., "label_field": ...} per line.',
            show_default=False,
        ),
    ],
    k: KOpt = 10,
    modes: Annotated[
        list[Mode] | None, typer.Option("--mode", help="A mode to measure (repeatable); default: hybrid, generative and dense.")
    ] = None,
    modality: ModalityOpt = None,
    label_field: Annotated[str, typer.Option("--label-field", help="Payload field holding labels, for queries that name none.")] = "label",
    json_out: JsonOpt = False,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Measure precision@k, recall@k, MRR and latency of hybrid, generative and dense search side by side.

    Example: mmgr eval queries.jsonl -k 10 --label-field class
    """
    from ..evaluation import evaluate_search, load_queries

    c = conn(collection, path, url, api_key)
    qs = load_queries(queries, label_field=label_field)
    with open_index(c) as r, render.status(f"running {len(qs)} queries in each mode ..."):
        report = evaluate_search(
            r,
            qs,
            k=k,
            modes=[m.value for m in modes] if modes else None,
            modality=modality.value if modality else None,
            label_field=label_field,
        )
    if json_out:
        render.print_json(report.as_dict())
        return
    table = Table(
        title=f"Retrieval quality @ k={k} over {report.n_queries} queries", box=box.SIMPLE_HEAD, title_justify="left", title_style="bold"
    )
    for name in ("mode", f"P@{k}", f"R@{k}", "MRR", f"hit@{k}", "ms mean", "ms p50", "ms p95"):
        table.add_column(name, justify="left" if name == "mode" else "right")
    for mode, m in report.modes.items():
        table.add_row(
            mode,
            fmt(m.precision),
            fmt(m.recall),
            fmt(m.mrr),
            fmt(m.hit_rate),
            f"{m.latency_ms_mean:.1f}",
            f"{m.latency_ms_p50:.1f}",
            f"{m.latency_ms_p95:.1f}",
        )
    ratios = [
        f"{mode}/dense recall {report.ratio('recall', mode):.2f}"
        for mode in report.modes
        if mode != "dense" and report.ratio("recall", mode) is not None
    ]
    if ratios:
        table.caption = "; ".join(ratios)
        table.caption_justify = "left"
    console.print(table)
    for mode, why in report.unavailable.items():
        note(f"[yellow]{mode}: not measured ({why})[/]")
    if report.skipped:
        n = len(report.skipped)
        note(
            f"[yellow]{n} {'query' if n == 1 else 'queries'} skipped (no relevant document in the index), e.g. {report.skipped[0][0]!r}[/]"
        )
    if report.n_queries == 0:
        raise InputError(f"None of the {len(qs)} queries has a relevant document in {c.collection!r}; check the ids or the label field.")
