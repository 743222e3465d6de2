"""vital: clinician-aligned biomedical visual instruction-tuning data (BioMed-VITAL), as a Python API.

One entry point per pipeline stage, each configured by one dataclass (the
same one that makes the stage's command-line flags and its ``vital.toml``
section), each returning a result object and printing nothing (pass
``progress=`` to see progress)::

    import vital

    vital.import_figures("fig_captions.json", "figures.jsonl", vital.ImportConfig(images="images/"))
    vital.sample("figures.jsonl", "sample.jsonl", vital.SampleConfig(n=200))
    vital.generate("figures.jsonl", "candidates.jsonl", vital.GenerateConfig(backend="caption"))
    vital.judge("candidates.jsonl", "figures.jsonl", "scores.jsonl", vital.JudgeConfig(backend="heuristic"))
    selector = vital.Selector(vital.SelectorConfig(human_weight=100)).fit(
        "candidates.jsonl", "figures.jsonl", scores="scores.jsonl", preferences="preferences.jsonl")
    selector.write_scores("candidates.jsonl", "figures.jsonl", "selector-scores.jsonl")
    vital.select("candidates.jsonl", "selector-scores.jsonl", "selected.json", vital.SelectConfig(top_fraction=0.4))
    vital.tune("selected.json", "llava-med-hf/", "tuned/", vital.TuneConfig(method="lora"))
    vital.eval_compare("vqa-rad/test.json", "answers-base.jsonl", "answers-tuned.jsonl")
    vital.run(vital.init("round1"))                 # all of it, from one vital.toml

Stages (``vital <command>`` on the command line):

=======================  ==========================  ==============================================
``import_figures``       ``vital figures import``    corpora -> figure records
``sample``               ``vital sample``            a diverse sample for clinicians
``generate``             ``vital generate``          candidate conversations (VLM or offline)
``judge``                ``vital judge``             model preference: rubric scores or pairs
``load_corpus`` ...      ``vital annotate``          clinician preference in a browser
``Selector``             ``vital selector``          the preference-distilled rating function
``select``               ``vital select``            top data, exported in LLaVA format
``import_candidates``    ``vital candidates import``  LLaVA-format data -> candidates
``tune``                 ``vital tune``              LLaVA-style instruction tuning (full, LoRA)
``eval_*``               ``vital eval ...``          answer, vqa, compare, chat, chat_summary, winrate
``init``, ``run``        ``vital init``, ``run``     a whole round from one config, skipping what is done
=======================  ==========================  ==============================================

Records and readers: :mod:`vital.records`; conversations and LLaVA files:
:mod:`vital.conversation`; configs: :mod:`vital.config`; progress:
:mod:`vital.progress`.  Importing ``vital`` is light: each name's module is
loaded on first use.  docs/api.md has an example per stage.
"""

from __future__ import annotations

from vital.lazy import lazy_attributes

__version__ = "0.1.0"

# name -> module that defines it (loaded on first access, so that `import vital` imports no torch)
_API = {
    "InputError": "vital.errors",
    "Figure": "vital.records",
    "Candidate": "vital.records",
    "Score": "vital.records",
    "Preference": "vital.records",
    "Tie": "vital.records",
    "Turn": "vital.records",
    "read_figures": "vital.records",
    "read_candidates": "vital.records",
    "read_scores": "vital.records",
    "read_preferences": "vital.records",
    "EngineConfig": "vital.llm.engine",
    "import_figures": "vital.figures",
    "ImportConfig": "vital.figures",
    "sample": "vital.sampling",
    "SampleConfig": "vital.sampling",
    "generate": "vital.generation",
    "GenerateConfig": "vital.generation",
    "judge": "vital.judging",
    "JudgeConfig": "vital.judging",
    "Selector": "vital.selector",
    "SelectorConfig": "vital.selector",
    "ScoreConfig": "vital.selector",
    "select": "vital.selection",
    "SelectConfig": "vital.selection",
    "import_candidates": "vital.selection",
    "load_corpus": "vital.annotate",
    "annotation_counts": "vital.annotate",
    "export_preferences": "vital.annotate",
    "export_demonstrations": "vital.annotate",
    "ServeConfig": "vital.annotate",
    "sweep_human_weight": "vital.selector",
    "tune": "vital.tuning",
    "TuneConfig": "vital.tuning",
    "TuneResult": "vital.tuning",
    "convert_checkpoint": "vital.tuning",
    "eval_answer": "vital.evaluate",
    "AnswerConfig": "vital.evaluate",
    "eval_vqa": "vital.evaluate",
    "VqaConfig": "vital.evaluate",
    "eval_compare": "vital.evaluate",
    "CompareConfig": "vital.evaluate",
    "eval_chat": "vital.evaluate",
    "ChatConfig": "vital.evaluate",
    "eval_chat_summary": "vital.evaluate",
    "ChatSummaryConfig": "vital.evaluate",
    "eval_winrate": "vital.evaluate",
    "WinrateConfig": "vital.evaluate",
    "eval_report": "vital.evaluate",
    "ReportConfig": "vital.evaluate",
    "init": "vital.pipeline",
    "run": "vital.pipeline",
}
__all__ = sorted(_API)


__getattr__, __dir__ = lazy_attributes(__name__, _API)
