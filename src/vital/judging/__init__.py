"""Model preference: a judge rates candidates 0-10 against a clinical rubric, or picks the better of two.

Two judges share one interface (``score`` and ``prefer``):

* :class:`ModelJudge` asks a vision-language model through :mod:`vital.llm`.
  It sees the image, the caption, the mentions and the conversation (or one
  question-answer pair with ``unit="turn"``), and replies with a score that
  :func:`parse_score` reads robustly (``8``, ``Score: 8/10``, JSON...); a
  reply without one is retried.
* :class:`HeuristicJudge` works offline and says so in every record
  (``judge: "heuristic-v1"``).  It measures grounding, not truth:

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

Pairwise (``pairwise=True``) judges every pair of a figure's candidates twice,
once in each order; a verdict that flips with the order is a tie.  Decided
pairs become :class:`~vital.records.Preference` records with ``source:
"model"``; ties go to ``<out>.ties.jsonl`` (so a rerun knows they are done).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vital.errors import InputError
from vital.figures import ImageError
from vital.generation.parse import render_conversation
from vital.generation.prompts import user_turn
from vital.jsonl import (
    FailureLog,
    JsonlWriter,
    finished_ids,
    refuse_input_as_output,
)
from vital.llm import (
    Engine,
    EngineConfig,
    JobFailed,
    ReplyError,
    RunStats,
    drop_if_empty,
    run_jobs,
    sibling_path,
)
from vital.progress import Progress
from vital.records import Candidate, Figure, Preference, Score, Turn, iter_candidates, read_figures

HEURISTIC_NAME = "heuristic-v1"
TIE_MARGIN = 0.25  # heuristic scores closer than this are a tie in pairwise mode

RUBRIC = """\
You review training data for an AI assistant that answers questions about biomedical images.

You receive a figure from a biomedical publication (its image, its caption and \
sentences from the paper that refer to it) and {what}. Judge it as material for \
fine-tuning, on these criteria:

1. Scope and relevance: the questions concern this image and what the caption \
and paper say about it.
2. Value for fine-tuning: a model trained on it would learn to read images like \
this one.
3. Alignment: each answer addresses its own question.
4. Medical accuracy: answers agree with the image, caption and paper; no invented \
findings, measurements, sides or patient details.
5. Utility: a clinician or a student would find the exchange useful.
6. Use of the image: the answers recognise and use what is visible.
7. Style: clear, as deep as the question needs, medically precise.

{reply}\
"""
SCORE_REPLY = ('Give one overall score from 0 (useless or wrong) to 10 (excellent). Reply with JSON only: '
               '{"score": <number 0-10>, "rationale": "<one or two sentences>"}')
PAIR_REPLY = ('Decide which conversation is better material, A or B; answer "tie" only if neither is. Reply '
              'with JSON only: {"winner": "A" | "B" | "tie", "rationale": "<one or two sentences>"}')


# --- reading replies ----------------------------------------------------------------------------

def _json_object(text: str) -> dict[str, Any] | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


_NUMBER = r"(\d+(?:\.\d+)?)"
_SCORE_PATTERNS = (
    re.compile(rf"\b(?:overall\s+)?(?:score|rating)\b[^0-9\n]{{0,12}}{_NUMBER}", re.IGNORECASE),
    re.compile(rf"{_NUMBER}\s*(?:/|out of)\s*10\b", re.IGNORECASE),
    re.compile(rf"^\W*{_NUMBER}\W*$", re.MULTILINE),
)


def parse_score(text: str) -> tuple[float, str]:
    """``(score, rationale)`` from a judge's reply; raises :class:`~vital.llm.ReplyError` without a score."""
    data = _json_object(text)
    if data is not None:
        value = next((data[key] for key in ("score", "rating", "overall") if key in data), None)
        if value is not None:
            try:
                score = float(value)
            except (TypeError, ValueError):
                raise ReplyError(f"the score {value!r} is not a number") from None
            return _in_range(score), str(data.get("rationale") or data.get("reason") or "").strip()
    for pattern in _SCORE_PATTERNS:
        match = pattern.search(text)
        if match:
            return _in_range(float(match.group(1))), text.strip()
    raise ReplyError("no score in the reply")


