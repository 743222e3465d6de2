"""``vital judge``: a thin wrapper over :func:`vital.judging.judge`."""

from __future__ import annotations

from pathlib import Path

import typer

from vital.cli.options import config_options, exit_if_failed
from vital.cli.progress import RichProgress, stderr, summary_table
from vital.llm.engine import EngineConfig


def register(app: typer.Typer) -> None:
    @app.command()
    @config_options(EngineConfig, "engine")
    def judge(
        candidates: Path = typer.Argument(..., help="Candidates JSONL (from `vital generate`)."),
        figures: Path = typer.Option(..., "--figures", help="The figures the candidates are about."),
        out: Path = typer.Option(..., "--out", help="Scores JSONL (preferences JSONL with --pairwise)."),
        backend: str = typer.Option("openai", "--backend", help="openai (a server) or heuristic (offline)."),
        unit: str = typer.Option("conversation", "--unit", help="conversation or turn (one score per Q&A)."),
        pairwise: bool = typer.Option(
            False, "--pairwise", help="Compare candidates of a figure in both orders; write preferences."
        ),
        temperature: float = typer.Option(0.0, "--temperature", help="Sampling temperature of the judge."),
        max_tokens: int = typer.Option(512, "--max-tokens", help="Longest reply, in tokens."),
        cache_file: Path | None = typer.Option(
            None, "--cache-file", help="Response cache to use (default: OUT's .llm.sqlite)."
        ),
        *,
        engine: EngineConfig,
    ) -> None:
        """Score candidates 0-10 against a clinical rubric, or compare them in pairs (model preference)."""
        from vital.judging import JudgeConfig
        from vital.judging import judge as run_judge
        from vital.llm import sibling_path

        config = JudgeConfig(backend=backend, unit=unit, pairwise=pairwise, temperature=temperature,
                             max_tokens=max_tokens, cache=cache_file)
        report = run_judge(candidates, figures, out, config, engine, progress=RichProgress())
        extra = {"ties (verdict flipped with order)": report.ties} if pairwise else None
        stderr.print(summary_table(report.stats, extra))
        exit_if_failed(report.stats.failed, sibling_path(out, "failures.jsonl"))

