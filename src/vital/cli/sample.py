"""``vital sample``: a diverse sample of figures for clinicians."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vital.cli.options import config_options
from vital.cli.progress import RichProgress
from vital.sampling import SampleConfig


def register(app: typer.Typer) -> None:
    @app.command()
    @config_options(SampleConfig)
    def sample(
        figures: Path = typer.Argument(..., help="Figure records (JSONL)."),
        out: Path = typer.Option(..., "--out", help="Sampled figure records (JSONL), each with its cluster."),
        *,
        config: SampleConfig,
    ) -> None:
        """Pick a diverse sample for clinicians: k-means over embeddings, round-robin across clusters and domains."""
        from vital.sampling import sample as run_sample

        result = run_sample(figures, out, config, progress=RichProgress(transient=True))
        console = Console()
        by_domain = Table(title=f"{result.picked} of {result.n_figures} figures -> {result.out}")
        by_domain.add_column("domain")
        by_domain.add_column("figures", justify="right")
        by_domain.add_column("picked", justify="right")
        for domain, size in sorted(result.domain_sizes.items()):
            by_domain.add_row(domain, str(size), str(result.domain_picked[domain]))
        console.print(by_domain)
        by_cluster = Table(title=f"{result.n_clusters} clusters")
        by_cluster.add_column("cluster", justify="right")
        by_cluster.add_column("size", justify="right")
        by_cluster.add_column("picked", justify="right")
        for label, size in sorted(result.cluster_sizes.items()):
            by_cluster.add_row(str(label), str(size), str(result.cluster_picked[label]))
        console.print(by_cluster)
