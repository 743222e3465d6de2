"""Per-question VQA scores, in two modes.

``default``
    Our rules: the normalisation of :mod:`vital.evaluate.normalize` with the
    flaws of LLaVA-Med's scorer fixed (see docs/metrics.md).
``llava-med``
    A re-implementation of the scorer LLaVA-Med's published numbers come from
    (``run_eval_batch``), flaws included, so that numbers can be compared with
    published ones.

:func:`score_answer` scores one question; :mod:`vital.evaluate.vqa` matches
predictions to questions and averages.  BLEU is computed here rather than by
calling NLTK: NLTK's ``sentence_bleu`` (no smoothing) is reproduced to the
last bit (the tests compare the two), and computing the n-gram precisions
once for all four weightings is several times faster on large files.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from vital.evaluate.normalize import LLAVA_MED_PERIOD_LIMIT, normalize_answer, strip_role_prefix

Mode = Literal["default", "llava-med"]
MODES: tuple[Mode, ...] = ("default", "llava-med")
YES_NO = frozenset({"yes", "no"})

# (name, weights) of the BLEU variants reported: default 4-gram, then 1-, 2-, 3-gram only.
BLEU_WEIGHTS = (
    ("bleu", (0.25, 0.25, 0.25, 0.25)),
    ("bleu_1", (1.0, 0.0, 0.0, 0.0)),
    ("bleu_2", (0.0, 1.0, 0.0, 0.0)),
    ("bleu_3", (0.0, 0.0, 1.0, 0.0)),
)


_NO_MATCH = sys.float_info.min  # NLTK's stand-in for a zero n-gram precision


@dataclass(frozen=True, slots=True)
class AnswerScore:
    """Scores of one prediction, as fractions in [0, 1].

    ``kind`` is ``"open"`` or ``"closed"``; for closed questions only
    ``hit`` (accuracy) and ``recall`` mean anything, the rest stay 0.
    """

    kind: Literal["open", "closed"]
    hit: float
    recall: float
    precision: float = 0.0
    f1: float = 0.0
    exact_match: float = 0.0
    bleu: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def answer_kind(answer_type: str, mode: Mode) -> Literal["open", "closed"] | None:
    """``"open"``, ``"closed"`` or ``None`` (not scored).

    LLaVA-Med counts a question only when its ``answer_type`` is exactly
    ``OPEN`` or ``CLOSED``; the default mode ignores case and surrounding
    whitespace (VQA-RAD has two ``"CLOSED "``).
    """
    if mode == "default":
        answer_type = answer_type.strip().upper()
    if answer_type == "OPEN":
        return "open"
    if answer_type == "CLOSED":
        return "closed"
    return None


def bleu_scores(reference: list[str], hypothesis: list[str]) -> tuple[float, float, float, float]:
    """Sentence BLEU against one reference, for the four :data:`BLEU_WEIGHTS`.

    Equal to NLTK's ``sentence_bleu([reference], hypothesis, weights=w)`` with no
    smoothing: clipped n-gram precisions, a zero precision replaced by the
    smallest positive float (so BLEU-4 with no 4-gram match is about 1e-78,
    not 0), and 0 when no unigram matches.
    """
    hyp_len = len(hypothesis)
    if hyp_len == 0:
        return (0.0, 0.0, 0.0, 0.0)
    precisions: list[float] = []
    for n in range(1, 5):
        # Once no n-gram matches, no longer one can: skip the counting.
        matched = (
            _clipped_matches(reference, hypothesis, n) if not precisions or precisions[-1] > _NO_MATCH else 0
        )
        if n == 1 and matched == 0:
            return (0.0, 0.0, 0.0, 0.0)
        precisions.append(matched / max(1, hyp_len - n + 1) if matched else _NO_MATCH)
    ref_len = len(reference)
    penalty = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    logs = [math.log(p) for p in precisions]
    return tuple(  # type: ignore[return-value]
        penalty * math.exp(math.fsum(w * log for w, log in zip(weights, logs, strict=True) if w))
        for _, weights in BLEU_WEIGHTS
    )


def _ngrams(words: list[str], n: int) -> Any:
    return words if n == 1 else zip(*(words[i:] for i in range(n)), strict=False)


def _clipped_matches(reference: list[str], hypothesis: list[str], n: int) -> int:
    """How many of the hypothesis' n-grams occur in the reference, each at most as often as there."""
    if len(hypothesis) < n or len(reference) < n:
        return 0
    available: dict[Any, int] = {}
    for gram in _ngrams(reference, n):
        available[gram] = available.get(gram, 0) + 1
    matched = 0
    for gram in _ngrams(hypothesis, n):
        left = available.get(gram)
        if left:
            available[gram] = left - 1
            matched += 1
    return matched


