"""``vital generate``: a thin wrapper over :func:`vital.generation.generate`."""

from __future__ import annotations

from pathlib import Path

import typer

from vital.cli.options import config_options, exit_if_failed
from vital.cli.progress import RichProgress, stderr, summary_table
from vital.llm.engine import EngineConfig


def register(app: typer.Typer) -> None:
    @app.command()
    @config_options(EngineConfig, "engine")
    def generate(
        figures: Path = typer.Argument(..., help="Figures JSONL (from `vital figures import`)."),
        out: Path = typer.Option(..., "--out", help="Candidates JSONL; appended to, and resumed on rerun."),
        backend: str = typer.Option("openai", "--backend", help="openai (a server) or caption (offline)."),
        demos: Path | None = typer.Option(
            None, "--demos", help="Demonstrations: figures with conversations (JSONL, or BioMed-VITAL JSON)."
        ),
        demo_policy: str = typer.Option(
            "per-domain", "--demo-policy", help="per-domain, nearest[:k] (caption embeddings) or random:k."
        ),
        candidates: int = typer.Option(2, "--candidates", help="Candidates per figure (ids FIGURE_ID/cK)."),
        temperature: float = typer.Option(0.7, "--temperature", help="Sampling temperature."),
        max_tokens: int = typer.Option(1024, "--max-tokens", help="Longest reply, in tokens."),
        seed: int = typer.Option(0, "--seed", help="Seeds demonstration draws; candidate k sends seed+k."),
        shard: str | None = typer.Option(None, "--shard", help="i/n: figures whose id hashes to i of n."),
        cache_file: Path | None = typer.Option(
            None, "--cache-file", help="Response cache to use (default: OUT's .llm.sqlite)."
        ),
        *,
        engine: EngineConfig,
    ) -> None:
        """Write candidate conversations about each figure, with a vision-language model or offline."""
        from vital.generation import GenerateConfig, parse_shard
        from vital.generation import generate as run_generate

        config = GenerateConfig(
            backend=backend, candidates=candidates, demos=demos, demo_policy=demo_policy,
            temperature=temperature, max_tokens=max_tokens, seed=seed,
            shard=parse_shard(shard) if shard else None, cache=cache_file,
        )
        report = run_generate(figures, out, config, engine, progress=RichProgress())
        stderr.print(summary_table(report.stats))
        exit_if_failed(report.stats.failed, report.failures)
