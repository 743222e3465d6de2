"""The selector: a rating function distilled from clinician and model-judge preferences.

>>> selector = Selector(SelectorConfig(human_weight=100)).fit(
...     "candidates.jsonl", "figures.jsonl", preferences="preferences.jsonl", scores="scores.jsonl")
>>> selector.metrics["held_out"]["agreement"], selector.metrics["judge_on_held_out"]["agreement"]
>>> selector.save("selector/")
>>> Selector.load("selector/").predict("candidates.jsonl", "figures.jsonl")    # one float per candidate
>>> Selector.load("selector/").write_scores("candidates.jsonl", "figures.jsonl", "selector-scores.jsonl")

The head is an MLP over the concatenated candidate features (by default the
reference's: three hidden layers of 512 with ReLU), trained with a pairwise
loss: the hinge ``max(0, margin - (s_preferred - s_other))`` of the
reference, or the logistic (Bradley-Terry) ``log(1 + exp(-(s_preferred -
s_other)))``.  Each pair has a weight (clinician pairs: ``human_weight`` times
the record's own weight; judge pairs: 1) and a step minimises the batch's
``mean(weight * loss)``.  Unlike the reference, the head ends without a
sigmoid, so a hinge margin of 1 can be met, and features come from the cache
rather than being re-encoded every epoch (``finetune_encoder`` re-encodes, as
the reference does, to train the encoders too).

Clinician pairs are split by figure into training and held-out parts; the
held-out part drives early stopping and the reported metrics, beside the
judge's own agreement on the same pairs.  Without clinician pairs, judge
pairs of held-out figures play that role.

The training curves (``curves.json``, ``training_curves.png``) report both
losses as weight-normalised means, ``sum(weight * loss) / sum(weight)``: the
loss of an average pair as training weighs it.  The training and held-out
curves are therefore on one scale whatever ``human_weight`` is (a held-out
set of clinician pairs is not 100 times worse at weight 100).

Randomness (pair sampling, the split, initial weights, batch order, dropout)
comes from generators seeded with ``seed``; the global RNGs of numpy and
torch are neither seeded nor drawn from.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vital import __version__
from vital.errors import InputError
from vital.executor import open_executor
from vital.jsonl import refuse_input_as_output, write_json_atomic, write_jsonl_atomic
from vital.progress import Progress, or_silent
from vital.records import Candidate, CandidateSource, Figure, FigureSource, PreferenceSource, Score, ScoreSource
from vital.selector import inputs
from vital.selector.config import SelectorConfig
from vital.selector.encoders import Encoder, load_image_encoder, load_text_encoder
from vital.selector.features import FeatureSet, Featurizer
from vital.selector.metrics import agreement, pair_metrics
from vital.selector.pairs import Pairs, TrainingPairs, preference_pairs, training_pairs

TRAIN_AGREEMENT_SAMPLE = 2000
"""Training pairs whose agreement is measured after each epoch (a sample: the curve, not a metric)."""


def build_head(input_dim: int, config: SelectorConfig, generator: Any) -> Any:
    """The MLP: input standardisation, ``hidden_layers`` x (Linear, ReLU, Dropout), then one output.

    Initial weights (PyTorch's default scheme) and dropout masks are drawn
    from ``generator``, a ``torch.Generator``.
    """
    import torch
    from torch import nn

    class SeededDropout(nn.Module):
        """Dropout whose masks come from the head's generator, not torch's global one."""

        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = p

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p == 0:
                return x
            keep = torch.rand(x.shape, generator=generator) >= self.p
            return x * keep / (1 - self.p)

    def linear(width_in: int, width_out: int) -> nn.Linear:
        layer = nn.utils.skip_init(nn.Linear, width_in, width_out)
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(width_in)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        return layer

    class RankingHead(nn.Module):
        mean: torch.Tensor
        scale: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(input_dim))
            self.register_buffer("scale", torch.ones(input_dim))
            layers: list[nn.Module] = []
            width = input_dim
            for _ in range(config.hidden_layers):
                layers += [linear(width, config.hidden_size), nn.ReLU(), SeededDropout(config.dropout)]
                width = config.hidden_size
            layers.append(linear(width, 1))
            self.mlp = nn.Sequential(*layers)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.mlp((features - self.mean) / self.scale).squeeze(-1)

    return RankingHead()


def pairwise_loss(margins: Any, config: SelectorConfig) -> Any:
    """The loss of each pair (a tensor like ``margins``, which are ``s_preferred - s_other``)."""
    import torch

    if config.loss == "hinge":
        return torch.clamp(config.margin - margins, min=0.0)
    return torch.nn.functional.softplus(-margins)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """``sum(weights * values) / sum(weights)``; the plain mean when every weight is 0."""
    total = float(weights.sum())
    return float((values * weights).sum() / total) if total > 0 else float(values.mean())


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run torch on ``count`` threads: the head's tensors are small, and one thread beats two that contend."""
    import torch

    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class ScoreResult:
    """What :meth:`Selector.write_scores` wrote: one ``source: "selector"`` score per candidate."""

    out: Path
    scored: int
    images_missing: int = 0
    """Candidates without an image file (scored on text features only)."""
    images_unreadable: int = 0
    """Candidates whose image the encoder could not read (scored on text features only)."""
    encoded: dict[str, int] = field(default_factory=dict)
    """Inputs encoded now, per feature block (the rest came from the cache)."""


class Selector:
    """Fit on candidates with preferences and/or judge scores; predict scores for any candidates.

    ``text_encoder`` / ``image_encoder`` replace the encoders the config
    names (objects with ``name``, ``dim`` and ``encode``); ``cache_dir`` is
    the feature cache (default: ``$VITAL_CACHE_DIR``, else
    ``~/.cache/vital``, shared with ``vital sample``).
    """

    def __init__(
        self,
        config: SelectorConfig | None = None,
        *,
        text_encoder: Encoder | None = None,
        image_encoder: Encoder | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        from vital.embeddings import default_cache_dir

        self.config = config or SelectorConfig()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._text_encoder = text_encoder
        self._image_encoder = image_encoder
        self._featurizer: Featurizer | None = None
        self.head: Any = None
        self.input_dim: int | None = None
        self.metrics: dict[str, Any] = {}
        """What :meth:`fit` measured (``metrics.json``): pair counts, held-out metrics, the judge's, epochs."""
        self.curves: list[dict[str, float]] = []
        """Per epoch: ``train_loss``, ``train_agreement``, ``held_out_loss``, ``held_out_agreement``."""
        self.tuned_id: str | None = None
        self.directory: Path | None = None
        """Where the selector was saved or loaded from."""

    # -- features ---------------------------------------------------------
    @property
    def featurizer(self) -> Featurizer:
        """The encoders (loaded on first use) and the feature cache."""
        if self._featurizer is None:
            text = self._text_encoder or load_text_encoder(self.config.text_encoder)
            image = self._image_encoder or load_image_encoder(self.config.image_encoder)
            # an executor's workers load the encoders from their specs, on the GPU they were given if any
            rebuild: dict[str, Any] = {}
            if self._text_encoder is None:
                rebuild["text"] = functools.partial(load_text_encoder, self.config.text_encoder, device="auto")
            if self._image_encoder is None:
                rebuild["image"] = functools.partial(load_image_encoder, self.config.image_encoder, device="auto")
            self._featurizer = Featurizer(text, image, self.config.text_layout, self.cache_dir, rebuild)
        return self._featurizer

    def features(
        self, candidates: CandidateSource, figures: FigureSource | None = None, *, progress: Progress | None = None
    ) -> FeatureSet:
        """Features of ``candidates`` (each distinct image and text encoded once, ever, through the cache)."""
        index = inputs.figures(figures)
        return self._transform(inputs.candidates(candidates, index), index, progress)

    def _transform(self, candidates: Sequence[Candidate], index: Mapping[str, Figure],
                   progress: Progress | None) -> FeatureSet:
        """Features through the cache, the misses encoded on ``config.executor`` (started for this call)."""
        with open_executor(self.config.executor) as executor:
            return self.featurizer.transform(candidates, index, progress=progress, executor=executor)

    def _trainable(self) -> dict[str, Encoder]:
        """Blocks whose encoder has torch weights, when ``finetune_encoder`` is on."""
        if not self.config.finetune_encoder:
            return {}
        featurizer = self.featurizer
        out: dict[str, Encoder] = {}
        for name in ("image", "context", "conversation", "text"):
            encoder = featurizer.image_encoder if name == "image" else featurizer.text_encoder
            if encoder is not None and hasattr(encoder, "forward") and hasattr(encoder, "module"):
                out[name] = encoder
        if not out:
            raise InputError(
                "--finetune-encoder needs a torch encoder (a sentence-transformers or open_clip model); "
                f"{self.config.text_encoder!r} and {self.config.image_encoder!r} have no weights to train",
                field="finetune_encoder",
            )
        return out

    def _matrix(self, features: FeatureSet, rows: np.ndarray, trainable: Mapping[str, Encoder]) -> Any:
        """The head's input for ``rows``: cached vectors, or the trainable encoders' live output."""
        live = {}
        for name, encoder in trainable.items():
            if features.block(name) is not None:
                payloads = features.unique_payloads(name, rows)
                if payloads:
                    live[name] = encoder.forward(payloads)  # type: ignore[attr-defined]
        return features.matrix(rows, live or None)

    def _score_rows(
        self, features: FeatureSet, rows: np.ndarray, trainable: Mapping[str, Encoder] | None = None
    ) -> np.ndarray:
        """Scores of the candidates at ``rows`` (no gradients, in evaluation mode, 1024 at a time)."""
        import torch

        was_training = self.head.training
        self.head.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), 1024):
                out.append(self.head(self._matrix(features, rows[start : start + 1024], trainable or {})).numpy())
        self.head.train(was_training)
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def _pair_scores(
        self, features: FeatureSet, pairs: Pairs, trainable: Mapping[str, Encoder] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores of the preferred and of the other candidate of each pair."""
        rows, inverse = np.unique(np.concatenate([pairs.preferred, pairs.other]), return_inverse=True)
        values = self._score_rows(features, rows, trainable)[inverse]
        return values[: len(pairs)], values[len(pairs) :]

    # -- training -----------------------------------------------------------
    def fit(
        self,
        candidates: CandidateSource,
        figures: FigureSource | None = None,
        *,
        scores: ScoreSource | None = None,
        preferences: PreferenceSource | None = None,
        features: FeatureSet | None = None,
        progress: Progress | None = None,
    ) -> Selector:
        """Train the head (and the encoders with ``finetune_encoder``) on the pairs these inputs give.

        ``scores`` are the model judge's (records of source ``model``);
        ``preferences`` are clinician pairs (source ``human``) and a judge's
        pairwise verdicts (source ``model``).  ``features``, from
        :meth:`features` of the same candidates, skips feature extraction.
        Every input is read and checked before any encoder is loaded.
        """
        started = time.perf_counter()
        index, candidate_list = {}, []
        if features is None:
            index = inputs.figures(figures)
            candidate_list = inputs.candidates(candidates, index)
        judged = inputs.judge_scores(scores)
        preference_list = inputs.preferences(preferences)
        if features is None:
            features = self._transform(candidate_list, index, progress)
        pairs = training_pairs(features.candidate_ids, features.figure_ids, self.config,
                               preferences=preference_list, scores=judged)
        if len(pairs.train) == 0:
            raise InputError(
                "no training pairs: give clinician preferences naming these candidates, or judge scores "
                "with at least two different values",
                field="preferences",
            )
        trainable = self._trainable()
        with _torch_threads(None if trainable else 1):
            best_epoch = self._train(features, pairs, trainable, progress)
            self.metrics = self._held_out_metrics(features, pairs, judged, trainable)
        self.metrics["epochs_run"] = len(self.curves)
        self.metrics["best_epoch"] = best_epoch
        self.metrics["seconds"] = round(time.perf_counter() - started, 2)
        return self

    def _train(
        self, features: FeatureSet, pairs: TrainingPairs, trainable: Mapping[str, Encoder],
        progress: Progress | None,
    ) -> int:
        """The training loop: epochs of shuffled pair batches, each epoch evaluated on the held-out pairs;
        stops early after ``patience`` epochs without gain and keeps the best epoch's weights (returned)."""
        import torch

        config = self.config
        train, held = pairs.train, pairs.held_out
        generator = torch.Generator().manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)

        self.input_dim = features.dim
        self.head = build_head(features.dim, config, generator)
        self.head.mean, self.head.scale = _moments(features, np.union1d(train.preferred, train.other))
        encoders = list({id(encoder): encoder for encoder in trainable.values()}.values())
        modules = {"head": self.head, **{f"encoder{i}": e.module for i, e in enumerate(encoders)}}  # type: ignore
        groups = [{"params": list(self.head.parameters()), "lr": config.lr}]
        encoder_params = list({id(p): p for e in encoders for p in e.module.parameters()}.values())  # type: ignore
        if encoder_params:
            groups.append({"params": encoder_params, "lr": config.encoder_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, fused=True)
        weights = torch.from_numpy(train.weight)

        self.curves = []
        best_key, best_epoch, best_state, stale = None, config.epochs, None, 0
        steps = math.ceil(len(train) / config.batch_size)
        with or_silent(progress).task(f"training on {len(train):,} pairs", total=steps * config.epochs) as task:
            for epoch in range(1, config.epochs + 1):
                task.update(title=f"training, epoch {epoch}/{config.epochs}")
                for module in modules.values():
                    module.train(True)
                weighted_loss = weight_sum = 0.0
                order = rng.permutation(len(train))
                for start in range(0, len(order), config.batch_size):
                    batch = order[start : start + config.batch_size]
                    rows, inverse = np.unique(np.concatenate([train.preferred[batch], train.other[batch]]),
                                              return_inverse=True)
                    scores = self.head(self._matrix(features, rows, trainable))[torch.from_numpy(inverse)]
                    weighted = pairwise_loss(scores[: len(batch)] - scores[len(batch) :], config) * weights[batch]
                    loss = weighted.mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    weighted_loss += float(weighted.detach().sum())
                    weight_sum += float(weights[batch].sum())
                    task.advance()
                for module in modules.values():
                    module.train(False)

                sample = train.subset(rng.permutation(len(train))[:TRAIN_AGREEMENT_SAMPLE])
                point = {
                    "epoch": epoch,
                    "train_loss": weighted_loss / weight_sum if weight_sum > 0 else math.nan,
                    "train_agreement": agreement(*self._pair_scores(features, sample, trainable)),
                }
                if len(held):
                    preferred, other = self._pair_scores(features, held, trainable)
                    losses = pairwise_loss(torch.from_numpy(preferred - other), config).numpy()
                    point["held_out_loss"] = weighted_mean(losses, held.weight)
                    point["held_out_agreement"] = agreement(preferred, other)
                self.curves.append(point)
                task.update(status=f"loss {point['train_loss']:.3f}, held-out agreement "
                                   f"{point.get('held_out_agreement', math.nan):.3f}")

                if not len(held):
                    continue
                key = (point["held_out_agreement"], -point["held_out_loss"])
                if best_key is None or key > best_key:
                    best_key, best_epoch, stale = key, epoch, 0
                    best_state = {name: copy.deepcopy(module.state_dict()) for name, module in modules.items()}
                else:
                    stale += 1
                    if config.patience and stale >= config.patience:
                        break

        if best_state is not None:
            for name, module in modules.items():
                module.load_state_dict(best_state[name])
        if trainable:
            self._mark_tuned(encoders)
        return best_epoch

    def _held_out_metrics(
        self, features: FeatureSet, pairs: TrainingPairs, judged: Mapping[str, float],
        trainable: Mapping[str, Encoder],
    ) -> dict[str, Any]:
        """metrics.json: counts, the selector's metrics on the held-out pairs and the judge's on the same."""
        held = pairs.held_out
        metrics: dict[str, Any] = {
            "pairs": asdict(pairs.counts),
            "held_out_source": pairs.held_out_source,
            "candidates": len(features),
            "images_missing": features.images_missing,
            "images_unreadable": features.images_unreadable,
            "encoded": features.encoded,
            "held_out": None,
            "judge_on_held_out": None,
        }
        if len(held) == 0:
            return metrics
        preferred, other = self._pair_scores(features, held, trainable)
        metrics["held_out"] = pair_metrics(preferred, other)
        by_row = np.array([judged.get(cid, np.nan) for cid in features.candidate_ids], dtype=np.float64)
        judge_preferred, judge_other = by_row[held.preferred], by_row[held.other]
        known = ~np.isnan(judge_preferred) & ~np.isnan(judge_other)
        if pairs.held_out_source == "human" and known.any():
            judge = pair_metrics(judge_preferred[known], judge_other[known])
            judge["ties"] = int((judge_preferred[known] == judge_other[known]).sum())
            judge["selector_agreement_on_same_pairs"] = agreement(preferred[known], other[known])
            metrics["judge_on_held_out"] = judge
        return metrics

    def _mark_tuned(self, encoders: Sequence[Encoder]) -> None:
        """Fine-tuned encoders give new vectors: give them new cache names."""
        self.tuned_id = uuid.uuid4().hex[:12]
        for encoder in encoders:
            base = getattr(encoder, "tuned_from", None) or encoder.name
            encoder.tuned_from = base  # type: ignore[attr-defined]
            encoder.name = f"{base}+tuned-{self.tuned_id}"

    # -- scoring ------------------------------------------------------------
    def predict(
        self,
        candidates: CandidateSource,
        figures: FigureSource | None = None,
        *,
        features: FeatureSet | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """One score per candidate, in their order (higher: more worth keeping).

        Each candidate's score depends on that candidate alone, so any subset
        (a batch) can be scored on its own.
        """
        if self.head is None:
            raise RuntimeError("the selector is not fitted: call fit() or Selector.load()")
        if features is None:
            features = self.features(candidates, figures, progress=progress)
        if features.dim != self.input_dim:
            raise InputError(
                f"features have {features.dim} dimensions but the selector was trained on {self.input_dim}",
                field="encoder",
            )
        with _torch_threads(1):
            return self._score_rows(features, np.arange(len(features)))

    def score(
        self,
        candidates: CandidateSource,
        figures: FigureSource | None = None,
        *,
        preferences: PreferenceSource,
        source: str = "human",
        features: FeatureSet | None = None,
        progress: Progress | None = None,
    ) -> float:
        """Agreement with the ``source`` preferences naming these candidates: the share of pairs the selector
        orders as the annotator did (a tie counts one half), as scikit-learn's ``score`` gives a metric."""
        if features is None:
            features = self.features(candidates, figures, progress=progress)
        index = {cid: row for row, cid in enumerate(features.candidate_ids)}
        pairs = preference_pairs(inputs.preferences(preferences), index, 1.0, source=source).pairs
        if len(pairs) == 0:
            raise InputError(f"no preferences of source {source!r} name two of these candidates",
                             field="preferences")
        values = self.predict(candidates, figures, features=features)
        return agreement(values[pairs.preferred], values[pairs.other])

    def write_scores(
        self,
        candidates: CandidateSource,
        figures: FigureSource | None,
        out: str | Path,
        *,
        judge: str | None = None,
        progress: Progress | None = None,
    ) -> ScoreResult:
        """Score every candidate and write one ``source: "selector"`` record each to ``out`` (atomically).

        ``judge`` names the selector in the records (default
        ``selector:<folder name>``).  This is ``vital selector score``.
        """
        refuse_input_as_output(out, *(s for s in (candidates, figures) if inputs.is_path(s)))  # type: ignore
        index = inputs.figures(figures)
        candidate_list = inputs.candidates(candidates, index)
        features = self._transform(candidate_list, index, progress)
        values = self.predict(candidate_list, features=features)
        judge = judge or (f"selector:{self.directory.name}" if self.directory else "selector")
        records = (
            Score(candidate_id=c.id, score=round(float(v), 6), source="selector", judge=judge)
            for c, v in zip(candidate_list, values, strict=True)
        )
        written = write_jsonl_atomic(out, records)
        return ScoreResult(Path(out), written, features.images_missing, features.images_unreadable,
                           features.encoded)

    # -- persistence --------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the head, selector.json (configuration, encoders, feature layout), metrics.json,
        curves.json and training_curves.png (and the encoders' weights after ``finetune_encoder``)."""
        import torch

        if self.head is None:
            raise RuntimeError("nothing to save: the selector is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.head.state_dict(), directory / "head.pt")
        featurizer = self.featurizer
        tuned = {}
        if self.tuned_id:
            for name, encoder in (("text", featurizer.text_encoder), ("image", featurizer.image_encoder)):
                if encoder is not None and getattr(encoder, "tuned_from", None):
                    torch.save(encoder.module.state_dict(), directory / f"encoder-{name}.pt")  # type: ignore
                    tuned[name] = f"encoder-{name}.pt"
        write_json_atomic(
            directory / "selector.json",
            {
                "vital_version": __version__,
                "config": self.config.to_dict(),
                "input_dim": self.input_dim,
                "feature_blocks": self._block_layout(),
                "encoders": {
                    "text": featurizer.text_encoder.name,
                    "image": featurizer.image_encoder.name if featurizer.image_encoder else None,
                },
                "tuned_id": self.tuned_id,
                "tuned_encoders": tuned,
            },
        )
        write_json_atomic(directory / "metrics.json", self.metrics)
        write_json_atomic(directory / "curves.json", self.curves)
        if self.curves:
            from vital.selector.plots import plot_training_curves

            plot_training_curves(self.curves, directory / "training_curves.png")
        self.directory = directory
        return directory

    def _block_layout(self) -> list[dict[str, Any]]:
        featurizer = self.featurizer
        layout = []
        if featurizer.image_encoder is not None:
            image = featurizer.image_encoder
            layout.append({"name": "image", "encoder": image.name, "dim": image.dim})
        names = ("context", "conversation") if self.config.text_layout == "split" else ("text",)
        for name in names:
            layout.append({"name": name, "encoder": featurizer.text_encoder.name, "dim": featurizer.text_encoder.dim})
        if self.config.text_layout == "split":
            layout.append({"name": "context_conversation_cosine", "dim": 1})
        return layout

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        text_encoder: Encoder | None = None,
        image_encoder: Encoder | None = None,
        cache_dir: str | Path | None = None,
        executor: str = "local",
    ) -> Selector:
        """A fitted selector from :meth:`save`'s folder (encoders rebuilt from their specs unless given);
        an encoder other than the one it was trained with is refused.  ``executor`` is where its encoders
        run now (see :mod:`vital.executor`), whatever the training used.  The folder's files are checked
        (:func:`read_manifest`) before torch or an encoder is loaded."""
        directory = Path(directory)
        manifest, config = read_manifest(directory, executor=executor)
        manifest_path = directory / "selector.json"
        metrics_path, curves_path = directory / "metrics.json", directory / "curves.json"
        metrics = _json_file(metrics_path) if metrics_path.is_file() else {}
        curves = _json_file(curves_path) if curves_path.is_file() else []
        import torch

        selector = cls(config, text_encoder=text_encoder, image_encoder=image_encoder, cache_dir=cache_dir)
        featurizer = selector.featurizer
        selector.tuned_id = manifest.get("tuned_id")
        for name, filename in (manifest.get("tuned_encoders") or {}).items():
            encoder = featurizer.text_encoder if name == "text" else featurizer.image_encoder
            encoder.module.load_state_dict(torch.load(directory / filename, map_location="cpu"))  # type: ignore
            encoder.tuned_from = encoder.name  # type: ignore[union-attr]
            encoder.name = f"{encoder.name}+tuned-{selector.tuned_id}"  # type: ignore[union-attr]
        saved = manifest["encoders"]
        actual = {
            "text": featurizer.text_encoder.name,
            "image": featurizer.image_encoder.name if featurizer.image_encoder else None,
        }
        for kind in ("text", "image"):
            if saved.get(kind) != actual[kind]:
                raise InputError(
                    f"the selector was trained with {kind} encoder {saved.get(kind)!r}, not {actual[kind]!r}",
                    path=manifest_path,
                    field=f"encoders.{kind}",
                )
        selector.input_dim = manifest["input_dim"]
        selector.head = build_head(selector.input_dim, config, torch.Generator())
        selector.head.load_state_dict(torch.load(directory / "head.pt", map_location="cpu"))
        selector.head.eval()
        selector.metrics, selector.curves = metrics, curves
        selector.directory = directory
        return selector


def _json_file(path: Path) -> Any:
    """A JSON file's value; not UTF-8 or not JSON is an :class:`InputError` naming the file and line."""
    from vital.jsonl import utf8_text

    try:
        return json.loads(utf8_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from None


def read_manifest(directory: Path, *, executor: str = "local") -> tuple[dict[str, Any], SelectorConfig]:
    """selector.json of a saved selector, checked, and the config it holds (run on ``executor``).

    Checks what :meth:`Selector.load` relies on, without torch: ``config`` a table of the selector's settings
    (each of its type), ``encoders`` the names of a text and an image encoder, ``input_dim`` a positive
    integer, the fine-tuned encoders' weights and ``head.pt`` present.  A problem is an
    :class:`InputError` naming the file and the field.
    """
    manifest_path = directory / "selector.json"
    if not manifest_path.is_file():
        raise InputError("not a selector folder (selector.json is missing)", path=directory)
    manifest = _json_file(manifest_path)

    def refuse(field: str, problem: str) -> InputError:
        return InputError(problem, path=manifest_path, field=field)

    if not isinstance(manifest, dict):
        raise InputError(f"expected a JSON object, found {type(manifest).__name__}", path=manifest_path)
    settings = manifest.get("config")
    if not isinstance(settings, dict):
        raise refuse("config", "expected a table of the selector's settings")
    config = SelectorConfig.from_mapping(
        {**{key: value for key, value in settings.items() if key != "executor"}, "executor": executor},
        where=lambda key: (str(manifest_path), None, f"config.{key}"))
    encoders = manifest.get("encoders")
    if not isinstance(encoders, dict):
        raise refuse("encoders", "expected the names of the text and image encoders")
    if not isinstance(encoders.get("text"), str):
        raise refuse("encoders.text", "expected the text encoder's name")
    if not isinstance(encoders.get("image"), str | None):
        raise refuse("encoders.image", "expected the image encoder's name, or null")
    dim = manifest.get("input_dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise refuse("input_dim", f"expected a positive integer (the head's width), found {dim!r}")
    tuned = manifest.get("tuned_encoders") or {}
    if not isinstance(tuned, dict) or any(kind not in ("text", "image") or not isinstance(name, str)
                                          for kind, name in tuned.items()):
        raise refuse("tuned_encoders", "expected the weights files of a fine-tuned text and image encoder")
    if not isinstance(manifest.get("tuned_id"), str | None):
        raise refuse("tuned_id", "expected a string, or null")
    for kind, filename in tuned.items():
        if not (directory / filename).is_file():
            raise InputError(f"missing: the fine-tuned {kind} encoder's weights (tuned_encoders.{kind})",
                             path=directory / filename)
    if not (directory / "head.pt").is_file():
        raise InputError("missing: the selector's head (its weights; train the selector again)",
                         path=directory / "head.pt")
    return manifest, config


def _moments(features: FeatureSet, rows: np.ndarray) -> tuple[Any, Any]:
    """Mean and standard deviation (at least 1e-4) of each feature over ``rows``, for standardisation."""
    import torch

    sums = torch.zeros(features.dim, dtype=torch.float64)
    squares = torch.zeros(features.dim, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(rows), 4096):
            block = features.matrix(rows[start : start + 4096]).double()
            sums += block.sum(0)
            squares += (block**2).sum(0)
    mean = sums / max(len(rows), 1)
    variance = squares / max(len(rows), 1) - mean**2
    return mean.float(), torch.sqrt(variance.clamp(min=0)).float().clamp(min=1e-4)
