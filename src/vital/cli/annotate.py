"""``vital annotate``: serve the clinician annotation app, add users, export answers, agreement."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from pathlib import Path

import typer

DB_HELP = "Database URL (sqlite:///FILE or postgresql+psycopg://...) or a SQLite file path."
DEFAULT_DB = "sqlite:///annotations.db"


class ExportKind(StrEnum):
    preferences = "preferences"
    demos = "demos"


class PreferenceSource(StrEnum):
    all = "all"
    compare = "compare"
    demos = "demos"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Clinician annotation web app: choose demonstrations, compare candidates.", no_args_is_help=True
    )
    app.add_typer(group, name="annotate")

    @group.command()
    def serve(
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        figures: Path | None = typer.Option(None, "--figures", help="Figures JSONL to load (idempotent)."),
        candidates: Path | None = typer.Option(None, "--candidates", help="Candidates JSONL to load."),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port"),
        overlap: int = typer.Option(1, "--overlap", min=1, help="Annotators per item (for agreement)."),
    ) -> None:
        """Load figures and candidates (if given) and serve the annotation app."""
        import uvicorn

        from vital.annotate import AnnotationDB, create_app, list_users
        from vital.annotate.app import redact_tokens_in_server_logs
        from vital.annotate.loading import count_items
        from vital.errors import InputError
        from vital.jsonl import warn

        if (figures is None) != (candidates is None):
            raise InputError("give both --figures and --candidates, or neither", field="--candidates")
        database = AnnotationDB(db)
        if figures is not None:
            _print_load(database, figures, candidates)
        elif not any(count_items(database).values()):
            warn(f"{db} has nothing to annotate yet: pass --figures and --candidates to load them")
        config = uvicorn.Config(
            create_app(database, overlap=overlap), host=host, port=port, log_level="info", proxy_headers=True
        )
        redact_tokens_in_server_logs()  # uvicorn.Config has just (re)configured its loggers
        users = list_users(database)
        typer.echo(
            f"serving on http://{host}:{port} with overlap {overlap} ({len(users)} users); "
            f"add one with: vital annotate add-user NAME --db {db}"
        )
        uvicorn.Server(config).run()

    @group.command()
    def load(
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        figures: Path = typer.Option(..., "--figures", help="Figures JSONL."),
        candidates: Path = typer.Option(..., "--candidates", help="Candidates JSONL."),
    ) -> None:
        """Load figures and candidates into annotation items without serving (idempotent)."""
        from vital.annotate import AnnotationDB

        _print_load(AnnotationDB(db), figures, candidates)

    @group.command("add-user")
    def add_user_command(
        name: str = typer.Argument(..., help="The annotator's name (shown in exports and stats)."),
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        admin: bool = typer.Option(False, "--admin", help="May see progress and agreement."),
        host: str = typer.Option("127.0.0.1", "--host", help="Host the link points to."),
        port: int = typer.Option(8000, "--port", help="Port the link points to."),
        public_url: str | None = typer.Option(
            None, "--public-url", help="The URL clinicians open (overrides --host and --port in the link)."
        ),
        expires_hours: float = typer.Option(72.0, "--expires-hours", help="Hours the link stays valid."),
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
        typer.echo(login_url(public_url or f"http://{host}:{port}", token))

    @group.command()
    def release(
        name: str = typer.Argument(..., help="The annotator whose open tasks go back to the pool."),
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
    ) -> None:
        """Return an annotator's unanswered tasks to the pool (their answers stay)."""
        from vital.annotate import AnnotationDB
        from vital.annotate.tasks import release_open_tasks

        count = release_open_tasks(AnnotationDB(db, create=False), name)
        typer.echo(f"released {count} open tasks of {name!r}")

    @group.command()
    def export(
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        kind: ExportKind = typer.Option(..., "--kind", help="preferences (pairs) or demos (figure records)."),
        out: Path = typer.Option(..., "--out", help="Output JSONL."),
        source: PreferenceSource = typer.Option(
            PreferenceSource.all, "--from", help="Preferences from compare answers, demos answers, or both."
        ),
    ) -> None:
        """Write preference pairs (for `vital selector train`) or demonstrations (for `vital generate`)."""
        from vital.annotate import AnnotationDB, export_demonstrations, export_preferences

        database = AnnotationDB(db, create=False)
        if kind is ExportKind.preferences:
            summary = export_preferences(database, out, source=source.value)
            skipped = ", ".join(f"{count} {why}" for why, count in sorted(summary.skipped.items()))
            typer.echo(
                f"wrote {summary.records} preference pairs to {out}"
                + (f" (answers that rank nothing: {skipped})" if skipped else "")
            )
        else:
            summary = export_demonstrations(database, out)
            typer.echo(f"wrote {summary.records} demonstrations to {out}")

    @group.command()
    def stats(
        db: str = typer.Option(DEFAULT_DB, "--db", help=DB_HELP),
        scores: Path | None = typer.Option(None, "--scores", help="Judge scores JSONL: agreement with the judge."),
        plot: Path | None = typer.Option(None, "--plot", help="Also draw answers and kappas to this PNG."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Answers per annotator, Cohen's kappa per pair, Krippendorff's alpha, agreement with the judge."""
        from vital.annotate import AnnotationDB, agreement_report
        from vital.annotate.agreement import plot_agreement
        from vital.records import read_scores

        judge = read_scores(scores, source="model") if scores else None
        report = agreement_report(AnnotationDB(db, create=False), judge_scores=judge)
        if plot is not None:
            plot_agreement(report, plot)
        if as_json:
            typer.echo(json.dumps(report.to_json_dict()))
            return
        _print_report(report)


def _print_load(database: object, figures: Path, candidates: Path) -> None:
    from vital.annotate import load_corpus

    summary = load_corpus(database, figures, candidates, show_progress=True)
    new = summary.new_items
    typer.echo(
        f"loaded {summary.figures} figures and {summary.candidates} candidates: "
        f"{new['demos']} new demonstration items, {new['compare']} new comparison items "
        f"(now {summary.total_items['demos']} and {summary.total_items['compare']})"
    )
    if summary.figures_without_pairs:
        typer.echo(f"  {summary.figures_without_pairs} figures have fewer than 2 candidates and get no items")
    if summary.figures_truncated:
        typer.echo(
            f"  {summary.figures_truncated} figures have more than 4 candidates: demonstration items show their first 4"
        )


def _fmt(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _print_report(report: object) -> None:
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
