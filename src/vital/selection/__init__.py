"""Selection: keep the best-scored candidates and export them as LLaVA instruction data.

>>> from vital.selection import SelectConfig, select
>>> result = select("candidates.jsonl", "scores.jsonl", "selected.json",
...                 SelectConfig(top_fraction=0.4, per_figure=2), figures="figures.jsonl")
>>> result.kept, result.failed, result.report

The parts, each usable alone: :mod:`~vital.selection.policies` (``SelectConfig``,
``select_candidates``: the walk from the best score down),
:mod:`~vital.selection.export` (``export_llava``: the LLaVA JSON, DICOM as PNG,
``--merge`` without duplicates), :mod:`~vital.selection.report`
(``write_report``: Markdown + score histogram), and
:mod:`~vital.selection.candidate_import` (``import_candidates``: LLaVA-format
files as candidates and figures, for ``vital candidates import``).
"""

from vital.selection.candidate_import import ImportCandidatesResult, import_candidates
from vital.selection.export import LlavaExport, export_llava, llava_record
from vital.selection.policies import Decision, SelectConfig, Selection, candidate_domain, select_candidates
from vital.selection.report import write_report
from vital.selection.run import SelectResult, select

__all__ = [
    "Decision",
    "ImportCandidatesResult",
    "LlavaExport",
    "SelectConfig",
    "SelectResult",
    "Selection",
    "candidate_domain",
    "export_llava",
    "import_candidates",
    "llava_record",
    "select",
    "select_candidates",
    "write_report",
]