def _in_range(score: float) -> float:
    if not 0 <= score <= 10:
        raise ReplyError(f"score {score:g} is outside 0-10")
    return score


_VERDICT_PATTERNS = (
    re.compile(r"\b(?:winner|verdict|better|choice|answer)\b\W{0,6}(?:conversation\s+)?\[?\[?(A|B|tie)\b",
               re.IGNORECASE),
    re.compile(r"\[\[(A|B|tie)\]\]", re.IGNORECASE),
    re.compile(r"\b(?:conversation|option)\s+(A|B)\s+is\s+(?:better|preferable|superior)", re.IGNORECASE),
    re.compile(r"^\W*(A|B|tie)\W*$", re.IGNORECASE | re.MULTILINE),
)


def parse_verdict(text: str) -> tuple[Literal["A", "B", "tie"], str]:
    """``("A" | "B" | "tie", rationale)``; raises :class:`~vital.llm.ReplyError` without a verdict."""
    data = _json_object(text)
    if data is not None:
        value = next((data[k] for k in ("winner", "verdict", "better", "choice") if k in data), None)
        if isinstance(value, str) and value.strip().lower() in ("a", "b", "tie"):
            word = value.strip().lower()
            return ("tie" if word == "tie" else word.upper()), str(data.get("rationale") or "").strip()  # type: ignore[return-value]
    for pattern in _VERDICT_PATTERNS:
        match = pattern.search(text)
        if match:
            word = match.group(1).lower()
            return ("tie" if word == "tie" else word.upper()), text.strip()  # type: ignore[return-value]
    raise ReplyError("no verdict (A, B or tie) in the reply")


# --- the heuristic ------------------------------------------------------------------------------

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
    for word in _WORD.findall(text.lower().replace("<image>", " ")):
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


def question_answer_pairs(turns: list[Turn]) -> list[tuple[str, str]]:
    pairs = []
    for question, answer in zip(turns[0::2], turns[1::2], strict=False):
        pairs.append((question.value.replace("<image>", "").strip(), answer.value))
    return pairs


def _clip(value: float) -> float:
    return round(min(10.0, max(0.0, value)), 2)


def heuristic_score(figure: Figure, turns: list[Turn]) -> tuple[float, str]:
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
    check = Source(figure).check(answer)
    score = _clip(10 * (0.8 * check.support + 0.2 * (1 - check.hedge)) - 1.5 * len(check.contradictions))
    rationale = (f"support {check.support:.2f}, hedged {check.hedge}, "
                 f"contradictions {len(check.contradictions)}")
    if check.contradictions:
        rationale += ": " + "; ".join(check.contradictions[:3])
    return score, rationale


# --- the two judges -----------------------------------------------------------------------------

Verdict = Literal["first", "second", "tie"]


class HeuristicJudge:
    name = HEURISTIC_NAME
    backend = "heuristic"

    async def score(self, figure: Figure, image: str | None, turns: list[Turn],
                    unit: str) -> tuple[float, str]:
        if unit == "turn":
            return heuristic_turn_score(figure, turns[0].value, turns[1].value)
        return heuristic_score(figure, turns)

    async def prefer(self, figure: Figure, image: str | None, first: list[Turn],
                     second: list[Turn]) -> tuple[Verdict, str]:
        a, _ = heuristic_score(figure, first)
        b, _ = heuristic_score(figure, second)
        verdict: Verdict = "tie" if abs(a - b) < TIE_MARGIN else "first" if a > b else "second"
        return verdict, f"heuristic scores {a:.2f} vs {b:.2f}"


