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
``flat``
    One question per record, ``{question_id, question, answer, answer_type[,
    image]}`` (a JSON list or JSONL), optionally with the breakdown fields
    ``question_type``, ``organ``, ``modality``, ``content_type``, ``language``
    and a ``benchmark`` name.
``questions``
    LLaVA-Med's question files ``{question_id, image, text}``: questions
    without answers, for ``vital eval answer`` only.

Image names are resolved against the ground-truth file's folder (its
``images/`` subfolder first), or against ``images`` when given.

Breakdown labels stay each benchmark's own (VQA-RAD's organ ``ABD`` and
SLAKE's ``Abdomen`` are different labels of different label sets, see
:func:`label_set`); only :data:`BODY_REGIONS` maps them, explicitly, onto one
shared vocabulary (the ``region`` breakdown).

Predictions are LLaVA-Med answer files: JSONL with ``question_id`` (int or
string) and ``text``, matched to questions by id.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from vital.conversation import strip_image_token
from vital.errors import InputError
from vital.jsonl import input_file, iter_json_lines, iter_json_objects, utf8_text
from vital.records import require_records

FORMATS = ("vqa-rad", "slake", "pathvqa", "llava-med", "flat", "questions")


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
    benchmark: str = ""


QuestionSource = str | Path | Iterable[Question]
"""Benchmark questions: a ground-truth file (any of :data:`FORMATS`), or :class:`Question` records."""

# Explicit, documented (docs/metrics.md) mapping of each benchmark's organ labels onto body regions, the one
# breakdown whose labels mean the same across benchmarks.  A label not listed here has no region.
BODY_REGIONS = {
    "vqa-rad": {"ABD": "abdomen", "CHEST": "chest", "HEAD": "head"},
    "slake": {
        "Abdomen": "abdomen",
        "Lung": "chest",
        "Chest_lung": "chest",
        "Chest_heart": "chest",
        "Chest_mediastinal": "chest",
        "Brain": "head",
        "Brain_Tissue": "head",
        "Brain_Face": "head",
        "Neck": "neck",
        "Pelvic Cavity": "pelvis",
    },
}
SHARED_LABEL_SETS = {"region": "body-region"}


def label_set(category: str, benchmark: str) -> str:
    """The vocabulary a breakdown's labels come from: the benchmark's own, unless mapped onto a shared one.

    Two results' breakdowns can be shown on one axis only when their label
    sets are equal.
    """
    return SHARED_LABEL_SETS.get(category, benchmark)


def _json_records(path: Path) -> Iterator[tuple[int | Callable[[], int], Any]]:
    """``(line, record)`` for a JSON list, a JSON dict of lists, or JSONL.

    A list is parsed in one call (five times faster than walking it element
    by element); the line an element starts on is worked out, by
    :func:`vital.jsonl.iter_json_objects`, only when an error needs it.
    """
    if path.suffix.lower() != ".jsonl":
        text = utf8_text(path)
        if text.lstrip().startswith("["):
            try:
                records = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from None
            for index, record in enumerate(records):
                yield partial(_element_line, path, index), record
            return
    for line, _, record in iter_json_objects(path):
        yield line, record


def _element_line(path: Path, index: int) -> int:
    """The line on which element ``index`` of the JSON list in ``path`` starts."""
    return next(itertools.islice(iter_json_objects(path), index, None))[0]


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
    if "question_id" in record and "answer" in record:
        return "flat"
    if "question_id" in record and ("text" in record or "question" in record):
        return "questions"
    return None


def _resolve(line: int | Callable[[], int]) -> int:
    """A line number, worked out now if it was left for when an error needs it."""
    return line() if callable(line) else line


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
        return _resolve(self._line)

    def error(self, name: str | None, problem: str) -> InputError:
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


