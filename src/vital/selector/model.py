"""The selector: a rating function distilled from clinician and model-judge preferences.

>>> selector = Selector(SelectorConfig(human_weight=100), cache_dir="features/")
>>> selector.fit(candidates, figures, preferences=prefs, scores=judge_scores)
>>> selector.metrics["held_out"]["agreement"], selector.metrics["judge_on_held_out"]["agreement"]
>>> selector.save("selector/")
>>> Selector.load("selector/").score(candidates, figures)      # one float per candidate

The head is an MLP over the concatenated candidate features (by default the
reference's: three hidden layers of 512 with ReLU), trained with a pairwise
loss: the hinge ``max(0, margin - (s_preferred - s_other))`` of the
reference, or the logistic (Bradley-Terry) ``log(1 + exp(-(s_preferred -
s_other)))``, each pair multiplied by its weight (clinician pairs:
``human_weight``; judge pairs: 1).  Unlike the reference, the head ends
without a sigmoid, so a hinge margin of 1 can be met, and features come from
the cache rather than being re-encoded every epoch (``finetune_encoder``
re-encodes, as the reference does, to train the encoders too).

Clinician pairs are split by figure into training and held-out parts; the
held-out part drives early stopping and the reported metrics, beside the
judge's own agreement on the same pairs.  Without clinician pairs, judge
pairs of held-out figures play that role.
"""

from __future__ import annotations

import copy
import json
import math
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vital import __version__
from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.jsonl import write_json_atomic, write_jsonl_atomic
from vital.records import Candidate, Figure, Preference, Score
from vital.selector.encoders import Encoder, load_image_encoder, load_text_encoder
from vital.selector.features import LAYOUTS, FeatureSet, Featurizer
from vital.selector.metrics import pair_metrics
from vital.selector.pairs import MODEL_PAIR_MODES, Pairs, human_pairs, model_pairs, split_by_figure

LOSSES = ("hinge", "logistic")


TRAINING = "Training"


@dataclass
class SelectorConfig(StageConfig):
    """Everything that defines a selector and how it is trained (saved with it)."""

    text_encoder: str = setting(
        "minilm", "minilm (packaged all-MiniLM-L6-v2), hashing, a sentence-transformers name or folder, or "
        "open_clip:hf-hub:... / open_clip:local-dir:... (BiomedCLIP's text tower).")
    image_encoder: str = setting(
        "descriptor", "descriptor (model-free pixel statistics), none, or open_clip:hf-hub:... / "
        "open_clip:local-dir:...")
    text_layout: str = setting("split", "split (caption and conversation apart) or joint (the reference).",
                               choices=LAYOUTS)
    model_pairs: str = setting("both", "Judge pairs within a figure, across figures, both, or none.",
                               choices=MODEL_PAIR_MODES)
    max_model_pairs: int = setting(30_000, "Cap on judge pairs.")
    human_weight: float = setting(1.0, "Weight of each clinician pair (the paper sweeps 1 to 400).")
    hidden_size: int = setting(512, "Width of the head's hidden layers.", panel=TRAINING)
    hidden_layers: int = setting(3, "Hidden layers of the head.", panel=TRAINING)
    dropout: float = setting(0.1, "Dropout after each hidden layer.", panel=TRAINING)
    loss: str = setting("hinge", "hinge (the reference, margin --margin) or logistic.", choices=LOSSES,
                        panel=TRAINING)
    margin: float = setting(1.0, "Hinge margin.", panel=TRAINING)
    lr: float = setting(1e-3, "Head learning rate (the reference's 1e-5 trains the encoders end to end: "
                        "--encoder-lr).", panel=TRAINING)
    encoder_lr: float = setting(1e-5, "Encoder learning rate with --finetune-encoder.", panel=TRAINING)
    weight_decay: float = setting(1e-4, "AdamW weight decay.", panel=TRAINING)
    epochs: int = setting(6, "Passes over the training pairs.", panel=TRAINING)
    batch_size: int = setting(64, "Pairs per step.", panel=TRAINING)
    held_out: float = setting(0.2, "Share of clinician pairs held out (by figure).", panel=TRAINING)
    patience: int = setting(3, "Epochs without held-out gain before stopping (0: never).", panel=TRAINING)
    finetune_encoder: bool = setting(False, "Train the encoders too (slow; re-encodes every step).",
                                     panel=TRAINING)
    seed: int = setting(0, "Seed of pair sampling, the split and the head's initial weights.", panel=TRAINING)

    def validate(self) -> None:
        checks = [
            (self.hidden_layers >= 0, "hidden_layers", "must not be negative"),
            (self.hidden_size > 0, "hidden_size", "must be positive"),
            (self.epochs > 0, "epochs", "must be positive"),
            (self.batch_size > 0, "batch_size", "must be positive"),
            (self.human_weight >= 0, "human_weight", "must not be negative"),
            (0 <= self.held_out < 1, "held_out", "must be in [0, 1)"),
        ]
        for ok, name, problem in checks:
            if not ok:
                raise InputError(problem, field=name)