def _llava_med_overlap(pred: list[str], ref: list[str]) -> tuple[float, float, float]:
    """(precision, recall, f1) as LLaVA-Med counts them.

    ``tp`` is the number of prediction words that occur in the answer (a word
    the prediction repeats counts each time), ``fp`` the other prediction
    words, ``fn`` the answer words the prediction lacks.
    """
    if not pred or not ref:
        return 0.0, 0.0, 0.0
    # Answers are short: count through the answer's distinct words.
    shared = [word for word in set(ref) if word in pred]
    tp = sum(pred.count(word) for word in shared)
    if tp == 0:
        return 0.0, 0.0, 0.0
    fn = len(ref) - sum(ref.count(word) for word in shared)
    precision, recall = tp / len(pred), tp / (tp + fn)
    return precision, recall, 2 * precision * recall / (precision + recall)


def _clipped_overlap(pred: list[str], ref: list[str]) -> tuple[float, float, float]:
    """(precision, recall, f1) with each answer word matched at most as often as it occurs."""
    if not pred or not ref:
        return 0.0, 0.0, 0.0
    tp = sum(min(ref.count(word), pred.count(word)) for word in set(ref))
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision, recall = tp / len(pred), tp / len(ref)
    return precision, recall, 2 * precision * recall / (precision + recall)


def _contains_words(pred: list[str], ref: list[str]) -> bool:
    """Whether ``ref`` occurs in ``pred`` as a run of whole words."""
    if not ref:
        return False
    width = len(ref)
    return any(pred[i : i + width] == ref for i in range(len(pred) - width + 1))


def _score_llava_med(answer: str, prediction: str, kind: Literal["open", "closed"]) -> AnswerScore:
    limit = LLAVA_MED_PERIOD_LIMIT
    ref = normalize_answer(answer, period_limit=limit)
    pred = normalize_answer(prediction, period_limit=limit)
    hit = 1.0 if ref in pred else 0.0
    # LLaVA-Med's token scores normalise the normalised text once more.  That
    # changes nothing unless the period limit cut the first pass short.
    ref_twice = normalize_answer(ref, period_limit=limit) if answer.count(".") > limit else ref
    pred_twice = normalize_answer(pred, period_limit=limit) if prediction.count(".") > limit else pred
    ref_words, pred_words = ref_twice.split(), pred_twice.split()
    precision, recall, f1 = _llava_med_overlap(pred_words, ref_words)
    if kind == "closed":
        return AnswerScore("closed", hit=hit, recall=recall)
    present = sum(1 for word in set(ref_words) if word in set(pred_words))
    exact = present / len(pred_words) if pred_words else 0.0
    return AnswerScore("open", hit, recall, precision, f1, exact, bleu_scores(ref.split(), pred.split()))


def _score_default(answer: str, prediction: str, kind: Literal["open", "closed"]) -> AnswerScore:
    ref_words = normalize_answer(answer).split()
    pred_words = normalize_answer(strip_role_prefix(prediction)).split()
    precision, recall, f1 = _clipped_overlap(pred_words, ref_words)
    if kind == "closed":
        if len(ref_words) == 1 and ref_words[0] in YES_NO:
            said = YES_NO.intersection(pred_words)
            hit = 1.0 if said == {ref_words[0]} else 0.0
        else:
            hit = 1.0 if _contains_words(pred_words, ref_words) else 0.0
        return AnswerScore("closed", hit=hit, recall=recall)
    return AnswerScore(
        "open",
        hit=1.0 if _contains_words(pred_words, ref_words) else 0.0,
        recall=recall,
        precision=precision,
        f1=f1,
        exact_match=1.0 if ref_words and pred_words == ref_words else 0.0,
        bleu=bleu_scores(ref_words, pred_words),
    )


@lru_cache(maxsize=1 << 16)
def score_answer(
    answer: str, prediction: str, answer_type: str, mode: Mode = "default"
) -> AnswerScore | None:
    """Score ``prediction`` against the reference ``answer``; ``None`` if the type is not scored.

    Cached (the scores are immutable): the same answer and prediction recur
    across questions, closed ones above all.
    """
    kind = answer_kind(answer_type, mode)
    if kind is None:
        return None
    if mode == "llava-med":
        return _score_llava_med(answer, prediction, kind)
    return _score_default(answer, prediction, kind)
