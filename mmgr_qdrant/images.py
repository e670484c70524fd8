"""Image input: paths, PIL images, raw bytes and numpy arrays, all to RGB PIL images."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

ImageInput = Union[str, Path, bytes, "Image.Image", np.ndarray]


def describe(item: Any) -> str:
    """A short, human name for an input item, used in error messages."""
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, (bytes, bytearray)):
        return f"<{len(item)} bytes>"
    if isinstance(item, np.ndarray):
        return f"<array {item.shape} {item.dtype}>"
    if isinstance(item, Image.Image):
        return f"<PIL image {item.size[0]}x{item.size[1]} {item.mode}>"
    text = repr(item)
    return text if len(text) <= 60 else text[:57] + "..."


def image_uri(item: Any) -> str | None:
    """The file path of an image given as a path, else ``None``."""
    if isinstance(item, (str, Path)):
        return str(Path(item).expanduser())
    return None


def load_image(item: ImageInput) -> Image.Image:
    """Load any supported image input as an RGB PIL image, with EXIF orientation applied.

    Raises:
        InputError: the file is missing or unreadable, the bytes are not an image, the image
            has more pixels than PIL allows (``PIL.Image.MAX_IMAGE_PIXELS``), or the array has an
            unsupported shape.
    """
    if isinstance(item, (str, Path)):
        path = Path(item).expanduser()
        if not path.is_file():
            raise InputError(f"Image file {str(path)!r} does not exist; check the path.")
        try:
            with Image.open(path) as im:
                im.load()
                img = ImageOps.exif_transpose(im)
        except Image.DecompressionBombError as exc:
            raise InputError(f"Image file {str(path)!r} is {_too_large(exc)}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"Image file {str(path)!r} cannot be read as an image ({exc}); replace or remove it.") from exc
    elif isinstance(item, (bytes, bytearray)):
        try:
            with Image.open(io.BytesIO(item)) as im:
                im.load()
                img = ImageOps.exif_transpose(im)
        except Image.DecompressionBombError as exc:
            raise InputError(f"Image bytes ({len(item)} bytes) are {_too_large(exc)}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"Image bytes ({len(item)} bytes) are not a readable image ({exc}); pass the bytes of a PNG, JPEG or other PIL format.") from exc
    elif isinstance(item, np.ndarray):
        img = _from_array(item)
    elif isinstance(item, Image.Image):
        img = ImageOps.exif_transpose(item)
    else:
        raise InputError(
            f"Image input {describe(item)} has unsupported type {type(item).__name__}; "
            "pass a path, pathlib.Path, PIL image, bytes or numpy array."
        )
    return to_rgb(img)


def _too_large(exc: Exception) -> str:
    """The end of an error message for PIL's decompression-bomb refusal, with PIL's figures when it gives them."""
    # PIL: "Image size (N pixels) exceeds limit of M pixels, could be decompression bomb DOS attack."
    figures = [f"{int(n):,}" for n in re.findall(r"(\d+) pixels", str(exc))]
    pixels = f"{figures[0]} pixels" if figures else "too many pixels"
    limit = f" of {figures[1]}" if len(figures) > 1 else ""
    return (
        f"too large: the image has {pixels}, over PIL's limit{limit} (a guard against decompression bombs); "
        "downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to RGB; transparent pixels become white rather than black."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").split()[-1])
        return background
    return img.convert("RGB")


def _from_array(arr: np.ndarray) -> Image.Image:
    a = arr
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or a.size == 0:
        raise InputError(f"Image array of shape {arr.shape} is not an image; pass HxW, HxWx3 or HxWx4.")
    if a.dtype != np.uint8:
        a = np.asarray(a, dtype=np.float64)
        if a.max(initial=0.0) <= 1.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    return Image.fromarray(a)
