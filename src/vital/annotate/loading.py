"""Loading figures and candidates into annotation items, idempotently.

Every figure with at least two candidates yields

* one *demonstrations* item: its first :data:`MAX_DEMO_CANDIDATES` candidates
  (in file order), of which the clinician picks the best;
* one *compare* item per pair of its candidates.

Items are keyed by a hash of (kind, figure, candidate ids), so loading the same
files again adds nothing, and loading a grown candidates file adds only the new
pairs.  Figure and candidate contents are updated in place (ids are stable), so
answers already given stay attached to them.

Loading also records the folders images may be served from: the figures
file's folder (where its relative image paths start) and any ``images``
folders given.  The app shows no image outside them.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, insert, select, update

from vital.annotate.db import (
    AnnotationDB,
    CandidateRow,
    Database,
    FigureRow,
    ImageFolder,
    Item,
    image_folders,
    opened,
    table_of,
)
from vital.annotate.images import confined
from vital.errors import InputError
from vital.jsonl import warn
from vital.progress import Progress, or_silent
from vital.records import Candidate, CandidateSource, Figure, FigureSource, iter_candidates, read_figures

MAX_DEMO_CANDIDATES = 4
BATCH = 500
T = TypeVar("T")


@dataclass
class LoadResult:
    """What a load added; ``total_items`` and ``image_folders`` describe the whole database afterwards."""

    database: str
    figures: int = 0
    candidates: int = 0
    new_items: dict[str, int] = field(default_factory=dict)
    total_items: dict[str, int] = field(default_factory=dict)
    figures_without_pairs: int = 0
    figures_truncated: int = 0
    image_folders: list[Path] = field(default_factory=list)
    images_outside: int = 0
    """Figures of this load whose image is outside every image folder: the app does not show it."""


def item_key(kind: str, figure_id: str, candidate_ids: Iterable[str]) -> str:
    text = "\x1f".join([kind, figure_id, *candidate_ids])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _batches(records: Iterable[Any]) -> Iterator[list[Any]]:
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, BATCH)):
        yield batch


def _upsert(db: AnnotationDB, model: type[FigureRow] | type[CandidateRow], rows: list[dict[str, Any]]) -> int:
    """Insert new rows and update changed ones (by primary key ``id``); returns how many were new.

    A repeated id updates the earlier record (ids are stable; the later line wins).
    """
    table = table_of(model)
    rows = list({row["id"]: row for row in rows}.values())
    with db.write() as session:
        stored: dict[str, Any] = dict(
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


def _next_seq(db: AnnotationDB, model: type[FigureRow] | type[CandidateRow]) -> int:
    with db.read() as session:
        return (session.scalar(select(func.max(model.seq))) or 0) + 1


def _figure_records(figures: FigureSource) -> Iterable[Figure]:
    if isinstance(figures, str | Path):
        return read_figures(figures)
    return figures.values() if isinstance(figures, Mapping) else figures


def _candidate_records(candidates: CandidateSource) -> Iterable[tuple[int | None, Candidate]]:
    if isinstance(candidates, str | Path):
        return iter_candidates(candidates, unique_ids=False)
    return ((None, candidate) for candidate in candidates)


def _not_empty(records: Iterable[T], path: str | Path | None, noun: str) -> Iterator[T]:
    """``records`` again, after checking that there is one (reading only the first)."""
    iterator = iter(records)
    first = next(iterator, None)
    if first is None:
        raise InputError("has no records" if path is not None else f"no {noun} given", path=path)
    return itertools.chain([first], iterator)


def _image_folders(db: AnnotationDB, figures: FigureSource,
                   images: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """The image folders once the figures file's folder and ``images`` are added to them, and those added."""
    folders = [Path(figures).resolve().parent] if isinstance(figures, str | Path) else []
    for folder in map(Path, images):
        if not folder.is_dir():
            raise InputError("is not a folder" if folder.exists() else "folder not found", path=folder,
                             field="images")
        folders.append(folder.resolve())
    given = {str(folder) for folder in folders}
    with db.read() as session:
        known = set(image_folders(session))
    return sorted(known | given), sorted(given - known)


