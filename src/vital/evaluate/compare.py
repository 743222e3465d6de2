"""Paired comparison of two systems on the same questions: difference, its interval, and a p-value.

Answer files are matched to the ground truth, and to each other, by question
id; a question missing from either file is counted and left out of both, so
that every number compares the same questions.  Per metric:

* ``a``, ``b`` — each system's metric on the compared questions, in percent;
* ``diff`` — ``b - a``;
* ``ci95`` — the paired bootstrap interval of the difference (the questions
  are resampled, each keeping both systems' scores);
* ``p_value`` — McNemar's exact test when every per-question score is 0 or 1
  (closed accuracy, open accuracy), otherwise a paired sign-flip permutation
  test with as many permutations as bootstrap resamples (``test`` says which).

Without ground truth the two files are chat reviews (:func:`vital.eval_chat`
or LLaVA-Med's) and the metric is the relative score, overall and per
question type and domain.

>>> import vital
>>> result = vital.eval_compare("vqa-rad/test.json", "base.jsonl", ["ours.jsonl"],
...                             vital.CompareConfig(compat="llava-med"))
>>> row = result.comparisons[0].metrics["closed_accuracy"]
>>> row.diff, row.ci95, row.p_value
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.evaluate.chat import ReviewItem, category_order, read_reviews
from vital.evaluate.metrics import MODES, Mode
from vital.evaluate.questions import PredictionSource, QuestionSource, predictions_of, questions_of
from vital.evaluate.stats import bootstrap_interval, mcnemar_exact, sign_flip_p_value
from vital.evaluate.vqa import GROUND_TRUTH_FORMATS, QuestionScores, score_questions
from vital.jsonl import iter_json_lines
from vital.progress import Progress

# The order metrics are compared and shown in: the two the papers report first.
COMPARED_METRICS = ("closed_accuracy", "recall", "open_accuracy", "closed_recall", "precision", "f1",
                    "exact_match", "bleu", "bleu_1", "bleu_2", "bleu_3")

@dataclass
class CompareConfig(StageConfig):
    """How to score the answer files (as :class:`vital.VqaConfig`) and the resampling behind the tests."""

    compat: str | None = setting(
        None, "'llava-med': score exactly as LLaVA-Med's published scorer (flaws included).", choices=MODES
    )
    lang: str = setting("en", "SLAKE question language (en, zh, or all).")
    format: str = setting("auto", "Ground-truth format (auto detects it).", choices=("auto", *GROUND_TRUTH_FORMATS))
    bootstrap: int = setting(1000, "Bootstrap resamples (and permutations) for intervals and p-values.")
    seed: int = setting(0, "Seed of the bootstrap and the permutations.")

    def validate(self) -> None:
        if self.bootstrap < 1:
            raise InputError("must be at least 1", field="bootstrap")


@dataclass
class MetricComparison:
    """One metric of A and B on the same ``n`` questions (percent), with the difference's uncertainty."""

    a: float | None
    b: float | None
    diff: float | None
    ci95: list[float] | None
    p_value: float | None
    test: Literal["mcnemar-exact", "sign-flip", "none"]
    n: int


@dataclass
class Comparison:
    """A against one B: the questions compared and each metric (or chat category)."""

    b: str
    n: int
    missing: dict[str, int]
    """Questions left out because file ``a`` or ``b`` has no answer (review) for them."""
    metrics: dict[str, MetricComparison] = field(default_factory=dict)


@dataclass
class CompareResult:
    """``kind`` is ``vqa`` (metrics keyed by name) or ``chat`` (relative score keyed by category)."""

    kind: Literal["vqa", "chat"]
    a: str
    mode: str | None
    comparisons: list[Comparison]

    def to_json(self) -> dict[str, Any]:
        return {
            "compare": self.kind,
            "a": self.a,
            "mode": self.mode,
            "comparisons": [asdict(comparison) for comparison in self.comparisons],
        }


def compare_scores(a: np.ndarray, b: np.ndarray, resamples: int, seed: list[int]) -> MetricComparison:
    """A and B's per-question scores (fractions, aligned by question) compared; see the module docstring."""
    n = len(a)
    if n == 0:
        return MetricComparison(None, None, None, None, None, "none", 0)
    differences = b - a
    binary = bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
    p_value: float | None
    if binary:
        p_value = mcnemar_exact(int(((a == 1) & (b == 0)).sum()), int(((b == 1) & (a == 0)).sum()))
    else:
        p_value = sign_flip_p_value(differences, resamples, [*seed, 1])
    return MetricComparison(
        a=float(100 * a.mean()),
        b=float(100 * b.mean()),
        diff=float(100 * differences.mean()),
        ci95=bootstrap_interval(differences, resamples, seed),
        p_value=p_value,
        test="mcnemar-exact" if binary else "sign-flip",
        n=n,
    )


