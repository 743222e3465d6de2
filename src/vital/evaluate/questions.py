"""Benchmark questions (ground truth) and answer files (predictions).

Four ground-truth formats are read, and told apart by the keys of their
first record:

``vqa-rad``
    The public VQA-RAD JSON (a list of ``{qid, image_name, question, answer,
    answer_type, question_type, image_organ, ...}``); images in ``images/``
    beside the file, or beside it directly.
``slake``
    SLAKE (``{qid, img_name, question, answer, answer_type, q_lang,
    content_type, modality, location, ...}``); one language at a time
    (English unless ``lang`` says otherwise; ``lang="all"`` keeps every one).
``pathvqa``
    PathVQA in the LXMERT layout: a list of images ``{img_id, sentf: {pvqa:
    [question, ...]}, labelf: {pvqa: [{answer: score}, ...]}}`` where question
    *i* goes with label *i*.  A question whose answer is yes or no is closed.
    Its id is ``<img_id>_<i>``.
``llava-med``
    LLaVA-Med's conversation records ``{id, image, conversations: [human,
    gpt, ...], answer_type}``: the first human turn is the question (without
    its ``<image>`` token), the next turn the answer.  A JSON list or JSONL.
``questions``
    LLaVA-Med's question files ``{question_id, image, text}``: questions
    without answers, for ``vital eval answer`` only.

Image names are resolved against the ground-truth file's folder (its
``images/`` subfolder first), or against ``images`` when given.

Predictions are LLaVA-Med answer files: JSONL with ``question_id`` (int or
string) and ``text``, matched to questions by id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from vital.errors import InputError
from vital.jsonl import iter_json_lines

FORMATS = ("vqa-rad", "slake", "pathvqa", "llava-med", "questions")
IMAGE_TOKEN = "<image>"


@dataclass(slots=True)
class Question:
    """One benchmark question with its reference answer.

    ``answer_type`` is kept as the file spells it (the LLaVA-Med-compatible
    mode needs the exact spelling); ``categories`` holds the breakdown labels
    the format has (``question_type``, ``organ``, ``modality``,
    ``content_type``), each a tuple because a VQA-RAD question can have
    several types (``"PRES, POS"``).
    """

    id: str
    question: str
    answer: str
    answer_type: str
    image: Path | None = None
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)


def read_json_records(path: str | Path) -> tuple[list[Any], Callable[[int], int]]:
    """The elements of a JSON list file (or the objects of a JSONL file), and ``line_of(index)``.

    A list is parsed in one call; where its elements start is worked out only
    when an error needs to name a line.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    text = path.read_text(encoding="utf-8")
    if not text.lstrip().startswith("["):
        numbered = list(iter_json_lines(path))
        return [record for _, record in numbered], lambda index: numbered[index][0]
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    return records, lambda index: _element_line(text, index)


def _element_line(text: str, index: int) -> int:
    """The line on which element ``index`` of the (valid) JSON list ``text`` starts."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    for _ in range(index + 1):
        while text[position] in " \t\r\n,":
            position += 1
        start = position
        _, position = decoder.raw_decode(text, position)
    return text.count("\n", 0, start) + 1


def detect_format(record: Any) -> str | None:
    """The ground-truth format a record belongs to, or ``None``."""
    if not isinstance(record, dict):
        return None
    if "conversations" in record:
        return "llava-med"
    if "sentf" in record and "labelf" in record:
        return "pathvqa"
    if "q_lang" in record or "img_name" in record:
        return "slake"
    if "qid" in record and ("image_name" in record or "image_organ" in record):
        return "vqa-rad"
    if "question_id" in record and ("text" in record or "question" in record):
        return "questions"
    return None


class _Fields:
    """Typed access to one record's fields, with errors that name file, line and field."""

    def __init__(self, record: Any, path: Path, line: int | Callable[[], int]) -> None:
        self.record, self.path, self._line = record, path, line
        if not isinstance(record, dict):
            raise InputError(
                f"expected a JSON object, found {type(record).__name__}", path=path, line=self.line
            )

    @property
    def line(self) -> int:
        return self._line() if callable(self._line) else self._line

    def error(self, name: str, problem: str) -> InputError:
        return InputError(problem, path=self.path, line=self.line, field=name)

    def text(self, name: str, *, numbers: bool = False) -> str:
        value = self.record.get(name)
        if value is None:
            raise self.error(name, "required field is missing")
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, found {type(value).__name__}")
        return value

    def identifier(self, name: str) -> str:
        value = self.record.get(name)
        if value is None:
            raise self.error(name, "required field is missing")
        if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
            raise self.error(name, "expected a non-empty string or an integer")
        return str(value)

    def labels(self, name: str) -> tuple[str, ...]:
        value = self.record.get(name)
        return _split_labels(value) if isinstance(value, str) else ()


