"""Pairwise win rate: model A's answers against model B's, judged in both orders.

For each question the judge sees the two answers twice, A first and B first
(:func:`vital.pairwise.judge_both_orders`): a model wins the question only
when it wins in both orders; any other pair of verdicts (a flip, or a win and
a tie) is a tie, which removes the judge's preference for a position.  The
win rate of A is ``(wins + ties / 2) / n``, in percent, with a 95 % bootstrap
interval over questions, overall, per benchmark (a question record's
``benchmark``), per question type and per domain.

Verdict records (JSONL, one per question)::

    {"question_id", "benchmark"?, "type", "domain", "model_a", "model_b",
     "verdicts": {"a_first": "A"|"B"|"tie", "b_first": ...}, "outcome": "A"|"B"|"tie",
     "rationales": [str, str], "judge"}

``verdicts`` are in terms of the models (``b_first: "B"`` means B won with B
shown first).  ``details`` writes one row per question with A's score (1, ½
or 0), whose mean is the win rate.

>>> import vital
>>> result = vital.eval_winrate("questions.jsonl", "ours.jsonl", "base.jsonl", "verdicts.jsonl",
...                             vital.WinrateConfig(name_a="ours", name_b="base"), judge_engine)
>>> result.summary["overall"]["win_rate"], result.summary["by_benchmark"]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.evaluate.chat import ChatQuestion, category_order, figure_context, first_domain, load_chat_questions
from vital.evaluate.questions import read_predictions
from vital.evaluate.runs import RunResult, run_resumable
from vital.evaluate.stats import bootstrap_interval
from vital.jsonl import iter_json_lines, write_jsonl_atomic
from vital.pairwise import judge_both_orders
from vital.progress import Progress

Outcome = Literal["A", "B", "tie"]
# A's score for an outcome: the win rate is its mean.
SCORE_OF_A = {"A": 1.0, "tie": 0.5, "B": 0.0}
# A verdict given with B shown first, in terms of the models (the answer shown first is B's).
_B_FIRST_IN_MODEL_TERMS = {"A": "B", "B": "A", "tie": "tie"}


@dataclass
class WinrateConfig(StageConfig):
    """How the two models are named, the bootstrap, and where the per-question verdicts go."""

    name_a: str | None = setting(None, "Label of model A (default: its answer file's name).")
    name_b: str | None = setting(None, "Label of model B (default: its answer file's name).")
    resamples: int = setting(2000, "Bootstrap resamples for the 95% interval.")
    seed: int = setting(0, "Seed of the bootstrap.")
    details: Path | None = setting(
        None, "Also write one JSONL row per question: both verdicts, the outcome and A's score (1, 0.5, 0)."
    )
    cache_file: Path | None = setting(
        None, "Response cache to use (default: OUT's .llm.sqlite).", changes_output=False
    )

    def validate(self) -> None:
        if self.resamples < 1:
            raise InputError("must be at least 1", field="resamples")


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


async def judge_pair(
    engine: Any, question: ChatQuestion, answer_a: str, answer_b: str, names: tuple[str, str]
) -> dict[str, Any]:
    """Both orders for one question; returns the verdict record."""
    from vital.judging import parse_verdict

    async def prefer(first: str, second: str) -> tuple[Any, str]:
        completion = await engine.complete(
            pair_messages(question, first, second), parse=parse_verdict, temperature=0.0
        )
        return completion.parsed

    both = await judge_both_orders(prefer, answer_a, answer_b)
    a_first, b_first = both.verdicts
    return {
        "question_id": question.id,
        **({"benchmark": question.benchmark} if question.benchmark else {}),
        "type": question.type,
        "domain": question.domain,
        "model_a": names[0],
        "model_b": names[1],
        "verdicts": {"a_first": a_first, "b_first": _B_FIRST_IN_MODEL_TERMS[b_first]},
        "outcome": {"a": "A", "b": "B", "tie": "tie"}[both.outcome],
        "rationales": list(both.rationales),
        "judge": engine.config.label,
    }


@dataclass
class WinrateResult(RunResult):
    """The judging run, and :func:`summarize_verdicts` of every verdict in the output."""

    summary: dict[str, Any] | None = None
    details: Path | None = None


def eval_winrate(
    questions: str | Path,
    answers_a: str | Path,
    answers_b: str | Path,
    out: str | Path,
    config: WinrateConfig | None = None,
    engine: Any = None,
    *,
    progress: Progress | None = None,
) -> WinrateResult:
    """Judge A's against B's answer to every question into ``out`` (resumable); see the module docstring.

    ``engine`` is the judge's :class:`vital.llm.EngineConfig`.  The summary
    (and ``config.details``) cover every verdict in ``out``, this run's and
    earlier ones'.
    """
    from vital.llm import JobFailed

    config = config or WinrateConfig()
    if engine is None:
        raise InputError("judging pairs needs a model connection", field="--model")
    names = (config.name_a or Path(answers_a).stem, config.name_b or Path(answers_b).stem)
    items = load_chat_questions(questions, require_reference=False)
    given_a, given_b = read_predictions(answers_a), read_predictions(answers_b)

    def make_work(client: Any) -> Any:
        async def work(item: ChatQuestion) -> dict[str, Any]:
            for given, path in ((given_a, answers_a), (given_b, answers_b)):
                if item.id not in given:
                    raise JobFailed(f"no answer to this question in {path}")
            return await judge_pair(client, item, given_a[item.id], given_b[item.id], names)

        return work

    run = run_resumable(
        items,
        out,
        make_work=make_work,
        inputs=(questions, answers_a, answers_b, config.details),
        stage="eval-winrate",
        title=f"judging pairs, {engine.label}",
        engine_config=engine,
        cache=config.cache_file,
        progress=progress,
    )
    if not run.out.stat().st_size:
        return WinrateResult(run.out, run.stats, run.failures)
    summary = summarize_verdicts(run.out, resamples=config.resamples, seed=config.seed)
    if config.details is not None:
        write_jsonl_atomic(config.details, verdict_details(run.out))
    return WinrateResult(run.out, run.stats, run.failures, summary, config.details)


def win_rate(outcomes: list[Outcome], *, resamples: int = 2000, seed: int | list[int] = 0) -> dict[str, Any]:
    """Counts, win rate of A in percent and its 95 % bootstrap interval over the questions."""
    n = len(outcomes)
    wins, ties = outcomes.count("A"), outcomes.count("tie")
    scores = np.array([SCORE_OF_A[outcome] for outcome in outcomes])
    low, high = bootstrap_interval(scores, resamples, seed) or (None, None)
    return {
        "wins": wins,
        "ties": ties,
        "losses": n - wins - ties,
        "n": n,
        "win_rate": 100 * float(scores.mean()),
        "ci_low": low,
        "ci_high": high,
    }


def _iter_verdicts(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The verdict records of ``path``, each checked; all of them are for one pair of models."""
    names: tuple[str, str] | None = None
    for line, record in iter_json_lines(path):
        if record.get("outcome") not in SCORE_OF_A:
            raise InputError("expected A, B or tie", path=path, line=line, field="outcome")
        pair = (str(record.get("model_a", "A")), str(record.get("model_b", "B")))
        if names is not None and pair != names:
            raise InputError(
                f"verdicts for {pair} mixed with verdicts for {names}", path=path, line=line, field="model_a"
            )
        names = pair
        yield line, record


