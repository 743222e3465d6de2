from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vital.figures import FORMATS, import_figures

figures_app = typer.Typer(help="Import figure-caption corpora into figure records.", no_args_is_help=True)


@figures_app.command("import")
def import_command(
    src: Path = typer.Argument(..., help="LLaVA-Med JSON/JSONL, BioMed-VITAL demonstrations, or a CSV."),
    out: Path = typer.Option(..., "--out", help="Figure records (JSONL) to write."),
    fmt: str = typer.Option("auto", "--format", help=f"One of: {', '.join(FORMATS)}."),
    images: Path | None = typer.Option(None, "--images", help="Folder the image names are relative to."),
    require_images: bool = typer.Option(False, "--require-images", help="Stop at the first missing image."),
) -> None:
    """Import a corpus; missing or unreadable images go to OUT.failures.jsonl."""
    summary = import_figures(src, out, fmt=fmt, images=images, require_images=require_images)
    console = Console()
    table = Table(title=f"{summary.figures} figures -> {summary.output}")
    table.add_column("domain")
    table.add_column("figures", justify="right")
    for domain, count in sorted(summary.per_domain.items()):
        table.add_row(domain, str(count))
    console.print(table)
    console.print(
        f"images: {summary.images_found} found, {summary.images_missing} missing, "
        f"{summary.images_unreadable} unreadable"
        + (f"  (listed in {summary.failures})" if summary.failures else "")
    )
    if summary.merged_duplicates:
        console.print(f"{summary.merged_duplicates} repeated records merged into one figure each (domains joined)")
    if summary.with_conversations:
        console.print(f"{summary.with_conversations} figures carry conversations (usable as demonstrations)")
    if summary.unknown_domains:
        names = ", ".join(f"{k} ({v})" for k, v in summary.unknown_domains.most_common(5))
        console.print(f"[yellow]domains not recognised, labelled 'other': {names}")


def register(app: typer.Typer) -> None:
    app.add_typer(figures_app, name="figures")
