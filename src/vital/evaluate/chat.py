"""Open visual chat, judged against a reference answer (LLaVA-Med's protocol).

For each question of a LLaVA-Med-style set (question, reference answer,
figure caption and mentions, domain flags, question type) a judge model reads
the reference answer as assistant 1 and the model's answer as assistant 2
and scores both from 1 to 10; with ``swap`` it also reads them the other way
round and the two scores of each answer are averaged, which cancels the
judge's preference for a position.  The *relative score* of a group is the
mean over its items of model score / reference score, times 100.

Review records (JSONL, one per question)::

    {"question_id", "type", "domain": {...}, "question", "reference_answer", "model_answer",
     "reference_score", "model_score", "reviews": [{"order", "reference_score", "model_score", "text"}],
     "judge"}

:func:`eval_chat_summary` reads these and LLaVA-Med's own review files, whose
``gpt_eval`` (or, in older files, ``result``) starts with a line "s1 s2";
every relative score comes with a 95 % bootstrap interval over the items.

>>> import vital
>>> vital.eval_chat("qa50_qa.jsonl", "answers.jsonl", "reviews.jsonl", vital.ChatConfig(swap=True), judge_engine)
>>> vital.eval_chat_summary("reviews.jsonl").categories["overall"]["relative_score"]
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vital.config import StageConfig, setting
from vital.conversation import strip_image_token
from vital.errors import InputError
from vital.evaluate.questions import read_predictions
from vital.evaluate.runs import RunResult, run_resumable
from vital.evaluate.stats import bootstrap_interval
from vital.jsonl import iter_json_lines
from vital.progress import Progress
from vital.records import require_records

# LLaVA-Med counts an item for the first of these flags that is true, in this order.
DOMAIN_ORDER = ("chest_xray", "mri", "histology", "gross", "ct_scan")
QUESTION_TYPES = ("conversation", "detailed_description")
REVIEW_SYSTEM = "You are a careful and impartial reviewer of answers to questions about biomedical images."
REVIEW_INSTRUCTIONS = (
    "Two AI assistants answered the question above about a biomedical image. You cannot see the image; "
    "its caption and the sentences of the paper that mention it stand in for it.\n"
    "Judge each answer on helpfulness, relevance, medical accuracy and level of detail, and give each "
    "an overall score from 1 to 10 (higher is better).\n"
    "On the first line write only the two scores, assistant 1 first, separated by a space. From the "
    "second line on, explain your judgement. The order in which the answers are shown must not "
    "influence you."
)
_SCORE_PAIR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[ ,/]\s*(\d+(?:\.\d+)?)\s*$")


@dataclass
class ChatConfig(StageConfig):
    """How the judge reads each answer against the reference (the judge is an :class:`EngineConfig`)."""

    swap: bool = setting(False, "Also judge with the answers in swapped order; average.")
    cache_file: Path | None = setting(
        None, "Response cache to use (default: OUT's .llm.sqlite).", changes_output=False
    )


@dataclass
class ChatSummaryConfig(StageConfig):
    """The bootstrap behind the intervals of the relative scores."""

    bootstrap: int = setting(1000, "Bootstrap resamples for the 95% intervals (0: no intervals).")
    seed: int = setting(0, "Seed of the bootstrap.")

    def validate(self) -> None:
        if self.bootstrap < 0:
            raise InputError("must not be negative", field="bootstrap")


@dataclass(frozen=True)
class ChatQuestion:
    """A question about a figure, with the reference answer the model's answer is compared with."""

    id: str
    question: str
    reference: str
    caption: str = ""
    label: str = ""
    mentions: tuple[str, ...] = ()
    domain: dict[str, bool] = field(default_factory=dict)
    type: str = ""
    benchmark: str = ""


def first_domain(record: Mapping[str, Any]) -> str | None:
    """The item's domain for the summary: the first of :data:`DOMAIN_ORDER` it is flagged with.

    Reads LLaVA-Med's ``domain`` flags (``{"mri": true, ...}``) or our
    ``domains`` list.
    """
    flags = record.get("domain")
    if isinstance(flags, Mapping):
        return next((name for name in DOMAIN_ORDER if flags.get(name)), None)
    listed = record.get("domains")
    if isinstance(listed, list):
        return next((name for name in DOMAIN_ORDER if name in listed), None)
    return None


def parse_score_pair(text: str) -> tuple[float, float] | None:
    """``(s1, s2)`` from the first line of a review ("8 6"), or ``None`` if it is not two numbers."""
    match = _SCORE_PAIR.match(text.strip().split("\n", 1)[0]) if text.strip() else None
    return (float(match[1]), float(match[2])) if match else None


def _mentions(record: Mapping[str, Any]) -> tuple[str, ...]:
    raw = record.get("in_text_mention", record.get("mentions")) or []
    if isinstance(raw, str):
        raw = [raw]
    texts = [item.get("tokens", "") if isinstance(item, Mapping) else str(item) for item in raw]
    return tuple(text for text in texts if text)


