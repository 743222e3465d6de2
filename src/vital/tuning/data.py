"""Training data: LLaVA records checked up front, then encoded one at a time with their image and loss mask.

:func:`read_examples` reads every DATA file (a malformed file is an
:class:`~vital.errors.InputError` naming file, line and field) and sets aside,
with the reason, each record that cannot be trained on: turns that do not
alternate, no image, an image that is missing or unreadable, or a length
over ``max_length`` where the cut would reach the image tokens or leave no
answer token.  Lengths are counted from the text alone (the image stands for
a fixed number of tokens), so the check does not run the image processor.

:class:`TuneDataset` encodes a kept record when the trainer asks for it:
:func:`encode` renders the chat template through the processor and turns its
assistant mask into labels (``-100`` outside the assistant turns).
:func:`collate` pads a batch on the right.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vital.conversation import ConversationError, LlavaRecord, check_turns, read_llava
from vital.figures.images import ImageError, load_image
from vital.records import Turn, resolve_image
from vital.tuning.template import chat_messages

IGNORE_INDEX = -100  # label of a token outside the loss


@dataclass
class Example:
    """A record to train on: its id, where it came from, its image and turns, its length in tokens."""

    id: str
    path: Path
    line: int
    image: Path
    turns: list[Turn]
    tokens: int = 0


@dataclass
class Rejected:
    """A record set aside, with the reason."""

    id: str
    path: Path
    line: int
    reason: str


@dataclass
class TrainingData:
    examples: list[Example]
    rejected: list[Rejected]
    files: list[dict[str, Any]] = field(default_factory=list)  # per DATA file: path, sha256, records, used
    truncated: int = 0


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_token_count(processor: Any) -> int:
    """How many tokens the processor puts in a prompt for one image (fixed for LLaVA: the crop size decides)."""
    from PIL import Image

    token = processor.image_token
    size = processor.image_processor.crop_size
    probe = Image.new("RGB", (size["width"], size["height"]))
    ids = processor(images=probe, text=token)["input_ids"][0]
    return sum(1 for i in ids if i == processor.image_token_id)


def text_token_count(processor: Any, template: str, turns: Sequence[Turn], *, prompt: bool = False) -> int:
    """Tokens of the rendered conversation (with the generation prompt if ``prompt``), the image standing as one
    placeholder token.  As ``processor.apply_chat_template`` does, the tokenizer adds no BOS to a text that
    starts with one."""
    text = processor.apply_chat_template(chat_messages(turns), chat_template=template, add_generation_prompt=prompt)
    tokenizer = processor.tokenizer
    starts_with_bos = tokenizer.bos_token is not None and text.startswith(tokenizer.bos_token)
    return len(tokenizer(text, add_special_tokens=not starts_with_bos)["input_ids"])


def _unreadable(path: Path) -> str | None:
    try:
        load_image(path)
    except (ImageError, OSError, ValueError) as exc:
        return f"image {path} cannot be read ({exc})"
    return None


def read_examples(
    data: Iterable[Path], processor: Any, template: str, *, max_length: int, image_root: Path | None = None,
) -> TrainingData:
    """The usable records of every DATA file, and the rejected ones with reasons (see the module docstring)."""
    examples: list[Example] = []
    rejected: list[Rejected] = []
    files = []
    paths = []
    for path in data:
        paths.append(path)
        base = image_root if image_root is not None else path.resolve().parent
        count = 0
        for record in read_llava(path, check=False):
            count += 1
            reason = _record_problem(record)
            image = resolve_image(record.image, base)
            if reason is None and image is not None and image.is_file():
                examples.append(Example(record.id, path, record.line, image, record.turns))
            else:
                rejected.append(Rejected(record.id, path, record.line, reason or f"image not found: {image}"))
        files.append({"path": str(path.resolve()), "sha256": file_sha256(path), "records": count})

    # Decoding every distinct image once is the slow part of the check; PIL releases the GIL while it decodes.
    distinct = sorted({example.image for example in examples})
    with ThreadPoolExecutor() as pool:
        unreadable = {path: problem for path, problem in zip(distinct, pool.map(_unreadable, distinct), strict=True)
                      if problem is not None}

    kept, truncated = [], 0
    image_tokens = image_token_count(processor) if examples else 0
    for example in examples:
        reason = unreadable.get(example.image)
        if reason is None:
            example.tokens = text_token_count(processor, template, example.turns) - 1 + image_tokens
            if example.tokens > max_length:
                reason = _cut_problem(processor, template, example, image_tokens, max_length)
                truncated += reason is None
        if reason is None:
            kept.append(example)
        else:
            rejected.append(Rejected(example.id, example.path, example.line, reason))
    used = Counter(example.path for example in kept)
    for path, entry in zip(paths, files, strict=True):
        entry["used"] = used[path]
    return TrainingData(kept, rejected, files, truncated)


def _record_problem(record: LlavaRecord) -> str | None:
    try:
        check_turns(record.turns)
    except ConversationError as exc:
        return exc.problem
    if record.image is None:
        return "no image (text-only records are not used)"
    return None


def _cut_problem(processor: Any, template: str, example: Example, image_tokens: int, max_length: int) -> str | None:
    """Why cutting ``example`` at ``max_length`` would spoil it, or ``None`` when the cut only shortens answers."""
    needed = text_token_count(processor, template, example.turns[:1], prompt=True) - 1 + image_tokens + 1
    if needed > max_length:
        return (f"{example.tokens} tokens, and --max-length {max_length} would cut into the image tokens or the "
                f"first question ({needed} tokens are needed before the first answer token)")
    return None


def encode(processor: Any, template: str, example: Example, max_length: int) -> dict[str, Any]:
    """``input_ids``, ``attention_mask``, ``pixel_values`` and ``labels`` (1-D tensors but pixel_values) of one
    example, cut at ``max_length``; labels keep the assistant tokens only."""
    messages = chat_messages(example.turns, load_image(example.image))
    encoded = processor.apply_chat_template(
        messages, chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
        return_tensors="pt",
    )
    input_ids = encoded["input_ids"][0][:max_length]
    labels = input_ids.clone()
    labels[encoded["assistant_masks"][0][:max_length] == 0] = IGNORE_INDEX
    return {
        "input_ids": input_ids,
        "attention_mask": encoded["attention_mask"][0][:max_length],
        "pixel_values": encoded["pixel_values"][0],
        "labels": labels,
    }


class TuneDataset:
    """The kept examples as a map-style dataset (``len`` and ``[i]``), encoded on demand."""

    def __init__(self, examples: list[Example], processor: Any, template: str, max_length: int) -> None:
        self.examples, self.processor, self.template, self.max_length = examples, processor, template, max_length

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return encode(self.processor, self.template, self.examples[index], self.max_length)


def collate(batch: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Stack a batch, padding ``input_ids`` with ``pad_token_id``, ``labels`` with -100, the mask with 0."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    def pad(key: str, value: int) -> Any:
        return pad_sequence([item[key] for item in batch], batch_first=True, padding_value=value)

    return {
        "input_ids": pad("input_ids", pad_token_id),
        "attention_mask": pad("attention_mask", 0),
        "labels": pad("labels", IGNORE_INDEX),
        "pixel_values": torch.stack([item["pixel_values"] for item in batch]),
    }
