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
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vital.embeddings import EmbeddingCache, content_key, encode_cached, file_content_keys
from vital.records import Candidate, Figure
from vital.selector.encoders import Encoder

LAYOUTS = ("split", "joint")


def conversation_text(candidate: Candidate) -> str:
    """The conversation as the reference writes it: ``Question: ... Answer: ...`` per exchange."""
    parts = []
    for turn in candidate.conversations:
        label = "Question" if turn.speaker == "human" else "Answer"
        parts.append(f"{label}: {turn.value.replace('<image>', '').strip()}")
    return " ".join(parts)


def context_text(figure: Figure | None) -> str:
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
        ``unique_rows(name, indices)`` (for ``--finetune-encoder``); other
        blocks come from the cached vectors.
        """
        import torch

        parts = []
        by_name = {}
        for block in self.blocks:
            rows = block.rows[indices]
            present = torch.from_numpy(rows >= 0)
            if live is not None and block.name in live:
                unique, inverse = np.unique(rows[rows >= 0], return_inverse=True)
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


def _encode_block(
    name: str,
    encoder: Encoder,
    keys: Sequence[str | None],
    payloads: Sequence[Any],
    cache_dir: Path | None,
    show_progress: bool,
) -> tuple[FeatureBlock, int]:
    """Vectors of the distinct ``keys`` (``None``: absent), and how many were actually encoded."""
    unique: dict[str, int] = {}
    unique_payloads: list[Any] = []
    rows = np.full(len(keys), -1, dtype=np.int64)
    for index, key in enumerate(keys):
        if key is None:
            continue
        if key not in unique:
            unique[key] = len(unique)
            unique_payloads.append(payloads[index])
        rows[index] = unique[key]
    if not unique:  # e.g. no candidate has an image file
        return FeatureBlock(name, encoder, [], np.zeros((0, encoder.dim), np.float32), rows), 0
    cache = EmbeddingCache(cache_dir, encoder.name, encoder.dim) if cache_dir is not None else None
    misses = sum(1 for key in unique if cache is None or key not in cache)
    vectors = encode_cached(
        list(unique),
        unique_payloads,
        encoder.encode,
        encoder.dim,
        cache,
        description=f"encoding {name}s",
        progress=None,  # TODO(selector refactor): Selector takes a Progress
    )
    return FeatureBlock(name, encoder, unique_payloads, vectors, rows), misses


@dataclass
class Featurizer:
    """Builds :class:`FeatureSet` objects from candidates and figures with a fixed set of encoders."""

    text_encoder: Encoder
    image_encoder: Encoder | None
    layout: str = "split"
    cache_dir: Path | None = None
    show_progress: bool = True

    def transform(self, candidates: Sequence[Candidate], figures: Mapping[str, Figure]) -> FeatureSet:
        blocks: list[FeatureBlock] = []
        encoded: dict[str, int] = {}
        missing = unreadable = 0
        if self.image_encoder is not None:
            image_keys = file_content_keys([candidate.image for candidate in candidates])
            missing = sum(key is None for key in image_keys)
            block, encoded["image"] = _encode_block(
                "image",
                self.image_encoder,
                image_keys,
                [c.image for c in candidates],
                self.cache_dir,
                self.show_progress,
            )
            unreadable_rows = np.isnan(block.vectors).any(axis=1)
            if unreadable_rows.any():
                gone = unreadable_rows[np.maximum(block.rows, 0)] & (block.rows >= 0)
                unreadable = int(gone.sum())
                block.rows[gone] = -1
                block.vectors = np.nan_to_num(block.vectors)
            blocks.append(block)
        contexts = [context_text(figures.get(c.figure_id)) for c in candidates]
        conversations = [conversation_text(c) for c in candidates]
        if self.layout == "split":
            texts = {"context": contexts, "conversation": conversations}
        else:
            texts = {"text": [f"{a} {b}".strip() for a, b in zip(contexts, conversations, strict=True)]}
        for name, values in texts.items():
            keys = [content_key(v) if v else None for v in values]
            block, encoded[name] = _encode_block(
                name, self.text_encoder, keys, values, self.cache_dir, self.show_progress
            )
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