class ModelJudge:
    backend = "openai"

    def __init__(self, engine: Engine, temperature: float = 0.0, max_tokens: int = 512) -> None:
        self.engine, self.temperature, self.max_tokens = engine, temperature, max_tokens
        self.name = engine.config.label

    def _messages(self, figure: Figure, image: str | None, what: str, reply: str,
                  conversations: list[tuple[str, list[Turn]]]) -> list[dict[str, Any]]:
        shown = figure.model_copy(update={"image": image})
        try:
            turn = user_turn(shown, self.engine.config.image_max_side)
        except ImageError as exc:
            raise JobFailed(f"image {image}: {exc}") from None
        for title, turns in conversations:
            turn["content"].append({"type": "text", "text": f"{title}:\n{render_conversation(turns)}"})
        return [{"role": "system", "content": RUBRIC.format(what=what, reply=reply)}, turn]

    async def score(self, figure: Figure, image: str | None, turns: list[Turn],
                    unit: str) -> tuple[float, str]:
        what = "one question-and-answer pair about it" if unit == "turn" else "a conversation about it"
        messages = self._messages(figure, image, what, SCORE_REPLY, [("Conversation", turns)])
        completion = await self.engine.complete(messages, parse=parse_score, temperature=self.temperature,
                                                max_tokens=self.max_tokens)
        return completion.parsed

    async def prefer(self, figure: Figure, image: str | None, first: list[Turn],
                     second: list[Turn]) -> tuple[Verdict, str]:
        messages = self._messages(figure, image, "two conversations about it, A and B", PAIR_REPLY,
                                  [("Conversation A", first), ("Conversation B", second)])
        completion = await self.engine.complete(messages, parse=parse_verdict, temperature=self.temperature,
                                                max_tokens=self.max_tokens)
        winner, rationale = completion.parsed
        return {"A": "first", "B": "second", "tie": "tie"}[winner], rationale  # type: ignore[return-value]


# --- running ------------------------------------------------------------------------------------

@dataclass
class JudgeConfig:
    """What to judge and how; the model connection is a separate :class:`~vital.llm.EngineConfig`."""

    backend: str = "openai"
    unit: str = "conversation"
    pairwise: bool = False
    temperature: float = 0.0
    max_tokens: int = 512
    cache: Path | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("openai", "heuristic"):
            raise InputError(f"unknown backend {self.backend!r} (openai or heuristic)", field="--backend")
        if self.unit not in ("conversation", "turn"):
            raise InputError(f"unknown unit {self.unit!r} (conversation or turn)", field="--unit")
        if self.pairwise and self.unit != "conversation":
            raise InputError("pairwise judging compares whole conversations", field="--unit")


@dataclass
class _Item:
    key: str
    figure: Figure
    image: str | None
    candidate: Candidate
    turn: int | None = None  # pair index with unit="turn"
    other: Candidate | None = None  # the second candidate in pairwise mode


def pair_key(a: str, b: str) -> str:
    return "\t".join(sorted((a, b)))


def _read_candidates(path: Path, figures: dict[str, Figure]) -> dict[str, list[Candidate]]:
    """Candidates grouped by figure, each checked against the figures (bad input stops before any call)."""
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for _, candidate in iter_candidates(path, figures):
        groups[candidate.figure_id].append(candidate)
    return groups