def build_head(input_dim: int, config: SelectorConfig) -> Any:
    """The MLP: input standardisation, ``hidden_layers`` x (Linear, ReLU, Dropout), then one output."""
    import torch
    from torch import nn

    class RankingHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(input_dim))
            self.register_buffer("scale", torch.ones(input_dim))
            layers: list[nn.Module] = []
            width = input_dim
            for _ in range(config.hidden_layers):
                layers += [nn.Linear(width, config.hidden_size), nn.ReLU(), nn.Dropout(config.dropout)]
                width = config.hidden_size
            layers.append(nn.Linear(width, 1))
            self.mlp = nn.Sequential(*layers)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.mlp((features - self.mean) / self.scale).squeeze(-1)

    return RankingHead()


def pairwise_loss(margins: Any, weights: Any, config: SelectorConfig) -> Any:
    """Weighted mean loss over pairs; ``margins`` is ``s_preferred - s_other``."""
    import torch

    if config.loss == "hinge":
        per_pair = torch.clamp(config.margin - margins, min=0.0)
    else:
        per_pair = torch.nn.functional.softplus(-margins)
    return (per_pair * weights).mean()


def _seed_everything(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)


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


def _lookup(scores: Mapping[str, float], ids: Sequence[str], rows: np.ndarray) -> np.ndarray:
    return np.array([scores.get(ids[row], np.nan) for row in rows], dtype=np.float64)


