"""Exports the rest of the pipeline reads.

Preferences (``vital selector train --preferences``): one
:class:`~vital.records.Preference` per pair an answer implies, per annotator
(answers are not merged: two clinicians agreeing give two records, and the
selector sees their agreement as weight).

* compare, ``A``/``B``: the preferred candidate over the other;
* compare, ``tie`` or ``both_bad``: no record, because neither says which
  candidate is better.  They are counted in the summary (and in
  ``vital annotate stats``), never silently lost;
* demos: the best candidate over every other candidate of the task, and each
  acceptable candidate over each unacceptable one.  "None acceptable" ranks
  nothing and yields no record.

Every record has ``source: "human"``, the annotator's name, the figure id and,
as extra keys, the ``task_id`` and ``task_kind`` it came from.

Demonstrations (``vital generate --demos``): per figure, the candidate most
annotators picked as best (ties broken by how many marked it acceptable, then
by candidate order), as the figure's record with ``conversations`` set to that
candidate's turns and ``meta.demonstration`` saying who chose it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from vital.annotate.db import AnnotationDB, CandidateRow, FigureRow, Item, Task, User
from vital.errors import InputError
from vital.jsonl import write_jsonl_atomic
from vital.records import Figure, Preference

PREFERENCE_SOURCES = ("all", "compare", "demos")


@dataclass
class ExportSummary:
    path: Path
    records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def _answered(db: AnnotationDB, kind: str | None = None) -> list[tuple[Task, Item, str]]:
    query = (
        select(Task, Item, User.name)
        .join(Item, Item.id == Task.item_id)
        .join(User, User.id == Task.user_id)
        .where(Task.answered_at.is_not(None))
        .order_by(Task.id)
    )
    if kind is not None:
        query = query.where(Task.kind == kind)
    with db.read() as session:
        return [tuple(row) for row in session.execute(query).all()]


def preference_records(
    db: AnnotationDB, *, source: str = "all", skipped: dict[str, int] | None = None
) -> Iterator[Preference]:
    """The preference pairs implied by the answers; ``skipped`` counts answers that imply none."""
    if source not in PREFERENCE_SOURCES:
        raise InputError(f"unknown source {source!r} (expected one of {', '.join(PREFERENCE_SOURCES)})", field="--from")
    skipped = skipped if skipped is not None else {}
    for task, item, annotator in _answered(db, None if source == "all" else source):
        pairs = list(_pairs(task))
        if not pairs:
            reason = f"{task.kind}:{task.label}" if task.label in ("tie", "both_bad", "none") else task.kind
            skipped[reason] = skipped.get(reason, 0) + 1
        for chosen, rejected in pairs:
            yield Preference(
                figure_id=item.figure_id,
                chosen=chosen,
                rejected=rejected,
                source="human",
                annotator=annotator,
                task_id=task.id,
                task_kind=task.kind,
            )


def _pairs(task: Task) -> Iterator[tuple[str, str]]:
    if task.kind == "compare":
        if task.label not in ("tie", "both_bad"):
            other = next(cid for cid in task.display_order if cid != task.label)
            yield task.label, other
        return
    best = task.answer.get("best")
    acceptable = set(task.answer.get("acceptable", []))
    ordered = sorted(task.display_order)
    if best is not None:
        for other in ordered:
            if other != best:
                yield best, other
    for good in sorted(acceptable - {best}):
        for bad in ordered:
            if bad not in acceptable:
                yield good, bad


def demonstration_records(db: AnnotationDB) -> Iterator[Figure]:
    """One demonstration per figure whose demos tasks picked a best candidate."""
    votes: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    order: dict[str, list[str]] = {}
    answers: Counter = Counter()
    for task, item, annotator in _answered(db, "demos"):
        order[item.figure_id] = item.candidate_ids
        answers[item.figure_id] += 1
        tally = votes[item.figure_id]
        for cid in item.candidate_ids:
            tally.setdefault(cid, {"best": [], "acceptable": 0})
        if task.answer.get("best") is not None:
            tally[task.answer["best"]]["best"].append(annotator)
        for cid in task.answer.get("acceptable", []):
            tally[cid]["acceptable"] += 1
    with db.read() as session:
        for figure_id in sorted(votes, key=lambda fid: session.get(FigureRow, fid).seq):
            tally = votes[figure_id]
            ranked = sorted(
                order[figure_id],
                key=lambda cid: (
                    -len(tally[cid]["best"]),
                    -tally[cid]["acceptable"],
                    order[figure_id].index(cid),
                ),
            )
            winner = ranked[0]
            if not tally[winner]["best"]:
                continue
            record = session.get(FigureRow, figure_id).record
            candidate = session.get(CandidateRow, winner).record
            demonstration = {
                "candidate_id": winner,
                "chosen_by": sorted(tally[winner]["best"]),
                "acceptable_votes": tally[winner]["acceptable"],
                "answers": answers[figure_id],
                "generator": candidate.get("generator", {}),
            }
            figure = Figure.model_validate(
                {
                    **record,
                    "conversations": candidate["conversations"],
                    "meta": {**record.get("meta", {}), "demonstration": demonstration},
                }
            )
            yield figure


def export_preferences(db: AnnotationDB, out: str | Path, *, source: str = "all") -> ExportSummary:
    summary = ExportSummary(Path(out))
    summary.records = write_jsonl_atomic(out, preference_records(db, source=source, skipped=summary.skipped))
    return summary


def export_demonstrations(db: AnnotationDB, out: str | Path) -> ExportSummary:
    summary = ExportSummary(Path(out))
    summary.records = write_jsonl_atomic(out, demonstration_records(db))
    return summary
