"""Prepare the LiT head's training data from Debian packages (no network).

Sources (installed by ``make``'s data step):

* ``openclipart-svg`` + ``openclipart-png`` under ``/usr/share/openclipart``: about 8,000
  public-domain clip-art images. The caption of an image is its ``<dc:title>``; titles used more
  than :data:`MAX_TITLE_USES` times are collection names ("gramastar", "Part of the Flat Icon
  Collection ...") and are not used as captions; such images get a caption from their file name
  (see :func:`filename_caption`) for training only and never take part in evaluation.
* ``dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``: the *train* split only,
  captioned from its labels.

The openclipart images with a real title are split, with a fixed seed, into train and held-out
parts; images sharing a title or identical pixels stay on one side. The held-out list is committed
as ``benchmarks/data/openclipart_heldout.tsv`` and training always reads it from there, so a
changed package version cannot leak held-out images into training.

Usage::

    python scripts/prepare_data.py --out .cache/lit-data          # manifests for training
    python scripts/prepare_data.py --write-heldout                # (re)create the committed list
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger("prepare_data")

REPO = Path(__file__).resolve().parents[1]
OPENCLIPART = Path("/usr/share/openclipart")
FMNIST = Path("/usr/share/datasets/fashion-mnist")
HELDOUT_FILE = REPO / "benchmarks" / "data" / "openclipart_heldout.tsv"
SPLIT_SEED = 0
HELDOUT_FRACTION = 1 / 6
MAX_TITLE_USES = 3
MAX_PER_FILENAME_CAPTION = 20  # 1,375 near-identical "gramastar" stars would otherwise swamp training

# Fashion-MNIST label -> noun phrase; the benchmark prompt is "a photo of a {name}."
FMNIST_CLASSES = ("t-shirt", "pair of trousers", "pullover sweater", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
FMNIST_TEMPLATES = ("a photo of a {}.", "a {}.", "a black and white photo of a {}.", "a low resolution photo of a {}.", "{}")


@dataclass(frozen=True)
class Clipart:
    """One openclipart item: ``rel`` is the path below ``svg/`` without the suffix."""

    rel: str
    title: str
    keywords: tuple[str, ...]

    @property
    def png(self) -> Path:
        return OPENCLIPART / "png" / f"{self.rel}.png"

    @property
    def svg(self) -> Path:
        return OPENCLIPART / "svg" / f"{self.rel}.svg"


LARGE_PIXELS = 4_000_000  # a few PNGs in the package are 16,000 px wide; render those from the SVG


def clipart_image(rel: str, out: Path) -> Path:
    """The PNG to use for an item: the packaged one, or a small rendering of its SVG when that PNG is huge."""
    png = OPENCLIPART / "png" / f"{rel}.png"
    with png.open("rb") as f:  # the IHDR chunk; PIL refuses to even open the largest files
        w, h = struct.unpack(">II", f.read(24)[16:24])
    if w * h <= LARGE_PIXELS:
        return png
    small = out / "rendered" / f"{rel}.png"
    if not small.is_file():
        import cairosvg

        small.parent.mkdir(parents=True, exist_ok=True)
        scale = 512 / max(w, h)
        cairosvg.svg2png(url=str(OPENCLIPART / "svg" / f"{rel}.svg"), write_to=str(small), output_width=max(1, round(w * scale)), output_height=max(1, round(h * scale)))
    return small


def norm_title(title: str) -> str:
    return " ".join(title.lower().split())


def read_openclipart(root: Path = OPENCLIPART) -> list[Clipart]:
    """Every SVG that has a rendered PNG, with its title and keywords (sorted by path)."""
    items = []
    for svg in sorted((root / "svg").rglob("*.svg")):
        rel = str(svg.relative_to(root / "svg"))[:-4]
        if not (root / "png" / f"{rel}.png").is_file():
            continue
        text = svg.read_bytes().decode("utf-8", "replace")
        work = re.search(r"<(?:\w+:)?Work\b.*?</(?:\w+:)?Work>", text, re.DOTALL)
        title, keywords = "", ()
        if work:
            m = re.search(r"<dc:title>(.*?)</dc:title>", work.group(0), re.DOTALL)
            title = _unescape(m.group(1)) if m else ""
            keywords = tuple(k for k in (_unescape(k) for k in re.findall(r"<rdf:li>(.*?)</rdf:li>", work.group(0), re.DOTALL)) if k)
        items.append(Clipart(rel, " ".join(title.split()), keywords))
    return items


def _unescape(s: str) -> str:
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", s)).split())


def title_counts(items: list[Clipart]) -> Counter[str]:
    return Counter(norm_title(c.title) for c in items)


def has_real_title(item: Clipart, counts: Counter[str]) -> bool:
    t = norm_title(item.title)
    return bool(t) and counts[t] <= MAX_TITLE_USES and len(t) >= 3


GENERIC_KEYWORDS = {"", "hash", "unsorted", "computer", "icons", "icon", "theme", "signs_and_symbols", "clip art", "clipart", "mapsym", "media", "svg"}


def good_keywords(item: Clipart, limit: int = 6) -> list[str]:
    """Keywords worth showing: not packaging tags, not the author's name, no duplicates."""
    out: list[str] = []
    for k in item.keywords:
        k = k.replace("_", " ").strip().lower()
        if k in GENERIC_KEYWORDS or "rollandin" in k or "theme" in k or k in out or len(k) > 30:
            continue
        out.append(k)
    return out[:limit]