class Selector:
    """Fit on candidates with preferences and/or judge scores; score any candidates; save and load."""

    def __init__(
        self,
        config: SelectorConfig | None = None,
        *,
        text_encoder: Encoder | None = None,
        image_encoder: Encoder | None = None,
        cache_dir: str | Path | None = None,
        show_progress: bool = True,
    ) -> None:
        self.config = config or SelectorConfig()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.show_progress = show_progress
        self._text_encoder = text_encoder
        self._image_encoder = image_encoder
        self._featurizer: Featurizer | None = None
        self.head: Any = None
        self.input_dim: int | None = None
        self.metrics: dict[str, Any] = {}
        self.curves: list[dict[str, float]] = []
        self.tuned_id: str | None = None

    # -- features ---------------------------------------------------------
    @property
    def featurizer(self) -> Featurizer:
        if self._featurizer is None:
            text = self._text_encoder or load_text_encoder(self.config.text_encoder)
            if self._image_encoder is not None:
                image = self._image_encoder
            else:
                image = load_image_encoder(self.config.image_encoder)
            self._featurizer = Featurizer(
                text, image, self.config.text_layout, self.cache_dir, self.show_progress
            )
        return self._featurizer

    def features(self, candidates: Sequence[Candidate], figures: Mapping[str, Figure]) -> FeatureSet:
        """Features of ``candidates`` (each distinct image and text encoded once, through the cache)."""
        return self.featurizer.transform(candidates, figures)

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

    def _matrix(self, features: FeatureSet, indices: np.ndarray, trainable: Mapping[str, Encoder]) -> Any:
        live = {}
        for name, encoder in trainable.items():
            if features.block(name) is not None:
                payloads = features.unique_payloads(name, indices)
                if payloads:
                    live[name] = encoder.forward(payloads)  # type: ignore[attr-defined]
        return features.matrix(indices, live or None)

    # -- training -----------------------------------------------------------
    def build_pairs(
        self,
        features: FeatureSet,
        preferences: Iterable[Preference] = (),
        scores: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Training and held-out pairs, with counts (no model is touched).

        Preference records of source ``human`` are clinician pairs; those of
        source ``model`` (a judge's pairwise verdicts) join the pairs derived
        from ``scores`` with weight 1.
        """
        config = self.config
        preferences = list(preferences)
        index = {cid: row for row, cid in enumerate(features.candidate_ids)}
        human = human_pairs(preferences, index, config.human_weight)
        train_human, held_human, held_figures, crossing = split_by_figure(
            human.pairs, features.figure_ids, config.held_out, config.seed
        )
        judge = model_pairs(
            scores or {},
            index,
            features.figure_ids,
            mode=config.model_pairs,
            cap=config.max_model_pairs,
            seed=config.seed,
            exclude_figures=held_figures,
        )
        # pairwise verdicts of a model judge (`vital judge --pairwise`: preference records of source "model")
        verdicts = human_pairs(preferences, index, 1.0, source="model").pairs
        touches_held = np.isin(
            [features.figure_ids[i] for i in verdicts.preferred], list(held_figures)
        ) | np.isin([features.figure_ids[i] for i in verdicts.other], list(held_figures))
        verdicts = verdicts.subset(~touches_held) if len(verdicts) else verdicts
        judge = judge + verdicts
        held_source = "human"
        held = held_human
        train_judge = judge
        if len(held_human) == 0 and len(judge) > 0 and config.held_out > 0:
            held_source = "model"
            train_judge, held, held_figures, crossing = split_by_figure(
                judge, features.figure_ids, config.held_out, config.seed
            )
        return {
            "train": train_human + train_judge,
            "held_out": held,
            "held_out_source": held_source,
            "counts": {
                "human_pairs": len(human.pairs),
                "human_pairs_unknown_candidates": human.unknown,
                "human_train": len(train_human),
                "human_held_out": len(held_human),
                "model_pairs": len(train_judge),
                "model_verdict_pairs": len(verdicts),
                "held_out": len(held),
                "held_out_figures": len(held_figures),
                "dropped_crossing_split": crossing,
            },
        }

    def fit(
        self,
        candidates: Sequence[Candidate],
        figures: Mapping[str, Figure],
        *,
        preferences: Iterable[Preference] = (),
        scores: Mapping[str, float] | None = None,
        features: FeatureSet | None = None,
    ) -> Selector:
        """Train the head (and the encoders with ``finetune_encoder``) on the pairs these inputs give."""
        config = self.config
        _seed_everything(config.seed)
        started = time.perf_counter()
        features = features or self.features(candidates, figures)
        built = self.build_pairs(features, preferences, scores)
        train = built["train"]
        if len(train) == 0:
            raise InputError(
                "no training pairs: give clinician preferences naming these candidates, or judge scores "
                "with at least two different values",
                field="preferences",
            )
        trainable = self._trainable()
        with _torch_threads(None if trainable else 1):
            self._train(features, built, scores or {}, trainable)
        self.metrics["seconds"] = round(time.perf_counter() - started, 2)
        return self

    def _train(
        self, features: FeatureSet, built: Mapping[str, Any], scores: Mapping[str, float], trainable: Mapping
    ) -> None:
        import torch

        config = self.config
        train, held = built["train"], built["held_out"]
        self.input_dim = features.dim
        self.head = build_head(features.dim, config)
        self._standardise(features, np.union1d(train.preferred, train.other))
        parameters = [{"params": self.head.parameters(), "lr": config.lr}]
        seen: set[int] = set()
        encoder_params = []
        for encoder in trainable.values():
            for parameter in encoder.module.parameters():  # type: ignore[attr-defined]
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    encoder_params.append(parameter)
        if encoder_params:
            parameters.append({"params": encoder_params, "lr": config.encoder_lr})
        optimizer = torch.optim.AdamW(parameters, weight_decay=config.weight_decay, fused=True)
        steps = math.ceil(len(train) / config.batch_size)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not self.show_progress,
            transient=True,
        )
        task = progress.add_task(f"training on {len(train):,} pairs", total=steps * config.epochs)
        with progress:
            best_state = self._epochs(features, train, held, trainable, optimizer, progress, task)
        if best_state is not None:
            self._restore(best_state, trainable)
        self._set_training(False, trainable)
        if trainable:
            self._mark_tuned(trainable)
        self.metrics = self._evaluate(features, built, scores, trainable)
        self.metrics["epochs_run"] = len(self.curves)
        self.metrics["best_epoch"] = (
            max(self.curves, key=lambda p: (p.get("held_out_agreement", 0), -p.get("held_out_loss", 0)))[
                "epoch"
            ]
            if len(held)
            else len(self.curves)
        )

    def _epochs(
        self,
        features: FeatureSet,
        train: Pairs,
        held: Pairs,
        trainable: Mapping,
        optimizer: Any,
        progress: Progress,
        task: Any,
    ) -> dict[str, Any] | None:
        """The training loop (epochs of shuffled pair batches, each followed by evaluation); returns the
        weights of the epoch with the best held-out agreement, if there are held-out pairs."""
        import torch

        config = self.config
        rng = np.random.default_rng(config.seed)
        best: tuple[float, float] | None = None
        best_state: dict[str, Any] | None = None
        stale = 0
        self.curves = []
        for epoch in range(1, config.epochs + 1):
            progress.update(task, description=f"training, epoch {epoch}/{config.epochs}")
            self._set_training(True, trainable)
            order = rng.permutation(len(train))
            total, count = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                loss = self._batch_loss(features, train, batch, trainable)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
                count += len(batch)
                progress.advance(task)
            point: dict[str, float] = {"epoch": epoch, "train_loss": total / count}
            train_eval = self._pair_scores(
                features, train.subset(rng.permutation(len(train))[:2000]), trainable
            )
            point["train_agreement"] = pair_metrics(*train_eval)["agreement"]
            if len(held):
                held_scores = self._pair_scores(features, held, trainable)
                point["held_out_agreement"] = pair_metrics(*held_scores)["agreement"]
                with torch.no_grad():
                    margins = torch.from_numpy(held_scores[0] - held_scores[1])
                    point["held_out_loss"] = float(
                        pairwise_loss(margins, torch.from_numpy(held.weight), config)
                    )
            self.curves.append(point)
            if len(held):
                key = (point["held_out_agreement"], -point["held_out_loss"])
                if best is None or key > best:
                    best, stale = key, 0
                    best_state = self._state(trainable)
                else:
                    stale += 1
                    if config.patience and stale >= config.patience:
                        break
        return best_state

    def _set_training(self, on: bool, trainable: Mapping[str, Encoder]) -> None:
        self.head.train(on)
        for encoder in trainable.values():
            encoder.module.train(on)  # type: ignore[attr-defined]

    def _state(self, trainable: Mapping[str, Encoder]) -> dict[str, Any]:
        state = {"head": copy.deepcopy(self.head.state_dict())}
        for name, encoder in trainable.items():
            state[name] = copy.deepcopy(encoder.module.state_dict())  # type: ignore[attr-defined]
        return state

    def _restore(self, state: Mapping[str, Any], trainable: Mapping[str, Encoder]) -> None:
        self.head.load_state_dict(state["head"])
        for name, encoder in trainable.items():
            encoder.module.load_state_dict(state[name])  # type: ignore[attr-defined]

    def _standardise(self, features: FeatureSet, rows: np.ndarray) -> None:
        import torch

        with torch.no_grad():
            sums = torch.zeros(features.dim, dtype=torch.float64)
            squares = torch.zeros(features.dim, dtype=torch.float64)
            for start in range(0, len(rows), 4096):
                block = features.matrix(rows[start : start + 4096]).double()
                sums += block.sum(0)
                squares += (block**2).sum(0)
            mean = sums / max(len(rows), 1)
            variance = squares / max(len(rows), 1) - mean**2
            self.head.mean.copy_(mean.float())
            self.head.scale.copy_(torch.sqrt(variance.clamp(min=0)).float().clamp(min=1e-4))

    def _batch_loss(self, features: FeatureSet, pairs: Pairs, batch: np.ndarray, trainable: Mapping) -> Any:
        import torch

        rows = np.concatenate([pairs.preferred[batch], pairs.other[batch]])
        unique, inverse = np.unique(rows, return_inverse=True)
        scores = self.head(self._matrix(features, unique, trainable))[torch.from_numpy(inverse)]
        margins = scores[: len(batch)] - scores[len(batch) :]
        return pairwise_loss(margins, torch.from_numpy(pairs.weight[batch]), self.config)

    def _pair_scores(
        self, features: FeatureSet, pairs: Pairs, trainable: Mapping
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = np.union1d(pairs.preferred, pairs.other)
        values = self._score_features(features, rows, trainable)
        lookup = dict(zip(rows.tolist(), values.tolist(), strict=True))
        return (
            np.array([lookup[r] for r in pairs.preferred.tolist()]),
            np.array([lookup[r] for r in pairs.other.tolist()]),
        )

    def _score_features(
        self, features: FeatureSet, rows: np.ndarray, trainable: Mapping | None = None
    ) -> np.ndarray:
        import torch

        was_training = self.head.training
        self.head.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), 1024):
                out.append(
                    self.head(self._matrix(features, rows[start : start + 1024], trainable or {})).numpy()
                )
        self.head.train(was_training)
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def _evaluate(
        self, features: FeatureSet, built: Mapping[str, Any], scores: Mapping[str, float], trainable: Mapping
    ) -> dict[str, Any]:
        held: Pairs = built["held_out"]
        metrics: dict[str, Any] = {
            "pairs": built["counts"],
            "held_out_source": built["held_out_source"],
            "candidates": len(features),
            "images_missing": features.images_missing,
            "images_unreadable": features.images_unreadable,
            "encoded": features.encoded,
        }
        if len(held) == 0:
            metrics["held_out"] = None
            metrics["judge_on_held_out"] = None
            return metrics
        preferred, other = self._pair_scores(features, held, trainable)
        metrics["held_out"] = pair_metrics(preferred, other)
        judge_preferred = _lookup(scores, features.candidate_ids, held.preferred)
        judge_other = _lookup(scores, features.candidate_ids, held.other)
        known = ~np.isnan(judge_preferred) & ~np.isnan(judge_other)
        if built["held_out_source"] == "human" and known.any():
            judge = pair_metrics(judge_preferred[known], judge_other[known])
            judge["ties"] = int((judge_preferred[known] == judge_other[known]).sum())
            judge["selector_agreement_on_same_pairs"] = pair_metrics(preferred[known], other[known])[
                "agreement"
            ]
            metrics["judge_on_held_out"] = judge
        else:
            metrics["judge_on_held_out"] = None
        return metrics

    # -- scoring ------------------------------------------------------------
    def score(
        self,
        candidates: Sequence[Candidate],
        figures: Mapping[str, Figure],
        *,
        features: FeatureSet | None = None,
    ) -> np.ndarray:
        """One score per candidate (higher: more worth keeping)."""
        if self.head is None:
            raise RuntimeError("the selector is not fitted: call fit() or Selector.load()")
        features = features or self.features(candidates, figures)
        if features.dim != self.input_dim:
            raise InputError(
                f"features have {features.dim} dimensions but the selector was trained on {self.input_dim}",
                field="encoder",
            )
        with _torch_threads(1):
            return self._score_features(features, np.arange(len(features)))

    # -- persistence --------------------------------------------------------
    def _mark_tuned(self, trainable: Mapping[str, Encoder]) -> None:
        """Fine-tuned encoders give new vectors: give them new cache names."""
        self.tuned_id = uuid.uuid4().hex[:12]
        for encoder in {id(e): e for e in trainable.values()}.values():
            base = getattr(encoder, "tuned_from", None) or encoder.name
            encoder.tuned_from = base  # type: ignore[attr-defined]
            encoder.name = f"{base}+tuned-{self.tuned_id}"

    def save(self, directory: str | Path) -> Path:
        """Write the head, the configuration, the encoder names, metrics.json and the training-curve plot."""
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
                "config": asdict(self.config),
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
        return directory

    def _block_layout(self) -> list[dict[str, Any]]:
        featurizer = self.featurizer
        layout = []
        if featurizer.image_encoder is not None:
            layout.append(
                {
                    "name": "image",
                    "encoder": featurizer.image_encoder.name,
                    "dim": featurizer.image_encoder.dim,
                }
            )
        names = ("context", "conversation") if self.config.text_layout == "split" else ("text",)
        for name in names:
            layout.append(
                {"name": name, "encoder": featurizer.text_encoder.name, "dim": featurizer.text_encoder.dim}
            )
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
        show_progress: bool = True,
    ) -> Selector:
        """A fitted selector from :meth:`save`'s folder (encoders rebuilt from their specs unless given)."""
        import torch

        directory = Path(directory)
        manifest_path = directory / "selector.json"
        if not manifest_path.is_file():
            raise InputError("not a selector folder (selector.json is missing)", path=directory)
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc})", path=manifest_path) from None
        known = {f.name for f in fields(SelectorConfig)}
        config = SelectorConfig(**{k: v for k, v in manifest["config"].items() if k in known})
        selector = cls(
            config,
            text_encoder=text_encoder,
            image_encoder=image_encoder,
            cache_dir=cache_dir,
            show_progress=show_progress,
        )
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
        selector.input_dim = int(manifest["input_dim"])
        selector.head = build_head(selector.input_dim, config)
        selector.head.load_state_dict(torch.load(directory / "head.pt", map_location="cpu"))
        selector.head.eval()
        metrics_path = directory / "metrics.json"
        if metrics_path.is_file():
            selector.metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        return selector


