"""Rendering: the consoles, verbosity, progress bars and the tables every command shares.

Results go to stdout; progress, notes and errors go to stderr, so ``mmgr search --json ... | jq``
reads clean JSON.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.table import Column, Table
from rich.text import Text

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@dataclass
class UIState:
    """Verbosity, set once per invocation by the root callback."""

    verbose: bool = False
    quiet: bool = False


ui = UIState()
_handler: logging.Handler | None = None


def setup(verbose: bool, quiet: bool) -> None:
    """Set verbosity and logging: the library at DEBUG with --verbose, everything at ERROR with --quiet.

    One rich handler on the root logger renders every library's warnings alike (and stops
    ``logging.warning()`` in third-party code from installing its own plain handler).
    """
    global _handler
    ui.verbose, ui.quiet = verbose, quiet and not verbose
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = RichHandler(console=err_console, show_time=False, show_path=verbose, rich_tracebacks=True, markup=False)
    root.addHandler(_handler)
    root.setLevel(logging.ERROR if ui.quiet else logging.WARNING)
    logging.getLogger("mmgr_qdrant").setLevel(logging.DEBUG if verbose else logging.NOTSET)


def note(message: str) -> None:
    """A line for people (stderr); silent with ``--quiet``."""
    if not ui.quiet:
        err_console.print(message)


def status(message: str) -> Any:
    """A spinner with a message on stderr while something without progress runs (nothing with --quiet)."""
    from contextlib import nullcontext

    return nullcontext() if ui.quiet else err_console.status(message, spinner="dots")


def error(message: str) -> None:
    """An error line in red (stderr), never silenced."""
    err_console.print(Text("Error: ", style="bold red") + Text(message, style="red"))


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no colours, no wrapping) for scripts."""
    import typer

    typer.echo(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


# -- progress ---------------------------------------------------------------------------------------
STAGE_LABELS = {
    "add": "embedding + storing",
    "scan": "reading vectors",
    "fit": "fitting docids",
    "refine": "refining codebooks",
    "assign": "assigning docids",
    "train": "training decoder",
    "write": "writing docids",
    "export": "exporting points",
    "import": "importing points",
    "features": "image features",
    "texts": "text embeddings",
}
_INFO_KEYS = ("loss", "val_loss", "val_accuracy", "mse", "val_t2i_recall10", "epoch")
_INFO_NAMES = {"val_loss": "val", "val_accuracy": "acc", "val_t2i_recall10": "R@10", "epoch": "ep"}


class RateColumn(ProgressColumn):
    """Items per second, from rich's own speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        took = task.finished_time or task.elapsed or 0.0
        if speed is None and task.completed and took > 0.05:
            speed = task.completed / took  # one update only: the average
        if speed is None:
            return Text("     -/s", style="progress.data.speed")
        if speed >= 1e6:
            unit = f"{speed / 1e6:.1f}M"
        elif speed >= 1e4:
            unit = f"{speed / 1e3:.0f}k"
        else:
            unit = f"{speed:.0f}" if speed >= 10 else f"{speed:.1f}"
        return Text(f"{unit:>6}/s", style="progress.data.speed")


class TimeColumn(ProgressColumn):
    """``eta 0:00:12`` while a stage runs, its elapsed time once it is done."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text(f"    {_clock(task.finished_time or task.elapsed or 0)}", style="progress.elapsed")
        remaining = task.time_remaining
        return Text(f"eta {_clock(remaining) if remaining is not None else '-:--:--'}", style="progress.remaining")


def _clock(sec: float) -> str:
    sec = int(max(0, sec))
    return f"{sec // 3600}:{sec % 3600 // 60:02d}:{sec % 60:02d}"


class ProgressBars:
    """Renders the library's ``progress(stage, done, total, info)`` callbacks as rich bars, one per stage.

    Use as a context manager and pass the object (or :meth:`labelled`) as ``progress=``.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = (not ui.quiet) if enabled is None else enabled
        narrow = err_console.width < 100  # keep every column on one line in an 80-column terminal
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]✔[/]"),
            TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=17 if narrow else 19)),
            BarColumn(bar_width=8 if narrow else 16),
            MofNCompleteColumn(table_column=Column(no_wrap=True, justify="right")),
            RateColumn(table_column=Column(no_wrap=True, min_width=8)),
            TimeColumn(table_column=Column(no_wrap=True, min_width=11)),
            TextColumn(
                "{task.fields[info]}", style="dim", table_column=Column(overflow="ellipsis", no_wrap=True, max_width=18 if narrow else 34)
            ),
            console=err_console,
            transient=False,
            disable=not self.enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressBars:  # noqa: PYI034 - final class, no Self needed
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        # A stage that stopped early (training's patience) ends at what it did, not at a stuck bar.
        for tid in self._tasks.values():
            task = self._progress.tasks[tid]
            if not task.finished:
                speed = task.speed
                self._progress.update(tid, total=max(task.completed, 1), completed=max(task.completed, 1))
                task.finished_speed = speed  # a new total resets rich's samples: keep the rate measured
        self._progress.__exit__(None, None, None)

    def __call__(self, stage: str, done: int, total: int | None, info: dict[str, float]) -> None:
        self.update(STAGE_LABELS.get(stage, stage), done, total, info)

    def labelled(self, label: str) -> Any:
        """A callback that shows every stage under one label (for calls whose stages repeat)."""

        def callback(stage: str, done: int, total: int | None, info: dict[str, float]) -> None:
            self.update(label, done, total, info)

        return callback

    def update(self, label: str, done: int, total: int | None, info: dict[str, float]) -> None:
        if not self.enabled:
            return
        tid = self._tasks.get(label)
        if tid is None:
            tid = self._tasks[label] = self._progress.add_task(label, total=total, info="")
        self._progress.update(tid, completed=done, total=total, info=_info_text(info))


def _info_text(info: dict[str, float]) -> str:
    parts = []
    for key in _INFO_KEYS:
        v = info.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        name = _INFO_NAMES.get(key, key)
        parts.append(f"{name} {int(v)}" if key == "epoch" else f"{name} {v:.3f}")
    return " ".join(parts[:3])


@contextmanager
def progress_bars() -> Iterator[ProgressBars]:
    """``with progress_bars() as bars: r.build(progress=bars)``."""
    with ProgressBars() as bars:
        yield bars


# -- tables ---------------------------------------------------------------------------------------
def kv_table(title: str | None, rows: Sequence[tuple[str, Any]]) -> Table:
    """A two-column key / value table."""
    table = Table(title=title, show_header=False, box=box.ROUNDED, title_justify="left", title_style="bold")
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else fmt(value))
    return table


def fmt(value: Any, digits: int = 3) -> str:
    """A value as a short string: floats rounded, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 60 else f"{int(value // 60)} min {value % 60:.0f} s"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def docid_table(stats: dict[str, Any], title: str = "Docid balance per level") -> Table:
    """Per-level codebook usage and bucket sizes, from ``DocidStats.as_dict()``."""
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")
    for name in ("level", "codebook", "used", "usage", "perplexity", "buckets", "largest", "mean"):
        table.add_column(name, justify="right")
    for lv in stats.get("levels", []):
        level = int(lv["level"])
        usage = float(lv["usage"])
        style = "red" if level > 0 and usage < 0.3 else ""
        table.add_row(
            "modality" if level == 0 else str(level),
            fmt(lv["codebook_size"]),
            fmt(lv["used"]),
            Text(f"{usage:.0%}", style=style),
            f"{float(lv['perplexity']):.1f}",
            fmt(lv.get("buckets")),
            fmt(lv["largest_bucket"]),
            f"{float(lv['mean_bucket']):.1f}",
        )
    if "collision_rate" in stats:
        table.caption = f"collision rate {float(stats['collision_rate']):.1%} (documents sharing a semantic docid before the tie-break)"
        table.caption_justify = "left"
    return table


def build_tables(report: Any, what: str = "Build") -> list[Table]:
    """The summary and docid tables of a ``BuildReport``."""
    t = report.train
    acc = t.get("val_accuracy")
    rows: list[tuple[str, Any]] = [
        ("documents", report.n_docs),
        ("generation", report.generation),
        ("decoder epochs", f"{t.get('epochs_run', '-')} (best {t.get('best_epoch', '-')}, stopped: {t.get('stop_reason', '-')})"),
        ("train loss", t.get("train_loss")),
        ("val accuracy", "-" if acc is None or (isinstance(acc, float) and math.isnan(acc)) else f"{acc:.1%} (whole docid right)"),
        ("decoder size", f"{t.get('n_parameters', 0):,} parameters on {t.get('device', '?')}"),
        ("time", f"fit {seconds(report.fit_s)}, train {seconds(report.train_s)}, total {seconds(report.total_s)}"),
    ]
    return [kv_table(f"{what} done", rows), docid_table(report.docid_stats)]
