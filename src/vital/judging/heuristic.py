"""The offline judge: a documented formula, labelled ``judge: "heuristic-v2"`` in every record.

It measures how a conversation uses the figure's text (caption and
in-text mentions), not whether it is true: answers should name what this
figure shows, in their own words, without hedging or inventing numbers or
sides, over several different questions.

Words.  A text's *tokens* are its lower-case words and numbers (``<image>``
removed).  Its *content words* are the numbers and the tokens of 3+ letters
that are not stop words, a plural ``s`` dropped; its *terms* are its content
words plus those of the spelled-out forms of the abbreviations it uses (CT →
computed tomography, MRI, H&E, ...).  *T* is the content words of caption +
mentions, *S* their terms.

For each answer *i*:

- copied ``q_i`` = the share of the answer's tokens that lie in a run of
  :data:`COPY_RUN` (6) or more consecutive tokens found verbatim in the
  caption or a mention.  The rest of the answer is its *own words*;
- specificity ``p_i = min(1, |terms(own words_i) ∩ S| / 3)``: the answer
  names at least three of the figure's own terms, in its own words (a copied
  sentence names none);
- hedge ``h_i = 1`` when the answer declines or hedges ("cannot be
  determined", "consult a doctor", "as an AI"...), else 0;
- contradictions ``c_i`` = numbers in the answer that caption and mentions
  never state, plus 1 when the answer names a side (left/right) that they
  never name while naming the other.

Over a conversation of *n* question-answer pairs: ``P`` = mean ``p_i``,
``H`` = mean ``h_i``, ``C`` = sum ``c_i``; question diversity ``D`` = 1 −
mean pairwise Jaccard similarity of the questions' content words (1 for a
single question); coverage ``V`` = ``|terms(own words) ∩ T| / |T|``, the share
of the figure's content words the answers teach in their own words; rounds
``R = min(1, n / 4)`` (the generation prompt asks for four to five)::

    score = clip(10 · (0.4·P + 0.15·D + 0.15·(1 − H) + 0.15·V + 0.15·R) − 1.5·C, 0, 10)

One pair (``unit="turn"``): ``clip(10 · (0.8·p_i + 0.2·(1 − h_i)) − 1.5·c_i, 0, 10)``.

In pairwise mode the higher score wins; scores closer than
:data:`TIE_MARGIN` are a tie.

Why v2: v1 rewarded the share of an answer's words found in the caption and
mentions, so repeating the caption scored best.  Pooled with the caption
backend's two candidates per figure (``generate --backend caption``) for the
56 well-formed released BioMed-VITAL demonstrations, v1 preferred the
caption echo over the clinician-chosen conversation in all 112 pairs (116 of
116 with the two demonstrations whose turns do not alternate); v2 prefers the
clinician-chosen conversation in all 112 (``tests/test_judging.py``).  The
copy rule is what turns it: without it, the rest of v2 gives 89 wins, 9
losses and 14 ties.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vital.conversation import question_answer_pairs, strip_image_token
from vital.pairwise import Shown
from vital.records import Figure, Turn

HEURISTIC_NAME = "heuristic-v2"
TIE_MARGIN = 0.25  # heuristic scores closer than this are a tie in pairwise mode
COPY_RUN = 6  # this many consecutive tokens shared with the caption or a mention are a verbatim copy
SPECIFIC_TERMS = 3  # an answer naming this many of the figure's terms is fully specific
FULL_ROUNDS = 4

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
_TOKEN = re.compile(r"h&e|[a-z][a-z0-9\-]*|\d+(?:\.\d+)?")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")
_SIDES = ("left", "right")
ABBREVIATIONS = {
    "ct": "computed tomography", "cta": "computed tomography angiography",
    "mri": "magnetic resonance imaging", "mr": "magnetic resonance", "cxr": "chest radiograph x-ray",
    "x-ray": "radiograph", "pet": "positron emission tomography", "h&e": "hematoxylin eosin stain",
    "ihc": "immunohistochemistry", "ecg": "electrocardiogram",
}


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(strip_image_token(text).lower())


def content_words(words: Sequence[str]) -> set[str]:
    out = set()
    for word in words:
        if (len(word) < 3 and not word[0].isdigit()) or word in STOP_WORDS:
            continue
        out.add(word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word)
    return out


def terms(words: Sequence[str]) -> set[str]:
    """Content words, with each abbreviation's spelled-out words added."""
    spelled_out = [part for word in words if word in ABBREVIATIONS for part in ABBREVIATIONS[word].split()]
    return content_words(words) | content_words(spelled_out)


