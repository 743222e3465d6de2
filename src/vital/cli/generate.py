import typer


def register(app: typer.Typer) -> None:
    """Commands of this stage are added here."""
