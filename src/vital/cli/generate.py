"""``vital generate``: a thin wrapper over :func:`vital.generation.generate`."""

from __future__ import annotations

from pathlib import Path

import typer

from vital.cli.options import config_options, exit_if_failed
from vital.cli.progress import RichProgress, stderr, summary_table
from vital.generation import GenerateConfig
from vital.llm.engine import EngineConfig


def register(app: typer.Typer) -> None:
    @app.command()
    @config_options(EngineConfig, "engine")
    @config_options(GenerateConfig)
    def generate(
        figures: Path = typer.Argument(..., help="Figures JSONL (from `vital figures import`)."),
        out: Path = typer.Option(..., "--out", help="Candidates JSONL; appended to, and resumed on rerun."),
        *,
        config: GenerateConfig,
        engine: EngineConfig,
    ) -> None:
        """Write candidate conversations about each figure, with a vision-language model or offline."""
        from vital.generation import generate as run_generate

        result = run_generate(figures, out, config, engine, progress=RichProgress())
        stderr.print(summary_table(result.stats))
        if result.failures is not None:
            exit_if_failed(result.failed, result.failures)
