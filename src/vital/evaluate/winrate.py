"""Pairwise win rate: model A's answers against model B's, judged in both orders.

For each question the judge sees the two answers twice, A first and B first.
A model wins the question only when it wins in both orders; any other pair
of verdicts (a flip, or a win and a tie) is a tie, which removes the judge's
preference for a position.  The win rate of A is ``(wins + ties / 2) / n``,
in percent, with a 95 % bootstrap interval over questions.

Verdict records (JSONL, one per question)::

    {"question_id", "type", "domain", "model_a", "model_b",
     "verdicts": {"a_first": "A"|"B"|"tie", "b_first": ...}, "outcome": "A"|"B"|"tie",
     "rationales": [str, str], "judge"}
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vital.errors import InputError
from vital.evaluate.chat import (
    DOMAIN_ORDER,
    QUESTION_TYPES,
    ChatQuestion,
    figure_context,
    first_domain,
    load_chat_questions,
)
from vital.evaluate.questions import read_predictions
from vital.evaluate.runs import run_resumable
from vital.jsonl import iter_json_lines

Outcome = Literal["A", "B", "tie"]
PAIR_SYSTEM = "You are a careful and impartial reviewer of answers to questions about biomedical images."
PAIR_INSTRUCTIONS = (
    "Two AI assistants, A and B, answered the question above about a biomedical image. You cannot see the "
    "image; its caption and the sentences of the paper that mention it stand in for it.\n"
    "Decide which answer is better for a clinician: more accurate, more relevant, and as detailed as the "
    'question needs. Answer "tie" only if neither is better. The order of the answers must not '
    'influence you. Reply with JSON only: {"winner": "A" | "B" | "tie", "rationale": "<one or two '
    'sentences>"}'
)


def pair_messages(question: ChatQuestion, first: str, second: str) -> list[dict[str, str]]:
    """The judge's prompt, ``first`` shown as answer A."""
    reference = f"[A reference answer, for context]\n{question.reference}\n\n" if question.reference else ""
    prompt = (
        f"{figure_context(question)}\n\n[Question]\n{question.question}\n\n{reference}"
        f"[Answer A]\n{first}\n[End of answer A]\n\n[Answer B]\n{second}\n[End of answer B]\n\n"
        f"[Instructions]\n{PAIR_INSTRUCTIONS}"
    )
    return [{"role": "system", "content": PAIR_SYSTEM}, {"role": "user", "content": prompt}]


def combine_verdicts(a_first: Outcome, b_first: Outcome) -> Outcome:
    """The outcome for model A vs B from the verdicts in the two orders (each already in model terms)."""
    return a_first if a_first == b_first else "tie"


async def judge_pair(
    engine: Any, question: ChatQuestion, answer_a: str, answer_b: str, names: tuple[str, str]
) -> dict[str, Any]:
    """Both orders for one question; returns the verdict record."""
    from vital.judging import parse_verdict

    shown_a_first, shown_b_first = await asyncio.gather(
        engine.complete(pair_messages(question, answer_a, answer_b), parse=parse_verdict, temperature=0.0),
        engine.complete(pair_messages(question, answer_b, answer_a), parse=parse_verdict, temperature=0.0),
    )
    a_first: Outcome = shown_a_first.parsed[0]
    b_first: Outcome = {"A": "B", "B": "A", "tie": "tie"}[shown_b_first.parsed[0]]  # type: ignore[assignment]
    return {
        "question_id": question.id,
        "type": question.type,
        "domain": question.domain,
        "model_a": names[0],
        "model_b": names[1],
        "verdicts": {"a_first": a_first, "b_first": b_first},
        "outcome": combine_verdicts(a_first, b_first),
        "rationales": [shown_a_first.parsed[1], shown_b_first.parsed[1]],
        "judge": engine.config.label,
    }


