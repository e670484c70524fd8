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

More sources (fetched by ``make lit-data``: Debian icon themes and pinned npm tarballs unpacked
under ``NPM_DIR``), each rendered once to a small PNG on white under ``OUT/rendered``:

* Twemoji (npm ``@twemoji/svg``, CC-BY 4.0), named from the ``emoji-datasource`` metadata (MIT):
  training.
* Fluent Emoji (Microsoft, MIT; npm ``fluentui-emoji``), the flat colour and the high-contrast
  line-art styles, named by their file names: training.
* OpenMoji (npm ``openmoji``, CC BY-SA 4.0), with its annotations and tags: **held out whole** (a
  style never trained on), queried by names and by keywords.
* Icon themes whose file names describe the picture (``weather-storm-symbolic`` -> "weather
  storm"): Papirus (GPL-3) and Adwaita (CC BY-SA 3.0 / LGPL-3) for training; Breeze (LGPL-3)
  **held out whole**, queried by its names.
* Tux Paint's stamps (Debian ``tuxpaint-stamps-default``, GPL-2): clip art with a written English
  description each: training.
* Iconify's JSON packages (npm, pinned in :data:`ICONIFY_SETS`): EmojiOne 2 and Streamline emoji
  (CC BY 4.0), game-icons (CC BY 3.0), flat-color-icons (MIT), rendered from their SVG bodies and
  named by icon: training. emojilib (MIT) keywords are written beside the emoji records as
  ``keyword_captions`` (used only when a training run asks for them).

Held out by construction: the training manifests never read OpenMoji or Breeze, the openclipart
held-out list is excluded as before, and Fashion-MNIST's test split is never read here.

Usage::

    python scripts/prepare_data.py --out .cache/lit-data          # manifests for training
    python scripts/prepare_data.py --write-heldout                # (re)create the committed list
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
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


SMALL_SIDE = 256  # training copies: decoding the packaged PNGs (up to 4 Mpx) costs more than the backbone


def small_copy(png: Path, small: Path, side: int = SMALL_SIDE) -> Path:
    """An RGB-on-white copy of ``png`` at most ``side`` pixels across (the image itself when already that small)."""
    if small.is_file():
        return small
    from PIL import Image

    with Image.open(png) as im:
        if max(im.size) <= side:
            return png
        im.draft("RGB", (side, side))
        rgba = im.convert("RGBA")
    rgba.thumbnail((side, side), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", rgba.size, (255, 255, 255))
    canvas.paste(rgba, mask=rgba.split()[-1])
    small.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(small)
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
        records.append({"image": str(small_copy(clipart_image(c.rel, out), out / "small" / f"{c.rel}.png")), "caption": captions, "source": "openclipart"})
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


# --- emoji (npm) and icon themes (Debian) ---------------------------------------------------------

NPM_DIR = REPO / "data" / "npm"  # `make lit-data` unpacks the pinned tarballs here
NPM_PACKAGES = {"@twemoji/svg": "15.0.0", "emoji-datasource": "16.0.0", "openmoji": "17.0.0", "fluentui-emoji": "1.3.0"}
FLUENT_STYLES = ("flat", "high-contrast")  # colour, and black line art: two more drawing styles
SKIN_TONES = ("-medium-light", "-medium-dark", "-light", "-medium", "-dark")
ICONS = Path("/usr/share/icons")
ICON_TRAIN_THEMES = ("Papirus", "Adwaita")
ICON_HELDOUT_THEME = "breeze"
# categories whose names describe a picture; apps (brand names) and mimetypes (file formats) are not captions
ICON_CATEGORIES = ("actions", "places", "status", "devices", "emblems", "categories", "emotes", "legacy")
ICON_DROP_WORDS = {"symbolic", "x", "rtl", "ltr", "gtk", "kde", "org", "gnome", "stock", "im", "s", "n", "t"}
# Papirus draws every folder icon in 25 colours: one picture per concept is enough
FOLDER_COLOURS = {
    "adwaita", "black", "blue", "bluegrey", "breeze", "brown", "carmine", "cyan", "darkcyan", "deeporange", "green", "grey", "indigo",
    "magenta", "nordic", "orange", "palebrown", "paleorange", "pink", "red", "teal", "violet", "white", "yaru", "yellow",
}
RENDER_SIZE = 128  # rendered PNG side: more than any resolution the head uses
ICON_TEMPLATES = ("{}", "an icon of {}.", "{} icon")
EMOJI_TEMPLATES = ("{}", "an emoji of {}.", "{} emoji")


def render_svg(svg: Path, png: Path, size: int = RENDER_SIZE) -> bool:
    """Render ``svg`` to an RGB ``png`` on white, fitting a ``size`` square; False when it fails to render."""
    if png.is_file():
        return True
    import cairosvg
    from PIL import Image

    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        raw = cairosvg.svg2png(url=str(svg), output_width=size, output_height=size)
        with Image.open(io.BytesIO(raw)) as im:
            rgba = im.convert("RGBA")
    except Exception as exc:  # noqa: BLE001 - cairosvg raises many kinds of error on odd SVGs
        logger.debug("cannot render %s: %s", svg, exc)
        return False
    canvas = Image.new("RGB", rgba.size, (255, 255, 255))
    canvas.paste(rgba, mask=rgba.split()[-1])
    canvas.save(png)
    return True


def flatten_png(src: Path, png: Path) -> bool:
    """Copy a (possibly transparent) PNG icon to an RGB PNG on white."""
    if png.is_file():
        return True
    from PIL import Image

    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        with Image.open(src) as im:
            rgba = im.convert("RGBA")
    except OSError:
        return False
    canvas = Image.new("RGB", rgba.size, (255, 255, 255))
    canvas.paste(rgba, mask=rgba.split()[-1])
    canvas.save(png)
    return True


def icon_caption(name: str) -> str:
    """``weather-storm-symbolic`` -> ``weather storm``; "" when nothing descriptive is left."""
    name = name.removesuffix(".symbolic")
    words = [w for w in re.split(r"[-_.\s]+", name.lower()) if w and w not in ICON_DROP_WORDS and not any(ch.isdigit() for ch in w)]
    cap = " ".join(words)
    return cap if len(cap) >= 3 else ""


def _icon_size(parts: tuple[str, ...]) -> int:
    """A sort key for an icon's size folder: bigger first, full-colour before symbolic."""
    for p in parts:
        m = re.fullmatch(r"(\d+)(?:x\d+)?", p)
        if m:
            return int(m.group(1))
        if p == "scalable":
            return 256
    return 1 if "symbolic" in parts else 0


def read_icon_theme(theme: str, root: Path = ICONS) -> list[tuple[Path, list[str]]]:
    """One ``(file, captions)`` per distinct picture of a theme (aliases become extra captions).

    For each icon name the largest full-colour file is kept; names whose files are the same picture
    (symlinks, identical bytes) share one entry.
    """
    base = root / theme
    best: dict[str, tuple[int, Path]] = {}
    for f in sorted(base.rglob("*")):
        if f.suffix not in (".svg", ".png") or "@" in str(f.relative_to(base)):
            continue
        parts = f.relative_to(base).parts
        if not any(p in ICON_CATEGORIES for p in parts[:-1]):
            continue
        name = f.name[: -len(f.suffix)].removesuffix(".symbolic")
        key = _icon_size(parts) - (1000 if name.endswith("-symbolic") else 0)
        cname = name.removesuffix("-symbolic")
        if cname not in best or key > best[cname][0]:
            best[cname] = (key, f)
    by_picture: dict[str, tuple[Path, list[str]]] = {}
    for cname, (_, f) in sorted(best.items()):
        cap = icon_caption(cname)
        words = cap.split()
        if not cap or not f.exists() or (len(words) > 1 and words[0] == "folder" and words[1] in FOLDER_COLOURS):
            continue
        real = f.resolve()
        pic = hashlib.sha1(real.read_bytes()).hexdigest()
        entry = by_picture.setdefault(pic, (real, []))
        if cap not in entry[1]:
            entry[1].append(cap)
    # the picture's own file name first, then the shortest aliases (long ones are often app-specific)
    out = []
    for real, names in by_picture.values():
        own = icon_caption(real.name[: -len(real.suffix)].removesuffix(".symbolic").removesuffix("-symbolic"))
        out.append((real, sorted(names, key=lambda n: (n != own, len(n), n))))
    return out


def icon_records(theme: str, out: Path, templates: tuple[str, ...] = ICON_TEMPLATES) -> list[dict[str, object]]:
    """Manifest records for every distinct picture of an icon theme, rendered to PNG on white."""
    records: list[dict[str, object]] = []
    for f, names in read_icon_theme(theme):
        png = out / "rendered" / "icons" / theme / (hashlib.sha1(str(f).encode()).hexdigest()[:16] + ".png")
        ok = render_svg(f, png) if f.suffix == ".svg" else flatten_png(f, png)
        if not ok:
            continue
        captions = [t.format(n) for n in names[:3] for t in templates]
        records.append({"image": str(png), "caption": captions, "names": names, "source": f"icons:{theme}"})
    return records


def _emoji_name(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


def twemoji_records(out: Path, npm: Path = NPM_DIR, keywords: dict[str, list[str]] | None = None) -> list[dict[str, object]]:
    """Twemoji (training): each emoji with its name and short names from ``emoji-datasource``; no skin-tone variants."""
    meta = json.loads((npm / "emoji-datasource" / "package" / "emoji.json").read_text(encoding="utf-8"))
    svgs = npm / "twemoji" / "package"
    records: list[dict[str, object]] = []
    for e in sorted(meta, key=lambda e: e["sort_order"]):
        code = e["unified"].lower()
        svg = next((p for p in (svgs / f"{code}.svg", svgs / f"{code.replace('-fe0f', '')}.svg") if p.is_file()), None)
        if svg is None or not e.get("name"):
            continue
        name = _emoji_name(e["name"])
        shorts = [_emoji_name(s) for s in e.get("short_names", []) if _emoji_name(s) != name][:2]
        png = out / "rendered" / "twemoji" / f"{code}.png"
        if not render_svg(svg, png):
            continue
        captions = [t.format(name) for t in EMOJI_TEMPLATES] + shorts + ([f"{name}, {', '.join(shorts)}"] if shorts else [])
        records.append({"image": str(png), "caption": captions, "names": [name], "keyword_captions": keyword_captions(name, keywords or {}), "source": "twemoji"})
    return records


def fluent_records(out: Path, npm: Path = NPM_DIR) -> list[dict[str, object]]:
    """Fluent Emoji (training; Microsoft, MIT), flat and high-contrast styles, named by their file names; no skin-tone variants."""
    records: list[dict[str, object]] = []
    for style in FLUENT_STYLES:
        for svg in sorted((npm / "fluentui-emoji" / "package" / "icons" / style).glob("*.svg")):
            stem = svg.stem
            if stem.endswith(SKIN_TONES):
                continue
            name = _emoji_name(stem.removesuffix("-default").replace("-", " "))
            png = out / "rendered" / "fluent" / style / f"{stem}.png"
            if not name or not render_svg(svg, png):
                continue
            records.append({"image": str(png), "caption": [t.format(name) for t in EMOJI_TEMPLATES], "names": [name], "source": f"fluent:{style}"})
    return records


def openmoji_records(out: Path, npm: Path = NPM_DIR) -> list[dict[str, object]]:
    """OpenMoji (held out whole): each emoji with its annotation (the name) and keywords; no skin-tone variants."""
    meta = json.loads((npm / "openmoji" / "package" / "data" / "openmoji.json").read_text(encoding="utf-8"))
    svgs = npm / "openmoji" / "package" / "color" / "svg"
    records: list[dict[str, object]] = []
    for e in meta:
        if e.get("skintone") or not e.get("annotation"):
            continue
        svg = svgs / f"{e['hexcode']}.svg"
        png = out / "rendered" / "openmoji" / f"{e['hexcode']}.png"
        if not svg.is_file() or not render_svg(svg, png):
            continue
        tags = [t.strip().lower() for t in f"{e.get('tags', '')},{e.get('openmoji_tags', '')}".split(",") if t.strip()]
        records.append({"image": str(png), "caption": [_emoji_name(e["annotation"])], "keywords": sorted(set(tags)), "source": "openmoji"})
    return records


TUXPAINT = Path("/usr/share/tuxpaint/stamps")
# Iconify's JSON packages of open artwork (npm), each a style of its own: (package, version, style, templates)
ICONIFY_SETS = (
    ("@iconify-json/emojione", "1.2.3", "emojione", EMOJI_TEMPLATES),  # EmojiOne 2 artwork, CC BY 4.0
    ("@iconify-json/streamline-emojis", "1.2.4", "streamline-emojis", EMOJI_TEMPLATES),  # CC BY 4.0
    ("@iconify-json/game-icons", "1.2.4", "game-icons", ICON_TEMPLATES),  # silhouettes, CC BY 3.0
    ("@iconify-json/flat-color-icons", "1.2.3", "flat-color-icons", ICON_TEMPLATES),  # Icons8, MIT
)
EMOJILIB = "4.0.3"  # npm emojilib (MIT): keywords per emoji, written independently of the artwork sets


def tuxpaint_records(out: Path, root: Path = TUXPAINT) -> list[dict[str, object]]:
    """Tux Paint's stamps (Debian ``tuxpaint-stamps-default``, GPL-2): clip art with a written English description each."""
    records: list[dict[str, object]] = []
    for txt in sorted(root.rglob("*.txt")):
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        desc = " ".join(lines[0].split()) if lines and "=" not in lines[0] else ""
        image = next((p for p in (txt.with_suffix(".svg"), txt.with_suffix(".png")) if p.is_file()), None)
        name = " ".join(w for w in re.split(r"[-_.\s]+", txt.stem.lower()) if w and not w.isdigit())
        if image is None or not (desc or name):
            continue
        png = out / "rendered" / "tuxpaint" / (hashlib.sha1(str(image).encode()).hexdigest()[:16] + ".png")
        if image.suffix == ".png":
            png = small_copy(image, png)  # the stamp itself when it is already small
        elif not render_svg(image, png, size=256):
            continue
        captions = [c for c in dict.fromkeys([desc, name, f"a drawing of {name}."]) if c]
        records.append({"image": str(png), "caption": captions, "names": [name], "source": "tuxpaint"})
    return records


def emoji_keywords(npm: Path = NPM_DIR) -> dict[str, list[str]]:
    """Emoji keywords from emojilib, by every spelling of the emoji's name (datasource name, short names, emojilib's own)."""
    lib = json.loads((npm / "emojilib" / "package" / "dist" / "emoji-en-US.json").read_text(encoding="utf-8"))
    meta = json.loads((npm / "emoji-datasource" / "package" / "emoji.json").read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for e in meta:
        char = "".join(chr(int(c, 16)) for c in e["unified"].split("-"))
        words = lib.get(char) or lib.get(char.replace("\ufe0f", ""))
        if not words:
            continue
        kws = [_emoji_name(w) for w in words[1:] if w.isascii() and any(ch.isalpha() for ch in w)]
        for n in [e.get("name") or "", words[0], *e.get("short_names", [])]:
            if n:
                out.setdefault(_emoji_name(n.replace("-", " ")), kws)
    return out


def keyword_captions(name: str, keywords: dict[str, list[str]], n: int = 3) -> list[str]:
    """A few keyword captions for an emoji: "name, kw, kw, kw" and the first keywords alone."""
    kws = [k for k in keywords.get(name, []) if k not in name.split()][:n]
    return ([f"{name}, {', '.join(kws)}"] + kws) if kws else []


def iconify_records(style: str, templates: tuple[str, ...], out: Path, npm: Path = NPM_DIR, keywords: dict[str, list[str]] | None = None) -> list[dict[str, object]]:
    """One Iconify JSON package (unpacked under ``npm/<style>``): every icon rendered from its SVG body, captioned from its name."""
    data = json.loads((npm / style / "package" / "icons.json").read_text(encoding="utf-8"))
    width, height = data.get("width", 16), data.get("height", 16)
    records: list[dict[str, object]] = []
    for key, icon in sorted(data["icons"].items()):
        name = " ".join(w for w in key.split("-") if w and not w.isdigit())
        if len(name) < 3 or key.endswith(SKIN_TONES) or "tone" in key.split("-"):
            continue
        w, h = icon.get("width", width), icon.get("height", height)
        png = out / "rendered" / style / f"{key}.png"
        if not png.is_file():
            svg = png.with_suffix(".svg")
            png.parent.mkdir(parents=True, exist_ok=True)
            svg.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{icon.get("left", 0)} {icon.get("top", 0)} {w} {h}" width="{w}" height="{h}">{icon["body"]}</svg>', encoding="utf-8")
            ok = render_svg(svg, png)
            svg.unlink()
            if not ok:
                continue
        captions = [t.format(name) for t in templates]
        records.append({"image": str(png), "caption": captions, "names": [name], "keyword_captions": keyword_captions(name, keywords or {}), "source": f"iconify:{style}"})
    return records


def prepare(out: Path, fmnist_per_class: int, *, extra_sources: bool = True) -> dict[str, object]:
    """Write the training manifests (and, with ``extra_sources``, the held-out style manifests) under ``out``; return counts.

    Training: ``clipart-train.jsonl``, ``fmnist-train.jsonl``, and with ``extra_sources``
    ``twemoji-train.jsonl``, ``fluent-train.jsonl``, ``icons-train.jsonl``, ``tuxpaint-train.jsonl``
    and one ``<style>-train.jsonl`` per Iconify set. Held out (never in a training manifest):
    ``heldout-openmoji.jsonl`` and ``heldout-breeze.jsonl``.
    """
    items = read_openclipart()
    heldout = read_heldout()
    clip, stats = clipart_training_records(items, heldout, out)
    write_jsonl(clip, out / "clipart-train.jsonl")
    fm = fmnist_training_records(out, fmnist_per_class)
    write_jsonl(fm, out / "fmnist-train.jsonl")
    summary: dict[str, object] = {
        "openclipart_items": len(items), "heldout": len(heldout), "clipart_train": len(clip), "clipart_caption_kinds": stats, "fmnist_train": len(fm)
    }
    if extra_sources:
        kws = emoji_keywords()
        tw = twemoji_records(out, keywords=kws)
        write_jsonl(tw, out / "twemoji-train.jsonl")
        fl = fluent_records(out)
        write_jsonl(fl, out / "fluent-train.jsonl")
        icons = [r for theme in ICON_TRAIN_THEMES for r in icon_records(theme, out)]
        write_jsonl(icons, out / "icons-train.jsonl")
        tux = tuxpaint_records(out)
        write_jsonl(tux, out / "tuxpaint-train.jsonl")
        iconify = {style: iconify_records(style, tpl, out, keywords=kws) for _, _, style, tpl in ICONIFY_SETS}
        for style, recs in iconify.items():
            write_jsonl(recs, out / f"{style}-train.jsonl")
        om = openmoji_records(out)
        write_jsonl(om, out / "heldout-openmoji.jsonl")
        breeze = icon_records(ICON_HELDOUT_THEME, out, templates=("{}",))
        write_jsonl(breeze, out / "heldout-breeze.jsonl")
        summary.update(
            twemoji_train=len(tw),
            fluent_train=len(fl),
            icons_train={t: sum(1 for r in icons if r["source"] == f"icons:{t}") for t in ICON_TRAIN_THEMES},
            tuxpaint_train=len(tux),
            iconify_train={style: len(r) for style, r in iconify.items()},
            heldout_openmoji=len(om),
            heldout_breeze=len(breeze),
        )
    logger.info("prepared %s", summary)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "lit-data", help="where manifests and Fashion-MNIST PNGs go")
    ap.add_argument("--fmnist-per-class", type=int, default=300)
    ap.add_argument("--no-extra-sources", action="store_true", help="openclipart and Fashion-MNIST only (the v1 head's data)")
    ap.add_argument("--write-heldout", action="store_true", help="recreate the committed held-out list (changes the benchmark!)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out = args.out.resolve()  # manifests hold absolute image paths
    if args.write_heldout:
        held = make_split(read_openclipart())
        write_heldout(held)
        logger.info("wrote %d held-out items to %s", len(held), HELDOUT_FILE)
        return
    print(json.dumps(prepare(args.out, args.fmnist_per_class, extra_sources=not args.no_extra_sources), indent=2))


if __name__ == "__main__":
    main()
