"""Instruction tuning: LLaVA-style SFT of a local LLaVA checkpoint on LLaVA-format data (``vital tune``).

>>> import vital
>>> result = vital.tune("selected.json", "llava-med-hf", "tuned", vital.TuneConfig(method="lora"))
>>> result.steps, result.failed, result.out   # result.out loads with LlavaForConditionalGeneration

What is here:

* :mod:`~vital.tuning.config`: :class:`TuneConfig` (every setting, the CLI's flags) and :class:`TuneResult`;
* :mod:`~vital.tuning.template`: the chat templates, shared with the answering side (``vital eval answer``);
* :mod:`~vital.tuning.data`: records checked up front, encoded with their image and loss mask;
* :mod:`~vital.tuning.model`: the base's layout, what each method trains, the tuned checkpoint;
* :mod:`~vital.tuning.train`: :func:`tune`, the run (``transformers.Trainer``, resumable, data-parallel);
* :mod:`~vital.tuning.convert`: original LLaVA / LLaVA-Med checkpoints to the llava-hf layout;
* :mod:`~vital.tuning.tiny`: :func:`build_tiny_llava`, a tiny random-weight base for CPUs (demo, tests).

Importing this package is light; torch and transformers load when a function runs.
"""

from __future__ import annotations

from vital.lazy import lazy_attributes
from vital.tuning.config import METHODS, TuneConfig, TuneResult

# name -> module that defines it, loaded on first use
_LAZY = {
    "tune": "vital.tuning.train",
    "convert_checkpoint": "vital.tuning.convert",
    "build_tiny_llava": "vital.tuning.tiny",
}
__all__ = ["METHODS", "TuneConfig", "TuneResult", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
