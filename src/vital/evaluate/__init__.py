"""Evaluation: medical VQA metrics, judged open visual chat, pairwise win rate, comparisons, reports.

One entry point per ``vital eval`` command, each configured by one dataclass
and returning a result object (nothing is printed)::

    import vital

    vqa = vital.eval_vqa("vqa-rad/test.json", "answers.jsonl", vital.VqaConfig(compat="llava-med"))
    vqa.metrics["closed_accuracy"], vqa.ci95["closed_accuracy"], vqa.breakdown["organ"]
    diff = vital.eval_compare("vqa-rad/test.json", "base.jsonl", ["ours.jsonl"])

=========================  ===========================  ==========================================
function                   config                       ``vital eval ...``
=========================  ===========================  ==========================================
:func:`eval_answer`        :class:`AnswerConfig`        ``answer``: a model answers a benchmark
:func:`eval_vqa`           :class:`VqaConfig`           ``vqa``: metrics with intervals, details
:func:`eval_compare`       :class:`CompareConfig`       ``compare``: paired differences, p-values
:func:`eval_chat`          :class:`ChatConfig`          ``chat``: judged against the reference
:func:`eval_chat_summary`  :class:`ChatSummaryConfig`   ``chat-summary``: relative scores
:func:`eval_winrate`       :class:`WinrateConfig`       ``winrate``: pairs judged in both orders
:func:`eval_report`        :class:`ReportConfig`        ``report``: Markdown + PNG
=========================  ===========================  ==========================================

Model stages take the model connection as ``engine`` (a
:class:`vital.EngineConfig`) and ``progress=``.  The scoring rules of both
modes are in docs/metrics.md.
"""

from vital.evaluate.answer import AnswerConfig, answer_questions, benchmark_questions, check_checkpoint, eval_answer
from vital.evaluate.chat import (
    ChatConfig,
    ChatQuestion,
    ChatResult,
    ChatSummary,
    ChatSummaryConfig,
    eval_chat,
    eval_chat_summary,
    load_chat_questions,
    read_reviews,
)
from vital.evaluate.compare import CompareConfig, CompareResult, Comparison, MetricComparison, eval_compare
from vital.evaluate.metrics import AnswerScore, bleu_scores, score_answer
from vital.evaluate.normalize import normalize_answer, strip_role_prefix
from vital.evaluate.questions import Question, detect_format, load_questions, read_predictions
from vital.evaluate.report import ReportConfig, ReportResult, eval_report
from vital.evaluate.runs import RunResult
from vital.evaluate.vqa import QuestionScores, VqaConfig, VqaResult, eval_vqa, score_questions
from vital.evaluate.winrate import WinrateConfig, WinrateResult, eval_winrate, summarize_verdicts, win_rate

__all__ = [
    "AnswerConfig",
    "AnswerScore",
    "ChatConfig",
    "ChatQuestion",
    "ChatResult",
    "ChatSummary",
    "ChatSummaryConfig",
    "CompareConfig",
    "CompareResult",
    "Comparison",
    "MetricComparison",
    "Question",
    "QuestionScores",
    "ReportConfig",
    "ReportResult",
    "RunResult",
    "VqaConfig",
    "VqaResult",
    "WinrateConfig",
    "WinrateResult",
    "answer_questions",
    "benchmark_questions",
    "bleu_scores",
    "check_checkpoint",
    "detect_format",
    "eval_answer",
    "eval_chat",
    "eval_chat_summary",
    "eval_compare",
    "eval_report",
    "eval_vqa",
    "eval_winrate",
    "load_chat_questions",
    "load_questions",
    "normalize_answer",
    "read_predictions",
    "read_reviews",
    "score_answer",
    "score_questions",
    "strip_role_prefix",
    "summarize_verdicts",
    "win_rate",
]