@lru_cache(maxsize=4096)
def _split_labels(value: str) -> tuple[str, ...]:
    """``"PRES, POS"`` -> ``("PRES", "POS")``."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


@lru_cache(maxsize=65536)
def _image_path(base: Path, name: str | None, folders: tuple[str, ...] = ("images", "")) -> Path | None:
    """The first existing ``base/<folder>/name``; the first candidate if none exists yet.

    Cached: benchmark questions share few images, and a stat per question
    would dominate scoring a large file.
    """
    if not name:
        return None
    candidates = [base / folder / name for folder in folders]
    return next((path for path in candidates if path.exists()), candidates[0])


# breakdown category -> the field holding its labels, per format
VQA_RAD_CATEGORIES = {"question_type": "question_type", "organ": "image_organ"}
SLAKE_CATEGORIES = {"organ": "location", "modality": "modality", "content_type": "content_type"}
LLAVA_MED_CATEGORIES = {
    "question_type": "question_type",
    "organ": "image_organ",
    "modality": "modality",
    "content_type": "content_type",
}


def _categories(
    fields: _Fields, sources: dict[str, str], *, only_present: bool = False
) -> dict[str, tuple[str, ...]]:
    return {
        name: fields.labels(key) for name, key in sources.items() if not only_present or key in fields.record
    }


def _flat(fields: _Fields, base: Path, image_field: str, categories: dict[str, str]) -> Question:
    """A VQA-RAD or SLAKE record: one question per record, keyed by ``qid``."""
    return Question(
        id=fields.identifier("qid"),
        question=fields.text("question"),
        answer=fields.text("answer", numbers=True),
        answer_type=fields.text("answer_type"),
        image=_image_path(base, fields.record.get(image_field)),
        categories=_categories(fields, categories),
    )


def _pathvqa(fields: _Fields, base: Path) -> Iterator[Question]:
    image_id = fields.identifier("img_id")
    try:
        questions = fields.record["sentf"]["pvqa"]
        labels = fields.record["labelf"]["pvqa"]
    except (KeyError, TypeError):
        raise fields.error("sentf.pvqa", "expected sentf.pvqa and labelf.pvqa lists") from None
    if not isinstance(questions, list) or not isinstance(labels, list) or len(questions) != len(labels):
        raise fields.error("labelf.pvqa", "sentf.pvqa and labelf.pvqa must be lists of the same length")
    image = _image_path(base, f"{image_id}.jpg", ("images", "images/test", ""))
    for index, (question, label) in enumerate(zip(questions, labels, strict=True)):
        if not isinstance(question, str) or not question.strip():
            raise fields.error(f"sentf.pvqa[{index}]", "expected a question string")
        if not isinstance(label, dict) or not label:
            raise fields.error(f"labelf.pvqa[{index}]", "expected an {answer: score} object")
        answer = str(max(label, key=lambda key: label[key]))
        closed = answer.strip().lower() in ("yes", "no")
        yield Question(f"{image_id}_{index}", question, answer, "CLOSED" if closed else "OPEN", image)


def _llava_med(fields: _Fields, base: Path) -> Question:
    turns = fields.record.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(turn, dict) for turn in turns[:2]):
        raise fields.error("conversations", "expected a question turn and an answer turn")
    for index in (0, 1):
        if not isinstance(turns[index].get("value"), str):
            raise fields.error(f"conversations[{index}].value", "expected a string")
    image = fields.record.get("image")
    return Question(
        id=fields.identifier("id"),
        question=turns[0]["value"].replace(IMAGE_TOKEN, "").strip(),
        answer=turns[1]["value"],
        answer_type=fields.text("answer_type"),
        image=(base / image) if isinstance(image, str) and image else None,
        categories=_categories(fields, LLAVA_MED_CATEGORIES, only_present=True),
    )


def _question_only(fields: _Fields, base: Path) -> Question:
    question = fields.record.get("text", fields.record.get("question"))
    if not isinstance(question, str) or not question.strip():
        raise fields.error("text", "expected the question text")
    image = fields.record.get("image")
    return Question(
        id=fields.identifier("question_id"),
        question=question.replace(IMAGE_TOKEN, "").strip(),
        answer="",
        answer_type=str(fields.record.get("answer_type") or ""),
        image=(base / image) if isinstance(image, str) and image else None,
    )


def load_questions(
    path: str | Path,
    *,
    format: str = "auto",
    lang: str = "en",
    images: str | Path | None = None,
    need_answers: bool = True,
) -> list[Question]:
    """Read a file in any of :data:`FORMATS` (``"auto"`` detects it).

    ``need_answers`` refuses question-only files (ground truth must have answers).
    """
    path = Path(path)
    base = Path(images).resolve() if images is not None else path.resolve().parent
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}", path=path)
    questions: list[Question] = []
    first_seen: dict[str, int] = {}
    records, line_of = read_json_records(path)
    for index, record in enumerate(records):
        if format == "auto":
            format = detect_format(record) or ""
            if not format:
                raise InputError(
                    "cannot tell the ground-truth format (expected VQA-RAD, SLAKE, PathVQA LXMERT "
                    "or LLaVA-Med conversation records)",
                    path=path,
                    line=line_of(index),
                )
        if format == "questions" and need_answers:
            raise InputError(
                "a question file without answers, not ground truth", path=path, line=line_of(index)
            )
        fields = _Fields(record, path, partial(line_of, index))
        if format == "pathvqa":
            produced = list(_pathvqa(fields, base))
        elif format == "slake":
            if lang != "all" and fields.text("q_lang") != lang:
                continue
            produced = [_flat(fields, base, "img_name", SLAKE_CATEGORIES)]
        elif format == "vqa-rad":
            produced = [_flat(fields, base, "image_name", VQA_RAD_CATEGORIES)]
        elif format == "questions":
            produced = [_question_only(fields, base)]
        else:
            produced = [_llava_med(fields, base)]
        for question in produced:
            if question.id in first_seen:
                first = line_of(first_seen[question.id])
                raise InputError(
                    f"duplicate question id {question.id!r} (first on line {first})",
                    path=path,
                    line=line_of(index),
                )
            first_seen[question.id] = index
            questions.append(question)
    if not questions:
        where = f" in language {lang!r}" if format == "slake" else ""
        raise InputError(f"no questions found{where}", path=path)
    return questions


def read_predictions(path: str | Path) -> dict[str, str]:
    """``{question_id: text}`` from an answer file; ids are compared as strings."""
    path = Path(path)
    predictions: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for line, record in iter_json_lines(path):
        fields = _Fields(record, path, line)
        question_id = fields.identifier("question_id")
        if question_id in first_seen:
            raise InputError(
                f"second prediction for question {question_id!r} (first on line {first_seen[question_id]})",
                path=path,
                line=line,
                field="question_id",
            )
        first_seen[question_id] = line
        predictions[question_id] = fields.text("text")
    return predictions
