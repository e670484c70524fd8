"""Image loading: inputs PIL refuses as decompression bombs become a clear InputError."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmgr_qdrant import InputError
from mmgr_qdrant.images import load_image
from tests.helpers import make_image


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_image(1)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_over_pils_pixel_limit_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png_bytes()
    path = tmp_path / "huge.png"
    path.write_bytes(data)
    w, h = Image.open(path).size
    # PIL refuses images over twice MAX_IMAGE_PIXELS; lower it so this small file counts as a bomb
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", (w * h) // 4)
    with pytest.raises(InputError, match=rf"huge\.png.*too large.*{w * h:,} pixels.*downscale") as info:
        load_image(path)
    assert isinstance(info.value.__cause__, Image.DecompressionBombError)
    with pytest.raises(InputError, match=rf"Image bytes \({len(data)} bytes\).*too large.*{w * h:,} pixels.*downscale"):
        load_image(data)


def test_png_header_claiming_a_huge_size_is_an_input_error(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    # 100,000 x 100,000 RGB: 10^10 pixels, far over PIL's default limit; the file itself is tiny
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    with pytest.raises(InputError, match=r"bomb\.png.*too large.*10,000,000,000 pixels.*downscale"):
        load_image(path)
    with pytest.raises(InputError, match=r"too large.*10,000,000,000 pixels"):
        load_image(bomb)


def test_images_under_the_limit_still_load(tmp_path: Path) -> None:
    data = _png_bytes()
    img = load_image(data)
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), make_image(1))
