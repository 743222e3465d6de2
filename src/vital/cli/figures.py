"""``vital figures import``: corpora into figure records."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vital.cli.options import config_options
from vital.cli.progress import RichProgress
from vital.figures import ImportConfig

figures_app = typer.Typer(help="Import figure-caption corpora into figure records.", no_args_is_help=True)


@figures_app.command("import")
@config_options(ImportConfig)
def import_command(
    src: Path = typer.Argument(..., help="LLaVA-Med JSON/JSONL, BioMed-VITAL demonstrations, or a CSV."),
    out: Path = typer.Option(..., "--out", help="Figure records (JSONL) to write."),
    *,
    config: ImportConfig,
) -> None:
    """Import a corpus; figures whose image is missing or unreadable are listed in OUT.failures.jsonl."""
    from vital.figures import import_figures

    result = import_figures(src, out, config, progress=RichProgress(transient=True))
    console = Console()
    table = Table(title=f"{result.figures} figures -> {result.out}")
    table.add_column("domain")
    table.add_column("figures", justify="right")
    for domain, count in sorted(result.per_domain.items()):
        table.add_row(domain, str(count))
    console.print(table)
    console.print(
        f"images: {result.images_found} found, {result.images_missing} missing, {result.images_unreadable} unreadable"
    )
    if result.merged_duplicates:
        console.print(f"{result.merged_duplicates} repeated records merged into one figure each (domains joined)")
    if result.demonstrations or result.invalid_demonstrations:
        console.print(f"{result.demonstrations} figures carry conversations usable as demonstrations")
    if result.invalid_demonstrations:
        console.print(f"[yellow]{len(result.invalid_demonstrations)} conversations break the turn rules and will "
                      "not be shown to a model: " + "; ".join(result.invalid_demonstrations[:5]))
    if result.unknown_domains:
        names = ", ".join(f"{k} ({v})" for k, v in result.unknown_domains.most_common(5))
        console.print(f"[yellow]domains not recognised, labelled 'other': {names}")
    if result.failures:  # imported all the same: exit status 1 says that some figures are not usable yet
        typer.echo(f"{result.failed} figures have no readable image; they are listed in {result.failures} and "
                   "skipped by the stages that need images. Add the images and run the same command again.",
                   err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(figures_app, name="figures")
