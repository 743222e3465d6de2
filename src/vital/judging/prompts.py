"""What a model judge is asked: the rubric (our words), and the messages showing a figure and conversations.

Messages, in order:

* ``system``: :data:`RUBRIC` with what is judged and the reply format
  (:data:`SCORE_REPLY` for a score, :data:`PAIR_REPLY` for a verdict);
* ``user``: the figure's image (when there is one), caption and mentions, as
  the generation prompt shows them, then each conversation under its title
  (``Conversation``, or ``Conversation A`` and ``Conversation B``) in the
  ``User:``/``Assistant:`` format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vital.conversation import PROMPT_LABELS, conversation_text
from vital.generation.prompts import user_turn
from vital.records import Figure, Turn

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

WHAT_CONVERSATION = "a conversation about it"
WHAT_TURN = "one question-and-answer pair about it"
WHAT_PAIR = "two conversations about it, A and B"


def judge_messages(
    figure: Figure, what: str, reply: str, conversations: Sequence[tuple[str, Sequence[Turn]]],
    image_max_side: int | None = None,
) -> list[dict[str, Any]]:
    """The chat messages asking a judge about ``conversations`` (``(title, turns)``) of ``figure``.

    ``figure.image`` is the image shown (a candidate may name its own).
    Raises :class:`vital.figures.ImageError` when the image is named but unreadable.
    """
    turn = user_turn(figure, image_max_side)
    for title, turns in conversations:
        text = conversation_text(turns, labels=PROMPT_LABELS, separator="\n")
        turn["content"].append({"type": "text", "text": f"{title}:\n{text}"})
    return [{"role": "system", "content": RUBRIC.format(what=what, reply=reply)}, turn]
