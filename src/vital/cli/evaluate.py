"""``vital eval``: VQA metrics, model answers, judged chat, win rate and reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

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


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
