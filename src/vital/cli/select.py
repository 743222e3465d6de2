"""``vital select`` (keep the best candidates, export LLaVA JSON) and ``vital candidates import``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _quotas(values: list[str]) -> dict[str, float]:
    from vital.errors import InputError
    from vital.records import DOMAINS

    quotas = {}
    for value in values:
        domain, _, amount = value.partition("=")
        if domain not in DOMAINS:
            raise InputError(
                f"unknown domain {domain!r} (expected one of {', '.join(DOMAINS)})", field="--domain-quota"
            )
        try:
            quotas[domain] = float(amount)
        except ValueError:
            raise InputError(f"expected DOMAIN=NUMBER, got {value!r}", field="--domain-quota") from None
    return quotas


def register(app: typer.Typer) -> None:
    @app.command("select")
    def select_command(
        candidates: Annotated[Path, typer.Argument(help="Candidates JSONL.")],
        scores: Annotated[Path, typer.Option("--scores", help="Scores JSONL (selector or judge scores).")],
        out: Annotated[Path, typer.Option("--out", help="LLaVA-format JSON to write.")],
        figures: Annotated[
            Path | None, typer.Option("--figures", help="Figures JSONL (for domains and images).")
        ] = None,
        source: Annotated[
            str,
            typer.Option("--source", help="Which scores: selector, model, or auto (selector if present)."),
        ] = "auto",
        top_fraction: Annotated[
            float | None, typer.Option("--top-fraction", help="Keep this share of the scored candidates.")
        ] = None,
        top_k: Annotated[int | None, typer.Option("--top-k", help="Keep this many.")] = None,
        per_figure: Annotated[int | None, typer.Option("--per-figure", help="At most N per figure.")] = None,
        min_score: Annotated[
            float | None, typer.Option("--min-score", help="Drop scores below this.")
        ] = None,
        domain_quota: Annotated[
            list[str],
            typer.Option(
                "--domain-quota", help="DOMAIN=N (count) or DOMAIN=0.3 (share of the budget); repeatable."
            ),
        ] = [],  # noqa: B006 (typer needs a list default)
        balance_domains: Annotated[
            bool, typer.Option("--balance-domains", help="Give every domain an equal share of the budget.")
        ] = False,
        near_duplicate: Annotated[
            float,
            typer.Option(
                "--near-duplicate",
                help="Word-trigram overlap at which a conversation repeats "
                "a kept one of its figure (1 = exact only).",
            ),
        ] = 0.6,
        merge: Annotated[
            list[Path],
            typer.Option("--merge", help="Another LLaVA-format dataset to add (deduplicated); repeatable."),
        ] = [],  # noqa: B006
        merge_images: Annotated[
            Path | None,
            typer.Option(
                "--merge-images",
                help="The folder the --merge datasets' image names are relative to; their paths are then "
                "rewritten like the selected ones (without it they are kept as written).",
            ),
        ] = None,
        image_root: Annotated[
            Path | None, typer.Option("--image-root", help="Write image paths relative to this folder.")
        ] = None,
        keep_missing_images: Annotated[
            bool, typer.Option("--keep-missing-images", help="Export candidates whose image file is missing.")
        ] = False,
    ) -> None:
        """Keep the top-scored candidates and write them as LLaVA instruction data, with a report."""
        from vital.errors import InputError
        from vital.jsonl import failures_path
        from vital.records import figure_index, read_candidates, read_scores
        from vital.selection import SelectionPolicy, export_llava, select_candidates, write_report

        if source not in ("auto", "selector", "model"):
            raise InputError("expected auto, selector or model", field="--source")
        figure_index = figure_index(figures) if figures else None
        candidate_list = read_candidates(candidates, figure_index)
        chosen = source
        values = read_scores(scores, source=None if source == "auto" else source)
        if source == "auto":
            selector_scores = read_scores(scores, source="selector")
            chosen = "selector" if selector_scores else "model"
            values = selector_scores or values
        if not values:
            raise InputError(f"no {chosen} scores in this file", path=scores)
        policy = SelectionPolicy(
            top_fraction=top_fraction,
            top_k=top_k,
            per_figure=per_figure,
            min_score=min_score,
            domain_quotas=_quotas(domain_quota),
            balance_domains=balance_domains,
            near_duplicate=near_duplicate,
            require_image=not keep_missing_images,
        )
        result = select_candidates(candidate_list, values, policy, figure_index)
        export_llava(result, out, image_root=image_root, merge=merge, merge_images=merge_images)
        report = write_report(result, out)
        kept = len(result.kept)
        typer.echo(f"kept {kept} of {len(result.decisions)} candidates by {chosen} score; wrote {out}")
        if result.unexportable:
            typer.echo(
                f"{len(result.unexportable)} candidates cannot be exported (missing image or a conversation "
                f"LLaVA cannot use): see {failures_path(out)}"
            )
        if merge:
            typer.echo(f"merged {len(result.merged)} records ({result.merge_duplicates} duplicates removed)")
        typer.echo(f"report: {report}")

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
        from vital.selection import import_llava

        result = import_llava(sources, out, images=images, figures_out=figures_out)
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
