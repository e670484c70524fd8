"""The RAG examples run end to end, offline, as a user runs them (``python examples/X.py``).

Each runs in a subprocess with the tiny random-init encoder, so what is checked is the flow and the
output's shape, not answer quality.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TINY = ["--encoder", "open_clip:mmgr-tiny/none"]


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HAYSTACK_TELEMETRY_ENABLED": "False"}
    environ.pop("QDRANT_URL", None)
    environ.update(env or {})
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *TINY, *args],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=environ, check=False,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["rag.py", "quickstart_retriever.py", "qdrant_server.py"])
def test_examples_have_a_module_docstring(name: str) -> None:
    doc = load_example(name).__doc__
    assert doc and len(doc.strip().splitlines()) > 3


@pytest.mark.slow
def test_rag_example_prints_the_assembled_context() -> None:
    out = run_example("rag.py", "--limit", "20")
    assert "=== prompt sent to the LLM ===" in out
    assert "Text passages:" in out and "[T1]" in out and "[T3]" in out
    assert "Images (attached in this order):" in out and "[I1]" in out and "(file: " in out
    assert "Question: What do the signal flags mean" in out
    assert "[echo LLM placeholder]" in out and "3 text passages and 4 images" in out
    if (EXAMPLES / "data" / "clipart.jsonl").is_file():
        assert "examples/data/clipart/" in out


@pytest.mark.slow
def test_rag_example_generates_images_without_sample_data(tmp_path: Path) -> None:
    out = run_example("rag.py", "--data", str(tmp_path / "none"), "--k-images", "2", "--question", "a red flag")
    assert "generating a few images" in out and "sample_" in out and "[I2]" in out


def test_rag_llm_is_pluggable(tmp_path: Path) -> None:
    rag = load_example("rag.py")
    from mmgr_qdrant import MultimodalRetriever

    seen: dict[str, object] = {}

    def my_llm(prompt: str, images: Sequence[str]) -> str:
        seen.update(prompt=prompt, images=list(images))
        return "forty-two"

    with MultimodalRetriever.create("rag", path=tmp_path / "store", encoder=TINY[1]) as r:
        paths, payloads = rag.generated_images(tmp_path / "images")
        r.add_images(paths, payloads=payloads)
        r.add_texts([text for _, text in rag.NOTES], payloads=[{"source": s} for s, _ in rag.NOTES])
        prompt, reply = rag.answer(r, "Which flag starts a race?", my_llm, k_text=2, k_images=2)
    assert reply == "forty-two" and seen["prompt"] == prompt
    assert len(seen["images"]) == 2 and all(Path(p).name.startswith("sample_") for p in seen["images"])
    assert "[T2]" in prompt and "[T3]" not in prompt and "[I2]" in prompt and prompt.rstrip().endswith("Answer:")
    assert rag.load_llm("echo") is rag.echo_llm
    assert rag.load_llm("os.path:basename") is os.path.basename


@pytest.mark.slow
def test_quickstart_retriever_example_uses_every_framework() -> None:
    out = run_example("quickstart_retriever.py", "--limit", "5")
    # A framework whose integration is not installed is skipped by the example, with the pip line.
    if installed("langchain_mmgr"):
        assert "LangChain chain output:" in out and "LangChain image documents:" in out
    else:
        assert "LangChain: skipped" in out
    if installed("llama_index.retrievers.mmgr"):
        assert "LlamaIndex TextNode" in out and "LlamaIndex ImageNode" in out
    else:
        assert "LlamaIndex: skipped" in out
    if installed("haystack_integrations.components.retrievers.mmgr"):
        assert "Haystack documents:" in out
    else:
        assert "Haystack: skipped" in out


@pytest.mark.slow
def test_qdrant_server_example_falls_back_to_memory() -> None:
    out = run_example("qdrant_server.py")
    assert "QDRANT_URL is not set" in out and "holds 3 documents" in out
    assert "with where={'topic': 'food'}: ['Fresh bread" in out
