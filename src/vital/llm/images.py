"""Images as base64 data URLs for the chat-completions ``image_url`` content part.

Every format the foundation loads (PNG, JPEG, TIFF, DICOM) is accepted: PNG,
JPEG, GIF and WebP files small enough are sent as they are; anything else
(DICOM, TIFF, 16-bit) or anything larger than ``max_side`` goes through
:func:`vital.figures.images.load_image` and is re-encoded (JPEG stays JPEG,
the rest becomes PNG).  Encoded URLs are memoised, because the same
demonstration images go into many requests, within a budget of bytes (not a
count of images: a few large scans must not fill the memory).
"""

from __future__ import annotations

import base64
import io
from collections import OrderedDict
from pathlib import Path
from typing import Any

from PIL import Image

from vital.figures.images import ImageError, is_dicom, load_image

_PASS_THROUGH = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


CACHE_BUDGET_BYTES = 64 * 1024 * 1024


class _UrlCache:
    """Least-recently-used data URLs, evicted when their total size passes the budget."""

    def __init__(self, budget: int) -> None:
        self.budget, self.size = budget, 0
        self.urls: OrderedDict[tuple[str, int | None], str] = OrderedDict()

    def get(self, key: tuple[str, int | None]) -> str | None:
        url = self.urls.get(key)
        if url is not None:
            self.urls.move_to_end(key)
        return url

    def put(self, key: tuple[str, int | None], url: str) -> None:
        self.urls[key] = url
        self.size += len(url)
        while self.size > self.budget and len(self.urls) > 1:
            _, evicted = self.urls.popitem(last=False)
            self.size -= len(evicted)


_cache = _UrlCache(CACHE_BUDGET_BYTES)


def _needs_resize(size: tuple[int, int], max_side: int | None) -> bool:
    return max_side is not None and max(size) > max_side


def image_data_url(path: str, max_side: int | None = None) -> str:
    """``data:image/...;base64,...`` for an image file, downscaled so its longer side is at most ``max_side``.

    Raises :class:`vital.figures.images.ImageError` when the file is missing or unreadable.
    """
    url = _cache.get((path, max_side))
    if url is None:
        url = _encode(Path(path), max_side)
        _cache.put((path, max_side), url)
    return url


_EIGHT_BIT_MODES = {"1", "L", "LA", "P", "RGB", "RGBA"}


def _encode(file: Path, max_side: int | None) -> str:
    kind, size = None, (0, 0)  # DICOM and anything PIL cannot open: the loader decides
    if not is_dicom(file):
        try:
            with Image.open(file) as probe:
                # only 8-bit images pass unchanged; 16-bit and float ones go through the loader's window
                kind = probe.format if probe.mode in _EIGHT_BIT_MODES else None
                size = probe.size
        except (OSError, ValueError):
            pass
    if kind in _PASS_THROUGH and not _needs_resize(size, max_side):
        return f"data:{_PASS_THROUGH[kind]};base64,{base64.b64encode(file.read_bytes()).decode('ascii')}"
    image = load_image(file)
    if max_side is not None and _needs_resize(image.size, max_side):
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if kind == "JPEG":
        image.save(buffer, format="JPEG", quality=90)
        mime = "image/jpeg"
    else:
        image.save(buffer, format="PNG", optimize=False)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def image_part(path: str | Path, max_side: int | None = None) -> dict[str, Any]:
    """A chat-completions content part carrying the image at ``path``."""
    return {"type": "image_url", "image_url": {"url": image_data_url(str(path), max_side)}}


__all__ = ["ImageError", "image_data_url", "image_part"]
