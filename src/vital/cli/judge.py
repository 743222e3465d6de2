"""``vital judge``: a thin wrapper over :func:`vital.judging.judge`."""

from __future__ import annotations

from pathlib import Path

import typer

from vital.cli.options import config_options, exit_if_failed
from vital.cli.progress import RichProgress, stderr, summary_table
from vital.judging import JudgeConfig
from vital.llm.engine import EngineConfig


def register(app: typer.Typer) -> None:
    @app.command()
    @config_options(EngineConfig, "engine")
    @config_options(JudgeConfig)
    def judge(
        candidates: Path = typer.Argument(..., help="Candidates JSONL (from `vital generate`)."),
        figures: Path = typer.Option(..., "--figures", help="The figures the candidates are about."),
        out: Path = typer.Option(..., "--out", help="Scores JSONL (preferences JSONL with --pairwise)."),
        *,
        config: JudgeConfig,
        engine: EngineConfig,
    ) -> None:
        """Score candidates 0-10 against a clinical rubric, or compare them in pairs (model preference)."""
        from vital.judging import judge as run_judge

        result = run_judge(candidates, figures, out, config, engine, progress=RichProgress())
        extra = {"ties (verdict flipped with order)": result.ties} if config.pairwise else None
        stderr.print(summary_table(result.stats, extra))
        if result.failures is not None:
            exit_if_failed(result.failed, result.failures)
