"""Diversity-aware sampling of figures for clinicians to look at.

As in the paper: embed each figure (caption + mentions, and the image when an
image encoder is given), cluster the embeddings with k-means, then pick
figures round-robin across clusters, and within a cluster across domains
(always the domain picked least so far), so that every cluster is represented
once ``n >= clusters``.  The result depends only on the data and the seed.

>>> import vital
>>> result = vital.sample("figures.jsonl", "sample.jsonl", vital.SampleConfig(n=200, clusters=60))
>>> result.picked, result.cluster_picked
"""

from __future__ import annotations

import functools
import random
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vital.config import StageConfig, setting
from vital.embeddings import (
    EmbeddingCache,
    TextEncoder,
    default_cache_dir,
    embed_texts,
    encode_cached,
    file_content_keys,
)
from vital.errors import InputError
from vital.executor import Executor, executor_setting, open_executor
from vital.jsonl import atomic_writer, dumps
from vital.progress import Progress
from vital.records import Figure, FigureSource, is_path, portable_path, read_figures, require_records

# Above this many figures, mini-batch k-means keeps clustering time in seconds.
MINIBATCH_ABOVE = 20_000
# Caption + mentions are cut to this many tokens for clustering (MiniLM was trained on 128).
SAMPLE_MAX_TOKENS = 128


def figure_text(figure: Figure) -> str:
    """What a figure's text embedding sees: the caption, then the in-text mentions."""
    return " ".join([figure.caption, *figure.mentions])


@dataclass
class SampleConfig(StageConfig):
    """How many figures to pick, and how to embed and cluster them."""

    n: int = setting(help="How many figures to pick.")
    clusters: int = setting(60, "k for k-means (the paper uses about 60).")
    seed: int = setting(0, "Seed of k-means and of the round-robin order.")
    text_encoder: str | None = setting(
        None, "minilm (the packaged all-MiniLM-L6-v2, default) or a sentence-transformers name or local folder.")
    image_encoder: str | None = setting(
        None, "Also cluster on images: open_clip:local-dir:PATH (e.g. BiomedCLIP), open_clip:hf-hub:NAME, or "
        "descriptor (model-free pixel statistics).")
    cache_dir: Path | None = setting(None, "Embedding cache (default: $VITAL_CACHE_DIR, else ~/.cache/vital).")
    executor: str = executor_setting()

    def validate(self) -> None:
        if self.n < 1:
            raise InputError("must be at least 1", field="n")
        if self.clusters < 1:
            raise InputError("must be at least 1", field="clusters")


@dataclass
class SampleResult:
    out: Path
    n_figures: int
    n_clusters: int
    picked: int
    cluster_sizes: Counter = field(default_factory=Counter)
    cluster_picked: Counter = field(default_factory=Counter)
    domain_sizes: Counter = field(default_factory=Counter)
    domain_picked: Counter = field(default_factory=Counter)


def embed_images(
    paths: list[str | None], spec: str, cache_dir: Path, progress: Progress | None, executor: Executor | None = None
) -> np.ndarray:
    """Image vectors (zeros where the image is missing or unreadable), each distinct file encoded once and cached
    (by ``executor``'s workers, which build the encoder from ``spec``)."""
    from vital.selector.encoders import load_image_encoder

    encoder = load_image_encoder(spec)
    if encoder is None:
        return np.zeros((len(paths), 0), np.float32)
    keys = file_content_keys(paths)
    present = [i for i, key in enumerate(keys) if key is not None]
    present_keys = [key for key in keys if key is not None]
    out = np.zeros((len(paths), encoder.dim), np.float32)
    if present:
        out[present] = encode_cached(
            present_keys,
            [paths[i] for i in present],
            encoder.encode,
            encoder.dim,
            EmbeddingCache(cache_dir, encoder.name, encoder.dim),
            description="embedding images",
            progress=progress,
            executor=executor,
            rebuild=functools.partial(load_image_encoder, spec),
        )
    return np.nan_to_num(out, nan=0.0)  # encoders mark a file they cannot decode with NaN


def cluster(vectors: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means labels (full k-means for small corpora, mini-batch for large ones)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if len(vectors) > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=n_clusters, random_state=seed, n_init=3)
    return model.fit_predict(vectors)


