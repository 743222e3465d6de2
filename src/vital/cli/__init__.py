"""The ``vital`` command: a thin typer app over the Python API.

Each stage registers its commands from its own module in this package; the
commands only parse flags, call the API and print.  Unusable input
(:class:`vital.errors.InputError`) becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import sys

import typer

from vital import __version__
from vital.cli import annotate, evaluate, figures, generate, judge, run, sample, select, selector, tune
from vital.errors import InputError

app = typer.Typer(
    name="vital",
    help="Clinician-aligned biomedical visual instruction-tuning data (BioMed-VITAL).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vital {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Turn figure-caption corpora into clinician-aligned instruction data, and evaluate it."""


for module in (run, figures, sample, generate, judge, annotate, selector, select, tune, evaluate):
    module.register(app)


class _WarningLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _show_warnings() -> None:
    """The library reports through the ``vital`` logger; the CLI shows warnings as ``warning: ...`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_WarningLine())
    logger = logging.getLogger("vital")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def main() -> None:
    _show_warnings()
    try:
        app()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished records are kept; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
