"""Score an answer file against benchmark questions: overall and per category, with intervals.

>>> import vital
>>> result = vital.eval_vqa("vqa-rad/test.json", "answers.jsonl", vital.VqaConfig(compat="llava-med"))
>>> result.metrics["closed_accuracy"], result.ci95["closed_accuracy"], result.breakdown["organ"]["CHEST"]

Every metric is a mean over questions of a per-question score (open metrics
over the open questions, closed metrics over the closed ones), so each gets a
95 % bootstrap interval over those questions, and ``details`` writes the
per-question scores whose means the metrics are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.evaluate.metrics import MODES, AnswerScore, Mode, score_answer
from vital.evaluate.questions import (
    FORMATS,
    PredictionSource,
    Question,
    QuestionSource,
    label_set,
    predictions_of,
    questions_of,
)
from vital.evaluate.stats import bootstrap_interval
from vital.jsonl import write_jsonl_atomic
from vital.progress import Progress

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
Kind = Literal["open", "closed"]
# metric -> (column of the per-question score matrix, the questions it averages over)
METRIC_COLUMNS: dict[str, tuple[int, Kind]] = {
    "open_accuracy": (0, "open"),
    "recall": (1, "open"),
    "precision": (2, "open"),
    "f1": (3, "open"),
    "exact_match": (4, "open"),
    "bleu": (5, "open"),
    "bleu_1": (6, "open"),
    "bleu_2": (7, "open"),
    "bleu_3": (8, "open"),
    "closed_accuracy": (0, "closed"),
    "closed_recall": (1, "closed"),
}
# The per-question score of a details row: what the headline metric of its kind averages.
HEADLINE: dict[Kind, str] = {"open": "recall", "closed": "closed_accuracy"}
# Breakdown cells get intervals for the metrics tables and reports show per category.
BREAKDOWN_INTERVALS = ("recall", "open_accuracy", "closed_accuracy")
GROUND_TRUTH_FORMATS = tuple(name for name in FORMATS if name != "questions")


@dataclass
class VqaConfig(StageConfig):
    """How to read the ground truth, which scorer to use, and how much uncertainty to report."""

    compat: str | None = setting(
        None, "'llava-med': score exactly as LLaVA-Med's published scorer (flaws included).", choices=MODES
    )
    allow_missing: bool = setting(False, "Count questions without a prediction as wrong instead of stopping.")
    lang: str = setting("en", "SLAKE question language (en, zh, or all).")
    format: str = setting("auto", "Ground-truth format (auto detects it).", choices=("auto", *GROUND_TRUTH_FORMATS))
    bootstrap: int = setting(1000, "Bootstrap resamples for the 95% intervals (0: no intervals).")
    seed: int = setting(0, "Seed of the bootstrap.")
    details: Path | None = setting(
        None, "Also write one JSONL row per question here: its score, ground truth, prediction and labels."
    )
    min_n: int = setting(10, "Breakdown cells with fewer questions than this are greyed.", changes_output=False)

    def validate(self) -> None:
        if self.bootstrap < 0:
            raise InputError("must not be negative", field="bootstrap")
        if self.min_n < 0:
            raise InputError("must not be negative", field="min_n")

    @property
    def mode(self) -> Mode:
        return self.compat or "default"  # type: ignore[return-value]


@dataclass
class VqaResult:
    """Metrics in percent (``None`` where a group has no question of that kind).

    ``ci95`` holds each metric's 95 % bootstrap interval (``None`` without
    questions of its kind, or with ``bootstrap=0``).  ``breakdown`` maps a
    category (``question_type``, ``organ``, ``region``, ...) to its labels,
    each with the same metrics, their counts and the intervals of
    :data:`BREAKDOWN_INTERVALS`; ``label_sets`` names the vocabulary of each
    category's labels (see :func:`vital.evaluate.questions.label_set`).
    ``missing`` counts questions without a prediction (scored as wrong),
    ``ignored`` predictions whose id is not a question, ``unscored``
    questions whose ``answer_type`` the mode does not score.
    """

    mode: Mode
    metrics: dict[str, float | int | None]
    ci95: dict[str, list[float] | None] = field(default_factory=dict)
    breakdown: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    label_sets: dict[str, str] = field(default_factory=dict)
    benchmark: str = ""
    missing: int = 0
    ignored: int = 0
    unscored: int = 0
    details: Path | None = None
    min_n: int = 10

    def to_json(self) -> dict[str, Any]:
        return {
            **self.metrics,
            "ci95": self.ci95,
            "mode": self.mode,
            "benchmark": self.benchmark,
            "breakdown": self.breakdown,
            "label_sets": self.label_sets,
        }


@dataclass
class QuestionScores:
    """One answer file scored question by question: the scored questions and a row of scores each.

    Row columns are :data:`METRIC_COLUMNS`' (fractions in [0, 1]); ``is_open``
    tells open questions from closed ones.
    """

    questions: list[Question]
    predictions: list[str | None]
    rows: np.ndarray
    is_open: np.ndarray
    unscored: int = 0

    def members(self, kind: Kind, among: np.ndarray | None = None) -> np.ndarray:
        """Row indices of the questions of ``kind`` (among the rows ``among``, if given)."""
        mask = self.is_open if kind == "open" else ~self.is_open
        return np.flatnonzero(mask) if among is None else among[mask[among]]

    def values(self, metric: str, among: np.ndarray | None = None) -> np.ndarray:
        """The per-question scores ``metric`` is the mean of (as fractions)."""
        column, kind = METRIC_COLUMNS[metric]
        return self.rows[self.members(kind, among), column]

    def summary(self, among: np.ndarray | None = None) -> dict[str, float | int | None]:
        """The metrics of :data:`METRIC_KEYS` over all rows, or over the rows ``among``."""
        members = {kind: self.members(kind, among) for kind in HEADLINE}
        metrics: dict[str, float | int | None] = {}
        for name, (column, kind) in METRIC_COLUMNS.items():
            rows = members[kind]
            metrics[name] = float(100 * self.rows[rows, column].mean()) if len(rows) else None
        metrics["n_open"], metrics["n_closed"] = len(members["open"]), len(members["closed"])
        return {key: metrics[key] for key in METRIC_KEYS}

    def intervals(
        self, metrics: Iterable[str], resamples: int, seed: int, among: np.ndarray | None = None
    ) -> dict[str, list[float] | None]:
        """The 95 % bootstrap interval of each metric (each with its own seed, derived from ``seed``)."""
        wanted = set(metrics)
        return {
            name: bootstrap_interval(self.values(name, among), resamples, [seed, index])
            for index, name in enumerate(METRIC_COLUMNS)
            if name in wanted
        }

    def groups(self) -> dict[str, dict[str, np.ndarray]]:
        """``{category: {label: row indices}}``; a question with several labels is in each of them."""
        groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for row, question in enumerate(self.questions):
            for category, labels in question.categories.items():
                for label in labels:
                    groups[category][label].append(row)
        return {
            category: {label: np.array(rows) for label, rows in sorted(labels.items())}
            for category, labels in groups.items()
        }


def _score_matrix(scores: list[AnswerScore]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.array(
        [(s.hit, s.recall, s.precision, s.f1, s.exact_match, *s.bleu) for s in scores], dtype=float
    )
    is_open = np.fromiter((s.kind == "open" for s in scores), dtype=bool, count=len(scores))
    return rows.reshape(len(scores), 9), is_open


def score_questions(
    questions: Iterable[Question], predictions: Mapping[str, str], mode: Mode = "default"
) -> QuestionScores:
    """Score each question against its prediction (an empty answer when it has none)."""
    if mode not in MODES:
        raise InputError(f"unknown scoring mode {mode!r}; expected one of {', '.join(MODES)}", field="compat")
    scored: list[Question] = []
    said: list[str | None] = []
    scores: list[AnswerScore] = []
    unscored = 0
    prediction_of = predictions.get
    for question in questions:
        prediction = prediction_of(question.id)
        score = score_answer(question.answer, prediction or "", question.answer_type, mode)
        if score is None:
            unscored += 1
            continue
        scored.append(question)
        said.append(prediction)
        scores.append(score)
    rows, is_open = _score_matrix(scores)
    return QuestionScores(scored, said, rows, is_open, unscored)


def _label_sets(questions: list[Question], categories: Iterable[str]) -> dict[str, str]:
    benchmarks = sorted({question.benchmark for question in questions})
    return {category: "+".join(sorted({label_set(category, b) for b in benchmarks})) for category in categories}


def details_rows(scores: QuestionScores) -> Iterable[dict[str, Any]]:
    """One row per scored question; the mean ``score`` of each kind is that kind's headline metric."""
    names = {kind: [name for name, (_, k) in METRIC_COLUMNS.items() if k == kind] for kind in HEADLINE}
    columns = {kind: [METRIC_COLUMNS[name][0] for name in names[kind]] for kind in HEADLINE}
    headline = {kind: METRIC_COLUMNS[HEADLINE[kind]][0] for kind in HEADLINE}
    for question, prediction, row, is_open in zip(
        scores.questions, scores.predictions, scores.rows.tolist(), scores.is_open.tolist(), strict=True
    ):
        kind: Kind = "open" if is_open else "closed"
        yield {
            "question_id": question.id,
            "benchmark": question.benchmark,
            "answer_type": kind,
            "question": question.question,
            "answer": question.answer,
            "prediction": prediction,
            "score": row[headline[kind]],
            "metrics": dict(zip(names[kind], [row[column] for column in columns[kind]], strict=True)),
            **{category: list(labels) for category, labels in question.categories.items()},
        }


