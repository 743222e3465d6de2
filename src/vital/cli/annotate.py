"""``vital annotate``: serve the clinician annotation app, add users, export answers, agreement."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from vital.annotate.config import LOGIN_TTL_HOURS, ExportConfig, ServeConfig
from vital.cli.options import config_options
from vital.cli.progress import RichProgress

DB_HELP = "Database URL (sqlite:///FILE or postgresql+psycopg://...) or a SQLite file path."
DEFAULT_DB = "sqlite:///annotations.db"
IMAGES_HELP = "Another folder images may be shown from (repeatable); the figures file's folder always is."


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Clinician annotation web app: choose demonstrations, compare candidates.", no_args_is_help=True
    )
    app.add_typer(group, name="annotate")

    @group.command()
    @config_options(ServeConfig)
    def serve(
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        figures: Path | None = typer.Option(None, "--figures", help="Figures JSONL to load (idempotent)."),
        candidates: Path | None = typer.Option(None, "--candidates", help="Candidates JSONL to load."),
        images: list[Path] = typer.Option([], "--images", help=IMAGES_HELP),
        *,
        config: ServeConfig,
    ) -> None:
        """Load figures and candidates (if given) and serve the annotation app."""
        from vital.annotate import AnnotationDB, list_users, load_corpus
        from vital.annotate import serve as run_server
        from vital.errors import InputError

        if (figures is None) != (candidates is None):
            raise InputError("give both --figures and --candidates, or neither", field="--candidates")
        if images and figures is None:
            raise InputError("only applies when loading: give --figures and --candidates too", field="--images")
        if figures is not None:  # loaded (and checked) before the database is held open for serving
            progress = RichProgress(transient=True)
            _print_load(load_corpus(db, figures, candidates, images=images, progress=progress))
        database = AnnotationDB(db)
        users = list_users(database)
        typer.echo(
            f"serving on http://{config.host}:{config.port} (login links: {config.url}) with overlap {config.overlap} "
            f"({len(users)} users); add one with: vital annotate add-user NAME --db {db}"
        )
        run_server(database, config)

    @group.command()
    def load(
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        figures: Path = typer.Option(..., "--figures", help="Figures JSONL."),
        candidates: Path = typer.Option(..., "--candidates", help="Candidates JSONL."),
        images: list[Path] = typer.Option([], "--images", help=IMAGES_HELP),
    ) -> None:
        """Load figures and candidates into annotation items without serving (idempotent)."""
        from vital.annotate import load_corpus

        _print_load(load_corpus(db, figures, candidates, images=images, progress=RichProgress(transient=True)))

    @group.command("add-user")
    @config_options(ServeConfig, "server", exclude=("overlap", "max_body", "secure_cookies"))
    def add_user_command(
        name: str = typer.Argument(..., help="The annotator's name (shown in exports and stats)."),
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        admin: bool = typer.Option(False, "--admin", help="May see progress and agreement."),
        expires_hours: float = typer.Option(LOGIN_TTL_HOURS, "--expires-hours", help="Hours the link stays valid."),
        *,
        server: ServeConfig,
    ) -> None:
        """Create an annotator (or reuse one) and print a one-time login link as the last line."""
        from vital.annotate import AnnotationDB, add_user, issue_login_token, login_url

        database = AnnotationDB(db)
        user, created = add_user(database, name, admin=admin)
        token = issue_login_token(database, user, ttl_hours=expires_hours)
        role = "admin" if user.is_admin else "annotator"
        typer.echo(
            f"{'created' if created else 'existing'} {role} {user.name!r}; "
            f"this link works once, for {expires_hours:g} hours:",
            err=True,
        )
        typer.echo(login_url(server.url, token))

    @group.command()
    def release(
        name: str = typer.Argument(..., help="The annotator whose open tasks go back to the pool."),
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
    ) -> None:
        """Return an annotator's unanswered tasks to the pool (their answers stay)."""
        from vital.annotate import AnnotationDB, release_open_tasks

        count = release_open_tasks(AnnotationDB(db, create=False), name)
        typer.echo(f"released {count} open tasks of {name!r}")

    @group.command()
    @config_options(ExportConfig)
    def export(
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        out: Path = typer.Option(..., "--out", help="Output JSONL."),
        *,
        config: ExportConfig,
    ) -> None:
        """Write preference pairs (for `vital selector train`) or demonstrations (for `vital generate`)."""
        from vital.annotate import export_annotations

        result = export_annotations(db, out, config)
        if config.kind == "demos":
            typer.echo(f"wrote {result.records} demonstrations to {result.out}")
            return
        skipped = ", ".join(f"{count} {why}" for why, count in sorted(result.skipped.items()))
        typer.echo(
            f"wrote {result.records} preference pairs to {result.out}"
            + (f" (answers that rank nothing: {skipped})" if skipped else "")
        )

    @group.command()
    def stats(
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        scores: Path | None = typer.Option(None, "--scores", help="Judge scores JSONL: agreement with the judge."),
        plot: Path | None = typer.Option(None, "--plot", help="Also draw answers and kappas to this PNG."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Answers per annotator, Cohen's kappa per pair, Krippendorff's alpha, agreement with the judge."""
        from vital.annotate import agreement_report
        from vital.annotate.agreement import plot_agreement

        report = agreement_report(db, judge_scores=scores)
        if plot is not None:
            plot_agreement(report, plot)
        if as_json:
            typer.echo(json.dumps(report.to_json_dict()))
            return
        _print_report(report)


def _print_load(result: Any) -> None:
    new = result.new_items
    typer.echo(
        f"loaded {result.figures} figures and {result.candidates} candidates: "
        f"{new['demos']} new demonstration items, {new['compare']} new comparison items "
        f"(now {result.total_items['demos']} and {result.total_items['compare']})"
    )
    if result.figures_without_pairs:
        typer.echo(f"  {result.figures_without_pairs} figures have fewer than 2 candidates and get no items")
    if result.figures_truncated:
        typer.echo(
            f"  {result.figures_truncated} figures have more than 4 candidates: demonstration items show their first 4"
        )


def _fmt(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _print_report(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    answers = Table(title="Answers per annotator")
    for column in ("annotator", "compare", "demos"):
        answers.add_column(column, justify="left" if column == "annotator" else "right")
    for name, counts in sorted(report.answers.items()):
        answers.add_row(name, str(counts["compare"]), str(counts["demos"]))
    console.print(answers)

    overall = Table(title="Agreement per task kind (labels: preferred candidate / tie / both_bad; best / none)")
    for column in ("kind", "items with 2+ answers", "Krippendorff's alpha", "answers by label"):
        overall.add_column(column)
    for row in report.overall:
        labels = ", ".join(f"{label} {count}" for label, count in sorted(report.labels[row.kind].items()))
        overall.add_row(row.kind, str(row.items_with_overlap), _fmt(row.alpha), labels or "–")
    console.print(overall)

    pairs = Table(title="Cohen's kappa per annotator pair")
    for column in ("kind", "annotators", "shared items", "same answer", "kappa"):
        pairs.add_column(column)
    for pair in report.pairs:
        pairs.add_row(
            pair.kind,
            f"{pair.first} · {pair.second}",
            str(pair.items),
            f"{pair.observed:.0%}",
            _fmt(pair.kappa),
        )
    console.print(pairs if report.pairs else "no item has answers from two annotators yet")

    if report.judge:
        judge = Table(title="Agreement with the model judge (decisive answers with both candidates scored)")
        for column in ("kind", "annotator", "compared", "judge agrees", "rate", "judge scored equal"):
            judge.add_column(column)
        for row in report.judge:
            judge.add_row(
                row.kind,
                row.annotator,
                str(row.compared),
                str(row.agree),
                _fmt(row.rate),
                str(row.judge_ties),
            )
        console.print(judge)
