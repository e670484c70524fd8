"""Commands that teach the router from queries: learn (a JSONL file of judged queries) and feedback (one judgement)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError, MMGRError
from .connect import ApiKeyOpt, CollectionOpt, PathOpt, UrlOpt, conn, open_index, parse_id
from .render import console, note

_CHUNK = 256  # lines sent to learn() at once; a chunk with a bad line is retried line by line


def register(app: typer.Typer) -> None:
    app.command()(learn)
    app.command()(feedback)


def _parse_line(raw: str, base: Path) -> tuple[Any, list[Any], list[float] | None, str]:
    """One JSONL line as (query, ids, grades, kind); raises InputError saying what is wrong."""
    try:
        row = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"not JSON ({exc})") from None
    if not isinstance(row, dict):
        raise InputError("not a JSON object")
    has_q, has_i = "query" in row, "image" in row
    if has_q == has_i:
        raise InputError('give exactly one of "query" and "image"')
    ids = row.get("ids")
    if not isinstance(ids, list) or not ids:
        raise InputError('"ids" must be a non-empty list of document ids')
    grades = row.get("grades")
    if grades is not None and (not isinstance(grades, list) or len(grades) != len(ids)):
        raise InputError('"grades" must be a list with one number per id')
    if has_q:
        if not isinstance(row["query"], str) or not row["query"].strip():
            raise InputError('"query" must be a non-empty string')
        return row["query"], [parse_id(str(i)) if isinstance(i, str) else i for i in ids], grades, "text"
    path = Path(str(row["image"])).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise InputError(f"image {str(path)!r} not found")
    return str(path), [parse_id(str(i)) if isinstance(i, str) else i for i in ids], grades, "image"


def learn(
    pairs: Annotated[Path, typer.Argument(help='JSONL: {"query": TEXT, "ids": [...]} or {"image": PATH, "ids": [...]} per line '
                                               '(optional "grades": [...]).', show_default=False)],
    retrain: Annotated[bool, typer.Option("--retrain", help="Retrain the decoder afterwards.")] = False,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Store judged queries with the index; the next build or retrain learns them. Bad lines are skipped and reported.

    Example: mmgr learn clicks.jsonl --retrain
    """
    if not pairs.is_file():
        raise InputError(f"The file {str(pairs)!r} does not exist; give a JSONL file of queries and relevant ids.")
    lines = pairs.read_text(encoding="utf-8").splitlines()
    parsed: list[tuple[int, tuple[Any, list[Any], list[float] | None, str]]] = []
    skipped: list[tuple[int, str]] = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            parsed.append((n, _parse_line(raw, pairs.parent)))
        except InputError as exc:
            skipped.append((n, str(exc)))
    stored = 0
    c = conn(collection, path, url, api_key)
    with open_index(c) as r:
        for kind in ("text", "image"):
            rows = [(n, p) for n, p in parsed if p[3] == kind]
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                stored += _learn_chunk(r, chunk, kind, skipped)
        if retrain and stored:
            r.retrain()
    console.print(f"Learned {stored:,} pair{'s' if stored != 1 else ''} from {pairs.name} into {c.collection!r}.")
    for n, why in sorted(skipped)[:20]:
        note(f"  skipped line {n}: {why}")
    if len(skipped) > 20:
        note(f"  ... and {len(skipped) - 20} more skipped lines")
    if stored and not retrain:
        note(f"Next: mmgr retrain{c.flags()} (the decoder learns them then)")


def _learn_chunk(r: Any, chunk: list[tuple[int, tuple[Any, list[Any], list[float] | None, str]]], kind: str, skipped: list[tuple[int, str]]) -> int:
    if not chunk:
        return 0
    grades = None if all(p[2] is None for _, p in chunk) else [p[2] or [1.0] * len(p[1]) for _, p in chunk]
    try:
        return int(r.learn([p[0] for _, p in chunk], [p[1] for _, p in chunk], grades=grades, kind=kind))
    except MMGRError as exc:
        if len(chunk) == 1:
            skipped.append((chunk[0][0], str(exc)))
            return 0
    return sum(_learn_chunk(r, [row], kind, skipped) for row in chunk)


def feedback(
    id: Annotated[str, typer.Argument(help="Id of the document judged.", show_default=False)],
    query: Annotated[str | None, typer.Option("--query", "-q", help="The text query that was searched.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="The query image that was searched.")] = None,
    not_relevant: Annotated[bool, typer.Option("--not-relevant", help="A thumbs-down: forget this query -> document pair.")] = False,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Record one judgement: the document answered the query (a click), or with --not-relevant it did not.

    Example: mmgr feedback 42 --query "red running shoes"
    """
    c = conn(collection, path, url, api_key)
    with open_index(c) as r:
        r.feedback(query, parse_id(id), image=str(image) if image is not None else None, relevant=not not_relevant)
    console.print(f"Recorded {'negative' if not_relevant else 'positive'} feedback for {id} in {c.collection!r}.")
