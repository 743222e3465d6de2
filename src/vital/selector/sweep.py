"""``vital selector sweep``: one selector per clinician-pair weight, and held-out agreement by weight.

>>> result = sweep_human_weight("candidates.jsonl", "figures.jsonl", "sweep/", weights=[1, 10, 100, 400],
...                             scores="scores.jsonl", preferences="preferences.jsonl")
>>> [(run["human_weight"], run["agreement"]) for run in result.runs]

The weight multiplies clinician pairs only: without any (no preference of
source ``human`` names two of the candidates) every weight trains the same
selector, so the sweep trains one, says so (a warning, and ``note`` in
sweep.json) and draws no plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vital.errors import InputError
from vital.jsonl import warn, write_json_atomic
from vital.progress import Progress
from vital.records import CandidateSource, FigureSource, PreferenceSource, ScoreSource
from vital.selector import inputs
from vital.selector.config import SelectorConfig
from vital.selector.encoders import Encoder
from vital.selector.model import Selector
from vital.selector.pairs import preference_pairs

DEFAULT_WEIGHTS = (1.0, 10.0, 100.0, 200.0, 300.0, 400.0)


@dataclass
class SweepResult:
    """What a sweep trained (``out/w<weight>`` each) and measured; ``to_dict()`` is sweep.json."""

    out: Path
    weights: list[float]
    """The weights asked for."""
    clinician_pairs: int
    """Clinician pairs naming two of the candidates: the pairs the weight multiplies."""
    weight_has_effect: bool
    runs: list[dict[str, Any]] = field(default_factory=list)
    """Per selector trained: ``human_weight``, held-out ``agreement``, ``auc``, ``map``, ``mean_rank``, the
    judge's agreement on the same pairs, ``held_out_source`` and ``model_dir``."""
    note: str | None = None
    plot: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "clinician_pairs": self.clinician_pairs,
            "weight_has_effect": self.weight_has_effect,
            "note": self.note,
            "runs": self.runs,
            "plot": str(self.plot) if self.plot else None,
        }


def sweep_human_weight(
    candidates: CandidateSource,
    figures: FigureSource | None,
    out: str | Path,
    config: SelectorConfig | None = None,
    *,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    scores: ScoreSource | None = None,
    preferences: PreferenceSource | None = None,
    text_encoder: Encoder | None = None,
    image_encoder: Encoder | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Train one selector per weight of clinician pairs on the same features (extracted once, their encoders
    on ``config.executor``); write ``out/w<weight>/``, ``out/sweep.json`` and ``out/sweep.png`` (held-out
    agreement by weight, the judge's beside it)."""
    from vital.selector.plots import plot_sweep

    config = config or SelectorConfig()
    if config.finetune_encoder:
        raise InputError("the sweep trains heads on cached features; train fine-tuned encoders one at a time",
                         field="finetune_encoder")
    weights = [float(weight) for weight in weights]
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
        raise InputError("expected one or more weights, each a number >= 0", field="human_weight")
    out = Path(out)
    index = inputs.figures(figures)
    candidate_list = inputs.candidates(candidates, index)
    judged = inputs.judge_scores(scores)
    preference_list = inputs.preferences(preferences)

    first = Selector(config, text_encoder=text_encoder, image_encoder=image_encoder, cache_dir=cache_dir)
    features = first.features(candidate_list, index, progress=progress)  # on config.executor
    rows = {cid: row for row, cid in enumerate(features.candidate_ids)}
    clinician = len(preference_pairs(preference_list, rows, 1.0).pairs)
    result = SweepResult(out, weights, clinician, weight_has_effect=clinician > 0)
    if not result.weight_has_effect:
        result.note = (f"no clinician pairs (preferences of source 'human') name these candidates, so the human "
                       f"weight has no effect: trained one selector (w{weights[0]:g}) instead of {len(weights)}")
        warn(result.note)
        weights = weights[:1]

    for weight in weights:
        selector = Selector(replace(config, human_weight=weight), text_encoder=first.featurizer.text_encoder,
                            image_encoder=first.featurizer.image_encoder, cache_dir=cache_dir)
        selector.fit(candidate_list, index, scores=judged, preferences=preference_list, features=features,
                     progress=progress)
        model_dir = selector.save(out / f"w{weight:g}")
        held = selector.metrics.get("held_out") or {}
        judge = selector.metrics.get("judge_on_held_out") or {}
        result.runs.append({
            "human_weight": weight,
            "agreement": held.get("agreement", math.nan),
            "auc": held.get("auc", math.nan),
            "map": held.get("map", math.nan),
            "mean_rank": held.get("mean_rank", math.nan),
            "judge_agreement": judge.get("agreement", math.nan),
            "held_out_source": selector.metrics.get("held_out_source"),
            "model_dir": str(model_dir),
        })
    if result.weight_has_effect:
        result.plot = plot_sweep(result.runs, out / "sweep.png")
    else:
        (out / "sweep.png").unlink(missing_ok=True)  # an earlier sweep's plot would belong to other inputs
    write_json_atomic(out / "sweep.json", result.to_dict())
    return result
