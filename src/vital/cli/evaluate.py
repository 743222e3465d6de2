"""``vital eval``: VQA metrics, model answers, judged chat, win rate and reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from vital.cli.options import config_options, exit_if_failed
from vital.llm.engine import EngineConfig

eval_app = typer.Typer(
    help="Evaluate: VQA metrics (VQA-RAD, SLAKE, PathVQA), judged chat, win rate, reports.",
    no_args_is_help=True,
)


def _percent(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))


@eval_app.command("vqa")
def vqa_command(
    gt: Path = typer.Option(
        ..., "--gt", help="Ground truth: VQA-RAD, SLAKE, PathVQA (LXMERT) or LLaVA-Med JSON."
    ),
    pred: Path = typer.Option(..., "--pred", help="Answer file (JSONL with question_id and text)."),
    compat: str | None = typer.Option(
        None, "--compat", help="'llava-med': score exactly as LLaVA-Med's published scorer (flaws included)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Count questions without a prediction as wrong instead of stopping."
    ),
    lang: str = typer.Option("en", "--lang", help="SLAKE question language (en, zh, or all)."),
    fmt: str = typer.Option("auto", "--format", help="auto, vqa-rad, slake, pathvqa or llava-med."),
) -> None:
    """Score an answer file against a VQA benchmark: open recall, closed accuracy, and more, per category."""
    from vital.evaluate.vqa import METRIC_KEYS, evaluate_vqa
    from vital.jsonl import warn

    result = evaluate_vqa(gt, pred, compat=compat, allow_missing=allow_missing, format=fmt, lang=lang)
    if result.ignored:
        warn(f"{pred}: ignored {result.ignored} predictions whose question_id is not in {gt}")
    if result.missing:
        warn(f"{pred}: {result.missing} questions had no prediction and were scored as wrong")
    if result.unscored:
        warn(f"{gt}: {result.unscored} questions have an answer_type other than OPEN/CLOSED; not scored")
    if as_json:
        _print_json(result.to_json())
        return
    console = Console()
    table = Table(title=f"{pred.name} vs {gt.name} ({result.mode} scoring, percent)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in METRIC_KEYS:
        table.add_row(key, _percent(result.metrics[key]))
    console.print(table)
    for category, labels in result.breakdown.items():
        part = Table(title=f"by {category.replace('_', ' ')}")
        for name in ("label", "n open", "open recall", "open accuracy", "n closed", "closed accuracy"):
            part.add_column(name, justify="left" if name == "label" else "right")
        for label, metrics in labels.items():
            part.add_row(
                label,
                str(metrics["n_open"]),
                _percent(metrics["recall"]),
                _percent(metrics["open_accuracy"]),
                str(metrics["n_closed"]),
                _percent(metrics["closed_accuracy"]),
            )
        console.print(part)


@eval_app.command("chat-summary")
def chat_summary_command(
    reviews: Path = typer.Argument(..., help="Review records: ours (vital eval chat) or LLaVA-Med's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Reference score, model score and relative score per question type, per domain and overall."""
    from vital.evaluate.chat import summarize_reviews

    summary = summarize_reviews(reviews)
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"{reviews.name}: model relative to the reference answer")
    for name in ("category", "reference score", "model score", "relative score (%)", "n"):
        table.add_column(name, justify="left" if name == "category" else "right")
    for category, row in summary.items():
        table.add_row(
            category,
            f"{row['reference_score']:.2f}",
            f"{row['model_score']:.2f}",
            f"{row['relative_score']:.2f}",
            str(row["n"]),
        )
    Console().print(table)


def _finish(stats: Any, out: Path) -> None:
    from vital.cli.progress import summary_table
    from vital.jsonl import failures_path

    console = Console(stderr=True)
    console.print(summary_table(stats))
    exit_if_failed(stats.failed, failures_path(out), "questions")


