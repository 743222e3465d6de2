"""One image loader for every stage: PNG, JPEG, TIFF and DICOM to an 8-bit PIL image.

DICOM pixel data are rescaled (RescaleSlope/Intercept), then windowed: the
file's own WindowCenter/WindowWidth when present, otherwise the 0.5th–99.5th
percentile of the pixel values, which suits CT, MR and radiographs alike.
MONOCHROME1 images are inverted so that bone is bright.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

DICOM_SUFFIXES = {".dcm", ".dicom"}


class ImageError(Exception):
    """An image that is missing or cannot be decoded."""


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _first(value: Any) -> float | None:
    """A DICOM tag's number (the first of a multi-valued tag); ``None`` when absent or not a number."""
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def window_to_uint8(pixels: np.ndarray, center: float | None = None, width: float | None = None) -> np.ndarray:
    """Map raw intensities to 0-255 through a window (percentiles when none is given)."""
    pixels = pixels.astype(np.float32)
    if center is None or width is None or width <= 0:
        low, high = np.percentile(pixels, [0.5, 99.5])
    else:
        low, high = center - width / 2.0, center + width / 2.0
    if high <= low:
        high = low + 1.0
    scaled = (np.clip(pixels, low, high) - low) / (high - low)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def dicom_pixels(path: Path) -> tuple[np.ndarray, dict]:
    """Rescaled pixel values of a DICOM file (the middle frame of a volume) and its tags."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(str(path))
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise ImageError(f"not a readable DICOM file ({exc})") from None
    if "PixelData" not in dataset:
        raise ImageError("DICOM file has no pixel data")
    try:
        pixels = dataset.pixel_array.astype(np.float32)
    except Exception as exc:  # pydicom raises many types for unsupported transfer syntaxes
        raise ImageError(f"cannot decode DICOM pixel data ({exc})") from None
    if pixels.ndim == 3 and dataset.get("SamplesPerPixel", 1) == 1:
        pixels = pixels[pixels.shape[0] // 2]
    slope = _first(dataset.get("RescaleSlope")) or 1.0
    intercept = _first(dataset.get("RescaleIntercept")) or 0.0
    pixels = pixels * slope + intercept
    tags = {
        "modality": str(dataset.get("Modality", "")),
        "window_center": _first(dataset.get("WindowCenter")),
        "window_width": _first(dataset.get("WindowWidth")),
        "photometric": str(dataset.get("PhotometricInterpretation", "")),
    }
    return pixels, tags


def load_image(path: str | Path, *, window: tuple[float, float] | None = None) -> Image.Image:
    """Load any supported image as RGB.

    ``window`` (center, width) overrides a DICOM file's own window.
    Raises :class:`ImageError` with the reason when the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError("image file not found")
    if is_dicom(path):
        pixels, tags = dicom_pixels(path)
        if pixels.ndim == 3:  # colour DICOM (RGB samples)
            return Image.fromarray(window_to_uint8(pixels)).convert("RGB")
        center, width = window if window else (tags["window_center"], tags["window_width"])
        gray = window_to_uint8(pixels, center, width)
        if tags["photometric"] == "MONOCHROME1":
            gray = 255 - gray
        return Image.fromarray(gray, mode="L").convert("RGB")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I", "F"):
                return Image.fromarray(window_to_uint8(np.asarray(image)), mode="L").convert("RGB")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"cannot decode image ({exc})") from None


def verify_image(path: str | Path) -> None:
    """Check cheaply that ``path`` is an image we can load; raise :class:`ImageError` with the reason.

    Raster files are checked by their header and structure (no full decode); DICOM
    files must parse and carry pixel data.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError("image file not found")
    if is_dicom(path):
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            dataset = pydicom.dcmread(str(path), defer_size="1 KB")
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise ImageError(f"not a readable DICOM file ({exc})") from None
        if "PixelData" not in dataset:
            raise ImageError("DICOM file has no pixel data")
        return
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot decode image ({exc})") from None
