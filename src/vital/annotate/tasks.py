"""Routing items to annotators, answering, and progress.

Routing: an annotator first gets back their own oldest unanswered task of that
kind (so two tabs show the same task); otherwise a new item that fewer than
``overlap`` annotators have and that they have never had.  Items already
started by someone come first, so that overlapping answers (and agreement)
accumulate early.  The database constraints described in
:mod:`vital.annotate.db` make this safe under concurrency; a lost race is
simply retried.

Answers (``A`` is the first candidate *as displayed to this annotator*):

* compare: ``{"choice": "A" | "B" | "tie" | "both_bad", "comment"?}``
* demos:   ``{"best": CANDIDATE_ID | null, "acceptable": [CANDIDATE_ID, ...], "comment"?}``;
  the best candidate counts as acceptable; ``best: null`` with no acceptable
  candidate means "none of these is good enough to be a demonstration".

Submitting is idempotent and an answer can be revised: the task row holds the
latest answer, and ``revisions`` counts changes.

An annotator sees the image of a figure only when one of their tasks shows
it (administrators: every figure), and only from the image folders.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from vital.annotate.auth import Annotator
from vital.annotate.db import (
    KINDS,
    AnnotationDB,
    CandidateRow,
    FigureRow,
    Item,
    Task,
    User,
    image_folders,
    table_of,
)
from vital.annotate.images import confined, image_info
from vital.errors import InputError

COMPARE_CHOICES = ("A", "B", "tie", "both_bad")
MAX_COMMENT = 5000
#: The largest id an INTEGER column holds on PostgreSQL (SQLite's hold 64 bits): a larger number names no task.
MAX_ID = 2**31 - 1
_shuffler = random.SystemRandom()


class TaskNotFound(LookupError):
    """No such task for this annotator (other annotators' tasks are not found either)."""


class InvalidAnswer(ValueError):
    """An answer that does not fit its task."""


def _pending(session: Any, user: Annotator, kind: str) -> int | None:
    return session.scalar(
        select(Task.id)
        .where(Task.user_id == user.id, Task.kind == kind, Task.answered_at.is_(None))
        .order_by(Task.id)
        .limit(1)
    )


def _open_item(session: Any, user: Annotator, kind: str, overlap: int) -> Any:
    """The first item (in load order) with the most annotators short of ``overlap`` that ``user`` never had.

    One query per fill level, so that each walks the (kind, assigned, seq)
    index in order and stops at the first match instead of sorting every item.
    Returns the row's ``id`` and ``candidate_ids``, or ``None``.
    """
    mine = exists().where(Task.item_id == Item.id, Task.user_id == user.id)
    for level in range(overlap - 1, -1, -1):
        item = session.execute(
            select(Item.id, Item.candidate_ids)
            .where(Item.kind == kind, Item.assigned == level, ~mine)
            .order_by(Item.seq)
            .limit(1)
        ).first()
        if item is not None:
            return item
    return None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r} (expected one of: {', '.join(KINDS)})")


def pending_task(db: AnnotationDB, user: Annotator, kind: str) -> int | None:
    """The annotator's oldest unanswered task of ``kind``, if any (assigns nothing)."""
    _check_kind(kind)
    with db.read() as session:
        return _pending(session, user, kind)


def next_task(db: AnnotationDB, user: Annotator, kind: str, *, overlap: int = 1) -> int | None:
    """The id of the annotator's next task of ``kind`` (assigning a new item if needed), or ``None``."""
    _check_kind(kind)
    for _attempt in range(20):
        try:
            with db.write() as session:
                pending = _pending(session, user, kind)
                if pending is not None:
                    return pending
                item = _open_item(session, user, kind, overlap)
                if item is None:
                    return None
                claimed = session.execute(
                    update(table_of(Item))
                    .where(Item.id == item.id, Item.assigned < overlap)
                    .values(assigned=Item.assigned + 1)
                    .returning(Item.assigned)
                ).scalar()
                if claimed is None:
                    continue  # someone else took the last place; look again
                # the update above locks the item's row, so the slots read here are settled
                used = set(session.scalars(select(Task.slot).where(Task.item_id == item.id)))
                order = list(item.candidate_ids)
                _shuffler.shuffle(order)
                return session.execute(
                    insert(table_of(Task))
                    .values(
                        item_id=item.id,
                        user_id=user.id,
                        kind=kind,
                        slot=min(set(range(len(used) + 1)) - used),
                        display_order=order,
                        assigned_at=time.time(),
                        revisions=0,
                    )
                    .returning(Task.id)
                ).scalar_one()
        except IntegrityError:
            continue  # a parallel request of the same annotator assigned it first
    raise RuntimeError("could not assign a task after 20 attempts (heavy contention)")