@eval_app.command("answer")
@config_options(EngineConfig, "engine")
def answer_command(
    out: Path = typer.Option(
        ..., "--out", help="Answer file (JSONL, LLaVA-Med format); appended to and resumed."
    ),
    benchmark: str | None = typer.Option(
        None, "--benchmark", help="vqa-rad, slake or pathvqa (with --data)."
    ),
    data: Path | None = typer.Option(None, "--data", help="The benchmark's folder (test file and images/)."),
    questions: Path | None = typer.Option(
        None, "--questions", help="Instead of a benchmark: a ground-truth or LLaVA-Med question file."
    ),
    images: Path | None = typer.Option(None, "--images", help="Folder the image names are relative to."),
    backend: str = typer.Option(
        "openai", "--backend", help="openai (any OpenAI-compatible VLM server) or transformers (--model DIR)."
    ),
    yes_no_suffix: bool = typer.Option(
        False,
        "--yes-no-suffix",
        help='Append LLaVA-Med\'s (Answer with either "Yes" or "No"). to closed questions.',
    ),
    max_tokens: int = typer.Option(128, "--max-tokens", help="Longest answer, in tokens."),
    device: str = typer.Option("cpu", "--device", help="torch device for the transformers backend."),
    lang: str = typer.Option("en", "--lang", help="SLAKE question language (en, zh, or all)."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N questions."),
    cache_file: Path | None = typer.Option(
        None, "--cache-file", help="Response cache to use (default: OUT's .llm.sqlite)."
    ),
    *,
    engine: EngineConfig,
) -> None:
    """Ask a model each benchmark question with its image; write an answer file for `vital eval vqa`.

    With --backend transformers, --model is a local folder holding a LLaVA-style checkpoint and its processor.
    """
    from vital.errors import InputError
    from vital.evaluate.answer import answer_questions, benchmark_questions
    from vital.evaluate.questions import load_questions
    from vital.jsonl import refuse_input_as_output

    if (benchmark is None) == (questions is None):
        raise InputError("give either --benchmark with --data, or --questions", field="--benchmark")
    if benchmark is not None:
        if data is None:
            raise InputError("--benchmark needs --data (the benchmark's folder)", field="--data")
        items = benchmark_questions(benchmark, data, lang=lang, images=images)
    else:
        refuse_input_as_output(out, questions)
        items = load_questions(questions, lang=lang, images=images, need_answers=False)
    items = items[:limit] if limit is not None else items
    local = backend == "transformers"
    stats = answer_questions(
        items,
        out,
        backend=backend,
        engine_config=None if local else engine,
        model_path=engine.model if local else None,
        yes_no_suffix=yes_no_suffix,
        max_new_tokens=max_tokens,
        device=device,
        cache=cache_file,
    )
    _finish(stats, out)


@eval_app.command("chat")
@config_options(EngineConfig, "engine")
def chat_command(
    questions: Path = typer.Option(
        ...,
        "--questions",
        help="LLaVA-Med-style question set (question, gpt4_answer, caption, domain, type).",
    ),
    answers: Path = typer.Option(..., "--answers", help="The model's answer file (question_id, text)."),
    out: Path = typer.Option(..., "--out", help="Review records (JSONL); appended to and resumed."),
    swap: bool = typer.Option(False, "--swap", help="Also judge with the answers in swapped order; average."),
    cache_file: Path | None = typer.Option(
        None, "--cache-file", help="Response cache to use (default: OUT's .llm.sqlite)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    *,
    engine: EngineConfig,
) -> None:
    """Judge a model's answers against the reference answers (1-10 each), then summarise."""
    from vital.evaluate.chat import judge_chat

    stats = judge_chat(questions, answers, out, engine, swap=swap, cache=cache_file)
    _finish(stats, out)
    if out.exists() and out.stat().st_size:
        chat_summary_command(out, as_json=as_json)


@eval_app.command("winrate")
@config_options(EngineConfig, "engine")
def winrate_command(
    questions: Path = typer.Option(
        ..., "--questions", help="Question set (question_id, text; caption etc.)."
    ),
    answers_a: Path = typer.Option(..., "--a", help="Model A's answer file."),
    answers_b: Path = typer.Option(..., "--b", help="Model B's answer file."),
    out: Path = typer.Option(..., "--out", help="Verdict records (JSONL); appended to and resumed."),
    name_a: str | None = typer.Option(None, "--name-a", help="Label of model A (default: file name)."),
    name_b: str | None = typer.Option(None, "--name-b", help="Label of model B (default: file name)."),
    resamples: int = typer.Option(2000, "--resamples", help="Bootstrap resamples for the 95% interval."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    cache_file: Path | None = typer.Option(
        None, "--cache-file", help="Response cache to use (default: OUT's .llm.sqlite)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    *,
    engine: EngineConfig,
) -> None:
    """Judge A's against B's answers in both orders; win/tie/loss and win rate with a bootstrap interval."""
    from vital.evaluate.winrate import judge_pairs, summarize_verdicts

    names = (name_a or answers_a.stem, name_b or answers_b.stem)
    stats = judge_pairs(questions, answers_a, answers_b, out, engine, names=names, cache=cache_file)
    _finish(stats, out)
    if not (out.exists() and out.stat().st_size):
        return
    summary = summarize_verdicts(out, resamples=resamples, seed=seed)
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"{summary['model_a']} (A) vs {summary['model_b']} (B), judged by {summary['judge']}")
    for name in ("category", "A wins", "ties", "B wins", "n", "win rate of A (%)", "95% interval"):
        table.add_column(name, justify="left" if name == "category" else "right")
    for category, row in {"overall": summary["overall"], **summary["by_category"]}.items():
        table.add_row(
            category,
            str(row["wins"]),
            str(row["ties"]),
            str(row["losses"]),
            str(row["n"]),
            f"{row['win_rate']:.1f}",
            f"{row['ci_low']:.1f} - {row['ci_high']:.1f}",
        )
    console = Console()
    console.print(table)
    console.print(f"the two orders agreed on {summary['order_agreement']:.1f}% of the questions")


@eval_app.command("report")
def report_command(
    results: list[str] = typer.Argument(
        ..., help="Result JSON files (from --json of vqa, chat-summary, winrate), each PATH or NAME=PATH."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for report.md and its PNG plots."),
    title: str = typer.Option("Evaluation report", "--title", help="Title of the report."),
) -> None:
    """Markdown report with plots: per-category bars, results side by side, relative scores per domain."""
    from vital.evaluate.report import write_report

    entries: list[tuple[str | None, str]] = []
    for entry in results:
        name, sep, path = entry.partition("=")
        entries.append((name, path) if sep and not Path(entry).exists() else (None, entry))
    report = write_report(entries, out, title=title)
    Console().print(f"wrote [bold]{report}[/bold] and {len(list(out.glob('*.png')))} plots")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
