"""Candidate features: what the selector's head sees, computed once and cached on disk.

A candidate is described by up to three vectors, each from one encoder:

``image``
    the figure's image (absent when the file is missing or unreadable: the
    candidate then has text features only, and is counted);
``context``
    the caption and in-text mentions (one per figure);
``conversation``
    the turns as ``Question: ... Answer: ...``;

plus, in the default ``split`` layout, the cosine similarity of context and
conversation (how closely the conversation keeps to its figure).  The
reference implementation encodes one string, caption + mention + question +
answer, which the ``joint`` layout reproduces; ``split`` is the default
because a 256-token encoder would otherwise cut the conversation off behind
a long caption, and because each caption is then encoded once per figure.

Every distinct input (image bytes, text) is encoded once per encoder through
:func:`vital.embeddings.encode_cached`, whose memory-mapped cache lives in
``cache_dir``: a second training run, a sweep or a scoring run re-encodes
nothing.  Given an executor (:mod:`vital.executor`), the inputs the cache lacks
are encoded by its workers (Ray actors), and this process adds their vectors to
the cache; the features are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vital.conversation import conversation_text
from vital.embeddings import EmbeddingCache, content_key, encode_cached, file_content_keys
from vital.executor import Executor
from vital.progress import Progress
from vital.records import Candidate, Figure
from vital.selector.encoders import Encoder

__all__ = ["BlockInputs", "FeatureBlock", "FeatureSet", "Featurizer", "context_text"]


def context_text(figure: Figure | None) -> str:
    """What the ``context`` block sees: the caption, then the in-text mentions."""
    if figure is None:
        return ""
    return " ".join([figure.caption.strip(), *(m.strip() for m in figure.mentions)]).strip()


@dataclass
class FeatureBlock:
    """One encoder's vectors: ``vectors[rows[i]]`` belongs to candidate ``i`` (``rows[i] == -1``: absent)."""

    name: str
    encoder: Encoder
    payloads: list[Any]
    vectors: np.ndarray
    rows: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


@dataclass
class FeatureSet:
    """Features of a list of candidates, aligned with it; rows are gathered per batch, never all at once."""

    candidate_ids: list[str]
    figure_ids: list[str]
    layout: str
    blocks: list[FeatureBlock]
    images_missing: int = 0
    images_unreadable: int = 0
    encoded: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.candidate_ids)

    @property
    def dim(self) -> int:
        return sum(block.dim for block in self.blocks) + (1 if self.layout == "split" else 0)

    def block(self, name: str) -> FeatureBlock | None:
        return next((b for b in self.blocks if b.name == name), None)

    def matrix(self, indices: np.ndarray, live: Mapping[str, Any] | None = None) -> Any:
        """A torch float tensor of the candidates at ``indices``.

        ``live`` maps block names to tensors computed by a trainable encoder for
        ``unique_payloads(name, indices)`` (for ``--finetune-encoder``); other
        blocks come from the cached vectors.
        """
        import torch

        parts = []
        by_name = {}
        for block in self.blocks:
            rows = block.rows[indices]
            present = torch.from_numpy(rows >= 0)
            if live is not None and block.name in live:
                _, inverse = np.unique(rows[rows >= 0], return_inverse=True)
                values = torch.zeros(len(indices), block.dim)
                values = values.index_put(
                    (present.nonzero().squeeze(1),), live[block.name][torch.from_numpy(inverse)]
                )
            elif len(block.vectors) == 0:  # e.g. no figure has a caption
                values = torch.zeros(len(indices), block.dim)
            else:
                values = torch.from_numpy(block.vectors[np.maximum(rows, 0)]) * present.unsqueeze(1)
            by_name[block.name] = values
            parts.append(values)
        if self.layout == "split":
            similarity = torch.nn.functional.cosine_similarity(
                by_name["context"], by_name["conversation"], dim=1
            )
            parts.append(similarity.unsqueeze(1))
        return torch.cat(parts, dim=1)

    def unique_payloads(self, name: str, indices: np.ndarray) -> list[Any]:
        """The inputs of block ``name`` for ``indices``, each once, in the order :meth:`matrix` expects."""
        block = self.block(name)
        assert block is not None
        rows = block.rows[indices]
        return [block.payloads[row] for row in np.unique(rows[rows >= 0])]


@dataclass
class BlockInputs:
    """What one encoder has to see for a list of candidates: each distinct input once.

    ``payloads[j]`` (an image path or a text) has the content key ``keys[j]``;
    candidate ``i`` uses row ``rows[i]`` (``-1``: it has no such input, e.g.
    no image file).  Computing these needs no model, so an executor can encode
    the keys the cache lacks anywhere and add them to the cache before
    :meth:`Featurizer.transform` gathers the vectors.
    """

    name: str
    encoder: Encoder
    keys: list[str]
    payloads: list[Any]
    rows: np.ndarray


