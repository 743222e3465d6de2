"""Evaluation: medical VQA metrics, judged open visual chat, pairwise win rate, reports.

VQA (VQA-RAD, SLAKE, PathVQA, LLaVA-Med conversation records), matched by id::

    from vital.evaluate import evaluate_vqa
    result = evaluate_vqa("vqa-rad/test.json", "answers.jsonl")                      # our rules
    result = evaluate_vqa("vqa-rad/test.json", "answers.jsonl", compat="llava-med")  # LLaVA-Med's scorer
    result.metrics["recall"], result.metrics["closed_accuracy"], result.breakdown["organ"]

Judged chat and win rate call a judge through :mod:`vital.llm`
(:func:`judge_chat`, :func:`judge_pairs`); :func:`summarize_reviews` and
:func:`summarize_verdicts` turn their records into numbers, and
:func:`write_report` turns any set of results into Markdown with plots.
Answers to benchmark questions come from :func:`answer_questions`.
See docs/metrics.md for the scoring rules of both modes.
"""

from vital.evaluate.answer import answer_questions, benchmark_questions
from vital.evaluate.chat import ChatQuestion, judge_chat, load_chat_questions, summarize_reviews
from vital.evaluate.metrics import AnswerScore, bleu_scores, score_answer
from vital.evaluate.normalize import normalize_answer, strip_role_prefix
from vital.evaluate.questions import Question, detect_format, load_questions, read_predictions
from vital.evaluate.report import write_report
from vital.evaluate.vqa import VqaResult, evaluate_vqa, score_vqa, summarize
from vital.evaluate.winrate import judge_pairs, summarize_verdicts, win_rate

__all__ = [
    "AnswerScore",
    "ChatQuestion",
    "Question",
    "VqaResult",
    "answer_questions",
    "benchmark_questions",
    "bleu_scores",
    "detect_format",
    "evaluate_vqa",
    "judge_chat",
    "judge_pairs",
    "load_chat_questions",
    "load_questions",
    "normalize_answer",
    "read_predictions",
    "score_answer",
    "score_vqa",
    "strip_role_prefix",
    "summarize",
    "summarize_reviews",
    "summarize_verdicts",
    "win_rate",
    "write_report",
]
