from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        workspace: Path = typer.Option(Path("vital-demo"), "--workspace", help="Folder the demo builds."),
    ) -> None:
        """Run every stage offline on a small corpus of real medical images (no network, no GPU)."""
        from vital.demo import run_demo

        run_demo(workspace)