def release_open_tasks(db: AnnotationDB, name: str) -> int:
    """Give an annotator's unanswered tasks back to the pool (for someone who will not come back).

    Their answered tasks stay.  Returns how many tasks were released.
    """
    with db.write() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise InputError(f"no annotator named {name!r}", field="NAME")
        released = session.scalars(select(Task).where(Task.user_id == user.id, Task.answered_at.is_(None))).all()
        for task in released:
            session.execute(update(Item).where(Item.id == task.item_id).values(assigned=Item.assigned - 1))
            session.delete(task)
        return len(released)


def _check_id(task_id: int) -> None:
    if not 1 <= task_id <= MAX_ID:
        raise TaskNotFound(f"no task {task_id} for you")


def _own_task(session: Any, user: Annotator, task_id: int) -> Task:
    _check_id(task_id)
    task = session.get(Task, task_id)
    if task is None or task.user_id != user.id:
        raise TaskNotFound(f"no task {task_id} for you")
    return task


def task_view(db: AnnotationDB, user: Annotator, task_id: int) -> dict[str, Any]:
    """The task as the API returns it: figure, candidates in display order, the current answer."""
    _check_id(task_id)
    with db.read() as session:
        task = session.execute(
            select(
                Task.id,
                Task.user_id,
                Task.kind,
                Task.display_order,
                Task.answer,
                Task.comment,
                Task.revisions,
                FigureRow.id.label("figure_id"),
                FigureRow.image,
                FigureRow.record,
            )
            .join(Item, Item.id == Task.item_id)
            .join(FigureRow, FigureRow.id == Item.figure_id)
            .where(Task.id == task_id)
        ).first()
        if task is None or task.user_id != user.id:
            raise TaskNotFound(f"no task {task_id} for you")
        conversations: dict[str, dict[str, Any]] = dict(
            session.execute(
                select(CandidateRow.id, CandidateRow.record).where(CandidateRow.id.in_(task.display_order))
            ).all()
        )
        ids = session.scalars(
            select(Task.id).where(Task.user_id == user.id, Task.kind == task.kind).order_by(Task.id)
        ).all()
        image = confined(task.image, image_folders(session)) if task.image else None
    record = task.record
    position = ids.index(task.id)
    return {
        "task_id": task.id,
        "kind": task.kind,
        "figure": {
            "id": task.figure_id,
            "caption": record.get("caption", ""),
            "mentions": record.get("mentions", []),
            "domains": record.get("domains", []),
            "label": record.get("label"),
            "image_url": f"/images/{quote(task.figure_id, safe='')}" if image else None,
            "windows": image_info(str(image)).windows if image else [],
        },
        "candidates": [{"id": cid, "conversations": conversations[cid]["conversations"]} for cid in task.display_order],
        "answer": _answer_view(task),
        "previous_task_id": ids[position - 1] if position > 0 else None,
        "next_task_id": ids[position + 1] if position + 1 < len(ids) else None,
        "position": position + 1,
    }


def figure_image(db: AnnotationDB, user: Annotator, figure_id: str) -> Path | None:
    """The image file of a figure ``user`` may see, symlinks resolved, inside the image folders; else ``None``."""
    with db.read() as session:
        query = select(FigureRow.image).where(FigureRow.id == figure_id)
        if not user.is_admin:
            shown = (
                select(Task.id)
                .join(Item, Item.id == Task.item_id)
                .where(Item.figure_id == FigureRow.id, Task.user_id == user.id)
                .exists()
            )
            query = query.where(shown)
        image = session.scalar(query)
        return confined(image, image_folders(session)) if image else None


def _answer_view(task: Any) -> dict[str, Any] | None:
    if task.answer is None:
        return None
    view = dict(task.answer)
    if task.comment:
        view["comment"] = task.comment
    view["revisions"] = task.revisions
    return view


