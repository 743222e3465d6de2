"""One resumable loop for every evaluation step that produces a record per question.

Answering, chat reviews and pairwise verdicts all do the same thing: skip the
questions already in the output, do the rest (through a model server via
:mod:`vital.llm`, or locally), append each record as soon as it exists, and
put every question that could not be done in ``<out>.failures.jsonl`` with
the reason.

The output's lock is taken before anything else is touched: a run refused
because another run is writing the same output leaves that run's output and
failures file as they were.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    from vital.llm import drop_if_empty, run_jobs

    out = Path(out)
    refuse_input_as_output(out, *inputs)
    with JsonlWriter(out) as writer:  # the lock first: a refused run must touch nothing
        done = finished_ids(out, "question_id")
        todo = [item for item in items if item.id not in done]
        with FailureLog(out, stage) as failures, drop_if_empty(failures.path):
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
