"""Demonstrations (clinician-chosen example conversations) and the policies that pick them per request.

A demonstration is a :class:`~vital.records.Figure` with ``conversations``.
:func:`load_demonstrations` reads our figure JSONL or any format the figure
importers know (the BioMed-VITAL release included).  Policies, chosen by a
string on the command line:

``per-domain``
    one demonstration from each domain present in the pool, drawn at random
    (the reference implementation's choice, and the default);
``nearest[:k]``
    the ``k`` (default 3) demonstrations whose captions are closest to the
    figure's caption in sentence-embedding space;
``random:k``
    ``k`` demonstrations drawn at random.

Draws are seeded by (run seed, figure id, candidate number), so a rerun
builds the very same prompt and finds it in the response cache, while the
candidates of one figure see different demonstrations.  A figure is never
its own demonstration.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vital.errors import InputError
from vital.figures import iter_source
from vital.jsonl import warn
from vital.records import Figure, resolve_image


def stable_seed(*parts: Any) -> int:
    """A seed that is the same in every process (``hash()`` is salted per process)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def load_demonstrations(path: str | Path) -> list[Figure]:
    """Figures with conversations from ``path``; images that are missing are dropped with one warning."""
    path = Path(path)
    base = path.resolve().parent
    demos: list[Figure] = []
    missing = 0
    for line, figure in iter_source(path, "auto"):
        if not figure.conversations:
            continue
        image = resolve_image(figure.image, base)
        if image is not None and not image.is_file():
            missing += 1
            image = None
        figure.image = str(image) if image else None
        if figure.conversations[0].speaker != "human":
            raise InputError("a demonstration's conversation must start with a human turn",
                             path=path, line=line, field="conversations")
        demos.append(figure)
    if not demos:
        raise InputError("no figure with a conversation to use as a demonstration", path=path)
    if missing:
        warn(f"{path}: {missing} of {len(demos)} demonstration images are missing; "
             "those demonstrations are shown to the model by caption and conversation only")
    return demos


Policy = Callable[[Figure, int], list[Figure]]


@dataclass
class PerDomain:
    demos: list[Figure]
    seed: int = 0

    def __post_init__(self) -> None:
        self.by_domain: dict[str, list[Figure]] = defaultdict(list)
        for demo in self.demos:
            self.by_domain[(demo.domains or ["other"])[0]].append(demo)

    def __call__(self, figure: Figure, k: int) -> list[Figure]:
        rng = random.Random(stable_seed(self.seed, figure.id, k))
        chosen = []
        for domain in sorted(self.by_domain):
            pool = [demo for demo in self.by_domain[domain] if demo.id != figure.id]
            if pool:
                chosen.append(rng.choice(pool))
        return chosen


@dataclass
class RandomK:
    demos: list[Figure]
    k: int
    seed: int = 0

    def __call__(self, figure: Figure, k: int) -> list[Figure]:
        pool = [demo for demo in self.demos if demo.id != figure.id]
        rng = random.Random(stable_seed(self.seed, figure.id, k))
        return rng.sample(pool, min(self.k, len(pool)))


class Nearest:
    """The ``k`` demonstrations with the most similar captions (cosine of normalised embeddings)."""

    def __init__(self, demos: list[Figure], k: int, encoder: Any) -> None:
        self.demos, self.k, self.encoder = demos, k, encoder
        self.matrix = np.asarray(encoder.encode([demo.caption for demo in demos]), dtype=np.float32)
        self._embed = lru_cache(maxsize=1024)(self._embed_uncached)

    def _embed_uncached(self, caption: str) -> np.ndarray:
        return np.asarray(self.encoder.encode([caption]), dtype=np.float32)[0]

    def __call__(self, figure: Figure, k: int) -> list[Figure]:
        similarity = self.matrix @ self._embed(figure.caption)
        order = np.argsort(-similarity, kind="stable")
        return [self.demos[i] for i in order if self.demos[i].id != figure.id][: self.k]


def make_policy(spec: str, demos: list[Figure], *, seed: int = 0, encoder: Any = None) -> Policy:
    """Build the policy named by ``spec`` (``per-domain``, ``nearest[:k]``, ``random:k``)."""
    name, _, count = spec.partition(":")
    try:
        k = int(count) if count else 3
    except ValueError:
        raise InputError(f"{spec!r}: k must be a whole number", field="--demo-policy") from None
    if k < 1:
        raise InputError(f"{spec!r}: k must be at least 1", field="--demo-policy")
    if name == "per-domain" and not count:
        return PerDomain(demos, seed)
    if name == "random" and count:
        return RandomK(demos, k, seed)
    if name == "nearest":
        if encoder is None:
            from vital.embeddings import TextEncoder

            encoder = TextEncoder()
        return Nearest(demos, k, encoder)
    raise InputError(f"unknown policy {spec!r} (per-domain, nearest[:k] or random:k)", field="--demo-policy")
