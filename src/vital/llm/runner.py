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

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vital.llm.engine import Engine, EngineConfig, JobFailed

J = TypeVar("J")
R = TypeVar("R")


@dataclass
class RunStats:
    title: str
    done: int = 0
    failed: int = 0
    skipped: int = 0  # finished by an earlier run
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f}/s"),
        TextColumn("[red]{task.fields[failed]} failed"),
        TextColumn("{task.fields[cost]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _cost_text(engine: Engine | None) -> str:
    if engine is None:
        return ""
    cost = engine.cost
    if cost is not None:
        return f"${cost:.4f}"
    return f"{engine.usage.prompt_tokens + engine.usage.completion_tokens} tokens"


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
    console: Console | None = None,
) -> RunStats:
    """Run ``work`` over ``jobs`` with ``workers`` in parallel; see the module docstring."""
    stats = RunStats(title, skipped=skipped)
    iterator = iter(jobs)
    started = time.monotonic()
    console = console or Console(stderr=True)
    with _progress(console) as progress:
        task = progress.add_task(title, total=total, rate=0.0, failed=0, cost=_cost_text(engine))

        def advance() -> None:
            stats.elapsed_s = time.monotonic() - started
            progress.update(task, advance=1, rate=stats.rate, failed=stats.failed, cost=_cost_text(engine))

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
    console: Console | None = None,
) -> tuple[RunStats, Engine | None]:
    """:func:`map_jobs` from synchronous code, with or without a model.

    With ``engine_config``, an :class:`Engine` logging beside ``out`` is opened
    for the run and ``make_work(engine)`` gives the work function; without one
    (an offline backend), ``make_work(None)`` runs on a single worker.
    """

    async def run() -> tuple[RunStats, Engine | None]:
        if engine_config is None:
            stats = await map_jobs(jobs, make_work(None), on_result=on_result, on_failure=on_failure,
                                   workers=1, total=total, skipped=skipped, title=title, console=console)
            return stats, None
        assert out is not None, "a model run keeps its call log beside its output"
        async with Engine.beside(out, engine_config, cache=cache) as engine:
            stats = await map_jobs(jobs, make_work(engine), on_result=on_result, on_failure=on_failure,
                                   workers=engine.workers, total=total, skipped=skipped, engine=engine,
                                   console=console,
                                   title=f"{title} ({engine_config.label})")
        return stats, engine

    return asyncio.run(run())


def summary_table(stats: RunStats, engine: Engine | None = None,
                  extra: dict[str, Any] | None = None) -> Table:
    """The final table a stage prints: items, failures, rate, and (with an engine) calls, tokens and cost."""
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
    if engine is not None:
        usage = engine.usage
        cost = engine.cost
        rows.update({
            "model": engine.config.label,
            "HTTP requests": usage.requests,
            "retries": usage.retries,
            "cache hits (free)": usage.cached,
            "prompt tokens": usage.prompt_tokens,
            "completion tokens": usage.completion_tokens,
            "estimated cost": f"${cost:.4f}" if cost is not None else "no price for this model (--prices)",
        })
    rows.update(extra or {})
    for name, value in rows.items():
        table.add_row(name, str(value))
    return table


@contextmanager
def drop_if_empty(path: Path) -> Iterator[None]:
    """Remove ``path`` on the way out if nothing was written to it (no failures: no failures file)."""
    try:
        yield
    finally:
        if path.exists() and path.stat().st_size == 0:
            path.unlink()
