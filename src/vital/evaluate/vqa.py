"""Score an answer file against benchmark questions: overall and per category."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vital.errors import InputError
from vital.evaluate.metrics import MODES, AnswerScore, Mode, score_answer
from vital.evaluate.questions import Question, load_questions, read_predictions

# The keys of a result, in the order they are printed.
METRIC_KEYS = (
    "exact_match",
    "f1",
    "precision",
    "recall",
    "bleu",
    "bleu_1",
    "bleu_2",
    "bleu_3",
    "open_accuracy",
    "closed_accuracy",
    "closed_recall",
    "n_open",
    "n_closed",
)


@dataclass
class VqaResult:
    """Metrics in percent (``None`` where a group has no question of that kind).

    ``breakdown`` maps a category (``question_type``, ``organ``, ...) to its
    labels, each with the same metrics.  ``missing`` counts questions without
    a prediction (scored as wrong), ``ignored`` predictions whose id is not
    a question, ``unscored`` questions whose ``answer_type`` the mode does
    not score.
    """

    mode: Mode
    metrics: dict[str, float | int | None]
    breakdown: dict[str, dict[str, dict[str, float | int | None]]] = field(default_factory=dict)
    missing: int = 0
    ignored: int = 0
    unscored: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**self.metrics, "breakdown": self.breakdown}


# Columns of the per-question score matrix, and the metric each one averages into.
_OPEN_COLUMNS = {
    "exact_match": 4,
    "f1": 3,
    "precision": 2,
    "recall": 1,
    "bleu": 5,
    "bleu_1": 6,
    "bleu_2": 7,
    "bleu_3": 8,
    "open_accuracy": 0,
}
_CLOSED_COLUMNS = {"closed_accuracy": 0, "closed_recall": 1}


def _score_matrix(scores: Iterable[AnswerScore]) -> tuple[np.ndarray, np.ndarray]:
    """One row per question (hit, recall, precision, f1, exact match, 4 BLEUs) and an is-open mask."""
    scores = list(scores)
    rows = np.array(
        [(s.hit, s.recall, s.precision, s.f1, s.exact_match, *s.bleu) for s in scores], dtype=float
    )
    is_open = np.fromiter((s.kind == "open" for s in scores), dtype=bool, count=len(scores))
    return rows.reshape(len(scores), 9), is_open


def _summarize_rows(rows: np.ndarray, is_open: np.ndarray) -> dict[str, float | int | None]:
    metrics: dict[str, float | int | None] = {}
    for block, columns in ((rows[is_open], _OPEN_COLUMNS), (rows[~is_open], _CLOSED_COLUMNS)):
        for name, column in columns.items():
            metrics[name] = float(100 * block[:, column].mean()) if len(block) else None
    metrics["n_open"], metrics["n_closed"] = int(is_open.sum()), int((~is_open).sum())
    return {key: metrics[key] for key in METRIC_KEYS}


def summarize(scores: Iterable[AnswerScore]) -> dict[str, float | int | None]:
    """Average per-question scores into the metrics of :data:`METRIC_KEYS`."""
    return _summarize_rows(*_score_matrix(scores))


def score_vqa(
    questions: Iterable[Question],
    predictions: Mapping[str, str],
    *,
    compat: Mode | None = None,
    allow_missing: bool = False,
    predictions_path: str | Path | None = None,
) -> VqaResult:
    """Score ``predictions`` (``{question_id: text}``) against ``questions``, matched by id.

    ``compat="llava-med"`` scores as LLaVA-Med's published scorer does.  A
    question without a prediction is an :class:`InputError` unless
    ``allow_missing``, which scores it as an empty answer.
    """
    mode: Mode = compat or "default"
    if mode not in MODES:
        raise InputError(f"unknown scoring mode {compat!r}; expected one of {', '.join(MODES)}")
    questions = list(questions)
    absent = [question.id for question in questions if question.id not in predictions]
    if absent and not allow_missing:
        raise InputError(
            f"no prediction for {len(absent)} of {len(questions)} questions (first: id {absent[0]!r}); "
            "pass --allow-missing to count them as wrong",
            path=predictions_path,
            field="question_id",
        )
    scored: list[tuple[Question, AnswerScore]] = []
    unscored = 0
    prediction_of = predictions.get
    for question in questions:
        score = score_answer(question.answer, prediction_of(question.id, ""), question.answer_type, mode)
        if score is None:
            unscored += 1
        else:
            scored.append((question, score))
    rows, is_open = _score_matrix(score for _, score in scored)
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row, (question, _) in enumerate(scored):
        for category, labels in question.categories.items():
            for label in labels:
                groups[category][label].append(row)
    breakdown = {
        category: {
            label: _summarize_rows(rows[members], is_open[members])
            for label, members in sorted(labels.items())
        }
        for category, labels in groups.items()
    }
    known = {question.id for question in questions}
    return VqaResult(
        mode=mode,
        metrics=_summarize_rows(rows, is_open),
        breakdown=breakdown,
        missing=len(absent),
        ignored=sum(1 for question_id in predictions if question_id not in known),
        unscored=unscored,
    )


def evaluate_vqa(
    gt: str | Path,
    pred: str | Path,
    *,
    compat: Mode | None = None,
    allow_missing: bool = False,
    format: str = "auto",
    lang: str = "en",
) -> VqaResult:
    """Score the answer file ``pred`` against the ground-truth file ``gt`` (see :func:`score_vqa`)."""
    questions = load_questions(gt, format=format, lang=lang)
    predictions = read_predictions(pred)
    return score_vqa(
        questions, predictions, compat=compat, allow_missing=allow_missing, predictions_path=pred
    )
