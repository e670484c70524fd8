"""What ``mmgr ingest`` reads: image files, folders, globs, sidecar captions and JSONL manifests.

* An image file is ingested with the first non-empty line of its sidecar ``.txt`` (``cat.png`` +
  ``cat.txt``) as its caption, when there is one.
* A folder contributes its image files (with ``--recursive``, those of its subfolders too).
* A video file (``.mp4 .webm .mkv .mov``, alone, in a folder or from a glob) is collected in
  ``videos``; its sidecar ``.txt`` is its caption too.
* A glob (quoted, so the shell leaves it alone) is expanded here; ``**`` matches subfolders.
* A ``.jsonl`` file is a manifest, one object per line:
  ``{"image": "a.png", "caption": "...", "payload": {...}, "id": ...}`` or
  ``{"text": "...", "payload": {...}}``. ``file`` is accepted for ``image``; relative paths are
  relative to the manifest; without a ``payload`` key, the other keys (``keywords``, ``source``,
  ...) form the payload.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov")  # as mmgr_qdrant.video.VIDEO_SUFFIXES
MEDIA_SUFFIXES = IMAGE_SUFFIXES + VIDEO_SUFFIXES
_MANIFEST_KEYS = {"image", "file", "caption", "text", "payload", "id"}


@dataclass
class Item:
    """One document to add: an image path or a text, with caption, payload and id as given."""

    image: Path | None = None
    text: str | None = None
    caption: str | None = None
    payload: dict[str, Any] | None = None
    id: Any = None


@dataclass
class Collected:
    """The documents found, and the inputs that gave none (with why)."""

    images: list[Item] = field(default_factory=list)
    texts: list[Item] = field(default_factory=list)
    videos: list[Item] = field(default_factory=list)  # video files (.mp4 .webm .mkv .mov), ``image`` holds the path
    problems: list[tuple[str, str]] = field(default_factory=list)


def collect(inputs: list[str], *, recursive: bool = False, sidecars: bool = True, folder_label: str | None = None) -> Collected:
    """Expand the command line's inputs to documents.

    Args:
        inputs: files, folders, globs and ``.jsonl`` manifests.
        recursive: descend into subfolders of folders.
        sidecars: read captions from sidecar ``.txt`` files.
        folder_label: store each image's folder name in this payload field (class-per-folder data).

    Raises:
        InputError: a manifest line is not valid JSON of the right shape.
    """
    out = Collected()
    seen: set[Path] = set()

    def add_image(path: Path) -> None:
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            payload = {folder_label: path.parent.name} if folder_label else None
            out.videos.append(Item(image=path, caption=sidecar_caption(path) if sidecars else None, payload=payload))
            return
        payload = {folder_label: path.parent.name} if folder_label else None
        out.images.append(Item(image=path, caption=sidecar_caption(path) if sidecars else None, payload=payload))

    for raw in inputs:
        if any(ch in raw for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(Path(raw).expanduser()), recursive=True))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in MEDIA_SUFFIXES]
            if not files:
                out.problems.append((raw, "no image or video file matches this pattern"))
            for m in files:
                add_image(m)
            continue
        path = Path(raw).expanduser()
        if path.is_dir():
            walker = path.rglob("*") if recursive else path.iterdir()
            files = sorted(p for p in walker if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
            if not files:
                hint = "" if recursive else " (add --recursive to look in subfolders)"
                out.problems.append((raw, f"the folder holds no image or video files{hint}"))
            for p in files:
                add_image(p)
        elif path.is_file() and path.suffix.lower() == ".jsonl":
            _read_manifest(path, out, seen)
        elif path.is_file():
            add_image(path)  # any suffix: an unreadable file is reported by the library as skipped
        else:
            out.problems.append((raw, "no such file or folder"))
    return out


def sidecar_caption(image: Path) -> str | None:
    """The first non-empty line of ``image``'s sidecar ``.txt``, if any."""
    side = image.with_suffix(".txt")
    if not side.is_file():
        return None
    for line in side.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            return " ".join(line.split())
    return None


def _read_manifest(manifest: Path, out: Collected, seen: set[Path]) -> None:
    for lineno, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"Line {lineno} of {str(manifest)!r}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON ({exc.msg}); write one JSON object per line.") from exc
        if not isinstance(rec, dict):
            raise InputError(f'{where} is not a JSON object; write {{"image": "a.png", "caption": "..."}} or {{"text": "..."}}.')
        image = rec.get("image", rec.get("file"))
        text = rec.get("text")
        if (image is None) == (text is None):
            raise InputError(f'{where} needs exactly one of "image" (a path) or "text"; write {{"image": "a.png"}} or {{"text": "..."}}.')
        payload = rec.get("payload")
        if payload is None:
            payload = {k: v for k, v in rec.items() if k not in _MANIFEST_KEYS} or None
        elif not isinstance(payload, dict):
            raise InputError(f'{where} has a "payload" that is not an object; write "payload": {{"field": "value"}}.')
        caption = rec.get("caption")
        if isinstance(caption, list):
            caption = next((c for c in caption if isinstance(c, str) and c.strip()), None)
        if caption is not None and not isinstance(caption, str):
            raise InputError(f'{where} has a "caption" that is not a string.')
        if image is not None:
            if not isinstance(image, str):
                raise InputError(f'{where} has an "image" that is not a path string.')
            path = Path(image).expanduser()
            path = path if path.is_absolute() else manifest.parent / path
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            out.images.append(Item(image=path, caption=caption or sidecar_caption(path), payload=payload, id=rec.get("id")))
        else:
            out.texts.append(Item(text=text, payload=payload, id=rec.get("id")))
