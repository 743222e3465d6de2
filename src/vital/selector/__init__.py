"""The selector: encoders and a feature cache, a pairwise-trained head, evaluation, scoring.

See :mod:`vital.selector.model` for the method and :mod:`vital.selector.features`
for what the head sees.
"""

from vital.selector.features import FeatureSet, Featurizer
from vital.selector.model import Selector, SelectorConfig, sweep_human_weight

__all__ = [
    "FeatureSet",
    "Featurizer",
    "Selector",
    "SelectorConfig",
    "sweep_human_weight",
]
