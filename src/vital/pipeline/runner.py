"""``vital run``: the stages of a round in order, each skipped when nothing it depends on has changed.

For each stage, in pipeline order:

1. off (its section is absent or ``enabled = false``) or blocked (a stage it
   needs is off, failed or waiting for clinicians): not run;
2. its fingerprint (settings that change its output + its inputs' hashes)
   equals the one of its last complete run and its outputs are untouched:
   skipped as unchanged;
3. otherwise run, through the Python API.  A stage that appends to its
   output (generate, judge, answering) resumes where an interrupted run left
   off; when its *settings* changed, its old output is first moved aside to
   ``<name>.stale-<time>`` (nothing paid for is deleted) so that the new
   output is not a mixture.

``run.json`` is written after every stage (a stage interrupted by Ctrl-C or
kill -9 stays ``running`` there and is resumed by the next run).  When no
stage ran, nothing is written at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vital.errors import InputError
from vital.pipeline.config import load_round
from vital.pipeline.record import RunRecord, StageRecord, file_hash, fingerprint, hashes, now, versions
from vital.pipeline.stages import STAGES, Context, Outcome, Stage
from vital.progress import Progress

EXIT_WAITING = 3
"""``vital run``'s exit status while clinicians still have to annotate (0 done, 1 items failed, 2 bad input)."""


@dataclass
class RunResult:
    dir: Path
    statuses: dict[str, str] = field(default_factory=dict)
    """Stage name -> what happened this time: done, skipped, off, blocked, waiting, failed."""
    failed: int = 0
    """Items that could not be produced, over all stages (each listed in its stage's failures file)."""
    waiting: list[str] = field(default_factory=list)
    report: Path | None = None
    record: Path | None = None

    @property
    def exit_status(self) -> int:
        if self.waiting:
            return EXIT_WAITING
        return 1 if self.failed or "failed" in self.statuses.values() else 0


def _select(names: Sequence[str], what: str) -> set[str]:
    known = {stage.name for stage in STAGES}
    for name in names:
        if name not in known:
            raise InputError(f"unknown stage {name!r} (expected one of {', '.join(known)})", field=what)
    return set(names)


def run(
    config: str | Path,
    *,
    only: Sequence[str] = (),
    from_stage: str | None = None,
    force: Sequence[str] = (),
    no_wait: bool = False,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
) -> RunResult:
    """Run the round ``config`` (a ``vital.toml`` or its folder); see the module docstring.

    ``only``: run just these stages; ``from_stage``: re-run this stage and every
    later one even if unchanged; ``force``: re-run these even if unchanged;
    ``no_wait``: do not wait for clinicians (the selector learns from the
    judge alone).  ``say`` receives one line per event (the CLI prints them).
    """
    round_ = load_round(config)
    only_set = _select(only, "--only")
    forced = _select(force, "--force")
    if from_stage is not None:
        _select([from_stage], "--from")
        names = [stage.name for stage in STAGES]
        forced |= set(names[names.index(from_stage):])
    tell = say or (lambda line: None)
    record = RunRecord.load(round_.dir / "run.json")
    record.config, record.config_sha256 = round_.path.name, file_hash(round_.path)
    context = Context(round_, round_.dir, progress, tell, no_wait)
    result = RunResult(round_.dir)
    changed = False
    for stage in STAGES:
        if only_set and stage.name not in only_set:
            continue
        before = record.stages.get(stage.name)
        status = _run_stage(stage, context, record, result, stage.name in forced)
        result.statuses[stage.name] = status
        changed |= status in ("done", "waiting", "failed") or record.stages.get(stage.name) is not before
        if status == "waiting":
            result.waiting.append(stage.name)
    report = round_.dir / "report.html"
    if changed or not report.exists():
        from vital.pipeline.report import write_report

        record.save()
        result.record = record.path
        result.report = write_report(round_.dir)
    else:
        result.report = report
        tell("nothing changed since the last run: every stage is up to date")
    return result