def filename_caption(item: Clipart) -> str:
    """A caption from the file name ("folder_pictures" -> "folder pictures"), for collection items."""
    stem = Path(item.rel).name
    words = [w for w in re.split(r"[_\-\s.]+", stem.lower()) if w and not any(ch.isdigit() for ch in w) and len(w) > 1]
    return " ".join(words[:5]) or Path(item.rel).parent.name.replace("_", " ")


def _groups(items: list[Clipart]) -> list[int]:
    """Union-find group id per item: same normalized title or identical PNG bytes -> same group."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, c in enumerate(items):
        for key in (f"t:{norm_title(c.title)}" if norm_title(c.title) else "", "h:" + hashlib.sha1(c.png.read_bytes()).hexdigest()):
            if not key:
                continue
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    return [find(i) for i in range(len(items))]


def make_split(items: list[Clipart], seed: int = SPLIT_SEED) -> list[Clipart]:
    """The held-out items: about :data:`HELDOUT_FRACTION` of the real-titled ones, whole groups."""
    counts = title_counts(items)
    groups = _groups(items)
    # collection titles (counted many times) would glue whole collections into one group; they
    # never reach the held-out part, so group real-titled items only by their own keys
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    eligible = [g for g, idx in members.items() if all(has_real_title(items[i], counts) for i in idx)]
    eligible.sort()
    rng = np.random.default_rng(seed)
    rng.shuffle(eligible)
    n_real = sum(len(members[g]) for g in eligible)
    held: list[int] = []
    for g in eligible:
        if len(held) >= HELDOUT_FRACTION * n_real:
            break
        held.extend(members[g])
    return sorted((items[i] for i in held), key=lambda c: c.rel)


def write_heldout(items: list[Clipart], path: Path = HELDOUT_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("# openclipart held-out part: never trained on. path below /usr/share/openclipart/{svg,png} (no suffix) <TAB> title\n")
        f.write(f"# made by scripts/prepare_data.py --write-heldout (seed {SPLIT_SEED}, fraction {HELDOUT_FRACTION:.4f}, titles used <= {MAX_TITLE_USES} times)\n")
        for c in items:
            f.write(f"{c.rel}\t{c.title}\n")


def read_heldout(path: Path = HELDOUT_FILE) -> list[tuple[str, str]]:
    """``(rel, title)`` pairs of the committed held-out list."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            rel, title = line.split("\t", 1)
            out.append((rel, title))
    return out


