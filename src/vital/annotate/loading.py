"""Loading figures and candidates into annotation items, idempotently.

Every figure with at least two candidates yields

* one *demonstrations* item: its first :data:`MAX_DEMO_CANDIDATES` candidates
  (in file order), of which the clinician picks the best;
* one *compare* item per pair of its candidates.

Items are keyed by a hash of (kind, figure, candidate ids), so loading the same
files again adds nothing, and loading a grown candidates file adds only the new
pairs.  Figure and candidate contents are updated in place (ids are stable), so
answers already given stay attached to them.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, insert, select, update

from vital.annotate.db import AnnotationDB, CandidateRow, FigureRow, Item
from vital.errors import InputError
from vital.records import Candidate, Figure, iter_candidates, read_figures

MAX_DEMO_CANDIDATES = 4
BATCH = 500


@dataclass
class LoadSummary:
    figures: int = 0
    candidates: int = 0
    new_items: dict[str, int] | None = None
    total_items: dict[str, int] | None = None
    figures_without_pairs: int = 0
    figures_truncated: int = 0


def item_key(kind: str, figure_id: str, candidate_ids: Iterable[str]) -> str:
    text = "\x1f".join([kind, figure_id, *candidate_ids])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _batches(records: Iterable[Any]) -> Iterator[list[Any]]:
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, BATCH)):
        yield batch


def _upsert(db: AnnotationDB, model: type, rows: list[dict[str, Any]]) -> int:
    """Insert new rows and update changed ones (by primary key ``id``); returns how many were new.

    A repeated id updates the earlier record (ids are stable; the later line wins).
    """
    table = model.__table__
    rows = list({row["id"]: row for row in rows}.values())
    with db.write() as session:
        stored = dict(
            session.execute(select(table.c.id, table.c.record).where(table.c.id.in_([r["id"] for r in rows]))).all()
        )
        new = [row for row in rows if row["id"] not in stored]
        if new:
            session.execute(insert(table), new)
        for row in rows:
            if row["id"] in stored and stored[row["id"]] != row["record"]:
                changes = {name: value for name, value in row.items() if name not in ("id", "seq")}
                session.execute(update(table).where(table.c.id == row["id"]).values(changes))
        return len(new)


def _next_seq(db: AnnotationDB, model: type) -> int:
    with db.read() as session:
        return (session.scalar(select(func.max(model.seq))) or 0) + 1


def load_corpus(
    db: AnnotationDB, figures: str | Path, candidates: str | Path, *, show_progress: bool = False
) -> LoadSummary:
    """Load a figures JSONL and a candidates JSONL into ``db`` and create the items; safe to repeat.

    Each batch is committed as it goes: an interrupted load is completed by loading again.
    """
    figures, candidates = Path(figures), Path(candidates)
    with Progress(
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,}"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=True,
    ) as progress:
        return _load(db, figures, candidates, progress)


def _load(db: AnnotationDB, figures: Path, candidates: Path, progress: Progress) -> LoadSummary:
    summary = LoadSummary()
    seq = _next_seq(db, FigureRow)
    figure_task = progress.add_task("loading figures", total=None)
    for batch in _batches(read_figures(figures)):
        rows = []
        for figure in batch:
            rows.append({"id": figure.id, "seq": seq, "image": figure.image, "record": _record(figure)})
            seq += 1
        _upsert(db, FigureRow, rows)
        summary.figures += len(batch)
        progress.advance(figure_task, len(batch))

    with db.read() as session:
        known_figures = set(session.scalars(select(FigureRow.id)))
    seq = _next_seq(db, CandidateRow)
    candidate_task = progress.add_task("loading candidates", total=None)
    for batch in _batches(iter_candidates(candidates, unique_ids=False)):
        rows = []
        for line, candidate in batch:
            if candidate.figure_id not in known_figures:
                raise InputError(
                    f"figure {candidate.figure_id!r} is not in {figures}",
                    path=candidates,
                    line=line,
                    field="figure_id",
                )
            rows.append(
                {
                    "id": candidate.id,
                    "figure_id": candidate.figure_id,
                    "seq": seq,
                    "record": _record(candidate),
                }
            )
            seq += 1
        _upsert(db, CandidateRow, rows)
        summary.candidates += len(batch)
        progress.advance(candidate_task, len(batch))

    item_task = progress.add_task("creating items", total=None)
    summary.new_items, summary.figures_without_pairs, summary.figures_truncated = _create_items(
        db, lambda count: progress.advance(item_task, count)
    )
    summary.total_items = count_items(db)
    return summary


def _record(record: Figure | Candidate) -> dict[str, Any]:
    return record.model_dump(mode="json", by_alias=True, exclude_none=True)


def _create_items(db: AnnotationDB, advance: Callable[[int], None]) -> tuple[dict[str, int], int, int]:
    with db.read() as session:
        known = set(session.scalars(select(Item.key)))
        seq = (session.scalar(select(func.max(Item.seq))) or 0) + 1
        rows = session.execute(
            select(CandidateRow.figure_id, CandidateRow.id).join(FigureRow).order_by(FigureRow.seq, CandidateRow.seq)
        )
        by_figure: dict[str, list[str]] = {}
        for figure_id, candidate_id in rows:
            by_figure.setdefault(figure_id, []).append(candidate_id)

    new = {"compare": 0, "demos": 0}
    without_pairs = truncated = 0
    pending: list[dict[str, Any]] = []
    for figure_id, ids in by_figure.items():
        if len(ids) < 2:
            without_pairs += 1
            continue
        demo_ids = ids[:MAX_DEMO_CANDIDATES]
        truncated += len(ids) > MAX_DEMO_CANDIDATES
        groups = [("demos", demo_ids)] + [("compare", list(pair)) for pair in itertools.combinations(ids, 2)]
        for kind, candidate_ids in groups:
            key = item_key(kind, figure_id, candidate_ids)
            if key in known:
                continue
            known.add(key)
            pending.append(
                {
                    "key": key,
                    "kind": kind,
                    "figure_id": figure_id,
                    "candidate_ids": candidate_ids,
                    "seq": seq,
                    "assigned": 0,
                }
            )
            seq += 1
            new[kind] += 1
            if len(pending) >= BATCH:
                _insert_items(db, pending, advance)
    _insert_items(db, pending, advance)
    return new, without_pairs, truncated


def _insert_items(db: AnnotationDB, items: list[dict[str, Any]], advance: Callable[[int], None]) -> None:
    if items:
        with db.write() as session:
            session.execute(insert(Item.__table__), items)
        advance(len(items))
        items.clear()


def count_items(db: AnnotationDB) -> dict[str, int]:
    with db.read() as session:
        counts = dict(session.execute(select(Item.kind, func.count()).group_by(Item.kind)).all())
    return {kind: counts.get(kind, 0) for kind in ("compare", "demos")}