def _blocked_by(stage: Stage, result: RunResult) -> str | None:
    """The first stage this one needs that is waiting, blocked or failed (or off, unless it is optional)."""
    for need in stage.needs:
        status = result.statuses.get(need)
        if status in ("blocked", "waiting", "failed") or (status == "off" and need not in stage.optional):
            return need
    return None


def _run_stage(stage: Stage, context: Context, record: RunRecord, result: RunResult, forced: bool) -> str:
    round_, tell = context.round, context.say
    if not stage.configured(round_):
        reason = stage.off_reason(round_)
        last = record.stages.get(stage.name)
        if last is None or last.status != "off" or last.notes != [reason]:
            record.stages[stage.name] = StageRecord("off", notes=[reason], finished=now())
        tell(f"{stage.name}: off ({reason})")
        return "off"
    blocker = _blocked_by(stage, result)
    if blocker is not None:
        why = "waiting for clinicians" if result.statuses.get(blocker) == "waiting" else result.statuses.get(blocker)
        tell(f"{stage.name}: not run ({blocker} is {why})")
        return "blocked" if why != "waiting for clinicians" else "waiting"
    settings = stage.settings(context)
    inputs = hashes(stage.inputs(context), context.dir)
    missing = [name for name, value in inputs.items() if value is None]
    if missing:
        raise InputError(f"{stage.name} needs {', '.join(missing)}, which does not exist", path=round_.path)
    stage_fingerprint = fingerprint(settings, inputs)
    if not forced and record.unchanged(stage.name, stage_fingerprint, context.dir):
        tell(f"{stage.name}: skipped (unchanged)")
        return "skipped"
    last = record.stages.get(stage.name)
    if stage.appends and last is not None and last.settings != settings:
        for output in stage.outputs(context):
            if output.exists():
                stale = output.with_name(f"{output.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
                output.rename(stale)
                tell(f"{stage.name}: settings changed; the earlier output is kept as {stale.name}")
    entry = StageRecord("running", stage_fingerprint, settings, inputs, started=now(), versions=versions())
    record.stages[stage.name] = entry
    record.save()
    started = time.perf_counter()
    tell(f"{stage.name}: running")
    try:
        outcome: Outcome = stage.run(context)
    except InputError:
        entry.status = "failed"
        entry.finished = now()
        record.save()
        raise
    entry.status = outcome.status
    entry.outputs = hashes(outcome.outputs or stage.outputs(context), context.dir)
    entry.counts, entry.failed, entry.notes = outcome.counts, outcome.failed, outcome.notes
    entry.failures = str(outcome.failures) if outcome.failures else None
    entry.finished, entry.seconds = now(), round(time.perf_counter() - started, 2)
    if outcome.status == "waiting":
        entry.fingerprint = None  # never "unchanged": the next run looks at the annotations again
    record.save()
    result.failed += outcome.failed
    if outcome.status != "waiting":
        failed = f", {outcome.failed} failed" if outcome.failed else ""
        tell(f"{stage.name}: {outcome.status} in {entry.seconds:.1f} s{failed}{_brief(outcome.counts)}")
    for note in outcome.notes:
        tell(f"{stage.name}: {note}")
    return outcome.status


def _brief(counts: dict[str, Any]) -> str:
    """A stage's counts in one line: numbers and words, and dicts of them one level down (deeper is for
    run.json and the report)."""

    def value(item: Any) -> str | None:
        if isinstance(item, bool) or not isinstance(item, int | float | str):
            return None
        if isinstance(item, float):
            return f"{item:.3g}"
        return f"{item:,}" if isinstance(item, int) else item

    parts = []
    for key, item in counts.items():
        if isinstance(item, dict):
            inner = [f"{k} {v}" for k, v in ((k, value(v)) for k, v in item.items()) if v is not None]
            if inner:
                parts.append(f"{key.replace('_', ' ')}: {', '.join(inner)}")
        elif (text := value(item)) is not None:
            parts.append(f"{key.replace('_', ' ')} {text}")
    return f" ({'; '.join(parts)})" if parts else ""
