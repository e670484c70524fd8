"""Thumbnails of the image files an index holds: resized with PIL, kept in a bounded LRU cache.

A thumbnail is made only from the file path stored with the document (``Hit.uri``); nothing in a
request names a path. The cache key carries the file's modification time and size, so a changed
file is re-read.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from ..errors import InputError, NotFoundError
from ..images import load_image


class ThumbnailCache:
    """JPEG thumbnails keyed by (id, path, mtime, size, pixels), at most ``capacity`` of them.

    Args:
        capacity: thumbnails kept; the least recently used is dropped first.
        max_px: the longest side of a thumbnail.
    """

    def __init__(self, capacity: int = 512, max_px: int = 256) -> None:
        self.capacity = capacity
        self.max_px = max_px
        self._items: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, doc_id: object, uri: str | None, t: float | None = None) -> bytes:
        """The JPEG bytes of the thumbnail of ``uri``, the stored file of document ``doc_id``.

        Args:
            doc_id: the document.
            uri: its stored file.
            t: for a video moment, the second whose frame is shown.

        Raises:
            NotFoundError: the document has no image file, or the file is gone.
            InputError: the file is no longer a readable image (or video).
        """
        if not uri:
            raise NotFoundError(f"Document {doc_id!r} has no image file to make a thumbnail of; it was added from bytes or is a text.")
        path = Path(uri)
        try:
            st = path.stat()
        except OSError:
            raise NotFoundError(f"The image file of document {doc_id!r} is gone from {uri!r}; restore it or re-add the document.") from None
        key = (doc_id, uri, st.st_mtime_ns, st.st_size, self.max_px, t)
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return data
        self.misses += 1
        data = make_thumbnail(path, self.max_px, t)
        with self._lock:
            self._items[key] = data
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return data


def make_thumbnail(path: Path, max_px: int, t: float | None = None) -> bytes:
    """A JPEG of the image at ``path`` (or of a video's frame at ``t`` seconds) whose longest side is at most ``max_px``.

    Raises:
        InputError: the file is not a readable image or video (the message from
            :func:`~mmgr_qdrant.images.load_image` or :func:`~mmgr_qdrant.video.frame_at`).
    """
    if t is not None:
        from ..video import frame_at

        img = frame_at(path, t)
    else:
        img = load_image(path)
    img.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    try:
        img.save(buf, format="JPEG", quality=85)
    except OSError as exc:  # pragma: no cover - an RGB image always encodes
        raise InputError(f"The thumbnail of {str(path)!r} could not be encoded ({exc}); check the file.") from exc
    return buf.getvalue()
