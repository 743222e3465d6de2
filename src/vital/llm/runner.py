"""Map an async function over a stream of jobs, with progress, failures and a summary.

``map_jobs`` keeps ``workers`` coroutines pulling from one iterator, so a
100K-item job list is never materialised and the first request goes out as
soon as the first unfinished item is read.  Results are handed to
``on_result`` in completion order, one at a time on the event loop, which is
where callers append them to their output: nothing is written twice and a
kill loses at most the calls in flight (which the response cache then makes
free).  :class:`JobFailed` from the work function goes to ``on_failure``; any
other exception stops the run after cancelling the workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vital.llm.engine import Engine, EngineConfig, JobFailed, Usage
from vital.progress import Progress, or_silent

J = TypeVar("J")
R = TypeVar("R")


@dataclass
class RunStats:
    """What a run did: items done, failed and skipped, and, when it called a model, usage and cost."""

    title: str
    done: int = 0
    failed: int = 0
    skipped: int = 0  # finished by an earlier run
    elapsed_s: float = 0.0
    model: str | None = None
    usage: Usage | None = None
    cost: float | None = None

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def status(self) -> str:
        """The short line a progress bar shows: rate, failures, cost or tokens."""
        text = f"{self.rate:.1f}/s"
        if self.failed:
            text += f", {self.failed} failed"
        if self.cost is not None:
            text += f", ${self.cost:.4f}"
        elif self.usage is not None:
            text += f", {self.usage.prompt_tokens + self.usage.completion_tokens} tokens"
        return text

    def note_engine(self, engine: Engine | None) -> None:
        if engine is not None:
            self.model, self.usage, self.cost = engine.config.label, engine.usage, engine.cost


async def map_jobs(
    jobs: Iterable[J],
    work: Callable[[J], Awaitable[R]],
    *,
    on_result: Callable[[J, R], Any],
    on_failure: Callable[[J, JobFailed], Any],
    workers: int,
    total: int | None = None,
    skipped: int = 0,
    title: str = "working",
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> RunStats:
    """Run ``work`` over ``jobs`` with ``workers`` in parallel; see the module docstring."""
    stats = RunStats(title, skipped=skipped)
    iterator = iter(jobs)
    started = time.monotonic()
    with or_silent(progress).task(title, total=total) as task:

        def advance() -> None:
            stats.elapsed_s = time.monotonic() - started
            stats.note_engine(engine)
            task.advance(status=stats.status())

        async def worker() -> None:
            for job in iterator:  # the shared iterator hands each job to exactly one worker
                try:
                    result = await work(job)
                except JobFailed as failure:
                    stats.failed += 1
                    on_failure(job, failure)
                else:
                    stats.done += 1
                    on_result(job, result)
                advance()

        tasks = [asyncio.create_task(worker()) for _ in range(max(1, workers))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stats.elapsed_s = time.monotonic() - started
            stats.note_engine(engine)
    return stats


def run_jobs(
    jobs: Iterable[J],
    make_work: Callable[[Engine | None], Callable[[J], Awaitable[R]]],
    *,
    on_result: Callable[[J, R], Any],
    on_failure: Callable[[J, JobFailed], Any],
    title: str,
    total: int | None = None,
    skipped: int = 0,
    engine_config: EngineConfig | None = None,
    out: str | Path | None = None,
    cache: str | Path | None = None,
    progress: Progress | None = None,
) -> RunStats:
    """:func:`map_jobs` from synchronous code, with or without a model.

    With ``engine_config``, an :class:`Engine` logging beside ``out`` is opened
    for the run and ``make_work(engine)`` gives the work function; without one
    (an offline backend), ``make_work(None)`` runs on a single worker.  The
    returned stats carry the engine's usage and cost.
    """

    async def run() -> RunStats:
        if engine_config is None:
            return await map_jobs(jobs, make_work(None), on_result=on_result, on_failure=on_failure,
                                  workers=1, total=total, skipped=skipped, title=title, progress=progress)
        assert out is not None, "a model run keeps its call log beside its output"
        async with Engine.beside(out, engine_config, cache=cache) as engine:
            return await map_jobs(jobs, make_work(engine), on_result=on_result, on_failure=on_failure,
                                  workers=engine.workers, total=total, skipped=skipped, engine=engine,
                                  progress=progress, title=f"{title} ({engine_config.label})")

    return asyncio.run(run())


@contextmanager
def drop_if_empty(path: Path) -> Iterator[None]:
    """Remove ``path`` on the way out if nothing was written to it (no failures: no failures file)."""
    try:
        yield
    finally:
        if path.exists() and path.stat().st_size == 0:
            path.unlink()
