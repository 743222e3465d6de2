"""What the CLI draws while a stage runs and after it: rich progress bars and summary tables.

The library reports progress through :class:`vital.progress.Progress`;
:class:`RichProgress` is the CLI's implementation (bars on stderr, so that
``--json`` output on stdout stays clean).  :func:`summary_table` renders the
:class:`vital.llm.RunStats` a model stage returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

stderr = Console(stderr=True)


def quiet_libraries() -> None:
    """Model libraries' own progress bars, advice and deprecation warnings would interleave with our bars.

    Set through the environment (read when those libraries load), so nothing heavy is imported here.
    """
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers(\.|$)")


class _RichTask:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task

    def advance(self, steps: int = 1, *, status: str | None = None) -> None:
        fields: dict[str, Any] = {} if status is None else {"status": status}
        self._progress.update(self._task, advance=steps, **fields)

    def update(self, *, title: str | None = None, total: int | None = None, status: str | None = None) -> None:
        fields: dict[str, Any] = {}
        if title is not None:
            fields["description"] = title
        if total is not None:
            fields["total"] = total
        if status is not None:
            fields["status"] = status
        self._progress.update(self._task, **fields)


class RichProgress:
    """A :class:`vital.progress.Progress` drawing rich bars on stderr, one per task.

    Bars share one live display, open while any task runs (or for as long
    as :meth:`active` is held, as ``vital run`` holds it across stages).
    ``transient`` bars disappear when their task ends; others stay as a record.
    Print through :meth:`print` while bars are shown, so lines go above them.
    """

    def __init__(self, console: Console | None = None, *, transient: bool = False) -> None:
        self.console = console or stderr
        self.transient = transient
        self._board: Progress | None = None
        self._depth = 0

    @contextmanager
    def active(self) -> Iterator[Progress]:
        if self._board is None:
            self._board = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=self.transient,
            )
            self._board.start()
        self._depth += 1
        board = self._board
        try:
            yield board
        except BaseException:
            board.live.transient = True  # an error is then the only line left on stderr
            raise
        finally:
            self._depth -= 1
            if self._depth == 0:
                if board.live.transient:
                    board.live.stop()  # Progress.stop would add an empty line to a stderr that is not a terminal
                else:
                    board.stop()
                self._board = None

    @contextmanager
    def task(self, title: str, total: int | None = None) -> Iterator[_RichTask]:
        with self.active() as board:
            task = board.add_task(title, total=total, status="")
            try:
                yield _RichTask(board, task)
            finally:
                if self.transient:
                    board.remove_task(task)

    def print(self, *objects: Any, **options: Any) -> None:
        (self._board.console if self._board is not None else self.console).print(*objects, **options)


def summary_table(stats: Any, extra: dict[str, Any] | None = None) -> Table:
    """The final table of a stage that ran items through a model or an offline backend (a ``RunStats``)."""
    table = Table(title=f"{stats.title}: summary", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows: dict[str, Any] = {
        "done now": stats.done,
        "already done (resumed)": stats.skipped,
        "failed (see failures file)": stats.failed,
        "elapsed": f"{stats.elapsed_s:.1f} s",
        "rate": f"{stats.rate:.1f} items/s",
    }
    usage = stats.usage
    if usage is not None:
        rows.update({
            "model": stats.model,
            "HTTP requests": usage.requests,
            "retries": usage.retries,
            "cache hits (free)": usage.cached,
            "prompt tokens": usage.prompt_tokens,
            "completion tokens": usage.completion_tokens,
            "estimated cost": f"${stats.cost:.4f}" if stats.cost is not None else "no price for this model (--prices)",
        })
    rows.update(extra or {})
    for name, value in rows.items():
        table.add_row(name, str(value))
    return table
