"""Conversations: the one home of the ``<image>`` token, the turn rules, text renderings and LLaVA files.

A conversation is a list of :class:`~vital.records.Turn` (``from``: ``human`` |
``gpt``).  The rules every stage applies (:func:`check_turns`): turns
alternate, starting with ``human`` and ending with ``gpt``, and no turn is
empty apart from the ``<image>`` token.  LLaVA's training format adds one
more (:func:`with_image_token`): ``<image>`` stands exactly once, at the start
of the first human turn.

Text renderings (:func:`conversation_text`) serve prompts (``User:`` /
``Assistant:`` lines), features (``Question: ... Answer: ...``, as the
reference implementation writes them) and reports.

LLaVA-format files (a JSON list, or JSONL, of ``{"id", "image",
"conversations"}``) are read by :func:`read_llava` with the line of every
record, so that a bad record is reported as ``FILE:LINE: field``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vital.errors import InputError
from vital.jsonl import iter_json_objects, validation_to_input_error
from vital.records import Turn

IMAGE_TOKEN = "<image>"
_WORDS = re.compile(r"[a-z0-9]+")


class ConversationError(ValueError):
    """A conversation that breaks the turn rules; ``turn`` is the 1-based position at fault, if one is."""

    def __init__(self, problem: str, turn: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.turn = turn


def strip_image_token(text: str) -> str:
    return text.replace(IMAGE_TOKEN, "").strip()


def check_turns(turns: Sequence[Turn]) -> None:
    """Raise :class:`ConversationError` unless the turns alternate human / gpt, human first, gpt last."""
    if not turns:
        raise ConversationError("conversation has no turns")
    for position, turn in enumerate(turns, start=1):
        expected = "human" if position % 2 else "gpt"
        if turn.speaker != expected:
            raise ConversationError(
                f"turn {position} is from {turn.speaker!r}, expected {expected!r} (turns must alternate, "
                "starting with human)",
                position,
            )
        if not strip_image_token(turn.value):
            raise ConversationError(f"turn {position} is empty apart from {IMAGE_TOKEN}", position)
    if len(turns) % 2:
        raise ConversationError("the last question has no answer", len(turns))


def with_image_token(turns: Sequence[Turn]) -> list[Turn]:
    """The turns checked, ``<image>`` removed wherever it was and put once at the start of the first human turn."""
    check_turns(turns)
    out = [Turn(speaker=t.speaker, value=strip_image_token(t.value)) for t in turns]
    out[0] = Turn(speaker="human", value=f"{IMAGE_TOKEN}\n{out[0].value}")
    return out


def to_llava(turns: Sequence[Turn]) -> list[dict[str, str]]:
    """Turns in LLaVA's JSON shape (see :func:`with_image_token`); raises :class:`ConversationError`."""
    return [{"from": t.speaker, "value": t.value} for t in with_image_token(turns)]


def question_answer_pairs(turns: Sequence[Turn]) -> list[tuple[str, str]]:
    """``(question, answer)`` for each human turn followed by a gpt turn, ``<image>`` removed."""
    pairs = []
    for question, answer in zip(turns[0::2], turns[1::2], strict=False):
        if question.speaker == "human" and answer.speaker == "gpt":
            pairs.append((strip_image_token(question.value), answer.value.strip()))
    return pairs


PROMPT_LABELS = ("User", "Assistant")
FEATURE_LABELS = ("Question", "Answer")


def conversation_text(
    turns: Sequence[Turn], *, labels: tuple[str, str] = FEATURE_LABELS, separator: str = " ",
    limit: int | None = None,
) -> str:
    """``Question: ... Answer: ...`` (or other labels) per turn, ``<image>`` removed.

    Prompts use ``labels=PROMPT_LABELS, separator="\\n"`` (the format the
    generation prompt asks for); features the default, as the reference
    implementation writes it; ``limit`` cuts the text to that many
    characters with an ellipsis (reports).
    """
    text = separator.join(
        f"{labels[0] if turn.speaker == 'human' else labels[1]}: {strip_image_token(turn.value)}" for turn in turns
    )
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def fingerprint(turns: Sequence[Turn] | Sequence[dict[str, str]]) -> str:
    """Equal for conversations that differ only in case, spacing, punctuation or ``<image>``."""
    words = []
    for turn in turns:
        speaker, value = (turn.speaker, turn.value) if isinstance(turn, Turn) else (turn["from"], turn["value"])
        words.append(speaker + ":" + " ".join(_WORDS.findall(value.replace(IMAGE_TOKEN, "").lower())))
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()[:24]


@dataclass
class LlavaRecord:
    """One record of a LLaVA-format file: where it is, its id and image as written, its turns."""

    path: Path
    line: int
    id: str
    image: str | None
    turns: list[Turn]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def error(self, problem: str, field: str | None = "conversations") -> InputError:
        return InputError(problem, path=self.path, line=self.line, field=field)


def read_llava(path: str | Path, *, check: bool = True) -> Iterator[LlavaRecord]:
    """The records of a LLaVA-format JSON list or JSONL file, streamed.

    A record that is not an object, has no ``id`` or no list of turns, or a
    turn without ``from``/``value`` is an :class:`InputError` naming file,
    line and field.  With ``check``, so is a conversation that breaks the turn
    rules (:func:`check_turns`); without, the caller decides (``vital tune``
    lists such records as failures and goes on).
    """
    path = Path(path)
    for line, _, obj in iter_json_objects(path):
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=line)
        if obj.get("id") is None:
            raise InputError("required field is missing", path=path, line=line, field="id")
        conversations = obj.get("conversations")
        if not isinstance(conversations, list) or not conversations:
            raise InputError("expected a non-empty list of turns", path=path, line=line, field="conversations")
        turns = []
        for position, turn in enumerate(conversations):
            try:
                turns.append(Turn.model_validate(turn))
            except ValidationError as exc:
                error = validation_to_input_error(exc, path, line)
                raise InputError(error.problem, path=path, line=line,
                                 field=f"conversations.{position}.{error.field}") from None
        image = obj.get("image") or obj.get("imgs")
        if isinstance(image, list):
            image = image[0] if image else None
        record = LlavaRecord(path, line, str(obj["id"]), str(image) if image else None, turns, obj)
        if check:
            try:
                check_turns(turns)
            except ConversationError as exc:
                raise record.error(exc.problem) from None
        yield record
