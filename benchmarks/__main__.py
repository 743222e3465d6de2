"""Run every ``bench_*.py`` module here (or those named on the command line), each printing its own table."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from rich.console import Console


def main(names: list[str]) -> None:
    here = Path(__file__).parent
    available = sorted(path.stem.removeprefix("bench_") for path in here.glob("bench_*.py"))
    chosen = names or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
    console = Console()
    for name in chosen:
        console.rule(f"[bold]benchmark: {name}")
        importlib.import_module(f"benchmarks.bench_{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