def load_corpus(
    db: Database,
    figures: FigureSource,
    candidates: CandidateSource,
    *,
    images: Sequence[str | Path] = (),
    progress: Progress | None = None,
) -> LoadResult:
    """Load figures and candidates into ``db`` and create the items; safe to repeat.

    ``db`` is an open :class:`AnnotationDB`, a SQLite file path or a database
    URL; ``figures`` and ``candidates`` are JSONL files or records.  Images are
    served from the figures file's folder and the ``images`` folders.  Each
    batch is committed as it goes: an interrupted load is completed by
    loading again.  An input without records is an :class:`InputError`.
    """
    with opened(db) as database:
        return _load(database, figures, candidates, images, or_silent(progress))


def _load(
    db: AnnotationDB, figures: FigureSource, candidates: CandidateSource, images: Sequence[str | Path],
    progress: Progress,
) -> LoadResult:
    figures_name = figures if isinstance(figures, str | Path) else None
    candidates_name = candidates if isinstance(candidates, str | Path) else None
    # both inputs are checked before anything is written
    figure_records = _not_empty(_figure_records(figures), figures_name, "figures")
    candidate_records = _not_empty(_candidate_records(candidates), candidates_name, "candidates")
    result = LoadResult(db.display_url)
    folders, new_folders = _image_folders(db, figures, images)
    result.image_folders = [Path(folder) for folder in folders]
    seq = _next_seq(db, FigureRow)
    with progress.task("loading figures") as task:
        for batch in _batches(figure_records):
            rows = []
            for figure in batch:
                rows.append({"id": figure.id, "seq": seq, "image": figure.image, "record": _record(figure)})
                seq += 1
                result.images_outside += bool(figure.image) and confined(figure.image, folders) is None
            _upsert(db, FigureRow, rows)
            result.figures += len(batch)
            task.advance(len(batch))
    with db.write() as session:  # recorded once figures from them are in
        session.add_all(ImageFolder(path=path) for path in new_folders)

    with db.read() as session:
        known_figures = set(session.scalars(select(FigureRow.id)))
    seq = _next_seq(db, CandidateRow)
    with progress.task("loading candidates") as task:
        for batch in _batches(candidate_records):
            rows = []
            for line, candidate in batch:
                if candidate.figure_id not in known_figures:
                    raise InputError(
                        f"figure {candidate.figure_id!r} is not in {figures_name or 'the figures'}",
                        path=candidates_name,
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
            result.candidates += len(batch)
            task.advance(len(batch))

    with progress.task("creating items") as task:
        result.new_items, result.figures_without_pairs, result.figures_truncated = _create_items(db, task.advance)
    result.total_items = count_items(db)
    if result.images_outside:
        warn(f"{result.images_outside} figure images are outside the image folders ({', '.join(folders)}): "
             "the app will not show them; load them again naming their folder in images (--images)")
    return result


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
            session.execute(insert(table_of(Item)), items)
        advance(len(items))
        items.clear()


def count_items(db: AnnotationDB) -> dict[str, int]:
    with db.read() as session:
        counts = dict(session.execute(select(Item.kind, func.count()).group_by(Item.kind)).all())
    return {kind: counts.get(kind, 0) for kind in ("compare", "demos")}


def warn_if_not_ready(db: AnnotationDB) -> None:
    """Warn when the app would have nothing to show: no items, or images but no folder to serve them from."""
    if not any(count_items(db).values()):
        warn(f"{db.display_url} has nothing to annotate yet: load figures and candidates (vital annotate load)")
        return
    with db.read() as session:
        images = session.scalar(select(func.count()).select_from(FigureRow).where(FigureRow.image.is_not(None)))
        if images and not image_folders(session):
            warn(f"{db.display_url} records no image folder (it was loaded by an older vital), so no image is "
                 "shown: load the corpus again")
