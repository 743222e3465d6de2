"""Progress reporting without printing: stages report to a handler the caller chooses.

Library code never prints.  A stage that runs long takes ``progress:
Progress | None`` and reports through it::

    with progress.task("generating", total=len(jobs)) as task:
        for job in jobs:
            ...
            task.advance(status="3 failed, $0.0123")

The default, :data:`SILENT`, does nothing.  The CLI passes
:class:`vital.cli.progress.RichProgress`, which draws rich progress bars on
stderr; a notebook or a service can pass anything with the same two methods
(a logger, a queue for a web page).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Task(Protocol):
    def advance(self, steps: int = 1, *, status: str | None = None) -> None:
        """``steps`` more units are done; ``status`` is a short line shown beside the bar."""

    def update(self, *, title: str | None = None, total: int | None = None, status: str | None = None) -> None:
        """Change what the bar says (a new epoch, a known total)."""


class Progress(Protocol):
    def task(self, title: str, total: int | None = None) -> AbstractContextManager[Task]:
        """A unit of long work, as a context manager yielding its :class:`Task`."""


class _SilentTask:
    def advance(self, steps: int = 1, *, status: str | None = None) -> None:
        pass

    def update(self, *, title: str | None = None, total: int | None = None, status: str | None = None) -> None:
        pass


class Silent:
    """A :class:`Progress` that reports nothing (the library default)."""

    @contextmanager
    def task(self, title: str, total: int | None = None) -> Iterator[Task]:
        yield _SilentTask()


SILENT = Silent()


def or_silent(progress: Progress | None) -> Progress:
    return SILENT if progress is None else progress