def _distinct(name: str, encoder: Encoder, keys: Sequence[str | None], payloads: Sequence[Any]) -> BlockInputs:
    first: dict[str, int] = {}
    distinct_payloads: list[Any] = []
    rows = np.full(len(keys), -1, dtype=np.int64)
    for index, key in enumerate(keys):
        if key is None:
            continue
        if key not in first:
            first[key] = len(first)
            distinct_payloads.append(payloads[index])
        rows[index] = first[key]
    return BlockInputs(name, encoder, list(first), distinct_payloads, rows)


@dataclass
class Featurizer:
    """Builds :class:`FeatureSet` objects from candidates and figures with a fixed set of encoders.

    ``cache_dir`` holds the memory-mapped vectors (``None``: nothing is kept
    on disk).  :meth:`transform` works on any subset of candidates, so it can
    run per batch.  ``rebuild`` maps ``"text"`` / ``"image"`` to how an
    executor's worker builds that encoder (e.g. from its spec); an encoder
    without one, or a fine-tuned one, is sent to the workers pickled.
    """

    text_encoder: Encoder
    image_encoder: Encoder | None
    layout: str = "split"
    cache_dir: Path | None = None
    rebuild: Mapping[str, Callable[[], Encoder]] = field(default_factory=dict)

    def cache(self, encoder: Encoder) -> EmbeddingCache | None:
        """The on-disk vectors of ``encoder`` (``None`` without a ``cache_dir``)."""
        return EmbeddingCache(self.cache_dir, encoder.name, encoder.dim) if self.cache_dir is not None else None

    def inputs(self, candidates: Sequence[Candidate], figures: Mapping[str, Figure]) -> list[BlockInputs]:
        """The distinct inputs of every block for ``candidates`` (image files are read to hash them)."""
        blocks = []
        if self.image_encoder is not None:
            images = [candidate.image for candidate in candidates]
            blocks.append(_distinct("image", self.image_encoder, file_content_keys(images), images))
        contexts = [context_text(figures.get(c.figure_id)) for c in candidates]
        conversations = [conversation_text(c.conversations) for c in candidates]
        if self.layout == "split":
            texts = {"context": contexts, "conversation": conversations}
        else:
            texts = {"text": [f"{a} {b}".strip() for a, b in zip(contexts, conversations, strict=True)]}
        for name, values in texts.items():
            keys = [content_key(value) if value else None for value in values]
            blocks.append(_distinct(name, self.text_encoder, keys, values))
        return blocks

    def transform(
        self, candidates: Sequence[Candidate], figures: Mapping[str, Figure], *, progress: Progress | None = None,
        executor: Executor | None = None,
    ) -> FeatureSet:
        """Features of ``candidates``: each distinct input encoded once, ever (through the cache), by
        ``executor``'s workers (default: in this process)."""
        blocks: list[FeatureBlock] = []
        encoded: dict[str, int] = {}
        missing = unreadable = 0
        for inputs in self.inputs(candidates, figures):
            encoder = inputs.encoder
            if not inputs.keys:  # e.g. no candidate has an image file
                vectors = np.zeros((0, encoder.dim), np.float32)
                encoded[inputs.name] = 0
            else:
                cache = self.cache(encoder)
                encoded[inputs.name] = sum(1 for key in inputs.keys if cache is None or key not in cache)
                role = "image" if inputs.name == "image" else "text"
                rebuild = None if getattr(encoder, "tuned_from", None) else self.rebuild.get(role)
                vectors = encode_cached(inputs.keys, inputs.payloads, encoder.encode, encoder.dim, cache,
                                        description=f"encoding {inputs.name}s", progress=progress,
                                        executor=executor, rebuild=rebuild)
            block = FeatureBlock(inputs.name, encoder, inputs.payloads, vectors, inputs.rows)
            if inputs.name == "image":
                missing = int((block.rows < 0).sum())
                unreadable = _drop_unreadable(block)
            blocks.append(block)
        return FeatureSet(
            [c.id for c in candidates],
            [c.figure_id for c in candidates],
            self.layout,
            blocks,
            images_missing=missing,
            images_unreadable=unreadable,
            encoded=encoded,
        )


def _drop_unreadable(block: FeatureBlock) -> int:
    """Mark candidates whose image the encoder could not read (a NaN row) as having no image; how many."""
    unreadable_rows = np.isnan(block.vectors).any(axis=1)
    if not unreadable_rows.any():
        return 0
    gone = unreadable_rows[np.maximum(block.rows, 0)] & (block.rows >= 0)
    block.rows[gone] = -1
    block.vectors = np.nan_to_num(block.vectors)
    return int(gone.sum())
