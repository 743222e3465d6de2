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

:func:`summarize_reviews` reads these and LLaVA-Med's own review files, whose
``gpt_eval`` (or, in older files, ``result``) starts with a line "s1 s2".
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vital.errors import InputError
from vital.evaluate.questions import IMAGE_TOKEN, read_predictions
from vital.evaluate.runs import run_resumable
from vital.jsonl import iter_json_lines

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
                question=question.replace(IMAGE_TOKEN, "").strip(),
                reference=reference if isinstance(reference, str) else "",
                caption=str(record.get("fig_caption", record.get("caption", "")) or ""),
                label=str(record.get("fig_label", "") or ""),
                mentions=_mentions(record),
                domain={str(key): bool(value) for key, value in domain.items()},
                type=str(record.get("type", "") or ""),
            )
        )
    return questions


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


def judge_chat(
    questions: str | Path,
    answers: str | Path,
    out: str | Path,
    config: Any,
    *,
    swap: bool = False,
    cache: str | Path | None = None,
) -> Any:
    """Review every answer in ``answers`` against ``questions`` into ``out``; resumable.

    ``config`` is a :class:`vital.llm.EngineConfig` for the judge.  Questions
    already in ``out`` are skipped; a question without an answer, or whose
    review failed, goes to ``<out>.failures.jsonl``.  Returns the run's
    :class:`vital.llm.RunStats` and the engine (for its usage).
    """
    from vital.llm import JobFailed

    items = load_chat_questions(questions)
    given = read_predictions(answers)

    def make_work(engine: Any) -> Any:
        async def work(item: ChatQuestion) -> dict[str, Any]:
            if item.id not in given:
                raise JobFailed(f"no answer to this question in {answers}")
            return await review_one(engine, item, given[item.id], swap=swap)

        return work

    return run_resumable(
        items,
        out,
        make_work=make_work,
        inputs=(questions, answers),
        stage="eval-chat",
        title=f"judging chat answers, {config.label}",
        engine_config=config,
        cache=cache,
    )


def _review_scores(record: Mapping[str, Any], path: Path, line: int) -> tuple[float, float]:
    if "reference_score" in record and "model_score" in record:
        try:
            return float(record["reference_score"]), float(record["model_score"])
        except (TypeError, ValueError):
            raise InputError("expected a number", path=path, line=line, field="reference_score") from None
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


def _iter_reviews(path: Path) -> Iterator[tuple[int, Mapping[str, Any], tuple[float, float]]]:
    for line, record in iter_json_lines(path):
        yield line, record, _review_scores(record, path, line)


def summarize_reviews(path: str | Path) -> dict[str, dict[str, float | int]]:
    """Per question type, per domain and overall: mean scores, relative score and n.

    ``{category: {reference_score, model_score, relative_score, n}}``, in the
    order conversation, detailed_description (then any other type), the
    domains of :data:`DOMAIN_ORDER`, overall.
    """
    path = Path(path)
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line, record, (reference, model) in _iter_reviews(path):
        if reference == 0:
            raise InputError(
                "the reference answer scored 0: its relative score is undefined",
                path=path,
                line=line,
                field="reference_score",
            )
        categories = [str(record.get("type") or "")] + [first_domain(record) or "", "overall"]
        for category in categories:
            if category:
                pairs[category].append((reference, model))
    if not pairs:
        raise InputError("no reviews found", path=path)
    order = [
        *QUESTION_TYPES,
        *sorted(set(pairs) - set(QUESTION_TYPES) - set(DOMAIN_ORDER) - {"overall"}),
        *DOMAIN_ORDER,
        "overall",
    ]
    summary = {}
    for category in order:
        if category in pairs:
            group = pairs[category]
            summary[category] = {
                "reference_score": sum(reference for reference, _ in group) / len(group),
                "model_score": sum(model for _, model in group) / len(group),
                "relative_score": 100 * sum(model / reference for reference, model in group) / len(group),
                "n": len(group),
            }
    return summary
