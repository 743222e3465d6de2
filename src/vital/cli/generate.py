"""``vital generate`` and ``vital judge``: thin wrappers over :mod:`vital.generate` and :mod:`vital.judge`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from vital.cli.options import backend_option, engine_options, exit_if_failed

if TYPE_CHECKING:
    from vital.llm import EngineConfig


def register(app: typer.Typer) -> None:
    @app.command()
    @engine_options
    def generate(
        figures: Path = typer.Argument(..., help="Figures JSONL (from `vital figures import`)."),
        out: Path = typer.Option(..., "--out", help="Candidates JSONL; appended to, and resumed on rerun."),
        backend: str = backend_option("caption", "offline, grounded instructions from the caption"),
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
        from vital.generate import GenerateConfig, parse_shard
        from vital.generate import generate as run_generate

        config = GenerateConfig(
            backend=backend, candidates=candidates, demos=demos, demo_policy=demo_policy,
            temperature=temperature, max_tokens=max_tokens, seed=seed,
            shard=parse_shard(shard) if shard else None, cache=cache_file,
        )
        report = run_generate(figures, out, config, engine)
        exit_if_failed(report.stats.failed, report.failures)

    @app.command()
    @engine_options
    def judge(
        candidates: Path = typer.Argument(..., help="Candidates JSONL (from `vital generate`)."),
        figures: Path = typer.Option(..., "--figures", help="The figures the candidates are about."),
        out: Path = typer.Option(..., "--out", help="Scores JSONL (preferences JSONL with --pairwise)."),
        backend: str = backend_option("heuristic", "offline grounding score (formula in vital.judge)"),
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
        from vital.judge import JudgeConfig
        from vital.judge import judge as run_judge
        from vital.llm import sibling_path

        config = JudgeConfig(backend=backend, unit=unit, pairwise=pairwise, temperature=temperature,
                             max_tokens=max_tokens, cache=cache_file)
        report = run_judge(candidates, figures, out, config, engine)
        exit_if_failed(report.stats.failed, sibling_path(out, "failures.jsonl"))