def summarize_verdicts(path: str | Path, *, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``{model_a, model_b, judge, order_agreement, overall, by_benchmark, by_category}``.

    Each of ``overall`` and the groups is :func:`win_rate`'s dict.
    ``by_benchmark`` groups by the questions' ``benchmark`` (empty when they
    name none); ``by_category`` by question type and domain (first flag, as in
    :func:`vital.evaluate.chat.first_domain`).  ``order_agreement`` is the
    percentage of questions whose two verdicts agreed.
    """
    path = Path(path)
    overall: list[Outcome] = []
    by_benchmark: dict[str, list[Outcome]] = defaultdict(list)
    by_category: dict[str, list[Outcome]] = defaultdict(list)
    first: dict[str, Any] | None = None
    judge = None
    agreed = 0
    for _, record in _iter_verdicts(path):
        first = first or record
        judge = record.get("judge", judge)
        outcome = record["outcome"]
        verdicts = record.get("verdicts") or {}
        agreed += verdicts.get("a_first") == verdicts.get("b_first")
        overall.append(outcome)
        if record.get("benchmark"):
            by_benchmark[str(record["benchmark"])].append(outcome)
        for category in (str(record.get("type") or ""), first_domain(record) or ""):
            if category:
                by_category[category].append(outcome)
    if first is None:
        raise InputError("no verdicts found", path=path)
    return {
        "model_a": str(first.get("model_a", "A")),
        "model_b": str(first.get("model_b", "B")),
        "judge": judge,
        "order_agreement": 100 * agreed / len(overall),
        "overall": win_rate(overall, resamples=resamples, seed=seed),
        "by_benchmark": {
            name: win_rate(group, resamples=resamples, seed=[seed, 1, index])
            for index, (name, group) in enumerate(sorted(by_benchmark.items()))
        },
        "by_category": {
            category: win_rate(by_category[category], resamples=resamples, seed=[seed, 2, index])
            for index, category in enumerate(category_order(by_category))
        },
    }


def verdict_details(path: str | Path) -> Iterator[dict[str, Any]]:
    """One row per verdict record: the question, both verdicts, the outcome and A's score."""
    for _, record in _iter_verdicts(Path(path)):
        yield {
            "question_id": record.get("question_id"),
            "benchmark": record.get("benchmark"),
            "type": record.get("type"),
            "domain": first_domain(record),
            "model_a": record.get("model_a"),
            "model_b": record.get("model_b"),
            "verdicts": record.get("verdicts"),
            "outcome": record["outcome"],
            "score_a": SCORE_OF_A[record["outcome"]],
            "rationales": record.get("rationales"),
            "judge": record.get("judge"),
        }