def judge_pairs(
    questions: str | Path,
    answers_a: str | Path,
    answers_b: str | Path,
    out: str | Path,
    config: Any,
    *,
    names: tuple[str, str] | None = None,
    cache: str | Path | None = None,
) -> Any:
    """Judge A's against B's answer to every question into ``out`` (resumable); see the module docstring.

    ``names`` label the two models (default: the answer files' names).
    Returns the run's :class:`vital.llm.RunStats` and the engine.
    """
    from vital.llm import JobFailed

    names = names or (Path(answers_a).stem, Path(answers_b).stem)
    items = load_chat_questions(questions, require_reference=False)
    given_a, given_b = read_predictions(answers_a), read_predictions(answers_b)

    def make_work(engine: Any) -> Any:
        async def work(item: ChatQuestion) -> dict[str, Any]:
            for given, path in ((given_a, answers_a), (given_b, answers_b)):
                if item.id not in given:
                    raise JobFailed(f"no answer to this question in {path}")
            return await judge_pair(engine, item, given_a[item.id], given_b[item.id], names)

        return work

    return run_resumable(
        items,
        out,
        make_work=make_work,
        inputs=(questions, answers_a, answers_b),
        stage="eval-winrate",
        title=f"judging pairs, {config.label}",
        engine_config=config,
        cache=cache,
    )


def win_rate(outcomes: list[Outcome], *, resamples: int = 2000, seed: int = 0) -> dict[str, float | int]:
    """Counts, win rate of A in percent and its 95 % bootstrap interval.

    Bootstrapping n questions with replacement only changes how many wins,
    ties and losses are drawn, so the resamples are drawn as multinomial
    counts: exact, and cheap for any n.
    """
    n = len(outcomes)
    wins, ties = outcomes.count("A"), outcomes.count("tie")
    losses = n - wins - ties
    rate = 100 * (wins + ties / 2) / n
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [wins / n, ties / n, losses / n], size=resamples)
    rates = 100 * (draws[:, 0] + draws[:, 1] / 2) / n
    low, high = np.percentile(rates, [2.5, 97.5])
    return {
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "n": n,
        "win_rate": rate,
        "ci_low": float(low),
        "ci_high": float(high),
    }


def summarize_verdicts(path: str | Path, *, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``{model_a, model_b, judge, order_agreement, overall: {...}, by_category: {name: {...}}}``.

    Categories are the question types and the domains (first flag, as in
    :func:`vital.evaluate.chat.first_domain`).  ``order_agreement`` is the
    percentage of questions whose two verdicts agreed.
    """
    path = Path(path)
    groups: dict[str, list[Outcome]] = defaultdict(list)
    names: tuple[str, str] | None = None
    judge = None
    agreed = 0
    for line, record in iter_json_lines(path):
        outcome = record.get("outcome")
        if outcome not in ("A", "B", "tie"):
            raise InputError("expected A, B or tie", path=path, line=line, field="outcome")
        pair = (str(record.get("model_a", "A")), str(record.get("model_b", "B")))
        if names is not None and pair != names:
            raise InputError(
                f"verdicts for {pair} mixed with verdicts for {names}", path=path, line=line, field="model_a"
            )
        names, judge = pair, record.get("judge", judge)
        verdicts = record.get("verdicts") or {}
        agreed += verdicts.get("a_first") == verdicts.get("b_first")
        for category in (str(record.get("type") or ""), first_domain(record) or "", "overall"):
            if category:
                groups[category].append(outcome)
    if names is None:
        raise InputError("no verdicts found", path=path)
    order = [
        *QUESTION_TYPES,
        *sorted(set(groups) - set(QUESTION_TYPES) - set(DOMAIN_ORDER) - {"overall"}),
        *DOMAIN_ORDER,
    ]
    return {
        "model_a": names[0],
        "model_b": names[1],
        "judge": judge,
        "order_agreement": 100 * agreed / len(groups["overall"]),
        "overall": win_rate(groups["overall"], resamples=resamples, seed=seed),
        "by_category": {
            category: win_rate(groups[category], resamples=resamples, seed=seed)
            for category in order
            if category in groups
        },
    }
