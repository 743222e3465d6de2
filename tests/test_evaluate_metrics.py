"""Normalisation and per-question VQA scores, hand-computed (vital.evaluate.normalize, .metrics)."""

from __future__ import annotations

import random
import warnings

import pytest
from nltk.translate.bleu_score import sentence_bleu

from vital.evaluate.metrics import BLEU_WEIGHTS, bleu_scores, score_answer
from vital.evaluate.normalize import CONTRACTIONS, normalize_answer, strip_role_prefix


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Assistant: Normal", "assistant: normal"),  # the role prefix stays; ':' is not punctuation here
        ("The left lung.", "left lung"),  # article dropped, final period removed
        ("3.5 cm", "3.5 cm"),  # a period before a digit stays
        ("v.2 and end.", "v.2 and end"),
        ("x-ray", "x ray"),  # a hyphen between letters becomes a space
        ("x - ray", "x ray"),  # a hyphen touching a space is removed
        ("a, b", "b"),  # the comma touches a space: removed; then the article goes
        ("right/left, 1,2", "rightleft 12"),  # a digit-comma-digit makes every mark vanish
        ("1,000 mg", "1000 mg"),
        ("None", "0"),
        ("two lesions", "2 lesions"),
        ("Ten", "10"),
        ("dont know", "don't know"),
        ("couldnt've", "couldn't've"),
        ("somebody'd", "somebodyd"),  # the one reversed entry of the VQA table is kept
        ('"(yes)"', "yes"),
        ("an MRI!", "mri"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_period_limit_reproduces_llava_med_cap() -> None:
    text = "x" + "." * 40
    assert normalize_answer(text) == "x"
    assert normalize_answer(text, period_limit=32) == "x" + "." * 8


def test_contraction_table_restores_only_one_missing_apostrophe() -> None:
    assert CONTRACTIONS["couldnt've"] == CONTRACTIONS["couldn'tve"] == "couldn't've"
    assert "couldntve" not in CONTRACTIONS
    for ordinary_word in ("hell", "wed", "its", "shed", "ill", "were"):
        assert ordinary_word not in CONTRACTIONS


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Assistant: Yes", "Yes"), ("ASSISTANT:no", "no"), ("GPT: left", "left"), ("yes: it is", "yes: it is")],
)
def test_strip_role_prefix(text: str, expected: str) -> None:
    assert strip_role_prefix(text) == expected


# --- closed questions: where the two modes disagree on purpose -------------------------------------------


@pytest.mark.parametrize(
    ("answer", "prediction", "llava_med", "default"),
    [
        ("no", "Assistant: Normal", 1.0, 0.0),  # "normal" contains "no"
        ("no", "I don't know", 1.0, 0.0),  # so does "know"
        ("no", "Not sure", 1.0, 0.0),
        ("yes", "yes and no", 1.0, 0.0),  # both said: wrong by our rule
        ("yes", "Yes.", 1.0, 1.0),
        ("no", "Assistant: No, there is no effusion", 1.0, 1.0),
        ("yes", "", 0.0, 0.0),
        ("left", "the left side", 1.0, 1.0),  # not a yes/no answer: whole-word containment
        ("ct", "an MRI, not a CT scan", 1.0, 1.0),
        ("ct", "octreotide scan", 1.0, 0.0),
    ],
)
def test_closed_accuracy(answer: str, prediction: str, llava_med: float, default: float) -> None:
    assert score_answer(answer, prediction, "CLOSED", "llava-med").hit == llava_med
    assert score_answer(answer, prediction, "CLOSED", "default").hit == default


def test_only_exact_answer_types_count_in_llava_med_mode() -> None:
    assert score_answer("yes", "yes", "CLOSED ", "llava-med") is None
    assert score_answer("yes", "yes", "closed", "llava-med") is None
    assert score_answer("yes", "yes", "CLOSED ", "default").hit == 1.0
    assert score_answer("yes", "yes", "open", "default").kind == "open"
    assert score_answer("yes", "yes", "OTHER", "default") is None


# --- open questions -----------------------------------------------------------------------------------------


