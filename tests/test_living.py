"""A living index: crash-safe resumable ingest, concurrent readers and a writer, rebuild while serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgr_qdrant import MultimodalRetriever
from tests.helpers import DECODER, TINY, clustered

INGEST = textwrap.dedent(
    """
    import sys, numpy as np
    from mmgr_qdrant import MultimodalRetriever
    root, n = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 64)).astype(np.float32)
    texts = [f"document number {i}" for i in range(n)]
    r = MultimodalRetriever.open("crash", path=root) if len(sys.argv) > 3 else MultimodalRetriever.create("crash", path=root, encoder={tiny!r}, exist_ok=True)
    def progress(stage, done, total, info):
        print(done, flush=True)
    r.add_embeddings(x, modality="text", texts=texts, batch_size=100, progress=progress)
    r.close()
    print("finished", flush=True)
    """
).replace("{tiny!r}", repr(TINY))


@pytest.mark.slow
def test_sigkill_during_ingest_then_rerun_stores_everything_once(tmp_path: Path) -> None:
    n = 3000
    script = tmp_path / "ingest.py"
    script.write_text(INGEST)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(n)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:  # kill it once some batches are in
        if line.strip().isdigit() and int(line) >= 1000:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(n), "again"], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "finished" in out.stdout
    with MultimodalRetriever.open("crash", path=tmp_path) as r:
        assert r.count() == n
        texts = sorted(h.text for page in [r.get([rec.id for rec in p]) for p in r.store.scroll(batch_size=1000)] for h in page)
        assert texts == sorted(f"document number {i}" for i in range(n))


def test_readers_and_a_writer_in_threads(connect: Any, tiny_encoder: Any) -> None:
    r = MultimodalRetriever.create("live", encoder=tiny_encoder, decoder_params=DECODER, **connect())
    x, _ = clustered(r.config.dim, seed=9)
    ids = list(r.add_embeddings(x[:200], modality="image"))
    r.build(epochs=2)
    deleted: set[Any] = set()
    lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                with lock:
                    gone = set(deleted)  # deletes that returned before this search started
                q = x[rng.integers(0, len(x))]
                hits = r.search(vector=q, k=10, mode=["hybrid", "dense", "generative"][seed % 3])
                assert not {h.id for h in hits} & gone, "a deleted id was returned after its delete"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(200, 300, 20):
            new = r.add_embeddings(x[i : i + 20], modality="image")
            assert r.search(vector=x[i], k=3)[0].id in new  # found by hybrid right after the add
            victims = ids[i - 200 : i - 190]
            r.delete(victims)
            with lock:
                deleted.update(victims)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    r.close()
    assert not errors, errors[0]


def test_rebuild_while_searches_run(connect: Any, tiny_encoder: Any) -> None:
    r = MultimodalRetriever.create("rb", encoder=tiny_encoder, decoder_params=DECODER, **connect())
    x, _ = clustered(r.config.dim, seed=11)
    r.add_embeddings(x, modality="image")
    r.build(epochs=2)
    served: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                served.append(len(r.search(vector=x[0], k=5)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    report = r.rebuild(epochs=2, seed=3)
    done.set()
    t.join(timeout=60)
    r.close()
    assert not errors, errors[0]
    assert report.generation == 2
    assert served and all(n == 5 for n in served)


def test_second_process_cannot_write_the_same_edge_folder(tmp_path: Path, tiny_encoder: Any) -> None:
    with MultimodalRetriever.create("lock", path=tmp_path, encoder=tiny_encoder) as r:
        r.add_texts(["kept"])
        code = f"from mmgr_qdrant import MultimodalRetriever\nMultimodalRetriever.open('lock', path={str(tmp_path)!r}).add_texts(['x'])"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 1 and "another process" in out.stderr
        assert r.count() == 1
        time.sleep(0)
