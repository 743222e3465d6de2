"""One resumable loop for every evaluation step that produces a record per question.

Answering, chat reviews and pairwise verdicts all do the same thing: skip the
questions already in the output, do the rest (through a model server via
:mod:`vital.llm`, or with a local model in batches on an executor), append each
record as soon as it exists, and put every question that could not be done in
``<out>.failures.jsonl`` with the reason.

The output's lock is taken before anything else is touched: a run refused
because another run is writing the same output leaves that run's output and
failures file as they were.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vital.executor import WorkerFactory, open_executor
from vital.jsonl import FailureLog, JsonlWriter, finished_ids, refuse_input_as_output
from vital.progress import Progress

Work = Callable[[Any], Awaitable[dict[str, Any]]]


@dataclass
class RunResult:
    """What a resumable evaluation run did: its output, the :class:`vital.llm.RunStats`, and failures."""

    out: Path
    stats: Any
    failures: Path | None = None
    """``<out>.failures.jsonl`` when some questions failed, else ``None``."""

    @property
    def done(self) -> int:
        return self.stats.done

    @property
    def failed(self) -> int:
        return self.stats.failed

    @property
    def skipped(self) -> int:
        return self.stats.skipped


@contextmanager
def _resuming(
    items: Sequence[Any], out: Path, stage: str, inputs: Sequence[str | Path | None]
) -> Iterator[tuple[JsonlWriter, list[Any], FailureLog]]:
    """The output (locked), the items not in it yet, and the failures file (removed again if left empty)."""
    from vital.llm import drop_if_empty

    refuse_input_as_output(out, *inputs)
    with JsonlWriter(out) as writer:  # the lock first: a refused run must touch nothing
        done = finished_ids(out, "question_id")
        todo = [item for item in items if item.id not in done]
        with FailureLog(out, stage) as failures, drop_if_empty(failures.path):
            yield writer, todo, failures


def run_resumable(
    items: Sequence[Any],
    out: str | Path,
    *,
    make_work: Callable[[Any], Work],
    stage: str,
    title: str,
    engine_config: Any = None,
    cache: str | Path | None = None,
    progress: Progress | None = None,
    inputs: Sequence[str | Path | None] = (),
) -> RunResult:
    """Write ``make_work(engine)(item)`` for each unfinished item to ``out``.

    With ``engine_config`` (a :class:`vital.llm.EngineConfig`) the work gets an
    :class:`vital.llm.Engine` logging beside ``out``; without, it gets ``None``
    and runs one item at a time.  Items have an ``id``; records are keyed by
    ``question_id``.  ``inputs`` are the files the run reads; ``out`` must be none of them.
    """
    from vital.llm import run_jobs

    out = Path(out)
    with _resuming(items, out, stage, inputs) as (writer, todo, failures):
        stats = run_jobs(
            todo,
            make_work,
            on_result=lambda item, record: writer.write(record),
            on_failure=lambda item, exc: failures.record(item.id, exc.reason, **exc.details),
            title=title,
            total=len(todo),
            skipped=len(items) - len(todo),
            engine_config=engine_config,
            out=out,
            cache=cache,
            progress=progress,
        )
    return RunResult(out, stats, failures.path if stats.failed else None)


def run_batches(
    items: Sequence[Any],
    out: str | Path,
    *,
    prepare: Callable[[Any], Any],
    make_worker: WorkerFactory,
    finish: Callable[[Any, Any], dict[str, Any]],
    executor: str,
    batch_size: int,
    stage: str,
    title: str,
    progress: Progress | None = None,
    inputs: Sequence[str | Path | None] = (),
    cpu_actors: int | None = None,
) -> RunResult:
    """Write ``finish(item, result)`` for each unfinished item to ``out``, the results computed in batches on
    ``executor`` (``local`` or ``ray``, :func:`vital.executor.open_executor`; started only if there is work;
    ``cpu_actors`` caps the Ray actors of a cluster without GPUs).

    ``prepare(item)`` is what a worker gets for the item (a dict, say); raising :class:`vital.llm.JobFailed`
    there fails the item here, before anything is sent.  ``make_worker`` builds, where it runs, the batch
    function (prepared items -> one result each); ``finish`` turns a result into the record, or raises
    ``JobFailed`` when the result says the item failed.  Records are written in the items' order, each as
    soon as every earlier item is done, so every executor writes the same file; a run that stops (an error,
    Ctrl-C) still writes every record it finished.  Resuming and the failures file are as in
    :func:`run_resumable`.
    """
    from vital.llm import JobFailed, RunStats

    out = Path(out)
    started = time.monotonic()
    with _resuming(items, out, stage, inputs) as (writer, todo, failures):
        stats = RunStats(title, skipped=len(items) - len(todo))

        def fail(item: Any, failure: JobFailed) -> None:
            stats.failed += 1
            failures.record(item.id, failure.reason, **failure.details)

        ready, prepared = [], []
        for item in todo:
            try:
                prepared.append(prepare(item))
            except JobFailed as failure:
                fail(item, failure)
            else:
                ready.append(item)
        finished: dict[int, dict[str, Any] | None] = {}  # position -> record (None: failed), not yet written
        written = 0

        def write(record: dict[str, Any] | None) -> None:
            if record is not None:
                writer.write(record)
                stats.done += 1

        try:
            if prepared:
                with open_executor(executor, cpu_actors=cpu_actors) as runner:
                    for positions, results in runner.map_batches(
                        make_worker, prepared, batch_size=batch_size, stage=title, progress=progress
                    ):
                        for position, result in zip(positions, results, strict=True):
                            try:
                                finished[position] = finish(ready[position], result)
                            except JobFailed as failure:
                                fail(ready[position], failure)
                                finished[position] = None
                        while written in finished:
                            write(finished.pop(written))
                            written += 1
        finally:
            for position in sorted(finished):  # a run stopped early keeps what it finished, out of order
                write(finished[position])
            stats.elapsed_s = time.monotonic() - started
    return RunResult(out, stats, failures.path if stats.failed else None)
