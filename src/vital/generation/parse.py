"""Turn a model's reply into conversation turns, or say why it cannot be done.

Models format conversations in many ways.  Accepted, in this order:

1. JSON (bare or in a fenced block): a list of ``{"from"|"role"|"speaker", "value"|"content"|"text"}``
   turns, a list of ``{"question", "answer"}`` pairs, or an object holding such a
   list under ``conversations``/``conversation``/``turns``/``dialogue``/``qa``.
2. Labelled lines: ``User:``/``Assistant:``, ``Human:``/``GPT:``, ``Q:``/``A:``,
   ``Question 1:``/``Answer 1:``, with bold (``**User:**``, ``**User**:``),
   heading (``### Assistant``) or list-marker variants; text until the next
   label belongs to the turn, so answers may span lines and hold lists.
3. Numbered questions: ``1. What is ...?`` lines, each followed by its answer.

Text before the first turn (``Here is a conversation:``) is dropped.  A
conversation must follow the turn rules of :func:`vital.conversation.check_turns`
(alternate question and answer, start with a question, end with an answer, no
empty turn); anything else is a :class:`~vital.llm.ReplyError` (the engine
retries, and the raw text goes to the failures file).  ``<image>`` is removed
wherever the model wrote it and put on the first question
(:func:`vital.conversation.with_image_token`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from vital.conversation import ConversationError, with_image_token
from vital.llm import ReplyError
from vital.records import Turn

Speaker = Literal["human", "gpt"]
"""A turn's speaker, as :class:`vital.records.Turn` spells it."""

_HUMAN = {"user", "human", "question", "q", "patient", "student"}
_GPT = {"assistant", "gpt", "ai", "answer", "a", "model", "expert", "doctor"}
_ROLE_WORDS = "|".join(sorted(_HUMAN | _GPT, key=len, reverse=True))

_LABEL = re.compile(
    r"^\s*(?:[-*•>]\s+)?(?:\(?\d+[.)]\s*)?(?P<heading>#{1,6}\s*)?(?P<open>[*_]{1,3})?\s*"
    rf"(?P<label>{_ROLE_WORDS})(?:\s*\d+)?\s*(?P<close>[*_]{{1,3}})?\s*(?P<colon>[:：])?"
    r"\s*(?:[*_]{1,3})?\s*(?P<rest>.*?)\s*$",
    re.IGNORECASE,
)
_NUMBERED_QUESTION = re.compile(
    r"^\s*(?:\d+[.)]|[-*•])\s+(?:[*_]{1,3})?(?P<question>[^\n]+?\?)(?:[*_]{1,3})?\s*$"
)
_RULE = re.compile(r"^\s*([-*_=~])\1{2,}\s*$")
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.DOTALL)
_JSON_LIST_KEYS = ("conversations", "conversation", "turns", "dialogue", "dialog", "qa", "messages")


def _role(value: Any) -> Speaker | None:
    word = str(value).strip().lower()
    return "human" if word in _HUMAN else "gpt" if word in _GPT else None


def _clean(text: str) -> str:
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- JSON ---------------------------------------------------------------------------------------

def _json_candidate(text: str) -> Any:
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    starts = [i for i in (body.find("["), body.find("{")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    end = max(body.rfind("]"), body.rfind("}"))
    if end <= start:
        return None
    try:
        return json.loads(body[start : end + 1])
    except json.JSONDecodeError:
        return None


def _turns_from_json(data: Any) -> list[tuple[Speaker, str]] | None:
    if isinstance(data, dict):
        for key in _JSON_LIST_KEYS:
            if isinstance(data.get(key), list):
                return _turns_from_json(data[key])
        return None
    if not isinstance(data, list) or not data or not all(isinstance(item, dict) for item in data):
        return None
    turns: list[tuple[Speaker, str]] = []
    for item in data:
        lowered = {str(k).lower(): v for k, v in item.items()}
        question = lowered.get("question", lowered.get("q"))
        answer = lowered.get("answer", lowered.get("a"))
        if question is not None or answer is not None:
            turns += [("human", str(question or "")), ("gpt", str(answer or ""))]
            continue
        speaker = _role(lowered.get("from", lowered.get("role", lowered.get("speaker", ""))))
        value = lowered.get("value", lowered.get("content", lowered.get("text")))
        if speaker is None or value is None:
            return None
        if speaker == "human" and str(lowered.get("role", "")).lower() == "system":
            continue
        turns.append((speaker, str(value)))
    return turns


# --- labelled lines -----------------------------------------------------------------------------

def _label(line: str) -> tuple[Speaker, str] | None:
    """``(speaker, rest of line)`` when ``line`` starts a turn."""
    match = _LABEL.match(line)
    if not match:
        return None
    has_colon = match.group("colon") is not None
    emphasised = match.group("open") is not None and match.group("close") is not None
    bare_heading = (match.group("heading") or match.group("open")) and not match.group("rest")
    if not (has_colon or emphasised or bare_heading):
        return None
    speaker = _role(match.group("label"))
    assert speaker is not None
    return speaker, match.group("rest")


def _turns_from_labels(text: str) -> list[tuple[Speaker, str]]:
    turns: list[tuple[Speaker, list[str]]] = []
    for line in text.splitlines():
        if _RULE.match(line):
            continue
        labelled = _label(line)
        if labelled is not None:
            turns.append((labelled[0], [labelled[1]]))
        elif turns:
            turns[-1][1].append(line)
    return [(speaker, "\n".join(lines)) for speaker, lines in turns]


def _turns_from_numbered_questions(text: str) -> list[tuple[Speaker, str]]:
    turns: list[tuple[Speaker, list[str]]] = []
    for line in text.splitlines():
        match = _NUMBERED_QUESTION.match(line)
        if match:
            turns += [("human", [match.group("question")]), ("gpt", [])]
        elif turns and not _RULE.match(line):
            turns[-1][1].append(line)
    return [(speaker, "\n".join(lines)) for speaker, lines in turns]


# --- the entry point ----------------------------------------------------------------------------

def _validate(raw_turns: list[tuple[Speaker, str]]) -> list[Turn]:
    # unvalidated Turns, so that an empty turn is reported by the turn rules (a Turn refuses blank text)
    turns = [Turn.model_construct(speaker=speaker, value=_clean(value)) for speaker, value in raw_turns]
    if not any(turn.speaker == "human" for turn in turns):
        raise ReplyError("no question found")
    if not any(turn.speaker == "gpt" and turn.value for turn in turns):
        raise ReplyError("no answer found")
    try:
        return with_image_token(turns)
    except ConversationError as exc:
        raise ReplyError(exc.problem) from None


def parse_conversation(text: str) -> list[Turn]:
    """The turns of a reply (see the module docstring); raises :class:`~vital.llm.ReplyError`."""
    if not text or not text.strip():
        raise ReplyError("empty reply")
    stripped = text.strip()
    if stripped[0] in "[{" or "```" in stripped:
        from_json = _turns_from_json(_json_candidate(stripped))
        if from_json:
            return _validate(from_json)
    turns = _turns_from_labels(stripped)
    if not turns:
        turns = _turns_from_numbered_questions(stripped)
    if not turns:
        raise ReplyError("no question-and-answer turns found")
    return _validate(turns)

