"""``vital eval``: VQA metrics, paired comparisons, model answers, judged chat, win rate and reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from vital.cli.options import config_options, exit_if_failed
from vital.cli.progress import RichProgress, stderr, summary_table
from vital.evaluate.answer import AnswerConfig
from vital.evaluate.chat import ChatConfig, ChatSummaryConfig
from vital.evaluate.compare import CompareConfig
from vital.evaluate.report import ReportConfig
from vital.evaluate.vqa import VqaConfig
from vital.evaluate.winrate import WinrateConfig
from vital.llm.engine import EngineConfig

eval_app = typer.Typer(
    help="Evaluate: VQA metrics (VQA-RAD, SLAKE, PathVQA), paired comparisons, judged chat, win rate, reports.",
    no_args_is_help=True,
)


def _percent(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(interval: list[float] | None, digits: int = 2) -> str:
    return "-" if not interval else f"{interval[0]:.{digits}f} - {interval[1]:.{digits}f}"


def _small(text: str, n: int | None, min_n: int) -> str:
    """``text`` greyed when its group has fewer than ``min_n`` questions."""
    return f"[dim]{text}[/dim]" if n is not None and n < min_n else text


def _print_json(obj: Any) -> None:
    from vital.jsonl import json_safe

    typer.echo(json.dumps(json_safe(obj), indent=2, ensure_ascii=False))


def _finish(result: Any, noun: str = "questions") -> None:
    stderr.print(summary_table(result.stats))
    if result.failures is not None:
        exit_if_failed(result.failed, result.failures, noun)


@eval_app.command("vqa")
@config_options(VqaConfig)
def vqa_command(
    gt: Path = typer.Option(
        ..., "--gt", help="Ground truth: VQA-RAD, SLAKE, PathVQA (LXMERT), LLaVA-Med or flat JSON/JSONL."
    ),
    pred: Path = typer.Option(..., "--pred", help="Answer file (JSONL with question_id and text)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    *,
    config: VqaConfig,
) -> None:
    """Score an answer file against a VQA benchmark: open recall, closed accuracy and more, with 95% intervals."""
    from vital.evaluate.vqa import METRIC_KEYS, eval_vqa
    from vital.jsonl import warn

    result = eval_vqa(gt, pred, config)
    if result.ignored:
        warn(f"{pred}: ignored {result.ignored} predictions whose question_id is not in {gt}")
    if result.missing:
        warn(f"{pred}: {result.missing} questions had no prediction and were scored as wrong")
    if result.unscored:
        warn(f"{gt}: {result.unscored} questions have an answer_type other than OPEN/CLOSED; not scored")
    if result.details is not None:
        stderr.print(f"wrote one row per question to {result.details}", highlight=False)
    if as_json:
        _print_json(result.to_json())
        return
    console = Console()
    table = Table(title=f"{pred.name} vs {gt.name} ({result.mode} scoring, percent)")
    for name in ("metric", "value", "95% interval"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for key in METRIC_KEYS:
        table.add_row(key, _percent(result.metrics[key]), _interval(result.ci95.get(key)))
    console.print(table)
    for category, labels in result.breakdown.items():
        part = Table(
            title=f"by {category.replace('_', ' ')} ({result.label_sets.get(category)} labels; "
            f"dim: fewer than {result.min_n} questions)"
        )
        for name in ("label", "n open", "open recall", "95% interval", "n closed", "closed accuracy", "95% interval"):
            part.add_column(name, justify="left" if name == "label" else "right")
        for label, cell in labels.items():
            n_open, n_closed = cell["n_open"], cell["n_closed"]
            part.add_row(
                label,
                _small(str(n_open), n_open, result.min_n),
                _small(_percent(cell["recall"]), n_open, result.min_n),
                _small(_interval(cell["ci95"].get("recall")), n_open, result.min_n),
                _small(str(n_closed), n_closed, result.min_n),
                _small(_percent(cell["closed_accuracy"]), n_closed, result.min_n),
                _small(_interval(cell["ci95"].get("closed_accuracy")), n_closed, result.min_n),
            )
        console.print(part)


@eval_app.command("compare")
@config_options(CompareConfig)
def compare_command(
    answers_a: Path = typer.Option(..., "--a", help="System A's answer file (or chat reviews, without --gt)."),
    answers_b: list[Path] = typer.Option(..., "--b", help="System B's answer file; repeat to compare several with A."),
    gt: Path | None = typer.Option(
        None, "--gt", help="Ground truth (as for eval vqa); without it A and B are chat review files."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    *,
    config: CompareConfig,
) -> None:
    """Compare B with A on the same questions: B - A per metric, its paired bootstrap interval and a p-value."""
    from vital.evaluate.compare import eval_compare

    result = eval_compare(gt, answers_a, answers_b, config)
    if as_json:
        _print_json(result.to_json())
        return
    console = Console(width=max(100, Console().width))  # eight columns: wider than a piped 80
    for comparison in result.comparisons:
        missing = comparison.missing
        scoring = f", {result.mode} scoring" if result.mode else ""
        table = Table(
            title=f"{comparison.b} (B) vs {result.a} (A){scoring}: {comparison.n} questions compared, "
            f"{missing['a']} missing from A and {missing['b']} from B left out",
            box=box.SIMPLE_HEAD,
        )
        label = "metric" if result.kind == "vqa" else "relative score"
        for name in (label, "A", "B", "B - A", "95% CI of B - A", "p", "test", "n"):
            table.add_column(name, justify="left" if name in (label, "test") else "right")
        for name, row in comparison.metrics.items():
            table.add_row(
                name,
                _percent(row.a),
                _percent(row.b),
                _percent(row.diff),
                _interval(row.ci95),
                "-" if row.p_value is None else f"{row.p_value:.3g}",
                row.test,
                str(row.n),
            )
        console.print(table)


@eval_app.command("chat-summary")
@config_options(ChatSummaryConfig)
def chat_summary_command(
    reviews: Path = typer.Argument(..., help="Review records: ours (vital eval chat) or LLaVA-Med's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    *,
    config: ChatSummaryConfig,
) -> None:
    """Reference score, model score and relative score (with its 95% interval) per question type and domain."""
    from vital.evaluate.chat import eval_chat_summary

    _show_chat_summary(eval_chat_summary(reviews, config), reviews.name, as_json)


def _show_chat_summary(summary: Any, name: str, as_json: bool) -> None:
    if as_json:
        _print_json(summary.to_json())
        return
    table = Table(title=f"{name}: model relative to the reference answer")
    for column in ("category", "reference score", "model score", "relative score (%)", "95% interval", "n"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, row in summary.categories.items():
        table.add_row(
            category,
            f"{row['reference_score']:.2f}",
            f"{row['model_score']:.2f}",
            f"{row['relative_score']:.2f}",
            _interval(row["ci95"]["relative_score"]),
            str(row["n"]),
        )
    Console().print(table)


@eval_app.command("answer")
@config_options(EngineConfig, "engine")
@config_options(AnswerConfig)
def answer_command(
    out: Path = typer.Option(
        ..., "--out", help="Answer file (JSONL, LLaVA-Med format); appended to and resumed."
    ),
    *,
    config: AnswerConfig,
    engine: EngineConfig,
) -> None:
    """Ask a model each benchmark question with its image; write an answer file for `vital eval vqa`.

    With --backend transformers, --model is a local folder holding a LLaVA checkpoint (transformers layout)
    and its processor.
    """
    from vital.evaluate.answer import eval_answer

    _finish(eval_answer(out, config, engine, progress=RichProgress()))


@eval_app.command("chat")
@config_options(EngineConfig, "engine")
@config_options(ChatConfig)
def chat_command(
    questions: Path = typer.Option(
        ...,
        "--questions",
        help="LLaVA-Med-style question set (question, gpt4_answer, caption, domain, type).",
    ),
    answers: Path = typer.Option(..., "--answers", help="The model's answer file (question_id, text)."),
    out: Path = typer.Option(..., "--out", help="Review records (JSONL); appended to and resumed."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    *,
    config: ChatConfig,
    engine: EngineConfig,
) -> None:
    """Judge a model's answers against the reference answers (1-10 each), then summarise."""
    from vital.evaluate.chat import eval_chat

    result = eval_chat(questions, answers, out, config, engine, progress=RichProgress())
    if result.summary is not None:
        _show_chat_summary(result.summary, out.name, as_json)
    _finish(result)


