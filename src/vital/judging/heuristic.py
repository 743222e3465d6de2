"""The offline judge: a documented formula, labelled ``judge: "heuristic-v1"`` in every record.

It measures grounding in the figure's text, not truth.

For each answer *i*, with content words (numbers, and words of 3+ letters
that are not stop words, plural ``s`` dropped) *W_i* and the content words
of caption + mentions *S* (with common abbreviations such as CT and MRI
spelled out):

- support  ``s_i = |W_i ∩ S| / |W_i|`` (0 for an answer without content words);
- hedge    ``h_i = 1`` when the answer declines or hedges ("cannot be
  determined", "consult a doctor", "as an AI"...), else 0;
- contradictions ``c_i`` = numbers in the answer that caption and mentions
  never state, plus 1 when the answer names a side (left/right) that they
  never name while naming the other.

Over the conversation, ``G`` = mean ``s_i``, ``H`` = mean ``h_i``,
``C`` = sum ``c_i``, question diversity ``D`` = 1 − mean pairwise Jaccard
similarity of the questions' word sets (1 for a single question), and
coverage ``V`` = the share of the caption's and mentions' own content words
that the answers use (depth: what the figure offers, how much is taught)::

    score = clip(10 · (0.5·G + 0.2·D + 0.15·(1 − H) + 0.15·V) − 1.5·C, 0, 10)

One pair (``unit="turn"``): ``clip(10 · (0.8·s_i + 0.2·(1 − h_i)) − 1.5·c_i, 0, 10)``.

In pairwise mode the higher score wins; scores closer than
:data:`TIE_MARGIN` are a tie.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vital.conversation import question_answer_pairs, strip_image_token
from vital.pairwise import Shown
from vital.records import Figure, Turn

HEURISTIC_NAME = "heuristic-v1"
TIE_MARGIN = 0.25  # heuristic scores closer than this are a tie in pairwise mode

STOP_WORDS = frozenset("""
the and for are was were with this that these those from into onto over under than then there their
which what where when who whom whose why how does did done has have had not but can could would should
may might will shall its it's also such very more most some any each other both all image images
figure shown shows show seen see visible appears appear using used use based there's here is of
measure measures measured measuring located consistent suggest suggests indicate indicates likely
approximately about yes
""".split())
_HEDGES = re.compile(
    r"cannot be (?:determined|assessed|seen|said)|can't (?:tell|determine|be determined)|not possible to "
    r"(?:tell|determine|say)|unable to (?:determine|tell|assess)|i(?: am|'m) (?:sorry|not able)|as an ai|"
    r"consult (?:a|your) (?:doctor|physician|healthcare)|difficult to (?:say|determine|tell)|"
    r"not (?:clear|evident) from the image|i (?:do not|don't) know|no information (?:is )?(?:given|provided)",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z][a-z0-9\-]+|\d+(?:\.\d+)?")
_NUMBER_TOKEN = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")
_SIDES = ("left", "right")
ABBREVIATIONS = {
    "ct": "computed tomography", "cta": "computed tomography angiography",
    "mri": "magnetic resonance imaging", "mr": "magnetic resonance", "cxr": "chest radiograph x-ray",
    "x-ray": "radiograph", "pet": "positron emission tomography", "h&e": "hematoxylin eosin stain",
    "ihc": "immunohistochemistry", "ecg": "electrocardiogram",
}
_ABBREVIATION = re.compile(r"(?<![\w&-])(" + "|".join(re.escape(a) for a in ABBREVIATIONS) + r")(?![\w&-])",
                           re.IGNORECASE)


def content_words(text: str) -> set[str]:
    words = set()
    for word in _WORD.findall(strip_image_token(text).lower()):
        if (len(word) < 3 and not word[0].isdigit()) or word in STOP_WORDS:
            continue
        words.add(word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word)
    return words


@dataclass
class Grounding:
    """What the heuristic measured about one answer."""

    support: float
    hedge: bool
    contradictions: list[str]


class Source:
    """The text a candidate may draw on: caption and mentions."""

    def __init__(self, figure: Figure) -> None:
        text = " ".join([figure.caption, *figure.mentions])
        spelled_out = " ".join(ABBREVIATIONS[a.lower()] for a in _ABBREVIATION.findall(text))
        self.stated = content_words(text)
        self.words = self.stated | content_words(spelled_out)
        self.numbers = set(_NUMBER_TOKEN.findall(text))
        lowered = text.lower()
        self.sides = {side for side in _SIDES if re.search(rf"\b{side}\b", lowered)}

    def check(self, answer: str) -> Grounding:
        words = content_words(answer)
        support = len(words & self.words) / len(words) if words else 0.0
        contradictions = [f"number {n} is not in the caption or mentions"
                          for n in sorted(set(_NUMBER_TOKEN.findall(answer)) - self.numbers)]
        lowered = answer.lower()
        for side, other in (_SIDES, _SIDES[::-1]):
            if re.search(rf"\b{side}\b", lowered) and side not in self.sides and other in self.sides:
                contradictions.append(f"says {side} where the caption and mentions say {other}")
        return Grounding(support, bool(_HEDGES.search(answer)), contradictions)


def _clip(value: float) -> float:
    return round(min(10.0, max(0.0, value)), 2)


def heuristic_score(figure: Figure, turns: Sequence[Turn]) -> tuple[float, str]:
    """The heuristic score of a conversation, with a rationale listing its parts (formula above)."""
    source = Source(figure)
    pairs = question_answer_pairs(turns)
    if not pairs:
        return 0.0, "no question-answer pair"
    checks = [source.check(answer) for _, answer in pairs]
    grounding = sum(c.support for c in checks) / len(checks)
    hedges = sum(c.hedge for c in checks) / len(checks)
    contradictions = [text for c in checks for text in c.contradictions]
    questions = [content_words(question) for question, _ in pairs]
    question_pairs = itertools.combinations(questions, 2)
    similarities = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in question_pairs]
    diversity = 1.0 - (sum(similarities) / len(similarities) if similarities else 0.0)
    used = set().union(*(content_words(answer) for _, answer in pairs))
    coverage = len(used & source.stated) / len(source.stated) if source.stated else 0.0
    score = _clip(10 * (0.5 * grounding + 0.2 * diversity + 0.15 * (1 - hedges) + 0.15 * coverage)
                  - 1.5 * len(contradictions))
    rationale = (f"grounding {grounding:.2f}, question diversity {diversity:.2f}, coverage {coverage:.2f}, "
                 f"hedged answers {sum(c.hedge for c in checks)}/{len(checks)}, "
                 f"contradictions {len(contradictions)}")
    if contradictions:
        rationale += ": " + "; ".join(contradictions[:3])
    return score, rationale


def heuristic_turn_score(figure: Figure, question: str, answer: str) -> tuple[float, str]:
    """The heuristic score of one question-answer pair (formula above)."""
    check = Source(figure).check(answer)
    score = _clip(10 * (0.8 * check.support + 0.2 * (1 - check.hedge)) - 1.5 * len(check.contradictions))
    rationale = (f"support {check.support:.2f}, hedged {check.hedge}, "
                 f"contradictions {len(check.contradictions)}")
    if check.contradictions:
        rationale += ": " + "; ".join(check.contradictions[:3])
    return score, rationale


class HeuristicJudge:
    """The offline judge behind ``backend="heuristic"``, with the same interface as the model judge."""

    name = HEURISTIC_NAME
    backend = "heuristic"

    async def score(self, figure: Figure, image: str | None, turns: Sequence[Turn],
                    unit: str) -> tuple[float, str]:
        if unit == "turn":
            [(question, answer)] = question_answer_pairs(turns)
            return heuristic_turn_score(figure, question, answer)
        return heuristic_score(figure, turns)

    async def prefer(self, figure: Figure, image: str | None, first: Sequence[Turn],
                     second: Sequence[Turn]) -> tuple[Shown, str]:
        a, _ = heuristic_score(figure, first)
        b, _ = heuristic_score(figure, second)
        verdict: Shown = "tie" if abs(a - b) < TIE_MARGIN else "A" if a > b else "B"
        return verdict, f"heuristic scores {a:.2f} vs {b:.2f}"
