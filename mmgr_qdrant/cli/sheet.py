"""Contact sheets: search hits as a grid of thumbnails with rank and score, drawn with PIL only.

Image hits show their file (letterboxed into a square tile); video hits show the moment's frame
with its timestamp; text hits show their text on a pale tile; under each tile: ``#rank  score``
and the caption or file name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

THUMB = 160
PAD = 10
LABEL_H = 38
HEADER_H = 30
COLS = 5
BG = (255, 255, 255)
TILE_BG = (236, 238, 242)
TEXT_BG = (255, 248, 220)
INK = (34, 34, 34)
MUTED = (110, 110, 110)
ACCENT = (25, 100, 200)


def sheet_size(n: int, cols: int = COLS, thumb: int = THUMB) -> tuple[int, int]:
    """The pixel size of a sheet of ``n`` hits: ``min(n, cols)`` columns, as many rows as needed."""
    c = max(1, min(n, cols))
    rows = max(1, math.ceil(n / c))
    return c * (thumb + PAD) + PAD, HEADER_H + rows * (thumb + LABEL_H + PAD) + PAD


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except TypeError:  # pragma: no cover - old Pillow
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int, max_lines: int) -> list[str]:
    words = text.split()
    lines: list[str] = []
    line = ""
    for word in words:
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        line = _fit(draw, word, font, width)
        if len(lines) == max_lines:
            break
    if line and len(lines) < max_lines:
        lines.append(line)
    if len(lines) == max_lines and " ".join(lines) != " ".join(words):
        lines[-1] = _fit(draw, lines[-1] + " …", font, width) if not lines[-1].endswith("…") else lines[-1]
    return lines[:max_lines]


def _image_tile(uri: str | None, thumb: int) -> Image.Image | None:
    if not uri or not Path(uri).is_file():
        return None
    try:
        with Image.open(uri) as im:
            im.load()
            img = im.convert("RGBA")
    except Exception:  # noqa: BLE001 - a broken file becomes a placeholder tile, the sheet still renders
        return None
    scale = thumb / max(img.size)  # small images (icons, clip art) are enlarged to fill the tile too
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
    tile = Image.new("RGB", (thumb, thumb), TILE_BG)
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    white.alpha_composite(img)
    tile.paste(white.convert("RGB"), ((thumb - img.width) // 2, (thumb - img.height) // 2))
    return tile


def clock(t: float | None) -> str:
    """A timestamp as ``m:ss.s`` (``1:05.5``), or ``?`` when unknown."""
    if t is None:
        return "?"
    m, sec = divmod(float(t), 60.0)
    return f"{int(m)}:{sec:04.1f}"


def _video_tile(uri: str | None, t: float | None, thumb: int) -> Image.Image | None:
    """The moment's frame (decoded from the video at ``t``) with its timestamp drawn on it."""
    if not uri or not Path(uri).is_file():
        return None
    from ..errors import MMGRError
    from ..video import frame_at

    try:
        frame = frame_at(uri, t or 0.0)
    except MMGRError:  # a missing extra or an undecodable file becomes a placeholder tile
        return None
    scale = thumb / max(frame.size)
    img = frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale))), Image.Resampling.LANCZOS)
    tile = Image.new("RGB", (thumb, thumb), TILE_BG)
    tile.paste(img, ((thumb - img.width) // 2, (thumb - img.height) // 2))
    draw = ImageDraw.Draw(tile)
    font = _font(13)
    stamp = clock(t)
    w = int(draw.textlength(stamp, font=font)) + 10
    draw.rectangle([4, thumb - 24, 4 + w, thumb - 5], fill=(0, 0, 0))
    draw.text((9, thumb - 22), stamp, fill=(255, 255, 255), font=font)
    return tile


def _text_tile(text: str, thumb: int, label: str) -> Image.Image:
    tile = Image.new("RGB", (thumb, thumb), TEXT_BG)
    draw = ImageDraw.Draw(tile)
    small, body = _font(11), _font(14)
    draw.text((8, 6), label, fill=MUTED, font=small)
    y = 24
    for line in _wrap(draw, text, body, thumb - 16, (thumb - 30) // 18):
        draw.text((8, y), line, fill=INK, font=body)
        y += 18
    draw.rectangle([0, 0, thumb - 1, thumb - 1], outline=(220, 200, 140))
    return tile


def contact_sheet(hits: Sequence[Any], title: str = "", *, cols: int = COLS, thumb: int = THUMB) -> Image.Image:
    """Draw ``hits`` (objects with ``score``, ``modality``, ``uri``, ``text``, ``id``) as a sheet.

    Args:
        hits: the hits, best first.
        title: a header line (the query and mode).
        cols: most tiles per row.
        thumb: tile size in pixels.

    Returns:
        An RGB image of :func:`sheet_size` pixels.
    """
    n = len(hits)
    width, height = sheet_size(n, cols, thumb)
    c = max(1, min(n, cols))
    sheet = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(sheet)
    head, label, small = _font(15), _font(13), _font(11)
    draw.text((PAD, 7), _fit(draw, title or f"{n} hits", head, width - 2 * PAD), fill=INK, font=head)
    if n == 0:
        draw.text((PAD, HEADER_H + 10), "no hits", fill=MUTED, font=label)
        return sheet
    for i, hit in enumerate(hits):
        row, col = divmod(i, c)
        x = PAD + col * (thumb + PAD)
        y = HEADER_H + row * (thumb + LABEL_H + PAD)
        caption = hit.text or ""
        if hit.modality == "image":
            tile = _image_tile(hit.uri, thumb)
            if tile is None:
                tile = _text_tile(f"image not available: {Path(hit.uri).name if hit.uri else hit.id}", thumb, "IMAGE")
            caption = caption or (Path(hit.uri).name if hit.uri else str(hit.id))
        elif hit.modality == "video":
            t = getattr(hit, "t", None)
            tile = _video_tile(hit.uri, t, thumb)
            if tile is None:
                tile = _text_tile(f"video not available: {Path(hit.uri).name if hit.uri else hit.id}", thumb, "VIDEO")
            caption = f"{Path(hit.uri).name if hit.uri else hit.id} @ {clock(t)}"
        else:
            tile = _text_tile(hit.text or str(hit.id), thumb, "TEXT")
            caption = f"text {str(hit.id)[:8]}"
        sheet.paste(tile, (x, y))
        ty = y + thumb + 3
        draw.text((x, ty), f"#{i + 1}", fill=ACCENT, font=label)
        draw.text((x + 34, ty), f"{hit.score:.3f}", fill=INK, font=label)
        draw.text((x, ty + 17), _fit(draw, caption, small, thumb), fill=MUTED, font=small)
    return sheet


def save_sheet(hits: Sequence[Any], file: str | Path, title: str = "", *, cols: int = COLS, thumb: int = THUMB) -> Path:
    """Draw and save a contact sheet (PNG, or any format PIL infers from the suffix)."""
    path = Path(file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(hits, title, cols=cols, thumb=thumb).save(path)
    return path