def test_open_scores_by_hand() -> None:
    # normalised: answer [left, lung]; prediction [left, lung, is, affected]
    compat = score_answer("left lung", "The left lung is affected.", "OPEN", "llava-med")
    assert compat.hit == 1.0
    assert (compat.precision, compat.recall) == (0.5, 1.0)
    assert compat.f1 == pytest.approx(2 / 3)
    assert compat.exact_match == 0.5  # answer words present / prediction words: LLaVA-Med's "exact match"
    ours = score_answer("left lung", "The left lung is affected.", "OPEN", "default")
    assert (ours.precision, ours.recall, ours.hit) == (0.5, 1.0, 1.0)
    assert ours.exact_match == 0.0
    assert score_answer("left lung", "Assistant: The left lung.", "OPEN", "default").exact_match == 1.0


def test_role_prefix_counts_against_precision_only_in_llava_med_mode() -> None:
    compat = score_answer("left lung", "Assistant: left lung", "OPEN", "llava-med")
    assert compat.precision == pytest.approx(2 / 3)
    assert compat.exact_match == pytest.approx(2 / 3)
    assert score_answer("left lung", "Assistant: left lung", "OPEN", "default").precision == 1.0


def test_repeated_prediction_words() -> None:
    # LLaVA-Med: tp counts every occurrence in the prediction (3), fn the missing answer word (1).
    compat = score_answer("no bleeding", "no no no", "OPEN", "llava-med")
    assert (compat.precision, compat.recall) == (1.0, 0.75)
    # Default: each answer word matches at most as often as it occurs.
    ours = score_answer("no bleeding", "no no no", "OPEN", "default")
    assert ours.precision == pytest.approx(1 / 3)
    assert ours.recall == 0.5


@pytest.mark.parametrize("mode", ["llava-med", "default"])
def test_empty_prediction_scores_zero(mode: str) -> None:
    score = score_answer("left lung", "", "OPEN", mode)
    assert (score.hit, score.recall, score.precision, score.f1, score.exact_match) == (0, 0, 0, 0, 0)
    assert score.bleu == (0.0, 0.0, 0.0, 0.0)


def test_numbers() -> None:
    for mode in ("llava-med", "default"):
        assert score_answer("2", "two", "OPEN", mode).recall == 1.0
        assert score_answer("None", "0", "OPEN", mode).hit == 1.0
        assert score_answer("1,000", "1000 ml", "OPEN", mode).hit == 1.0
    # "10" is a substring of "100" for LLaVA-Med, but not the same word.
    assert score_answer("10", "100", "OPEN", "llava-med").hit == 1.0
    assert score_answer("10", "100", "OPEN", "default").hit == 0.0
    assert score_answer("10", "100", "OPEN", "default").recall == 0.0


# --- BLEU -------------------------------------------------------------------------------------------------


def _nltk_bleu(reference: list[str], hypothesis: list[str]) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [sentence_bleu([reference], hypothesis, weights=weights) for _, weights in BLEU_WEIGHTS]


def test_bleu_equals_nltk_sentence_bleu_exactly() -> None:
    rng = random.Random(7)
    vocabulary = ["left", "right", "lung", "no", "yes", "mass", "in", "upper", "lobe", "ct"]
    cases = [([], []), (["a"], []), ([], ["a"]), (["a", "b", "c", "d", "e"], ["a", "b", "c", "d", "e"])]
    for _ in range(3000):
        reference = [rng.choice(vocabulary) for _ in range(rng.randint(0, 8))]
        hypothesis = [rng.choice(vocabulary) for _ in range(rng.randint(0, 12))]
        cases.append((reference, hypothesis))
    for reference, hypothesis in cases:
        ours = list(bleu_scores(reference, hypothesis))
        assert ours == _nltk_bleu(reference, hypothesis), (reference, hypothesis)


def test_bleu_by_hand() -> None:
    # 2 of 4 unigrams match, 1 of 3 bigrams; no brevity penalty (4 > 3 words).
    b4, b1, b2, b3 = bleu_scores(["left", "upper", "lobe"], ["mass", "left", "upper", "zone"])
    assert b1 == 0.5
    assert b2 == pytest.approx(1 / 3)
    assert b3 == pytest.approx(2.2250738585072014e-308)  # no trigram match: NLTK's smallest-float stand-in
    assert 0 < b4 < 1e-70