class _ImageFolder:
    """Finds image names under one folder, trying its ``images/`` subfolder first; one stat per distinct name.

    Benchmark questions share few images, and a stat per question would
    dominate reading a large file.  A name found nowhere gets its first
    candidate path (so the error can say where it was looked for).
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self._found: dict[tuple[str, tuple[str, ...]], Path] = {}

    def find(self, name: Any, folders: tuple[str, ...] = ("images", "")) -> Path | None:
        if not name or not isinstance(name, str):
            return None
        path = self._found.get((name, folders))
        if path is None:
            candidates = [self.base / folder / name for folder in folders]
            path = self._found[name, folders] = next((c for c in candidates if c.exists()), candidates[0])
        return path


@lru_cache(maxsize=4096)
def _regions(benchmark: str, organs: tuple[str, ...]) -> tuple[str, ...]:
    """The body regions :data:`BODY_REGIONS` maps ``organs`` to (none for a label it does not list)."""
    regions = BODY_REGIONS[benchmark]
    return tuple(sorted({regions[label] for label in organs if label in regions}))


# breakdown category -> the field holding its labels, per format
VQA_RAD_CATEGORIES = {"question_type": "question_type", "organ": "image_organ"}
SLAKE_CATEGORIES = {"organ": "location", "modality": "modality", "content_type": "content_type", "language": "q_lang"}
LLAVA_MED_CATEGORIES = {
    "question_type": "question_type",
    "organ": "image_organ",
    "modality": "modality",
    "content_type": "content_type",
}
FLAT_CATEGORIES = {name: name for name in ("question_type", "organ", "modality", "content_type", "language")}


def _categories(
    fields: _Fields, sources: dict[str, str], benchmark: str, *, only_present: bool = False
) -> dict[str, tuple[str, ...]]:
    categories = {
        name: fields.labels(key) for name, key in sources.items() if not only_present or key in fields.record
    }
    if benchmark in BODY_REGIONS:
        categories["region"] = _regions(benchmark, categories.get("organ", ()))
    return categories


def _one_per_record(
    fields: _Fields,
    images: _ImageFolder,
    benchmark: str,
    *,
    id_field: str,
    image_field: str,
    categories: dict[str, str],
    only_present: bool = False,
) -> Question:
    """A VQA-RAD, SLAKE or flat record: one question per record."""
    return Question(
        id=fields.identifier(id_field),
        question=fields.text("question"),
        answer=fields.text("answer", numbers=True),
        answer_type=fields.text("answer_type"),
        image=images.find(fields.record.get(image_field)),
        categories=_categories(fields, categories, benchmark, only_present=only_present),
        benchmark=benchmark,
    )


def _pathvqa(fields: _Fields, images: _ImageFolder) -> Iterator[Question]:
    image_id = fields.identifier("img_id")
    try:
        questions = fields.record["sentf"]["pvqa"]
        labels = fields.record["labelf"]["pvqa"]
    except (KeyError, TypeError):
        raise fields.error("sentf.pvqa", "expected sentf.pvqa and labelf.pvqa lists") from None
    if not isinstance(questions, list) or not isinstance(labels, list) or len(questions) != len(labels):
        raise fields.error("labelf.pvqa", "sentf.pvqa and labelf.pvqa must be lists of the same length")
    image = images.find(f"{image_id}.jpg", ("images", "images/test", ""))
    for index, (question, label) in enumerate(zip(questions, labels, strict=True)):
        if not isinstance(question, str) or not question.strip():
            raise fields.error(f"sentf.pvqa[{index}]", "expected a question string")
        if not isinstance(label, dict) or not label:
            raise fields.error(f"labelf.pvqa[{index}]", "expected an {answer: score} object")
        answer = str(max(label, key=lambda key: label[key]))
        closed = answer.strip().lower() in ("yes", "no")
        yield Question(
            f"{image_id}_{index}", question, answer, "CLOSED" if closed else "OPEN", image, benchmark="pathvqa"
        )


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
        question=strip_image_token(turns[0]["value"]),
        answer=turns[1]["value"],
        answer_type=fields.text("answer_type"),
        image=(base / image) if isinstance(image, str) and image else None,
        categories=_categories(fields, LLAVA_MED_CATEGORIES, "llava-med", only_present=True),
        benchmark="llava-med",
    )


def _question_only(fields: _Fields, base: Path) -> Question:
    question = fields.record.get("text", fields.record.get("question"))
    if not isinstance(question, str) or not question.strip():
        raise fields.error("text", "expected the question text")
    image = fields.record.get("image")
    return Question(
        id=fields.identifier("question_id"),
        question=strip_image_token(question),
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
    path = input_file(path)
    base = Path(images).resolve() if images is not None else path.resolve().parent
    folder = _ImageFolder(base)
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}", path=path)
    questions: list[Question] = []
    first_seen: dict[str, int | Callable[[], int]] = {}  # question id -> its line
    for line, record in _json_records(path):
        if format == "auto":
            format = detect_format(record) or ""
            if not format:
                raise InputError(
                    "cannot tell the ground-truth format (expected VQA-RAD, SLAKE, PathVQA LXMERT, "
                    "LLaVA-Med conversation records or flat question_id/question/answer/answer_type records)",
                    path=path,
                    line=_resolve(line),
                )
        fields = _Fields(record, path, line)
        if format == "questions" and need_answers:
            raise fields.error("answer", "a question file without answers, not ground truth")
        if format == "pathvqa":
            produced = list(_pathvqa(fields, folder))
        elif format == "slake":
            if lang != "all" and fields.text("q_lang") != lang:
                continue
            produced = [_one_per_record(fields, folder, "slake", id_field="qid", image_field="img_name",
                                        categories=SLAKE_CATEGORIES)]
        elif format == "vqa-rad":
            produced = [_one_per_record(fields, folder, "vqa-rad", id_field="qid", image_field="image_name",
                                        categories=VQA_RAD_CATEGORIES)]
        elif format == "flat":
            benchmark = record.get("benchmark") if isinstance(record, dict) else None
            produced = [_one_per_record(fields, folder, benchmark if isinstance(benchmark, str) else "flat",
                                        id_field="question_id", image_field="image", categories=FLAT_CATEGORIES,
                                        only_present=True)]
        elif format == "questions":
            produced = [_question_only(fields, base)]
        else:
            produced = [_llava_med(fields, base)]
        for question in produced:
            if question.id in first_seen:
                first = _resolve(first_seen[question.id])
                raise fields.error(None, f"duplicate question id {question.id!r} (first on line {first})")
            first_seen[question.id] = line
            questions.append(question)
    if not questions:
        where = f" in language {lang!r}" if format == "slake" else ""
        raise InputError(f"no questions found{where}", path=path)
    return questions


def questions_of(questions: QuestionSource, **options: Any) -> list[Question]:
    """``questions`` as a list: a ground-truth file is read with :func:`load_questions` and ``options``."""
    if isinstance(questions, str | Path):
        return load_questions(questions, **options)
    return list(questions)


PredictionSource = str | Path | Mapping[str, str]
"""Answers to benchmark questions: a LLaVA-Med answer file, or ``{question_id: text}``."""


def predictions_of(predictions: PredictionSource) -> dict[str, str]:
    """``predictions`` as ``{question_id: text}`` (ids as strings)."""
    if isinstance(predictions, str | Path):
        return read_predictions(predictions)
    return {str(question_id): text for question_id, text in predictions.items()}


def read_predictions(path: str | Path) -> dict[str, str]:
    """``{question_id: text}`` from an answer file; ids are compared as strings."""
    path = Path(path)
    predictions: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for line, record in iter_json_lines(path):
        question_id, text = record.get("question_id"), record.get("text")
        if type(text) is not str or not (type(question_id) is int or type(question_id) is str and question_id.strip()):
            fields = _Fields(record, path, line)  # the careful reading, which names the field at fault
            question_id, text = fields.identifier("question_id"), fields.text("text")
        question_id = str(question_id)
        if question_id in first_seen:
            raise InputError(
                f"second prediction for question {question_id!r} (first on line {first_seen[question_id]})",
                path=path,
                line=line,
                field="question_id",
            )
        first_seen[question_id] = line
        predictions[question_id] = text
    return require_records(predictions, path, "predictions")
