"""`mmgr serve` under load: 8 concurrent local HTTP clients against in-process ``search()`` (issue 16).

Measures, in one run, on the sample index (examples/data: 300 clip-art images with their
captions as linked text documents, encoder ``lit:default``, built like ``make demo``):

- in-process: the same text queries through ``MultimodalRetriever.search`` from 8 threads, a fixed
  number of requests: QPS, p50, p99 (run before and after the HTTP run; the ratio uses their mean);
- over HTTP: ``mmgr serve`` in its own process on a free 127.0.0.1 port, 8 client threads with
  keep-alive connections (``http.client``) posting ``/search`` for the same queries: QPS, p50,
  p99, errors, and the server's own search time per request (``took_ms``, p50);
- the server's resident memory, sampled through the run: at the start, at the end, and the peak.

Targets: ``http_p50_over_inprocess`` <= 1.25, ``errors`` == 0, memory flat (``rss_growth_pct`` small).

Run: ``.venv/bin/python benchmarks/serve.py [--json] [--requests 800] [--clients 8]``
(``--path DIR --collection demo`` reuses an index ``make demo`` built instead of building one.)
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import parser, report, status_mb

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def load(fn: Any, queries: list[str], requests: int, clients: int) -> tuple[float, list[float], int]:
    """Run ``requests`` calls of ``fn(query)`` from ``clients`` threads; (wall seconds, latencies, errors)."""
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        nonlocal errors
        state: dict[str, Any] = {}
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            ok = fn(queries[i % len(queries)], state)
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                errors += 0 if ok else 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    return time.perf_counter() - t0, lat, errors


def build_sample(path: Path, collection: str, encoder: str | None) -> None:
    from mmgr_qdrant import MultimodalRetriever

    rows = [json.loads(line) for line in (DATA / "clipart.jsonl").read_text().splitlines() if line.strip()]
    kwargs = {"encoder": encoder} if encoder else {}
    with MultimodalRetriever.create(collection, path=path, **kwargs) as r:
        r.add_images([str(DATA / row["file"]) for row in rows], captions=[row["caption"] for row in rows], caption_docs=True)
        r.build()


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=800, help="requests per measured run")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--path", default=None, help="an existing store folder (default: build the sample index in a temp folder)")
    ap.add_argument("--collection", default="demo")
    ap.add_argument("--encoder", default=None, help="encoder for a fresh sample index (default: the library default)")
    args = ap.parse_args()

    from mmgr_qdrant import MultimodalRetriever

    if args.path is None:
        path = Path(tempfile.mkdtemp(prefix="mmgr-serve-")) / "store"
        t0 = time.perf_counter()
        build_sample(path, args.collection, args.encoder)
        print(f"built the sample index in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    else:
        path = Path(args.path)
    rows = [json.loads(line) for line in (DATA / "clipart.jsonl").read_text().splitlines() if line.strip()]
    queries = [f"a picture of {row['caption'].lower()}" for row in rows]

    def in_process() -> tuple[float, list[float], int, int]:
        with MultimodalRetriever.open(args.collection, path=path) as r:
            n_docs = r.count()

            def one(q: str, _: dict[str, Any]) -> bool:
                return len(r.search(q, k=args.k)) == args.k

            load(one, queries, 50, args.clients)  # warm-up: encoder, router, caches
            wall, lat, errors = load(one, queries, args.requests, args.clients)
        return wall, lat, errors, n_docs

    wall_a, lat_a, err_a, n_docs = in_process()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", "from mmgr_qdrant.cli import main; main()", "serve", "--path", str(path),
           "--collection", args.collection, "--port", str(port), "--log-level", "warning", "--max-k", str(max(args.k, 100))]
    with open(Path(tempfile.mkdtemp(prefix="mmgr-serve-log-")) / "serve.log", "w+") as log:  # a file: a full pipe would stall the server
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"mmgr serve exited with {proc.returncode}: {log.read()[-2000:]}")
                try:
                    with urllib.request.urlopen(url + "/health", timeout=5) as res:
                        if res.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("mmgr serve did not answer /health within 180 s")
                time.sleep(0.3)

            took: list[float] = []
            took_lock = threading.Lock()

            def one_http(q: str, state: dict[str, Any]) -> bool:
                conn = state.get("conn")
                if conn is None:  # one keep-alive connection per client thread (the standard library's client: little CPU)
                    conn = state["conn"] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                try:
                    conn.request("POST", "/search", body=json.dumps({"text": q, "k": args.k}), headers={"Content-Type": "application/json"})
                    res = conn.getresponse()
                    raw = res.read()
                except (OSError, http.client.HTTPException):
                    state.pop("conn").close()
                    return False
                if res.status != 200:
                    return False
                body = json.loads(raw)
                with took_lock:
                    took.append(body["took_ms"] / 1000)
                return len(body["hits"]) == args.k

            load(one_http, queries, 50, args.clients)  # warm-up
            samples: list[float] = [status_mb("VmRSS", proc.pid)]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.2):
                    samples.append(status_mb("VmRSS", proc.pid))

            took.clear()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            wall_h, lat_h, err_h = load(one_http, queries, args.requests, args.clients)
            stop.set()
            sampler.join()
            samples.append(status_mb("VmRSS", proc.pid))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.seek(0)
            print(f"server log: {len(log.read().splitlines())} lines ({log.name})", file=sys.stderr)

    wall_b, lat_b, err_b, _ = in_process()

    p50_in = (statistics.median(lat_a) + statistics.median(lat_b)) / 2
    p50_http = statistics.median(lat_h)
    half = len(samples) // 2
    figures = {
        "documents": n_docs,
        "clients": args.clients,
        "requests": args.requests,
        "k": args.k,
        "inprocess_qps": round(2 * args.requests / (wall_a + wall_b), 1),
        "inprocess_p50_ms": round(p50_in * 1000, 2),
        "inprocess_p99_ms": round(percentile(lat_a + lat_b, 99) * 1000, 2),
        "inprocess_p50_before_ms": round(statistics.median(lat_a) * 1000, 2),
        "inprocess_p50_after_ms": round(statistics.median(lat_b) * 1000, 2),
        "http_qps": round(args.requests / wall_h, 1),
        "http_p50_ms": round(p50_http * 1000, 2),
        "http_p99_ms": round(percentile(lat_h, 99) * 1000, 2),
        "http_server_search_p50_ms": round(statistics.median(took) * 1000, 2),
        "http_p50_over_inprocess": round(p50_http / p50_in, 3),
        "http_qps_over_inprocess": round((args.requests / wall_h) / (2 * args.requests / (wall_a + wall_b)), 3),
        "errors": err_h,
        "inprocess_errors": err_a + err_b,
        "rss_start_mb": round(samples[0], 1),
        "rss_mid_mb": round(samples[half], 1),
        "rss_end_mb": round(samples[-1], 1),
        "rss_peak_mb": round(max(samples), 1),
        "rss_growth_pct": round(100 * (samples[-1] - samples[0]) / samples[0], 2),
        "rss_second_half_growth_pct": round(100 * (samples[-1] - samples[half]) / samples[half], 2),
    }
    report(f"mmgr serve: {args.clients} clients x {args.requests} requests, {n_docs} documents", list(figures.items()), figures, args.json)


if __name__ == "__main__":
    main()