def _items(groups: dict[str, list[Candidate]], figures: dict[str, Figure], config: JudgeConfig,
           done: set[str], skipped: list[int]) -> Iterator[_Item]:
    for figure_id, candidates in groups.items():
        figure = figures[figure_id]
        if config.pairwise:
            units = [(pair_key(a.id, b.id), a, None, b) for a, b in itertools.combinations(candidates, 2)]
        elif config.unit == "turn":
            units = [(f"{c.id}#{i}", c, i, None)
                     for c in candidates for i in range(len(c.conversations) // 2)]
        else:
            units = [(c.id, c, None, None) for c in candidates]
        for key, candidate, turn, other in units:
            if key in done:
                skipped[0] += 1
                continue
            yield _Item(key, figure, candidate.image or figure.image, candidate, turn, other)


@dataclass
class JudgeReport:
    stats: RunStats
    out: Path
    written: int
    ties: int = 0


def _conversation_score_key(record: dict[str, Any]) -> str:
    """Resume key of a whole-conversation score; a per-turn score here means the file is of another kind."""
    if "turn" in record:
        raise KeyError("turn")
    return record["candidate_id"]


def judge(candidates: str | Path, figures: str | Path, out: str | Path, config: JudgeConfig | None = None,
          engine_config: EngineConfig | None = None, *, progress: Progress | None = None) -> JudgeReport:
    """Score (or, with ``pairwise``, compare) every candidate; append records to ``out`` as they finish."""
    config = config or JudgeConfig()
    candidates, figures, out = Path(candidates), Path(figures), Path(out)
    refuse_input_as_output(out, candidates, figures)
    figure_index = {figure.id: figure for figure in read_figures(figures)}
    groups = _read_candidates(candidates, figure_index)

    ties = sibling_path(out, "ties.jsonl")
    if config.pairwise:
        done = finished_ids(out, lambda obj: pair_key(obj["chosen"], obj["rejected"]))
        done |= finished_ids(ties, lambda obj: pair_key(obj["a"], obj["b"]))
    elif config.unit == "turn":
        done = finished_ids(out, lambda obj: f"{obj['candidate_id']}#{obj['turn']}")
    else:
        done = finished_ids(out, _conversation_score_key)
    skipped = [0]
    items = _items(groups, figure_index, config, done, skipped)
    if config.pairwise:
        total = sum(len(c) * (len(c) - 1) // 2 for c in groups.values())
    elif config.unit == "turn":
        total = sum(len(c.conversations) // 2 for group in groups.values() for c in group)
    else:
        total = sum(len(group) for group in groups.values())
    total -= len(done)
    tie_count = 0

    with JsonlWriter(out) as writer, FailureLog(out, "judge") as failures, drop_if_empty(failures.path), \
            JsonlWriter(ties) as tie_writer, drop_if_empty(ties):

        def on_failure(item: _Item, failure: JobFailed) -> None:
            failures.record(item.key, failure.reason, figure_id=item.figure.id, **failure.details)

        def on_result(item: _Item, record: Score | Preference | dict[str, Any]) -> None:
            nonlocal tie_count
            if isinstance(record, dict):
                tie_count += 1
                tie_writer.write(record)
            else:
                writer.write(record)

        async def work(judge_: HeuristicJudge | ModelJudge,
                       item: _Item) -> Score | Preference | dict[str, Any]:
            labels = {"judge": judge_.name, "backend": judge_.backend}
            if item.other is not None:
                a, b = item.candidate, item.other
                (first, why_first), (second, why_second) = await asyncio.gather(
                    judge_.prefer(item.figure, item.image, a.conversations, b.conversations),
                    judge_.prefer(item.figure, item.image, b.conversations, a.conversations),
                )
                swapped = {"first": "second", "second": "first", "tie": "tie"}[second]
                if first != swapped or first == "tie":
                    return {"figure_id": item.figure.id, "a": a.id, "b": b.id, "verdicts": [first, second],
                            "rationales": [why_first, why_second], **labels}
                chosen, rejected = (a, b) if first == "first" else (b, a)
                return Preference(figure_id=item.figure.id, chosen=chosen.id, rejected=rejected.id,
                                  source="model", annotator=judge_.name, weight=1.0, backend=judge_.backend,
                                  rationale=why_first)
            turns = item.candidate.conversations
            if item.turn is not None:
                turns = turns[2 * item.turn : 2 * item.turn + 2]
            score, rationale = await judge_.score(item.figure, item.image, turns, config.unit)
            extra: dict[str, Any] = {"unit": config.unit}
            if item.turn is not None:
                extra["turn"] = item.turn
            return Score(candidate_id=item.candidate.id, score=score, source="model", judge=judge_.name,
                         rationale=rationale, backend=judge_.backend, **extra)

        title = "judging pairs" if config.pairwise else f"judging ({config.unit}s)"
        offline = config.backend == "heuristic"
        engine_config = None if offline else engine_config or EngineConfig()

        def make_work(engine: Engine | None) -> Callable[[_Item], Awaitable[Score | Preference | dict]]:
            chosen = HeuristicJudge() if engine is None else ModelJudge(engine, config.temperature,
                                                                         config.max_tokens)
            return lambda item: work(chosen, item)

        stats = run_jobs(items, make_work, on_result=on_result, on_failure=on_failure, total=total,
                                 title=title + (", heuristic" if offline else ""),
                                 engine_config=engine_config, out=out, cache=config.cache, progress=progress)
        stats.skipped = skipped[0]
        return JudgeReport(stats, out, writer.count, tie_count)