def load_chat_questions(path: str | Path, *, require_reference: bool = True) -> list[ChatQuestion]:
    """Read a LLaVA-Med-style question set (``llava_med_eval_qa50_qa.jsonl``).

    Needs ``question_id``, the question (``text`` with its ``<image>`` token,
    or ``question``) and the reference answer (``gpt4_answer``, or
    ``reference``; optional without ``require_reference``); caption
    (``fig_caption``), label, mentions, domain and type are used when present.
    """
    questions: list[ChatQuestion] = []
    seen: set[str] = set()
    for line, record in iter_json_lines(path):
        question_id = record.get("question_id")
        if question_id is None or isinstance(question_id, bool) or not isinstance(question_id, int | str):
            raise InputError("expected a string or an integer", path=path, line=line, field="question_id")
        question = record.get("question", record.get("text"))
        reference = record.get("gpt4_answer", record.get("reference"))
        required = [("text", question)] + ([("gpt4_answer", reference)] if require_reference else [])
        for name, value in required:
            if not isinstance(value, str) or not value.strip():
                raise InputError("required text is missing", path=path, line=line, field=name)
        if str(question_id) in seen:
            raise InputError(
                f"duplicate question_id {question_id!r}", path=path, line=line, field="question_id"
            )
        seen.add(str(question_id))
        domain = record.get("domain")
        if not isinstance(domain, Mapping):
            domain = {name: True for name in record.get("domains") or []}
        questions.append(
            ChatQuestion(
                id=str(question_id),
                question=strip_image_token(str(question)),
                reference=reference if isinstance(reference, str) else "",
                caption=str(record.get("fig_caption", record.get("caption", "")) or ""),
                label=str(record.get("fig_label", "") or ""),
                mentions=_mentions(record),
                domain={str(key): bool(value) for key, value in domain.items()},
                type=str(record.get("type", "") or ""),
                benchmark=str(record.get("benchmark", "") or ""),
            )
        )
    return require_records(questions, path, "questions")


def figure_context(question: ChatQuestion) -> str:
    """What a text-only judge knows of the image: its caption and the sentences that mention it."""
    caption = f"{question.label}: {question.caption}" if question.label else question.caption
    mentions = "\n".join(f"- {mention}" for mention in question.mentions) or "- (none)"
    return f"[Figure caption]\n{caption or '(none)'}\n\n[Sentences mentioning the figure]\n{mentions}"


def review_messages(question: ChatQuestion, first: str, second: str) -> list[dict[str, str]]:
    """The judge's prompt for two answers, ``first`` shown as assistant 1."""
    prompt = (
        f"{figure_context(question)}\n\n[Question]\n{question.question}\n\n"
        f"[Assistant 1]\n{first}\n[End of assistant 1]\n\n[Assistant 2]\n{second}\n[End of assistant 2]\n\n"
        f"[Instructions]\n{REVIEW_INSTRUCTIONS}"
    )
    return [{"role": "system", "content": REVIEW_SYSTEM}, {"role": "user", "content": prompt}]


def _parse_review(text: str) -> tuple[float, float]:
    from vital.llm import ReplyError

    pair = parse_score_pair(text)
    if pair is None or not all(1 <= score <= 10 for score in pair):
        raise ReplyError("the first line is not two scores from 1 to 10")
    return pair


async def review_one(engine: Any, question: ChatQuestion, answer: str, *, swap: bool) -> dict[str, Any]:
    """Judge one answer against the reference (both orders with ``swap``); returns the review record."""
    orders = [("reference_first", question.reference, answer)]
    if swap:
        orders.append(("model_first", answer, question.reference))
    completions = await asyncio.gather(
        *(
            engine.complete(review_messages(question, first, second), parse=_parse_review, temperature=0.0)
            for _, first, second in orders
        )
    )
    reviews = []
    for (order, _, _), completion in zip(orders, completions, strict=True):
        first_score, second_score = completion.parsed
        reference_score, model_score = (
            (first_score, second_score) if order == "reference_first" else (second_score, first_score)
        )
        reviews.append(
            {
                "order": order,
                "reference_score": reference_score,
                "model_score": model_score,
                "text": completion.text,
            }
        )
    return {
        "question_id": question.id,
        "type": question.type,
        "domain": question.domain,
        "question": question.question,
        "reference_answer": question.reference,
        "model_answer": answer,
        "reference_score": sum(review["reference_score"] for review in reviews) / len(reviews),
        "model_score": sum(review["model_score"] for review in reviews) / len(reviews),
        "reviews": reviews,
        "judge": engine.config.label,
    }


@dataclass
class ChatResult(RunResult):
    """The review run, and the summary of every review in the output."""

    summary: ChatSummary | None = None


