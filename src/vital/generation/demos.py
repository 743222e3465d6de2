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

from vital.conversation import ConversationError, check_turns
from vital.errors import InputError
from vital.figures.importers import iter_source
from vital.jsonl import warn
from vital.records import Figure, resolve_image


def stable_seed(*parts: Any) -> int:
    """A seed that is the same in every process (``hash()`` is salted per process)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def load_demonstrations(path: str | Path) -> list[Figure]:
    """The usable demonstrations in ``path``: figures whose conversation follows the turn rules.

    A record without a conversation, or whose conversation breaks the rules of
    :func:`vital.conversation.check_turns` (two of the 58 released BioMed-VITAL
    demonstrations have two gpt turns in a row), is left out with a warning
    naming it and the turn at fault, and one more warning counts them.
    Demonstrations whose image is missing are kept, shown by text alone (one warning).
    """
    path = Path(path)
    base = path.resolve().parent
    demos: list[Figure] = []
    missing = records = 0
    for line, figure in iter_source(path, "auto"):
        records += 1
        where = f"{path}:{line}: demonstration {_name(figure)}"
        if not figure.conversations:
            warn(f"{where} has no conversation; it is left out")
            continue
        try:
            check_turns(figure.conversations)
        except ConversationError as exc:
            warn(f"{where}: {exc.problem}; it is left out")
            continue
        image = resolve_image(figure.image, base)
        if image is not None and not image.is_file():
            missing += 1
            image = None
        figure.image = str(image) if image else None
        demos.append(figure)
    if records > len(demos):
        warn(f"{path}: {records - len(demos)} of {records} demonstration records are unusable and left out "
             f"of prompts ({len(demos)} usable)")
    if not demos:
        raise InputError("no figure with a usable conversation to use as a demonstration", path=path)
    if missing:
        warn(f"{path}: {missing} of {len(demos)} demonstration images are missing; "
             "those demonstrations are shown to the model by caption and conversation only")
    return demos


def _name(figure: Figure) -> str:
    """How a warning names a demonstration: its id, and the release's record number when it has one."""
    index = figure.meta.get("demo_index")
    return f"{figure.id!r}" + (f" (record id {index})" if index is not None else "")


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


def parse_policy(spec: str) -> tuple[str, int]:
    """``per-domain``, ``nearest[:k]`` or ``random:k`` -> ``(name, k)`` (``k`` is 3 when not given)."""
    name, _, count = spec.partition(":")
    try:
        k = int(count) if count else 3
    except ValueError:
        raise InputError(f"{spec!r}: k must be a whole number", field="demo_policy") from None
    if k < 1:
        raise InputError(f"{spec!r}: k must be at least 1", field="demo_policy")
    if (name, bool(count)) not in (("per-domain", False), ("random", True), ("nearest", False), ("nearest", True)):
        raise InputError(f"unknown policy {spec!r} (per-domain, nearest[:k] or random:k)", field="demo_policy")
    return name, k


def make_policy(spec: str, demos: list[Figure], *, seed: int = 0, encoder: Any = None) -> Policy:
    """Build the policy named by ``spec`` (see :func:`parse_policy`)."""
    name, k = parse_policy(spec)
    if name == "per-domain":
        return PerDomain(demos, seed)
    if name == "random":
        return RandomK(demos, k, seed)
    if encoder is None:
        from vital.embeddings import TextEncoder

        encoder = TextEncoder()
    return Nearest(demos, k, encoder)
