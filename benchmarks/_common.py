"""Small helpers shared by the benchmarks: a table printer and the ``--json`` last line."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print one JSON line with the figures last")
    return p


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def status_mb(field: str, pid: int | str = "self") -> float:
    """A memory line of ``/proc/<pid>/status`` (``VmRSS`` now, ``VmHWM`` the peak) in MB; NaN where there is none."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def report(title: str, rows: list[tuple[str, Any]], figures: dict[str, Any], as_json: bool) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}\n" + "-" * (width + 20))
    for name, value in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{name.ljust(width)}  {shown}")
    if as_json:
        print(json.dumps(figures, sort_keys=True))