def eval_chat(
    questions: str | Path,
    answers: str | Path,
    out: str | Path,
    config: ChatConfig | None = None,
    engine: Any = None,
    *,
    progress: Progress | None = None,
) -> ChatResult:
    """Review every answer in ``answers`` against ``questions`` into ``out``; resumable.

    ``engine`` is the judge's :class:`vital.llm.EngineConfig`.  Questions
    already in ``out`` are skipped; a question without an answer, or whose
    review failed, goes to ``<out>.failures.jsonl``.  The result's
    ``summary`` is :func:`eval_chat_summary` of the whole output.
    """
    from vital.llm import JobFailed

    config = config or ChatConfig()
    if engine is None:
        raise InputError("judging chat answers needs a model connection", field="--model")
    items = load_chat_questions(questions)
    given = read_predictions(answers)

    def make_work(client: Any) -> Any:
        async def work(item: ChatQuestion) -> dict[str, Any]:
            if item.id not in given:
                raise JobFailed(f"no answer to this question in {answers}")
            return await review_one(client, item, given[item.id], swap=config.swap)

        return work

    run = run_resumable(
        items,
        out,
        make_work=make_work,
        inputs=(questions, answers),
        stage="eval-chat",
        title=f"judging chat answers, {engine.label}",
        engine_config=engine,
        cache=config.cache_file,
        progress=progress,
    )
    summary = eval_chat_summary(run.out) if run.out.stat().st_size else None
    return ChatResult(run.out, run.stats, run.failures, summary)


def _review_scores(record: Mapping[str, Any], path: Path | None, line: int) -> tuple[float, float]:
    if "reference_score" in record and "model_score" in record:
        scores = []
        for name in ("reference_score", "model_score"):
            try:
                scores.append(float(record[name]))
            except (TypeError, ValueError):
                raise InputError("expected a number", path=path, line=line, field=name) from None
        return scores[0], scores[1]
    name = "gpt_eval" if "gpt_eval" in record else "result"
    text = record.get(name)
    pair = parse_score_pair(text) if isinstance(text, str) else None
    if pair is None:
        raise InputError(
            "expected reference_score and model_score, or a review whose first line is two scores",
            path=path,
            line=line,
            field=name,
        )
    return pair


@dataclass(frozen=True)
class ReviewItem:
    """One reviewed question: its id, the summary categories it counts in, and the two scores."""

    id: str
    categories: tuple[str, ...]
    reference_score: float
    model_score: float

    @property
    def relative(self) -> float:
        """Model score / reference score (×100 it is the question's relative score)."""
        return self.model_score / self.reference_score


def read_reviews(reviews: str | Path | Iterable[Mapping[str, Any]]) -> list[ReviewItem]:
    """The review records of ours (:func:`eval_chat`) or LLaVA-Med's, as :class:`ReviewItem`.

    An item counts in its question type, its domain (:func:`first_domain`)
    and ``overall``.
    """
    path = Path(reviews) if isinstance(reviews, str | Path) else None
    numbered: Iterable[tuple[int, Mapping[str, Any]]] = (
        iter_json_lines(path) if path is not None else enumerate(reviews, start=1)  # type: ignore[arg-type]
    )
    items = []
    for line, record in numbered:
        reference, model = _review_scores(record, path, line)
        if reference == 0:
            raise InputError(
                "the reference answer scored 0: its relative score is undefined",
                path=path,
                line=line,
                field="reference_score",
            )
        categories = [str(record.get("type") or ""), first_domain(record) or "", "overall"]
        items.append(
            ReviewItem(str(record.get("question_id", line)), tuple(c for c in categories if c), reference, model)
        )
    if not items:
        raise InputError("no reviews found", path=path)
    return items


def category_order(categories: Iterable[str]) -> list[str]:
    """Question types (LLaVA-Med's two first), then domains in :data:`DOMAIN_ORDER`, then ``overall``."""
    present = set(categories)
    order = [
        *QUESTION_TYPES,
        *sorted(present - set(QUESTION_TYPES) - set(DOMAIN_ORDER) - {"overall"}),
        *DOMAIN_ORDER,
        "overall",
    ]
    return [category for category in order if category in present]


@dataclass
class ChatSummary:
    """``categories``: ``{category: {reference_score, model_score, relative_score, n, ci95}}``.

    In the order of :func:`category_order`; ``ci95`` is ``{"relative_score":
    [low, high]}``, the 95 % bootstrap interval over the category's items.
    """

    categories: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return self.categories


def eval_chat_summary(
    reviews: str | Path | Iterable[Mapping[str, Any]], config: ChatSummaryConfig | None = None
) -> ChatSummary:
    """Per question type, per domain and overall: mean scores, relative score with its interval, and n."""
    config = config or ChatSummaryConfig()
    groups: dict[str, list[ReviewItem]] = defaultdict(list)
    for item in read_reviews(reviews):
        for category in item.categories:
            groups[category].append(item)
    categories = {}
    for index, category in enumerate(category_order(groups)):
        group = groups[category]
        relative = np.array([item.relative for item in group])
        categories[category] = {
            "reference_score": sum(item.reference_score for item in group) / len(group),
            "model_score": sum(item.model_score for item in group) / len(group),
            "relative_score": 100 * sum(item.relative for item in group) / len(group),
            "n": len(group),
            "ci95": {"relative_score": bootstrap_interval(relative, config.bootstrap, [config.seed, index])},
        }
    return ChatSummary(categories)