def write_scores(out: str | Path, candidates: Sequence[Candidate], values: np.ndarray, *, judge: str) -> int:
    """One ``source: "selector"`` score record per candidate, written atomically."""
    records = (
        Score(candidate_id=c.id, score=round(float(v), 6), source="selector", judge=judge)
        for c, v in zip(candidates, values, strict=True)
    )
    return write_jsonl_atomic(out, records)


def sweep_human_weight(
    weights: Sequence[float],
    candidates: Sequence[Candidate],
    figures: Mapping[str, Figure],
    *,
    config: SelectorConfig,
    out: str | Path,
    preferences: Sequence[Preference] = (),
    scores: Mapping[str, float] | None = None,
    text_encoder: Encoder | None = None,
    image_encoder: Encoder | None = None,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """One selector per human weight (features computed once), each saved; plots agreement by weight."""
    from vital.selector.plots import plot_sweep

    if config.finetune_encoder:
        raise InputError(
            "the sweep trains heads on cached features; train fine-tuned encoders one at a time",
            field="finetune_encoder",
        )
    out = Path(out)
    first = Selector(
        config,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        cache_dir=cache_dir,
        show_progress=show_progress,
    )
    features = first.features(candidates, figures)
    rows = []
    for weight in weights:
        selector = Selector(
            replace(config, human_weight=float(weight)), cache_dir=cache_dir, show_progress=show_progress
        )
        selector._featurizer = first.featurizer
        selector.fit(candidates, figures, preferences=preferences, scores=scores, features=features)
        selector.save(out / f"w{weight:g}")
        held = selector.metrics.get("held_out") or {}
        judge = selector.metrics.get("judge_on_held_out") or {}
        rows.append(
            {
                "human_weight": float(weight),
                "agreement": held.get("agreement", math.nan),
                "auc": held.get("auc", math.nan),
                "map": held.get("map", math.nan),
                "mean_rank": held.get("mean_rank", math.nan),
                "judge_agreement": judge.get("agreement", math.nan),
                "held_out_source": selector.metrics.get("held_out_source"),
                "model_dir": str(out / f"w{weight:g}"),
            }
        )
    write_json_atomic(out / "sweep.json", rows)
    plot_sweep(rows, out / "sweep.png")
    return rows