@eval_app.command("winrate")
@config_options(EngineConfig, "engine")
@config_options(WinrateConfig)
def winrate_command(
    questions: Path = typer.Option(
        ..., "--questions", help="Question set (question_id, text; caption, type, benchmark etc.)."
    ),
    answers_a: Path = typer.Option(..., "--a", help="Model A's answer file."),
    answers_b: Path = typer.Option(..., "--b", help="Model B's answer file."),
    out: Path = typer.Option(..., "--out", help="Verdict records (JSONL); appended to and resumed."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    *,
    config: WinrateConfig,
    engine: EngineConfig,
) -> None:
    """Judge A's against B's answers in both orders; win rate with a bootstrap interval, per benchmark and type."""
    from vital.evaluate.winrate import eval_winrate

    result = eval_winrate(questions, answers_a, answers_b, out, config, engine, progress=RichProgress())
    summary = result.summary
    if summary is not None and as_json:
        _print_json(summary)
    elif summary is not None:
        table = Table(
            title=f"{summary['model_a']} (A) vs {summary['model_b']} (B), judged by {summary['judge']}"
        )
        for name in ("group", "A wins", "ties", "B wins", "n", "win rate of A (%)", "95% interval"):
            table.add_column(name, justify="left" if name == "group" else "right")
        groups = {
            "overall": summary["overall"],
            **{f"benchmark {name}": row for name, row in summary["by_benchmark"].items()},
            **summary["by_category"],
        }
        for group, row in groups.items():
            table.add_row(
                group,
                str(row["wins"]),
                str(row["ties"]),
                str(row["losses"]),
                str(row["n"]),
                f"{row['win_rate']:.1f}",
                _interval([row["ci_low"], row["ci_high"]], 1),
            )
        console = Console()
        console.print(table)
        console.print(f"the two orders agreed on {summary['order_agreement']:.1f}% of the questions")
    _finish(result)


@eval_app.command("report")
@config_options(ReportConfig)
def report_command(
    results: list[str] = typer.Argument(
        ..., help="Result JSON files (--json of vqa, chat-summary, winrate, compare), each PATH or NAME=PATH."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for report.md and its PNG plots."),
    *,
    config: ReportConfig,
) -> None:
    """Markdown report with plots: intervals as error bars, n on every bar, breakdowns per label set."""
    from vital.evaluate.report import eval_report

    entries: list[tuple[str | None, str]] = []
    for entry in results:
        name, sep, path = entry.partition("=")
        entries.append((name, path) if sep and not Path(entry).exists() else (None, entry))
    report = eval_report(entries, out, config)
    Console().print(f"wrote [bold]{report.out}[/bold] and {len(report.plots)} plots")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
