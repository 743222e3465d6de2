from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vital.sample import sample_figures


def register(app: typer.Typer) -> None:
    @app.command()
    def sample(
        figures: Path = typer.Argument(..., help="Figure records (JSONL)."),
        n: int = typer.Option(..., "--n", help="How many figures to pick."),
        out: Path = typer.Option(..., "--out", help="Sampled figure records (JSONL), each with its cluster."),
        clusters: int = typer.Option(60, "--clusters", help="k for k-means (the paper uses about 60)."),
        seed: int = typer.Option(0, "--seed"),
        text_encoder: str | None = typer.Option(
            None,
            "--text-encoder",
            help="minilm (the packaged all-MiniLM-L6-v2, default) or a sentence-transformers name or local folder.",
        ),
        image_encoder: str | None = typer.Option(
            None,
            "--image-encoder",
            help="Also cluster on images: open_clip:local-dir:PATH (e.g. BiomedCLIP), open_clip:hf-hub:NAME, "
            "or descriptor (model-free pixel statistics).",
        ),
        cache_dir: Path | None = typer.Option(
            None, "--cache-dir", help="Embedding cache (default: $VITAL_CACHE_DIR, else ~/.cache/vital)."
        ),
    ) -> None:
        """Pick a diverse sample for clinicians: k-means over embeddings, round-robin across clusters and domains."""
        summary = sample_figures(
            figures, out, n=n, clusters=clusters, seed=seed, text_encoder=text_encoder, cache_dir=cache_dir,
            image_encoder=image_encoder,
        )
        console = Console()
        by_domain = Table(title=f"{summary.picked} of {summary.n_figures} figures -> {summary.output}")
        by_domain.add_column("domain")
        by_domain.add_column("figures", justify="right")
        by_domain.add_column("picked", justify="right")
        for domain, size in sorted(summary.domain_sizes.items()):
            by_domain.add_row(domain, str(size), str(summary.domain_picked[domain]))
        console.print(by_domain)
        by_cluster = Table(title=f"{summary.n_clusters} clusters")
        by_cluster.add_column("cluster", justify="right")
        by_cluster.add_column("size", justify="right")
        by_cluster.add_column("picked", justify="right")
        for label, size in sorted(summary.cluster_sizes.items()):
            by_cluster.add_row(str(label), str(size), str(summary.cluster_picked[label]))
        console.print(by_cluster)
