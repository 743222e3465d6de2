"""Figure images for the browser: originals for web formats, PNG renderings for DICOM and TIFF.

DICOM images are rendered through :func:`vital.figures.images.load_image`,
with the file's own window by default or a preset.  The presets are CT
windows in Hounsfield units, offered only for CT.

Only files inside the image folders recorded at loading are shown, checked
with symlinks resolved (:func:`confined`): a link in an image folder that
points elsewhere shows nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from vital.figures.images import ImageError, is_dicom, load_image

#: name -> (center, width) in Hounsfield units
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
}
DEFAULT_WINDOW = "default"
WEB_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def confined(image: str | Path, folders: Iterable[str | Path]) -> Path | None:
    """``image`` with symlinks resolved, when that lies inside one of ``folders`` (resolved paths); else ``None``."""
    try:
        real = Path(image).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return real if any(real.is_relative_to(folder) for folder in folders) else None


@dataclass(frozen=True)
class ImageInfo:
    dicom: bool
    modality: str

    @property
    def windows(self) -> list[str]:
        """Window choices to offer for CT: the file's own, then the presets (other images: none)."""
        return [DEFAULT_WINDOW, *CT_WINDOWS] if self.dicom and self.modality == "CT" else []


@lru_cache(maxsize=4096)
def _info(path: str, mtime: float) -> ImageInfo:
    file = Path(path)
    if not is_dicom(file):
        return ImageInfo(False, "")
    import pydicom

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # an unreadable header: browser_image reports the problem when the image is asked for
        return ImageInfo(True, "")
    return ImageInfo(True, str(dataset.get("Modality", "")))


def image_info(path: str) -> ImageInfo:
    try:
        return _info(path, Path(path).stat().st_mtime)
    except OSError:
        return ImageInfo(False, "")


@lru_cache(maxsize=64)
def _render_png(path: str, mtime: float, window: str) -> bytes:
    image = load_image(path, window=CT_WINDOWS.get(window))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def browser_image(path: str, window: str = DEFAULT_WINDOW) -> tuple[bytes | Path, str]:
    """What to send for an image: the file itself (web formats) or PNG bytes, and the media type.

    Raises :class:`ImageError` when the file is missing or unreadable, and
    ``ValueError`` for an unknown window name.
    """
    if window != DEFAULT_WINDOW and window not in CT_WINDOWS:
        raise ValueError(f"unknown window {window!r} (expected one of: {', '.join([DEFAULT_WINDOW, *CT_WINDOWS])})")
    file = Path(path)
    try:
        mtime = file.stat().st_mtime
    except OSError:
        raise ImageError("image file not found") from None
    media_type = WEB_TYPES.get(file.suffix.lower())
    if media_type and not is_dicom(file):
        return file, media_type
    return _render_png(path, mtime, window), "image/png"
