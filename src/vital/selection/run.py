"""``select``: read candidates and scores, walk the policies, export LLaVA data and write the report.

Every input is read and checked before anything is written, so bad input
(an empty candidates file, a directory given as the scores) leaves an
existing export, its failures file and its report as they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vital.errors import InputError
from vital.jsonl import read_records
from vital.progress import Progress
from vital.records import (
    CandidateSource,
    FigureSource,
    Score,
    ScoreSource,
    figure_index,
    read_candidates,
    read_scores,
    require_records,
)
from vital.selection.export import export_llava
from vital.selection.policies import SelectConfig, select_candidates
from vital.selection.report import write_report


@dataclass
class SelectResult:
    out: Path
    report: Path
    source: str | None
    """Which scores were used: "selector" or "model" (``None`` for a mapping of scores, taken as given)."""
    considered: int
    """Candidates read."""
    kept: int
    """Kept candidates written to ``out``."""
    failed: int
    """Candidates that could not be exported (missing image, a conversation LLaVA cannot use)."""
    failures: Path | None
    """``<out>.failures.jsonl`` listing them, or ``None`` when every candidate could be exported."""
    budget: int
    cut: float | None
    """The lowest kept score."""
    merged: int = 0
    merge_duplicates: int = 0
    domains: dict[str, Counter] = field(default_factory=dict)
    """domain -> ``Counter(kept=..., dropped=...)``."""


def _chosen_scores(scores: ScoreSource, source: str) -> tuple[dict[str, float], str | None]:
    """The scores of ``source`` ("auto": selector scores if there are any, else model scores)."""
    if isinstance(scores, Mapping):
        if not scores:
            raise InputError("no scores given", field="scores")
        return dict(scores), None
    path: Path | None = None
    if isinstance(scores, str | Path):
        path = Path(scores)
        records = require_records(list(read_records(path, Score)), path, "scores")
    else:
        records = require_records(list(scores), scores, "scores")
    chosen = source
    if source == "auto":
        chosen = "selector" if any(record.source == "selector" for record in records) else "model"
    values = read_scores(records, source=chosen)
    if not values:
        raise InputError(f"no {chosen} scores in this file" if path else f"no {chosen} scores given", path=path)
    return values, chosen


def select(
    candidates: CandidateSource,
    scores: ScoreSource,
    out: str | Path,
    config: SelectConfig | None = None,
    *,
    figures: FigureSource | None = None,
    progress: Progress | None = None,
) -> SelectResult:
    """Keep the best-scored candidates and write them to ``out`` as LLaVA data, with a report beside it.

    ``candidates``, ``scores`` and ``figures`` are files or records (figures
    give domains, and images to candidates without one).  Writes ``out``
    (a JSON list), ``<out>.report.md``, ``<out>.scores.png``, ``<out>.images/``
    for DICOM images, and ``<out>.failures.jsonl`` when some candidates cannot
    be exported.  No candidates, no scores of the chosen source, or a missing
    file is an :class:`InputError`, raised before anything is written.
    """
    config = config or SelectConfig()
    out = Path(out)
    figure_records = require_records(figure_index(figures), figures, "figures") if figures is not None else None
    candidate_list = require_records(read_candidates(candidates, figure_records), candidates, "candidates")
    values, chosen = _chosen_scores(scores, config.source)
    selection = select_candidates(candidate_list, values, config, figure_records)
    export = export_llava(selection, out, image_root=config.image_root, merge=config.merge,
                          merge_images=config.merge_images, progress=progress)
    report = write_report(selection, export)
    return SelectResult(
        out=out,
        report=report,
        source=chosen,
        considered=len(selection.decisions),
        kept=export.records,
        failed=export.failed,
        failures=export.failures,
        budget=selection.budget,
        cut=selection.cut,
        merged=export.merged,
        merge_duplicates=export.merge_duplicates,
        domains=selection.per_domain(),
    )
