"""``vital select`` (keep the best candidates, export LLaVA JSON) and ``vital candidates import``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vital.cli.options import config_options, exit_if_failed
from vital.cli.progress import RichProgress
from vital.selection import SelectConfig


def register(app: typer.Typer) -> None:
    @app.command("select")
    @config_options(SelectConfig)
    def select_command(
        candidates: Annotated[Path, typer.Argument(help="Candidates JSONL.")],
        scores: Annotated[Path, typer.Option("--scores", help="Scores JSONL (selector or judge scores).")],
        out: Annotated[Path, typer.Option("--out", help="LLaVA-format JSON to write.")],
        figures: Annotated[
            Path | None, typer.Option("--figures", help="Figures JSONL (for domains and images).")
        ] = None,
        *,
        config: SelectConfig,
    ) -> None:
        """Keep the top-scored candidates and write them as LLaVA instruction data, with a report."""
        from vital.selection import select

        result = select(candidates, scores, out, config, figures=figures, progress=RichProgress(transient=True))
        typer.echo(f"kept {result.kept} of {result.considered} candidates by {result.source} score; wrote {out}")
        if result.failed:
            typer.echo(f"{result.failed} candidates cannot be exported (missing image or a conversation "
                       f"LLaVA cannot use): see {result.failures}")
        if config.merge:
            typer.echo(f"merged {result.merged} records ({result.merge_duplicates} duplicates removed)")
        typer.echo(f"report: {result.report}")
        if result.failures is not None:
            exit_if_failed(result.failed, result.failures, "candidates")

    group = typer.Typer(help="Candidate records from other sources.", no_args_is_help=True)
    app.add_typer(group, name="candidates")

    @group.command("import")
    def import_command(
        sources: Annotated[
            list[Path], typer.Argument(help="LLaVA-format JSON / JSONL files (LLaVA-Med, BioMed-VITAL).")
        ],
        out: Annotated[Path, typer.Option("--out", help="Candidates JSONL to write.")],
        images: Annotated[
            Path | None, typer.Option("--images", help="Folder the records' image paths are relative to.")
        ] = None,
        figures_out: Annotated[
            Path | None,
            typer.Option(
                "--figures-out", help="Also write figures for records that carry a caption (fig_caption)."
            ),
        ] = None,
    ) -> None:
        """Import LLaVA-format instruction data as candidates, to re-score and re-select it."""
        from vital.selection import import_candidates

        result = import_candidates(sources, out, images=images, figures_out=figures_out)
        typer.echo(
            f"wrote {result.candidates} candidates to {out} "
            f"({result.images_found} with an image file, {result.images_missing} without)"
        )
        if result.renamed_ids:
            typer.echo(f"{result.renamed_ids} repeated ids were made unique with the source name and line")
        if figures_out is not None:
            typer.echo(
                f"wrote {result.figures} figures to {figures_out}"
                if result.figures
                else "no record carries a caption: no figures written"
            )
