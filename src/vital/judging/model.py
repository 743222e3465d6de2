"""The model judge: a vision-language model behind :mod:`vital.llm` scores or compares conversations."""

from __future__ import annotations

from collections.abc import Sequence

from vital.figures import ImageError
from vital.judging.parse import parse_score, parse_verdict
from vital.judging.prompts import (
    PAIR_REPLY,
    SCORE_REPLY,
    WHAT_CONVERSATION,
    WHAT_PAIR,
    WHAT_TURN,
    judge_messages,
)
from vital.llm import Engine, JobFailed
from vital.pairwise import Shown
from vital.records import Figure, Turn


class ModelJudge:
    """Asks ``engine``'s model; records name it by the engine's label (``openai:gpt-4o``)."""

    backend = "openai"

    def __init__(self, engine: Engine, temperature: float = 0.0, max_tokens: int = 512) -> None:
        self.engine, self.temperature, self.max_tokens = engine, temperature, max_tokens
        self.name = engine.config.label

    def _messages(self, figure: Figure, image: str | None, what: str, reply: str,
                  conversations: Sequence[tuple[str, Sequence[Turn]]]) -> list[dict]:
        shown = figure.model_copy(update={"image": image})
        try:
            return judge_messages(shown, what, reply, conversations, self.engine.config.image_max_side)
        except ImageError as exc:
            raise JobFailed(f"image {image}: {exc}") from None

    async def score(self, figure: Figure, image: str | None, turns: Sequence[Turn],
                    unit: str) -> tuple[float, str]:
        """``(score 0-10, rationale)`` for a conversation (``unit="conversation"``) or one pair (``"turn"``)."""
        what = WHAT_TURN if unit == "turn" else WHAT_CONVERSATION
        messages = self._messages(figure, image, what, SCORE_REPLY, [("Conversation", turns)])
        completion = await self.engine.complete(messages, parse=parse_score, temperature=self.temperature,
                                                max_tokens=self.max_tokens)
        return completion.parsed

    async def prefer(self, figure: Figure, image: str | None, first: Sequence[Turn],
                     second: Sequence[Turn]) -> tuple[Shown, str]:
        """``("A" | "B" | "tie", rationale)``: which is better, ``first`` (shown as A) or ``second`` (B)."""
        messages = self._messages(figure, image, WHAT_PAIR, PAIR_REPLY,
                                  [("Conversation A", first), ("Conversation B", second)])
        completion = await self.engine.complete(messages, parse=parse_verdict, temperature=self.temperature,
                                                max_tokens=self.max_tokens)
        return completion.parsed