def round_robin(labels: np.ndarray, domains: list[str], n: int, seed: int) -> list[int]:
    """Indices of ``n`` items taken one per cluster in turn, balancing domains within each cluster."""
    rng = random.Random(seed)
    queues: dict[int, dict[str, deque[int]]] = defaultdict(lambda: defaultdict(deque))
    order = list(range(len(labels)))
    rng.shuffle(order)
    for index in order:
        queues[int(labels[index])][domains[index]].append(index)
    cluster_order = sorted(queues)
    rng.shuffle(cluster_order)
    picked_per_domain: Counter = Counter()
    picked: list[int] = []
    while len(picked) < n and cluster_order:
        for label in list(cluster_order):
            by_domain = queues[label]
            domain = min(by_domain, key=lambda d: (picked_per_domain[d], d))
            picked.append(by_domain[domain].popleft())
            picked_per_domain[domain] += 1
            if not by_domain[domain]:
                del by_domain[domain]
            if not by_domain:
                cluster_order.remove(label)
            if len(picked) == n:
                break
    return picked


def sample(
    figures: FigureSource, out: str | Path, config: SampleConfig, *, progress: Progress | None = None
) -> SampleResult:
    """Write a diverse sample of ``config.n`` figures to ``out``, each with its ``cluster``.

    ``figures`` is a figures file or figure records.  With ``image_encoder``
    (a spec of :func:`vital.selector.encoders.load_image_encoder`, e.g.
    ``open_clip:local-dir:/models/biomedclip`` or ``descriptor``) image vectors
    join the text embedding before clustering; figures without a readable
    image get zeros there.
    """
    # A file is read twice (the second pass picks the chosen records) rather than held in memory.
    path: str | Path | None = None
    held: list[Figure] = []
    if is_path(figures):
        path = figures
    else:
        held = list(figures.values() if isinstance(figures, Mapping) else figures)

    def each_figure() -> Iterator[Figure]:
        return read_figures(path) if path is not None else iter(held)

    ids: list[str] = []
    texts: list[str] = []
    primary_domain: list[str] = []
    images: list[str | None] = []
    for figure in each_figure():
        ids.append(figure.id)
        texts.append(figure_text(figure))
        primary_domain.append(figure.domains[0] if figure.domains else "other")
        images.append(figure.image)
    require_records(ids, figures, "figures")
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, c in Counter(ids).items() if c > 1)
        raise InputError(f"figure id {duplicate!r} occurs more than once", path=path, field="id")

    cache = config.cache_dir or default_cache_dir()
    encoder = TextEncoder(config.text_encoder, max_seq_length=SAMPLE_MAX_TOKENS)
    with open_executor(config.executor) as executor:
        vectors = embed_texts(texts, encoder, cache, progress=progress, executor=executor)
        del texts
        if config.image_encoder:
            vectors = np.hstack([vectors, embed_images(images, config.image_encoder, cache, progress, executor)])
    n_clusters = min(config.clusters, len(ids))
    labels = cluster(vectors, n_clusters, config.seed)
    chosen = round_robin(labels, primary_domain, min(config.n, len(ids)), config.seed)

    summary = SampleResult(out=Path(out), n_figures=len(ids), n_clusters=n_clusters, picked=len(chosen))
    summary.cluster_sizes.update(int(label) for label in labels)
    summary.domain_sizes.update(primary_domain)
    position = {ids[index]: rank for rank, index in enumerate(chosen)}
    cluster_of = {ids[index]: int(labels[index]) for index in chosen}
    picked: dict[int, Figure] = {}
    for figure in each_figure():
        rank = position.get(figure.id)
        if rank is not None:
            picked[rank] = figure
    out = Path(out)
    out_dir = out.resolve().parent
    with atomic_writer(out) as handle:
        for _, figure in sorted(picked.items()):
            record = figure.to_json_dict()
            if figure.image:
                record["image"] = portable_path(figure.image, out_dir)
            record["cluster"] = cluster_of[figure.id]
            summary.cluster_picked[record["cluster"]] += 1
            summary.domain_picked[(figure.domains or ["other"])[0]] += 1
            handle.write(dumps(record) + "\n")
    return summary