def _name(source: Any, fallback: str) -> str:
    return Path(source).stem if isinstance(source, str | Path) else fallback


def _compare_answers(
    a: QuestionScores, answered_a: np.ndarray, b: QuestionScores, answered_b: np.ndarray, name: str,
    missing: dict[str, int], config: CompareConfig,
) -> Comparison:
    """A and B scored on the same questions, compared on those both answered (``answered_*``: row masks)."""
    among = np.flatnonzero(answered_a & answered_b)
    comparison = Comparison(name, len(among), missing)
    for index, metric in enumerate(COMPARED_METRICS):
        comparison.metrics[metric] = compare_scores(
            a.values(metric, among), b.values(metric, among), config.bootstrap, [config.seed, index]
        )
    return comparison


def _compare_reviews(a: list[ReviewItem], b: list[ReviewItem], name: str, config: CompareConfig) -> Comparison:
    of_a, of_b = {item.id: item for item in a}, {item.id: item for item in b}
    shared = [item for item in a if item.id in of_b]
    missing = {"a": sum(i not in of_a for i in of_b), "b": sum(i not in of_b for i in of_a)}
    comparison = Comparison(name, len(shared), missing)
    categories = category_order({category for item in shared for category in item.categories})
    for index, category in enumerate(categories):
        members = [item for item in shared if category in item.categories]
        comparison.metrics[category] = compare_scores(
            np.array([item.relative for item in members]),
            np.array([of_b[item.id].relative for item in members]),
            config.bootstrap,
            [config.seed, index],
        )
    return comparison


def _refuse_answer_files(path: Any) -> None:
    """Without ground truth the files must be reviews; an answer file gets a hint instead of a field error."""
    if not isinstance(path, str | Path):
        return
    for line, record in iter_json_lines(path):
        if "text" in record and not {"reference_score", "gpt_eval", "result"} & set(record):
            raise InputError("an answer file: comparing answers needs the ground truth (--gt)", path=path,
                             line=line)
        return


def eval_compare(
    gt: QuestionSource | None,
    a: PredictionSource,
    b: PredictionSource | Sequence[PredictionSource],
    config: CompareConfig | None = None,
    *,
    progress: Progress | None = None,
) -> CompareResult:
    """Compare ``a`` with ``b`` (or with each of several), question by question.

    With ``gt`` (a ground-truth file or :class:`Question` records) ``a`` and
    ``b`` are answer files (or ``{question_id: text}``) scored as
    :func:`vital.eval_vqa` scores them; without, they are chat review files.
    ``progress`` is accepted for the common signature.
    """
    config = config or CompareConfig()
    others: list[Any] = list(b) if isinstance(b, list | tuple) else [b]
    if not others:
        raise InputError("nothing to compare A with", field="--b")
    names = [_name(other, f"b{index + 1}") for index, other in enumerate(others)]
    if gt is None:
        for path in (a, *others):
            _refuse_answer_files(path)
        reviews_a = read_reviews(a)  # type: ignore[arg-type]
        comparisons = [
            _compare_reviews(reviews_a, read_reviews(other), name, config)
            for other, name in zip(others, names, strict=True)
        ]
        return CompareResult("chat", _name(a, "a"), None, comparisons)
    questions = questions_of(gt, format=config.format, lang=config.lang)
    mode: Mode = config.compat or "default"  # type: ignore[assignment]  # checked against MODES
    given = [predictions_of(source) for source in (a, *others)]
    scored = [score_questions(questions, answers, mode) for answers in given]  # each file scored once
    answered = [np.array([q.id in answers for q in scores.questions], dtype=bool)
                for answers, scores in zip(given, scored, strict=True)]
    missing = [sum(question.id not in answers for question in questions) for answers in given]
    comparisons = [
        _compare_answers(scored[0], answered[0], scored[i], answered[i], name, {"a": missing[0], "b": missing[i]},
                         config)
        for i, name in enumerate(names, start=1)
    ]
    return CompareResult("vqa", _name(a, "a"), mode, comparisons)