def _normalise(task: Task, payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Validate an answer against its task: (stored answer, display-independent label)."""
    if not isinstance(payload, dict):
        raise InvalidAnswer("the answer must be a JSON object")
    allowed = {"choice", "comment"} if task.kind == "compare" else {"best", "acceptable", "comment"}
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise InvalidAnswer(
            f"unexpected field {unknown[0]!r} for a {task.kind} task (expected: {', '.join(sorted(allowed))})"
        )
    if task.kind == "compare":
        choice = payload.get("choice")
        if not isinstance(choice, str) or choice not in COMPARE_CHOICES:
            raise InvalidAnswer(f"'choice' must be one of {', '.join(COMPARE_CHOICES)}, got {choice!r}")
        shown = {"A": task.display_order[0], "B": task.display_order[1]}
        return {"choice": choice}, shown.get(choice, choice)
    best = payload.get("best")
    acceptable = payload.get("acceptable", [])
    if not isinstance(acceptable, list) or not all(isinstance(cid, str) for cid in acceptable):
        raise InvalidAnswer("'acceptable' must be a list of candidate ids")
    for cid in [best, *acceptable] if best is not None else acceptable:
        if cid not in task.display_order:
            raise InvalidAnswer(f"candidate {cid!r} is not part of task {task.id}")
    if best is not None and best not in acceptable:
        acceptable = [*acceptable, best]
    if best is None and acceptable:
        raise InvalidAnswer("pick the best of the acceptable candidates ('best' is missing)")
    ordered = [cid for cid in task.display_order if cid in set(acceptable)]
    return {"best": best, "acceptable": ordered}, best if best is not None else "none"


def submit_answer(db: AnnotationDB, user: Annotator, task_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    """Store or revise the annotator's answer to their task; the same answer again changes nothing."""
    comment = payload.get("comment") if isinstance(payload, dict) else None
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise InvalidAnswer(f"'comment' must be text of at most {MAX_COMMENT} characters")
    comment = (comment or "").strip() or None
    with db.write() as session:
        task = _own_task(session, user, task_id)
        answer, label = _normalise(task, payload)
        unchanged = task.answer == answer and task.comment == comment
        if not unchanged:
            first = task.answer is None
            session.execute(
                update(Task)
                .where(Task.id == task.id)
                .values(
                    answer=answer,
                    label=label,
                    comment=comment,
                    answered_at=time.time() if first else Task.answered_at,
                    revisions=Task.revisions + (0 if first else 1),
                )
            )
        return {"task_id": task.id, "saved": True, "changed": not unchanged, "answer": answer}


@dataclass
class KindProgress:
    answered: int
    pending: int
    available: int

    @property
    def remaining(self) -> int:
        return self.pending + self.available


def progress(db: AnnotationDB, user: Annotator, *, overlap: int = 1) -> dict[str, KindProgress]:
    """Per kind: answered and pending tasks of this annotator, and items still open to them."""
    answered = func.count(Task.answered_at)
    mine = exists().where(Task.item_id == Item.id, Task.user_id == user.id)
    with db.read() as session:
        counts = {
            kind: (done, total - done)
            for kind, done, total in session.execute(
                select(Task.kind, answered, func.count()).where(Task.user_id == user.id).group_by(Task.kind)
            )
        }
        open_items = dict(
            session.execute(
                select(Item.kind, func.count()).where(Item.assigned < overlap, ~mine).group_by(Item.kind)
            ).all()
        )
    return {kind: KindProgress(*counts.get(kind, (0, 0)), open_items.get(kind, 0)) for kind in KINDS}


def annotator_progress(db: AnnotationDB) -> dict[str, dict[str, dict[str, int]]]:
    """Per annotator and kind: tasks answered, and tasks handed out but not answered (abandoned ones too)."""
    answered = func.count(Task.answered_at)
    with db.read() as session:
        names = session.scalars(select(User.name)).all()
        rows = session.execute(
            select(User.name, Task.kind, answered, func.count() - answered)
            .join(Task, Task.user_id == User.id)
            .group_by(User.name, Task.kind)
        ).all()
    result = {name: {kind: {"answered": 0, "pending": 0} for kind in KINDS} for name in names}
    for name, kind, done, pending in rows:
        result[name][kind] = {"answered": done, "pending": pending}
    return result


def item_progress(db: AnnotationDB, *, overlap: int = 1) -> dict[str, dict[str, int]]:
    """Per kind: how many items exist, have at least one answer, and have ``overlap`` answers."""
    result = {}
    with db.read() as session:
        for kind in KINDS:
            total = session.scalar(select(func.count()).select_from(Item).where(Item.kind == kind)) or 0
            answers = (
                select(Task.item_id, func.count().label("n"))
                .where(Task.kind == kind, Task.answered_at.is_not(None))
                .group_by(Task.item_id)
                .subquery()
            )
            started = session.scalar(select(func.count()).select_from(answers)) or 0
            complete = session.scalar(select(func.count()).select_from(answers).where(answers.c.n >= overlap)) or 0
            result[kind] = {"items": total, "started": started, "complete": complete, "overlap": overlap}
    return result
