"""Conversation templates: how LLaVA turns become the text a model is trained on and answers from.

Training and answering go through the same two steps, so a tuned model is
asked its questions exactly as it was taught:

* :func:`chat_messages` turns LLaVA turns (``human``/``gpt``) into chat
  messages, the image placed in the first user message (where LLaVA puts
  ``<image>``);
* the processor's chat template renders them (:func:`chat_template` picks it:
  an explicitly named shipped template, else the base's own, else
  ``vicuna_v1``), and ``processor.apply_chat_template(..., tokenize=True)``
  tokenizes the result.  That call adds no second BOS when the template
  writes one, and with ``return_assistant_tokens_mask`` it marks the tokens
  inside ``{% generation %}`` blocks: the loss mask of training.

The two shipped templates follow LLaVA's ``conv_vicuna_v1`` and
``conv_mistral_instruct``; the assistant's answer *and* its end-of-turn token
sit in the generation block, the ``ASSISTANT:`` / ``[/INST]`` header outside,
so the prompt of :func:`prompt_inputs` (``add_generation_prompt``) ends
exactly where the trained answers begin.

Light to import: nothing here imports torch or transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vital.conversation import strip_image_token
from vital.errors import InputError
from vital.records import Turn

VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

# Renders a message's content, a string or a list of {"type": "image"} / {"type": "text", "text": ...} items.
# The templates are single lines without whitespace-trimming tags ({%- -%}): every space in them is meant.
_CONTENT = (
    "{% macro content(message) %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endmacro %}"
)

TEMPLATES = {
    # <s>SYSTEM USER: <image>\nQ ASSISTANT: A</s>USER: Q2 ASSISTANT: A2</s>
    "vicuna_v1": _CONTENT + (
        "{{ bos_token }}" + VICUNA_SYSTEM + " "
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}USER: {{ content(message) }}"
        "{% elif message['role'] == 'assistant' %}"
        " ASSISTANT:{% generation %} {{ content(message) }}{{ eos_token }}{% endgeneration %}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
    ),
    # <s>[INST] <image>\nQ [/INST] A</s>[INST] Q2 [/INST] A2</s>
    "mistral_instruct": _CONTENT + (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}[INST] {{ content(message) }} [/INST]"
        "{% elif message['role'] == 'assistant' %}"
        "{% generation %} {{ content(message) }}{{ eos_token }}{% endgeneration %}"
        "{% endif %}"
        "{% endfor %}"
    ),
}
TEMPLATE_NAMES = tuple(TEMPLATES)
DEFAULT_TEMPLATE = "vicuna_v1"


def chat_template(processor: Any, name: str | None = None) -> str:
    """The template to render with: ``name`` (a shipped one) if given, else the processor's, else vicuna_v1."""
    if name is not None:
        if name not in TEMPLATES:
            raise InputError(f"unknown template {name!r}; expected one of {', '.join(TEMPLATES)}", field="template")
        return TEMPLATES[name]
    own = getattr(processor, "chat_template", None)
    if isinstance(own, dict):
        own = own.get("default")
    return own or TEMPLATES[DEFAULT_TEMPLATE]


def marks_assistant_turns(template: str) -> bool:
    """Does the template wrap assistant turns in ``{% generation %}`` blocks (needed for the loss mask)?"""
    return "{% generation %}" in template.replace("{%-", "{%").replace("-%}", "%}")


def chat_messages(turns: Sequence[Turn], image: Any = None) -> list[dict[str, Any]]:
    """LLaVA turns as chat messages; ``<image>`` is dropped from the text and ``image`` (e.g. a PIL image, or
    ``None`` for a placeholder) becomes the first item of the first user message."""
    messages = []
    for position, turn in enumerate(turns):
        content: list[dict[str, Any]] = [{"type": "text", "text": strip_image_token(turn.value)}]
        if position == 0:
            content.insert(0, {"type": "image"} if image is None else {"type": "image", "image": image})
        messages.append({"role": "user" if turn.speaker == "human" else "assistant", "content": content})
    return messages


def prompt_inputs(processor: Any, question: str, image: Any, *, template: str | None = None) -> Any:
    """Model inputs (``input_ids``, ``attention_mask``, ``pixel_values`` as tensors) asking ``question`` about
    ``image`` (a PIL image), ready for ``model.generate``: the chat template with the generation prompt, one BOS."""
    messages = chat_messages([Turn(speaker="human", value=question)], image)
    return processor.apply_chat_template(
        messages, chat_template=chat_template(processor, template), add_generation_prompt=True, tokenize=True,
        return_dict=True, return_tensors="pt",
    )
