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

``db`` is an open :class:`~vital.annotate.db.AnnotationDB`, a SQLite file or a
database URL; a SQLite file that does not exist is an :class:`InputError`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from vital.annotate.config import ANSWER_KINDS, ExportConfig
from vital.annotate.db import KINDS, AnnotationDB, CandidateRow, Database, FigureRow, Item, Task, User, opened
from vital.errors import InputError
from vital.jsonl import write_jsonl_atomic
from vital.records import Figure, Preference


@dataclass
class ExportResult:
    out: Path
    records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    """Answers that give no preference pair, by reason (``compare:tie``, ``compare:both_bad``, ``demos:none``)."""


@dataclass
class AnnotationCounts:
    """What the clinicians have given so far, and what an export would write from it."""

    answers: dict[str, int]
    """Answered tasks per kind (``compare``, ``demos``)."""
    annotators: int
    """Annotators with at least one answer."""
    preferences: int
    """Preference pairs from all answers (what ``export_preferences`` writes)."""
    demonstrations: int
    """Figures with a clinician-chosen demonstration (what ``export_demonstrations`` writes)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Answers that give no preference pair, by reason."""


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
        return [(task, item, name) for task, item, name in session.execute(query).all()]


def preference_records(
    db: AnnotationDB, *, answers: str = "all", skipped: dict[str, int] | None = None
) -> Iterator[Preference]:
    """The preference pairs implied by the ``answers`` (all, compare, demos); ``skipped`` counts answers giving none."""
    if answers not in ANSWER_KINDS:
        raise InputError(f"{answers!r} is not one of {', '.join(ANSWER_KINDS)}", field="answers")
    skipped = skipped if skipped is not None else {}
    for task, item, annotator in _answered(db, None if answers == "all" else answers):
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
        preferred = task.label
        if preferred is not None and preferred not in ("tie", "both_bad"):
            other = next(cid for cid in task.display_order if cid != preferred)
            yield preferred, other
        return
    answer = task.answer or {}
    best = answer.get("best")
    acceptable = set(answer.get("acceptable", []))
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
        answer = task.answer or {}
        if answer.get("best") is not None:
            tally[answer["best"]]["best"].append(annotator)
        for cid in answer.get("acceptable", []):
            tally[cid]["acceptable"] += 1
    with db.read() as session:
        for figure_id in sorted(votes, key=lambda fid: session.get_one(FigureRow, fid).seq):
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
            record = session.get_one(FigureRow, figure_id).record
            candidate = session.get_one(CandidateRow, winner).record
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


def output_file(out: str | Path) -> Path:
    """``out`` as a file to (over)write; a directory there is an :class:`InputError`."""
    out = Path(out)
    if out.is_dir():
        raise InputError("is a directory; expected a file", path=out)
    return out


def export_preferences(db: Database, out: str | Path, *, answers: str = "all") -> ExportResult:
    """Write the preference pairs of the ``answers`` (all, compare, demos) to ``out`` (JSONL, atomically)."""
    result = ExportResult(output_file(out))
    with opened(db, create=False) as database:
        records = preference_records(database, answers=answers, skipped=result.skipped)
        result.records = write_jsonl_atomic(result.out, records)
    return result


def export_demonstrations(db: Database, out: str | Path) -> ExportResult:
    """Write one demonstration per figure whose demos tasks picked a best candidate to ``out`` (JSONL)."""
    result = ExportResult(output_file(out))
    with opened(db, create=False) as database:
        result.records = write_jsonl_atomic(result.out, demonstration_records(database))
    return result


def export_annotations(db: Database, out: str | Path, config: ExportConfig) -> ExportResult:
    """``vital annotate export``: preferences or demonstrations, as ``config.kind`` says."""
    if config.kind == "demos":
        return export_demonstrations(db, out)
    return export_preferences(db, out, answers=config.answers)


def annotation_counts(db: Database) -> AnnotationCounts:
    """How many answers, preference pairs and demonstrations the database holds (nothing is written)."""
    with opened(db, create=False) as database:
        with database.read() as session:
            per_kind = dict(
                session.execute(
                    select(Task.kind, func.count()).where(Task.answered_at.is_not(None)).group_by(Task.kind)
                ).all()
            )
            annotators = session.scalar(
                select(func.count(func.distinct(Task.user_id))).where(Task.answered_at.is_not(None))
            )
        skipped: dict[str, int] = {}
        preferences = sum(1 for _ in preference_records(database, skipped=skipped))
        demonstrations = sum(1 for _ in demonstration_records(database))
    return AnnotationCounts(
        answers={kind: per_kind.get(kind, 0) for kind in KINDS},
        annotators=annotators or 0,
        preferences=preferences,
        demonstrations=demonstrations,
        skipped=skipped,
    )
