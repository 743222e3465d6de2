"""A BioMed-VITAL round from one config: ``vital init`` writes ``vital.toml``, ``vital run`` runs it.

>>> import vital
>>> config = vital.init("round1")                 # round1/vital.toml: a commented starter for a real corpus
>>> config = vital.init("demo", demo=True)        # the offline demo round (corpus, tiny tune base, questions)
>>> result = vital.run(config)                    # every stage in order, skipping what has not changed
>>> result.statuses, result.exit_status, result.report

* :mod:`~vital.pipeline.config`: ``vital.toml``, validated by the stages' own config dataclasses;
* :mod:`~vital.pipeline.stages`: what each stage reads and writes, and the API call that runs it;
* :mod:`~vital.pipeline.runner`: order, the skip rule, the clinician gate, ``run.json``;
* :mod:`~vital.pipeline.record`: ``run.json`` and the content hashes behind the skip rule;
* :mod:`~vital.pipeline.report`: ``report.html``.
"""

from __future__ import annotations

from pathlib import Path

from vital.errors import InputError
from vital.pipeline.runner import EXIT_WAITING, RunResult, run

__all__ = ["EXIT_WAITING", "RunResult", "init", "run"]

TEMPLATES = Path(__file__).parent / "templates"


def init(directory: str | Path, *, demo: bool = False) -> Path:
    """Write ``DIRECTORY/vital.toml`` (refusing to replace one) and return its path.

    With ``demo``, also build the demo's inputs there: 16 figures from images
    that ship in PyPI packages (``corpus/``), questions about them
    (``corpus/vqa-questions.json``) and a tiny random-weight LLaVA to tune
    (``tiny-llava/``); nothing is downloaded.
    """
    directory = Path(directory)
    config = directory / "vital.toml"
    if config.exists():
        raise InputError("already exists; edit it, or choose another folder", path=config)
    directory.mkdir(parents=True, exist_ok=True)
    if demo:
        from vital.demo.corpus import build_corpus, write_questions
        from vital.tuning import build_tiny_llava

        build_corpus(directory / "corpus")
        write_questions(directory / "corpus" / "corpus.csv", directory / "corpus" / "vqa-questions.json")
        build_tiny_llava(directory / "tiny-llava")
    template = "demo.toml" if demo else "vital.toml"
    config.write_text((TEMPLATES / template).read_text(encoding="utf-8"), encoding="utf-8")
    return config
