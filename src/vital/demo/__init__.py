"""``vital demo``: the whole pipeline, offline, on a corpus built from images that ship in PyPI packages.

Each stage adds one step function ``(workspace: Workspace) -> None`` to
:data:`STEPS`; steps run in order and print what they wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console


@dataclass
class Workspace:
    """Paths of the demo's files; every step reads and writes inside ``root``."""

    root: Path
    console: Console

    @property
    def figures(self) -> Path:
        return self.root / "figures.jsonl"

    @property
    def demos(self) -> Path:
        return self.root / "demos.jsonl"

    @property
    def sample(self) -> Path:
        return self.root / "sample.jsonl"

    @property
    def candidates(self) -> Path:
        return self.root / "candidates.jsonl"

    @property
    def scores(self) -> Path:
        return self.root / "scores.jsonl"

    def wrote(self, path: Path, what: str) -> None:
        self.console.print(f"  wrote [bold]{path}[/bold]: {what}")


Step = Callable[[Workspace], None]
STEPS: list[tuple[str, Step]] = []


def step(title: str) -> Callable[[Step], Step]:
    def register(func: Step) -> Step:
        STEPS.append((title, func))
        return func

    return register


def run_demo(root: str | Path = "vital-demo", console: Console | None = None) -> Workspace:
    from vital.demo import steps  # noqa: F401  (registers the steps in order)

    workspace = Workspace(Path(root).resolve(), console or Console())
    workspace.root.mkdir(parents=True, exist_ok=True)
    for number, (title, func) in enumerate(STEPS, start=1):
        workspace.console.rule(f"[bold]{number}. {title}")
        func(workspace)
    workspace.console.rule("[bold green]demo finished")
    workspace.console.print(f"Everything is in {workspace.root}")
    return workspace
