"""The selector: encoders and a feature cache, a pairwise-trained head, evaluation, scoring.

>>> from vital.selector import Selector, SelectorConfig
>>> selector = Selector(SelectorConfig(human_weight=100)).fit(
...     "candidates.jsonl", "figures.jsonl", scores="scores.jsonl", preferences="preferences.jsonl")
>>> selector.save("selector/")
>>> Selector.load("selector/").write_scores("candidates.jsonl", "figures.jsonl", "selector-scores.jsonl")

:mod:`vital.selector.model` has the method, :mod:`vital.selector.features`
what the head sees, :mod:`vital.selector.pairs` the pairs it learns from.
Names are loaded on first use, so that importing the config (the command
line does at start-up) imports no numpy or torch.
"""

from __future__ import annotations

from vital.lazy import lazy_attributes

_NAMES = {
    "SelectorConfig": "vital.selector.config",
    "ScoreConfig": "vital.selector.config",
    "Selector": "vital.selector.model",
    "ScoreResult": "vital.selector.model",
    "FeatureSet": "vital.selector.features",
    "Featurizer": "vital.selector.features",
    "TrainingPairs": "vital.selector.pairs",
    "training_pairs": "vital.selector.pairs",
    "sweep_human_weight": "vital.selector.sweep",
    "SweepResult": "vital.selector.sweep",
}
__all__ = sorted(_NAMES)


__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
