"""The ``mmgr`` CLI end to end with typer's CliRunner: one small index built once, shared by the tests.

The data: 12 generated PNGs in three colour folders, each with a sidecar caption, plus one corrupt
file; the tiny random-init open_clip encoder; a decoder trained for a few epochs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.main import get_command
from typer.testing import CliRunner

from mmgr_qdrant.cli import app
from mmgr_qdrant.cli.sheet import sheet_size
from tests.helpers import CLI_ENV, mmgr

TINY = "open_clip:mmgr-tiny/none"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
ENV = CLI_ENV
runner = CliRunner()


def ok(*args: Any) -> Any:
    result = mmgr(*args)
    assert result.exit_code == 0, f"mmgr {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}\n{result.exception!r}"
    return result


@dataclass
class Index:
    root: Path
    store: Path
    pics: Path
    ingest_output: str
    build_output: str

    def conn(self, collection: str = "photos") -> list[str]:
        return ["--path", str(self.store), "--collection", collection]


def make_pictures(folder: Path) -> None:
    """Three colours x four noisy squares, sidecar captions, and a corrupt PNG."""
    for c, (name, rgb) in enumerate(COLOURS.items()):
        sub = folder / name
        sub.mkdir(parents=True)
        for j in range(4):
            rng = np.random.default_rng(10 * c + j)
            a = np.clip(np.asarray(rgb) + rng.integers(-40, 40, (40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(sub / f"{name}_{j}.png")
            (sub / f"{name}_{j}.txt").write_text(f"a {name} square, number {j}\n\nsecond line ignored\n")
    (folder / "broken.png").write_bytes(b"this is not a PNG")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("cli")
    pics = root / "pics"
    make_pictures(pics)
    store = root / "store"
    ix = Index(root, store, pics, "", "")
    ok("init", "--encoder", TINY, "--levels", "2", "--codebook-size", "4", *ix.conn())
    ix.ingest_output = ok("ingest", pics, "--recursive", "--caption-docs", "--folder-label", "colour", *ix.conn()).output
    ix.build_output = ok("build", "--epochs", "3", *ix.conn()).output
    yield ix


def search_json(ix: Index, *args: Any, collection: str = "photos", path: Path | None = None) -> list[dict[str, Any]]:
    conn = ["--path", str(path or ix.store), "--collection", collection]
    result = ok("search", *args, "--json", *conn)
    return json.loads(result.stdout)


# -- help, version, exit codes -----------------------------------------------------------------------
def test_every_command_has_help_with_an_example() -> None:
    group = get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    assert {
        "init",
        "ingest",
        "build",
        "search",
        "related",
        "delete",
        "stats",
        "eval",
        "retrain",
        "rebuild",
        "list",
        "drop",
        "export",
        "import",
        "doctor",
        "train-encoder",
        "info",
    } <= set(names)
    for name in names:
        result = mmgr(name, "--help")
        assert result.exit_code == 0, name
        assert "Example" in result.output, f"`mmgr {name} --help` shows no example"
        assert "Usage: mmgr " + name in result.output
    assert "Example" in mmgr("--help").output


def test_version() -> None:
    result = ok("--version")
    assert result.output.startswith("mmgr-qdrant ")


def test_usage_errors_exit_2(index: Index) -> None:
    assert mmgr("search", *index.conn()).exit_code == 2  # no query at all
    assert mmgr("search", "-q", "cat", "--image", index.pics / "red" / "red_0.png", *index.conn()).exit_code == 2
    assert mmgr("search", "cat", "--fusion-weight", "0.5", *index.conn()).exit_code == 2  # needs TEXT with --image
    assert mmgr("search", "cat", "--image", index.pics / "red" / "red_0.png", "--fusion-weight", "1.5", *index.conn()).exit_code == 2
    assert mmgr("search", "cat", "--mode", "psychic", *index.conn()).exit_code == 2
    assert mmgr("search", "cat", "-k", "0", *index.conn()).exit_code == 2
    assert mmgr("search", "cat", "--save", index.root / "out.gif", *index.conn()).exit_code == 2
    assert mmgr("frobnicate").exit_code == 2


def test_library_errors_exit_1_with_a_message_and_no_traceback(index: Index) -> None:
    result = mmgr("search", "cat", *index.conn("missing"))
    assert result.exit_code == 1
    assert "does not exist" in result.output and "mmgr init" in result.output
    assert "Traceback" not in result.output
    result = mmgr("delete", "12345", *index.conn())
    assert result.exit_code == 1 and "nothing was deleted" in result.output


def test_verbose_shows_the_traceback(index: Index) -> None:
    result = runner.invoke(app, ["--verbose", "search", "cat", *index.conn("missing")], prog_name="mmgr", env=ENV)
    assert result.exit_code == 1
    assert "Traceback" in result.output


def test_boolean_syntax_error_points_at_the_position(index: Index) -> None:
    result = mmgr("search", "-q", "red AND (blue", *index.conn())
    assert result.exit_code == 1
    assert "position 13" in result.output
    assert "  red AND (blue\n" in result.output and "^" in result.output


# -- ingest and build ------------------------------------------------------------------------------------
def test_ingest_stores_images_and_reports_the_corrupt_file(index: Index) -> None:
    out = index.ingest_output
    assert "images stored" in out and "12" in out
    assert "captions stored as texts" in out
    assert "Skipped (1)" in out and "broken.png" in out and "cannot be read as an image" in out


def test_build_prints_training_and_docid_figures(index: Index) -> None:
    out = index.build_output
    assert "Build done" in out and "documents" in out and "24" in out
    assert "Docid balance per level" in out and "modality" in out
    assert "training decoder" in out  # the progress bar's stage


def test_ingest_needs_an_existing_collection(index: Index) -> None:
    result = mmgr("ingest", index.pics, *index.conn("nope"))
    assert result.exit_code == 1 and "mmgr init --collection nope" in result.output


def test_ingest_manifest_with_payloads_and_texts(index: Index, tmp_path: Path) -> None:
    manifest = tmp_path / "items.jsonl"
    lines = [
        {"image": str(index.pics / "red" / "red_0.png"), "caption": "red one", "payload": {"shop": "a"}},
        {"file": str(index.pics / "blue" / "blue_0.png"), "caption": ["blue one", "alt"], "keywords": ["k1"]},
        {"text": "a note about green things", "payload": {"shop": "b"}},
        {"image": "does/not/exist.png"},
    ]
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    conn = ["--path", tmp_path / "store", "--collection", "m"]
    ok("init", "--encoder", TINY, *conn)
    out = ok("ingest", manifest, *conn).output
    assert "images stored" in out and "texts stored" in out and "Skipped (1)" in out and "exist.png" in out
    hits = json.loads(ok("search", "red one", "--json", "-k", "5", *conn).stdout)  # not built: dense
    by_text = {h["text"]: h for h in hits}
    assert by_text["red one"]["payload"] == {"shop": "a"}
    assert by_text["blue one"]["payload"] == {"keywords": ["k1"]}
    assert by_text["a note about green things"]["modality"] == "text"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.png"}\nnot json\n')
    result = mmgr("ingest", bad, *conn)
    assert result.exit_code == 1 and "Line 2" in result.output


# -- search -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["hybrid", "generative", "dense"])
def test_search_every_mode(index: Index, mode: str) -> None:
    result = ok("search", "a red square", "--mode", mode, "-k", "4", *index.conn())
    assert f"'a red square' · {mode}" in result.output
    hits = search_json(index, "a red square", "--mode", mode, "-k", "4")
    assert 1 <= len(hits) <= 4
    assert all(set(h) >= {"id", "score", "docid", "modality", "payload", "uri", "text"} for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_search_default_mode_is_hybrid_once_built(index: Index) -> None:
    assert "· hybrid ·" in ok("search", "blue", *index.conn()).output


def test_search_by_image_finds_that_image_first(index: Index) -> None:
    query = index.pics / "green" / "green_2.png"
    hits = search_json(index, "--image", query, "--mode", "dense", "--modality", "image", "-k", "3")
    assert Path(hits[0]["uri"]).name == "green_2.png"
    assert all(h["modality"] == "image" for h in hits)
    assert hits[0]["payload"] == {"colour": "green"}


def test_search_boolean_query(index: Index) -> None:
    result = ok("search", "-q", "red AND NOT blue", "-k", "5", "--explain", *index.conn())
    assert "boolean" in result.output and "Boolean query terms" in result.output
    hits = search_json(index, "-q", "modality:image AND colour=red", "-k", "10")
    assert hits and all(h["modality"] == "image" and h["payload"]["colour"] == "red" for h in hits)
    assert len(hits) == 4


def test_plain_text_is_never_boolean(index: Index) -> None:
    result = ok("search", "red AND blue", "-k", "2", *index.conn())
    assert "plain text" in result.output and "-q" in result.output


def test_search_where_and_explain(index: Index) -> None:
    hits = search_json(index, "square", "--where", "colour=blue", "--modality", "image", "--explain", "-k", "10")
    assert len(hits) == 4 and all(h["payload"]["colour"] == "blue" for h in hits)
    assert all(h["explain"] for h in hits)
    out = ok("search", "square", "--explain", "-k", "2", *index.conn()).output
    assert "docid" in out and "cos" in out


def test_search_save_writes_a_contact_sheet(index: Index) -> None:
    out = index.root / "sheets" / "results.png"
    result = ok("search", "a green square", "-k", "7", "--save", out, *index.conn())
    assert "Saved a contact sheet of 7 hits" in result.output
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == sheet_size(7) == (5 * 170 + 10, 30 + 2 * 208 + 10)
        assert im.getbbox() is not None  # something was drawn


def test_related_lists_the_linked_caption_first(index: Index) -> None:
    img = search_json(index, "--image", index.pics / "red" / "red_1.png", "--mode", "dense", "--modality", "image", "-k", "1")[0]
    result = ok("related", img["id"], "--modality", "text", "-k", "3", "--json", *index.conn())
    hits = json.loads(result.stdout)
    assert hits[0]["text"] == "a red square, number 1"
    assert hits[0]["explain"]["relation"] == "linked"
    assert "linked" in ok("related", img["id"], "-k", "2", *index.conn()).output


def test_stats(index: Index) -> None:
    out = ok("stats", "--no-probe", *index.conn()).output
    assert "24 (12 images, 12 texts)" in out
    assert "Docid balance per level" in out and "Staleness" in out
    data = json.loads(ok("stats", "--json", "--no-probe", *index.conn()).stdout)
    assert data["counts"] == {"text": 12, "image": 12, "video": 0, "total": 24} and data["built"] is True


def test_eval_prints_figures_for_every_mode(index: Index) -> None:
    red = search_json(index, "-q", "modality:image AND colour=red", "-k", "10")
    queries = index.root / "queries.jsonl"
    queries.write_text(
        "\n".join(
            json.dumps(q)
            for q in [
                {"query": "a red square", "relevant": [h["id"] for h in red]},
                {"query": "a blue square", "label": "blue", "label_field": "colour"},
                {"image": str(index.pics / "green" / "green_0.png"), "label": "green", "label_field": "colour"},
                {"query": "nothing", "label": "purple", "label_field": "colour"},
            ]
        )
        + "\n"
    )
    out = ok("eval", queries, "-k", "5", *index.conn()).output
    for word in ("hybrid", "generative", "dense", "P@5", "R@5", "MRR", "ms mean", "over 3 queries", "1 query skipped"):
        assert word in out, word
    data = json.loads(ok("eval", queries, "-k", "5", "--mode", "dense", "--json", *index.conn()).stdout)
    assert list(data["modes"]) == ["dense"]
    assert 0.0 <= data["modes"]["dense"]["recall"] <= 1.0 and data["modes"]["dense"]["latency_ms_mean"] > 0


# -- export / import, list, drop --------------------------------------------------------------------------
def test_export_import_into_a_fresh_store_gives_the_same_results(index: Index) -> None:
    file = index.root / "photos.mmgr"
    ok("export", file, *index.conn())
    assert file.is_file()
    assert mmgr("export", file, *index.conn()).exit_code == 2  # exists, no --force
    fresh = index.root / "fresh"
    result = ok("import", file, "--path", fresh)
    assert "Imported 'photos'" in result.output and "24 documents" in result.output
    for args in (
        ["a red square", "--mode", "hybrid"],
        ["a red square", "--mode", "generative"],
        ["blue", "--mode", "dense"],
        ["-q", "red AND NOT blue"],
    ):
        a = search_json(index, *args, "-k", "5")
        b = search_json(index, *args, "-k", "5", path=fresh)
        assert [h["id"] for h in a] == [h["id"] for h in b], args
        assert np.allclose([h["score"] for h in a], [h["score"] for h in b], atol=1e-4)
    # the copy is independent: deleting there leaves the original alone
    victim = search_json(index, "blue", "-k", "1", path=fresh)[0]["id"]
    assert "Deleted 1 document; 23 left" in ok("delete", victim, "--path", fresh, "--collection", "photos").output
    assert victim in [h["id"] for h in search_json(index, "blue", "-k", "1")]


def test_list_and_drop(index: Index, tmp_path: Path) -> None:
    conn = ["--path", tmp_path, "--collection", "tmp"]
    ok("init", "--encoder", TINY, *conn)
    listing = ok("list", "--path", tmp_path).output
    assert "tmp" in listing and TINY in listing
    refused = mmgr("drop", *conn, input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert "tmp" in ok("list", "--path", tmp_path).output
    ok("drop", "--yes", *conn)
    assert "No mmgr collections" in ok("list", "--path", tmp_path).output


def test_doctor(index: Index) -> None:
    out = ok("doctor", "--encoder", TINY, *index.conn()).output
    for word in ("mmgr-qdrant", "HF_HUB_OFFLINE", "device", "store", "collection 'photos'", f"encoder {TINY}", "loads offline"):
        assert word in out, word
    failed = mmgr("doctor", "--encoder", "nonsense:thing", *index.conn())
    assert failed.exit_code == 1 and "FAIL" in failed.output


def test_train_encoder_reports_too_little_data(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    result = mmgr("train-encoder", tmp_path, "-o", tmp_path / "head.safetensors", "--min-pairs", "10")
    assert result.exit_code == 1
    assert "usable image-caption pairs" in result.output


def test_train_encoder_refuses_an_unknown_storage(tmp_path: Path) -> None:
    result = mmgr("train-encoder", tmp_path, "-o", tmp_path / "head.safetensors", "--storage", "int3")
    assert result.exit_code == 1
    assert "storage 'int3'" in result.output and "'nf4'" in result.output
    assert not (tmp_path / "head.safetensors").exists()
