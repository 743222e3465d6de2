"""``vital init``, ``vital run`` and ``vital demo``: a whole round from one config."""

from __future__ import annotations

from pathlib import Path

import typer

from vital.cli.progress import RichProgress, quiet_libraries


def _style(rest: str) -> str:
    if rest.startswith(("off", "not run", "skipped")):
        return "dim"
    if rest.startswith(("waiting", "  ")):
        return "yellow"
    return "bold" if rest == "running" else ""


def run_round(config: Path, *, only: list[str], from_stage: str | None, force: list[str], no_wait: bool) -> None:
    from rich.text import Text

    from vital.pipeline import EXIT_WAITING, run

    quiet_libraries()
    progress = RichProgress(transient=True)

    def say(line: str) -> None:
        stage, _, rest = line.partition(": ")
        progress.print(Text.assemble((f"{stage}: ", _style(rest) or "bold"), (rest, _style(rest))), soft_wrap=True)

    with progress.active():
        result = run(config, only=only, from_stage=from_stage, force=force, no_wait=no_wait, progress=progress,
                     say=say)
    if result.report is not None:
        typer.echo(f"report: {result.report}")
    if result.waiting:
        typer.echo(f"waiting for clinicians ({', '.join(result.waiting)}); the same command goes on once they "
                   f"have annotated (exit status {EXIT_WAITING})", err=True)
    elif result.failed:
        typer.echo(f"{result.failed} items failed; each stage lists them in its failures file (see run.json). "
                   "The same command retries them.", err=True)
    raise typer.Exit(result.exit_status)


def register(app: typer.Typer) -> None:
    @app.command()
    def init(
        directory: Path = typer.Argument(..., help="Folder for the round (created); vital.toml is written there."),
        demo: bool = typer.Option(False, "--demo", help="The offline demo round: a corpus of real medical images "
                                  "from PyPI packages, offline backends, a tiny tune base built here."),
    ) -> None:
        """Write DIRECTORY/vital.toml: a commented starter for your corpus, or the demo round."""
        from vital.pipeline import init as write_config

        quiet_libraries()
        config = write_config(directory, demo=demo)
        typer.echo(f"wrote {config}" + ("" if demo else "; edit it, then: vital run " + str(config)))

    @app.command()
    def run(
        config: Path = typer.Argument(..., help="The round's vital.toml (or its folder)."),
        only: list[str] = typer.Option([], "--only", help="Run only this stage (repeatable)."),
        from_stage: str | None = typer.Option(None, "--from", help="Re-run this stage and every later one."),
        force: list[str] = typer.Option([], "--force", help="Re-run this stage even if unchanged (repeatable)."),
        no_wait: bool = typer.Option(False, "--no-wait", help="Do not wait for clinicians: the judge alone."),
    ) -> None:
        """Run a round: each stage in order, skipping what has not changed since its last complete run.

        Exit status: 0 done, 1 some items failed (listed in failures files), 2 bad input, 3 waiting for
        clinicians (the same command goes on once they have annotated).
        """
        run_round(config, only=only, from_stage=from_stage, force=force, no_wait=no_wait)

    @app.command()
    def demo(
        workspace: Path = typer.Option(Path("vital-demo"), "--workspace", help="Folder of the demo round."),
    ) -> None:
        """The demo round, offline (no network, no API key, no GPU): vital init --demo, then vital run."""
        from vital.pipeline import init as write_config

        config = workspace / "vital.toml"
        if not config.exists():
            quiet_libraries()
            write_config(workspace, demo=True)
        run_round(config, only=[], from_stage=None, force=[], no_wait=False)