def _runs(words: Sequence[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + COPY_RUN]) for i in range(len(words) - COPY_RUN + 1)}


@dataclass
class Grounding:
    """What the heuristic measured about one answer."""

    copied: float
    specificity: float
    own_terms: set[str]
    hedge: bool
    contradictions: list[str]


class Source:
    """The text a candidate may draw on: caption and mentions."""

    def __init__(self, figure: Figure) -> None:
        texts = [figure.caption, *figure.mentions]
        words = tokens(" ".join(texts))
        self.stated = content_words(words)
        self.terms = terms(words)
        self.runs = set().union(*(_runs(tokens(text)) for text in texts))
        joined = " ".join(texts)
        self.numbers = set(_NUMBER.findall(joined))
        self.sides = {side for side in _SIDES if re.search(rf"\b{side}\b", joined.lower())}

    def own_words(self, answer: str) -> tuple[list[str], float]:
        """The answer's tokens outside verbatim runs from the source, and the share that was copied."""
        words = tokens(answer)
        copied = [False] * len(words)
        for start in range(len(words) - COPY_RUN + 1):
            if tuple(words[start : start + COPY_RUN]) in self.runs:
                copied[start : start + COPY_RUN] = [True] * COPY_RUN
        own = [word for word, was_copied in zip(words, copied, strict=True) if not was_copied]
        return own, (sum(copied) / len(words) if words else 0.0)

    def check(self, answer: str) -> Grounding:
        own, copied = self.own_words(answer)
        own_terms = terms(own)
        specificity = min(1.0, len(own_terms & self.terms) / SPECIFIC_TERMS)
        contradictions = [f"number {n} is not in the caption or mentions"
                          for n in sorted(set(_NUMBER.findall(answer)) - self.numbers)]
        lowered = answer.lower()
        for side, other in (_SIDES, _SIDES[::-1]):
            if re.search(rf"\b{side}\b", lowered) and side not in self.sides and other in self.sides:
                contradictions.append(f"says {side} where the caption and mentions say {other}")
        return Grounding(copied, specificity, own_terms, bool(_HEDGES.search(answer)), contradictions)


def _clip(value: float) -> float:
    return round(min(10.0, max(0.0, value)), 2)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _listed(contradictions: list[str]) -> str:
    return ": " + "; ".join(contradictions[:3]) if contradictions else ""


def heuristic_score(figure: Figure, turns: Sequence[Turn]) -> tuple[float, str]:
    """The heuristic score of a conversation, with a rationale listing its parts (formula above)."""
    source = Source(figure)
    pairs = question_answer_pairs(turns)
    if not pairs:
        return 0.0, "no question-answer pair"
    checks = [source.check(answer) for _, answer in pairs]
    specificity = _mean([c.specificity for c in checks])
    copied = _mean([c.copied for c in checks])
    hedged = sum(c.hedge for c in checks)
    contradictions = [text for c in checks for text in c.contradictions]
    questions = [content_words(tokens(question)) for question, _ in pairs]
    similarities = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(questions, 2)]
    diversity = 1.0 - _mean(similarities)
    taught = set().union(*(c.own_terms for c in checks))
    coverage = len(taught & source.stated) / len(source.stated) if source.stated else 0.0
    rounds = min(1.0, len(pairs) / FULL_ROUNDS)
    score = _clip(10 * (0.4 * specificity + 0.15 * diversity + 0.15 * (1 - hedged / len(checks))
                        + 0.15 * coverage + 0.15 * rounds) - 1.5 * len(contradictions))
    rationale = (f"specificity {specificity:.2f}, copied {copied:.2f}, question diversity {diversity:.2f}, "
                 f"coverage {coverage:.2f}, rounds {len(pairs)}, hedged answers {hedged}/{len(checks)}, "
                 f"contradictions {len(contradictions)}")
    return score, rationale + _listed(contradictions)


def heuristic_turn_score(figure: Figure, question: str, answer: str) -> tuple[float, str]:
    """The heuristic score of one question-answer pair (formula above)."""
    check = Source(figure).check(answer)
    score = _clip(10 * (0.8 * check.specificity + 0.2 * (1 - check.hedge)) - 1.5 * len(check.contradictions))
    rationale = (f"specificity {check.specificity:.2f}, copied {check.copied:.2f}, hedged {check.hedge}, "
                 f"contradictions {len(check.contradictions)}")
    return score, rationale + _listed(check.contradictions)


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