def clipart_training_records(items: list[Clipart], heldout: list[tuple[str, str]], out: Path) -> tuple[list[dict[str, object]], dict[str, int]]:
    """Manifest records for every openclipart item outside the held-out part (and its groups)."""
    counts = title_counts(items)
    groups = _groups(items)
    held_rel = {rel for rel, _ in heldout}
    held_groups = {g for c, g in zip(items, groups) if c.rel in held_rel}
    # held-out titles too, so a same-titled twin added to the package later cannot leak
    held_titles = {norm_title(t) for _, t in heldout}
    records: list[dict[str, object]] = []
    per_caption: Counter[str] = Counter()
    stats: Counter[str] = Counter()
    for c, g in zip(items, groups):
        if c.rel in held_rel or g in held_groups or norm_title(c.title) in held_titles:
            stats["excluded_heldout"] += 1
            continue
        if has_real_title(c, counts):
            captions = [c.title]
            kws = good_keywords(c, 4)
            if kws:
                captions.append(f"{c.title}, {', '.join(kws)}")
            stats["title"] += 1
        else:
            cap = filename_caption(c)
            per_caption[cap] += 1
            if per_caption[cap] > MAX_PER_FILENAME_CAPTION:
                stats["dropped_repetitive"] += 1
                continue
            captions = [cap]
            stats["filename"] += 1
        records.append({"image": str(clipart_image(c.rel, out)), "caption": captions, "source": "openclipart"})
    return records, dict(stats)


def read_idx(images_gz: Path, labels_gz: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST idx files -> ``(n, 28, 28)`` uint8 images and ``(n,)`` labels."""
    with gzip.open(images_gz, "rb") as f:
        _, n, h, w = struct.unpack(">IIII", f.read(16))
        images = np.frombuffer(f.read(), np.uint8).reshape(n, h, w)
    with gzip.open(labels_gz, "rb") as f:
        _, n2 = struct.unpack(">II", f.read(8))
        labels = np.frombuffer(f.read(), np.uint8)
    assert n == n2
    return images, labels


def fmnist_training_records(out: Path, per_class: int, seed: int = SPLIT_SEED) -> list[dict[str, object]]:
    """Write ``per_class`` images of each class from the Fashion-MNIST *train* split as PNGs."""
    from PIL import Image

    images, labels = read_idx(FMNIST / "train-images-idx3-ubyte.gz", FMNIST / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    folder = out / "fmnist-train"
    folder.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, object]] = []
    for label, name in enumerate(FMNIST_CLASSES):
        idx = np.flatnonzero(labels == label)
        for i in sorted(rng.choice(idx, size=min(per_class, len(idx)), replace=False)):
            path = folder / f"train-{i:05d}.png"
            if not path.is_file():
                Image.fromarray(images[i]).save(path)
            records.append({"image": str(path), "caption": [t.format(name) for t in FMNIST_TEMPLATES], "source": "fashion-mnist-train"})
    return records


def write_jsonl(records: list[dict[str, object]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def prepare(out: Path, fmnist_per_class: int) -> dict[str, object]:
    """Write ``clipart-train.jsonl`` and ``fmnist-train.jsonl`` under ``out``; return counts."""
    items = read_openclipart()
    heldout = read_heldout()
    clip, stats = clipart_training_records(items, heldout, out)
    write_jsonl(clip, out / "clipart-train.jsonl")
    fm = fmnist_training_records(out, fmnist_per_class)
    write_jsonl(fm, out / "fmnist-train.jsonl")
    summary = {"openclipart_items": len(items), "heldout": len(heldout), "clipart_train": len(clip), "clipart_caption_kinds": stats, "fmnist_train": len(fm)}
    logger.info("prepared %s", summary)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "lit-data", help="where manifests and Fashion-MNIST PNGs go")
    ap.add_argument("--fmnist-per-class", type=int, default=300)
    ap.add_argument("--write-heldout", action="store_true", help="recreate the committed held-out list (changes the benchmark!)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.write_heldout:
        held = make_split(read_openclipart())
        write_heldout(held)
        logger.info("wrote %d held-out items to %s", len(held), HELDOUT_FILE)
        return
    print(json.dumps(prepare(args.out, args.fmnist_per_class), indent=2))


if __name__ == "__main__":
    main()