def eval_vqa(
    gt: QuestionSource,
    pred: PredictionSource,
    config: VqaConfig | None = None,
    *,
    progress: Progress | None = None,
) -> VqaResult:
    """Score the predictions ``pred`` against the questions ``gt``, matched by id.

    ``gt`` is a ground-truth file (VQA-RAD, SLAKE, PathVQA, LLaVA-Med or flat
    records; docs/metrics.md) or :class:`Question` records; ``pred`` an answer
    file or ``{question_id: text}``.  A question without a prediction is an
    :class:`InputError` unless ``config.allow_missing``, which scores it as an
    empty answer.  ``progress`` is accepted for the common signature; scoring
    100K questions takes seconds.
    """
    config = config or VqaConfig()
    questions = questions_of(gt, format=config.format, lang=config.lang)
    predictions = predictions_of(pred)
    absent = [question.id for question in questions if question.id not in predictions]
    if absent and not config.allow_missing:
        raise InputError(
            f"no prediction for {len(absent)} of {len(questions)} questions (first: id {absent[0]!r}); "
            "pass --allow-missing to count them as wrong",
            path=pred if isinstance(pred, str | Path) else None,
            field="question_id",
        )
    scores = score_questions(questions, predictions, config.mode)
    breakdown: dict[str, dict[str, dict[str, Any]]] = {}
    for category, labels in scores.groups().items():
        breakdown[category] = {
            label: {
                **scores.summary(rows),
                "ci95": scores.intervals(BREAKDOWN_INTERVALS, config.bootstrap, config.seed, rows),
            }
            for label, rows in labels.items()
        }
    if config.details is not None:
        write_jsonl_atomic(config.details, details_rows(scores))
    known = {question.id for question in questions}
    return VqaResult(
        mode=config.mode,
        metrics=scores.summary(),
        ci95=scores.intervals(METRIC_COLUMNS, config.bootstrap, config.seed),
        breakdown=breakdown,
        label_sets=_label_sets(scores.questions, breakdown),
        benchmark="+".join(sorted({question.benchmark for question in questions})),
        missing=len(absent),
        ignored=sum(1 for question_id in predictions if question_id not in known),
        unscored=scores.unscored,
        details=config.details,
        min_n=config.min_n,
    )
