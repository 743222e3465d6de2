"""The generation prompt: instructions, demonstrations as worked examples, then the figure.

Messages, in order:

* ``system``: :data:`SYSTEM_PROMPT`;
* for each demonstration, a ``user`` turn showing its image (when there is
  one), caption and mentions, and an ``assistant`` turn with its conversation
  written in the ``User:``/``Assistant:`` format we ask for;
* a ``user`` turn with the figure's image, caption and mentions.
"""

from __future__ import annotations

from typing import Any

from vital.conversation import PROMPT_LABELS, conversation_text
from vital.llm import image_part
from vital.records import Figure

SYSTEM_PROMPT = """\
You write training conversations for an AI assistant that looks at biomedical images.

For each request you receive one figure from a biomedical publication: the image, \
its caption, and sentences from the paper that refer to it. Write a conversation \
between a person asking about the image and an assistant who sees it and answers \
as though looking at it directly.

What the conversation must be:
- Four to five rounds of question and answer; more when the figure is rich enough \
to support them.
- About what can be seen: the imaging modality, the organ or body region, where \
findings lie (including the side), what the findings are, their size and number, \
and differences between panels. Mix yes/no questions with open questions.
- Grounded: every answer must follow from the image together with the caption and \
the sentences from the paper. Do not invent findings, measurements, patient details \
or outcomes that they do not support. When the image cannot settle a question, do \
not ask it.
- Spoken from the image: the person only has the image, so never refer to "the \
caption", "the text", "the paper" or "the mentions"; state what is shown instead.
- Educational, not advisory: precise clinical language, terms explained when that \
helps; no medical advice, no diagnosis or treatment for an individual.

Format: each round is a line starting with "User:" and a line starting with \
"Assistant:". An answer may run over several lines. Write nothing before the first \
"User:" line and nothing after the last answer.\
"""

MAX_MENTION_CHARACTERS = 3000


def figure_text(figure: Figure) -> str:
    """The text part of a figure's user turn: caption, mentions (bounded), and domain."""
    parts = [f"Caption: {figure.caption.strip()}"]
    mentions, used = [], 0
    for mention in figure.mentions:
        mention = mention.strip()
        if not mention or used + len(mention) > MAX_MENTION_CHARACTERS:
            continue
        mentions.append(f"- {mention}")
        used += len(mention)
    if mentions:
        parts.append("Sentences from the paper that refer to this figure:\n" + "\n".join(mentions))
    if figure.domains:
        parts.append(f"Image type: {', '.join(d.replace('_', ' ') for d in figure.domains)}")
    return "\n\n".join(parts)


def user_turn(figure: Figure, image_max_side: int | None) -> dict[str, Any]:
    """A user message with the figure's image (if it has one) and its text.

    Raises :class:`vital.figures.images.ImageError` when the image is named but unreadable.
    """
    content: list[dict[str, Any]] = []
    if figure.image:
        content.append(image_part(figure.image, image_max_side))
    content.append({"type": "text", "text": figure_text(figure)})
    return {"role": "user", "content": content}


def elide_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of ``messages`` with each data URL shortened to its type and size, for showing a prompt."""
    shown = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": f"{part['image_url']['url'][:30]}... "
                                                           f"({len(part['image_url']['url'])} characters)"}}
                if part.get("type") == "image_url" else part
                for part in content
            ]
        shown.append({**message, "content": content})
    return shown


def build_messages(figure: Figure, demonstrations: list[Figure],
                   image_max_side: int | None = None) -> list[dict[str, Any]]:
    """The chat messages that ask for a conversation about ``figure``, shown ``demonstrations`` first.

    Demonstrations whose image is missing are shown by text alone (the caller
    warns once); the figure's own image must be readable.
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for demo in demonstrations:
        messages.append(user_turn(demo, image_max_side))
        text = conversation_text(demo.conversations or [], labels=PROMPT_LABELS, separator="\n")
        messages.append({"role": "assistant", "content": text})
    messages.append(user_turn(figure, image_max_side))
    return messages
