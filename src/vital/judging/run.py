"""``judge``: score every candidate, or every question-answer pair, or compare a figure's candidates in pairs.

The unit of work and its resume key:

* ``unit="conversation"``: a candidate, keyed by its id (a :class:`~vital.records.Score`);
* ``unit="turn"``: one question-answer pair, ``CANDIDATE_ID#TURN`` (a Score with ``turn``);
* ``pairwise``: two candidates of one figure, their sorted ids joined by a tab,
  judged in both orders (:func:`vital.pairwise.judge_both_orders`): a
  :class:`~vital.records.Preference` when both orders name the same winner,
  else a :class:`~vital.records.Tie` in ``<out>.ties.jsonl``.

Every input record is read and checked before the first call, so bad input
stops the run with nothing judged.  Records are appended to ``out`` as they
finish; a rerun skips the keys already in ``out`` (and in the ties file),
retries what failed (``<out>.failures.jsonl``), and the response cache beside
the output makes calls already answered free.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vital.config import StageConfig, setting
from vital.conversation import ConversationError, check_turns
from vital.errors import InputError
from vital.jsonl import FailureLog, JsonlWriter, finished_ids, refuse_input_as_output
from vital.judging.heuristic import HeuristicJudge
from vital.judging.model import ModelJudge
from vital.llm import Engine, EngineConfig, JobFailed, RunStats, drop_if_empty, run_jobs, sibling_path
from vital.pairwise import Shown, judge_both_orders
from vital.progress import Progress
from vital.records import (
    Candidate,
    CandidateSource,
    Figure,
    FigureSource,
    Preference,
    Score,
    Tie,
    figure_index,
    iter_candidates,
    require_records,
)

BACKENDS = ("openai", "heuristic")
UNITS = ("conversation", "turn")

Judge = HeuristicJudge | ModelJudge


@dataclass
class JudgeConfig(StageConfig):
    """How to judge; the model connection is a separate :class:`~vital.llm.EngineConfig`."""

    backend: str = setting("openai", "openai (a server) or heuristic (offline).", choices=BACKENDS)
    unit: str = setting("conversation", "conversation or turn (one score per Q&A).", choices=UNITS)
    pairwise: bool = setting(False, "Compare candidates of a figure in both orders; write preferences.")
    temperature: float = setting(0.0, "Sampling temperature of the judge.")
    max_tokens: int = setting(512, "Longest reply, in tokens.")
    cache_file: Path | None = setting(None, "Response cache to use (default: OUT's .llm.sqlite).",
                                      changes_output=False)

    def validate(self) -> None:
        if self.pairwise and self.unit != "conversation":
            raise InputError("pairwise judging compares whole conversations", field="unit")
        if self.temperature < 0:
            raise InputError("must not be negative", field="temperature")
        if self.max_tokens < 1:
            raise InputError("must be at least 1", field="max_tokens")


@dataclass
class JudgeResult:
    """What a run wrote: ``written`` scores or preferences to ``out``, ``ties`` to ``<out>.ties.jsonl``."""

    out: Path
    failures: Path | None
    """``<out>.failures.jsonl`` when items failed (a rerun retries them), else None."""
    failed: int
    written: int
    ties: int
    stats: RunStats


@dataclass
class _Item:
    key: str
    figure: Figure
    image: str | None
    candidate: Candidate
    turn: int | None = None  # pair index with unit="turn"
    other: Candidate | None = None  # the second candidate in pairwise mode


def pair_key(a: str, b: str) -> str:
    """The resume key of a pair of candidates, the same in either order."""
    return "\t".join(sorted((a, b)))


def _figures(figures: FigureSource) -> dict[str, Figure]:
    return require_records(figure_index(figures), figures, "figures")


def _grouped_candidates(candidates: CandidateSource, figures: dict[str, Figure]) -> dict[str, list[Candidate]]:
    """Candidates by figure, each checked (known figure, unique id, alternating turns) before any call."""
    path: Path | None = None
    numbered: Iterator[tuple[int | None, Candidate]]
    if isinstance(candidates, str | Path):
        path = Path(candidates)
        numbered = iter_candidates(path, figures)  # checks figures and ids, naming the line
    else:
        numbered = _checked_records(candidates, figures)
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for line, candidate in numbered:
        try:
            check_turns(candidate.conversations)
        except ConversationError as exc:
            raise InputError(exc.problem, path=path, line=line, field="conversations") from None
        groups[candidate.figure_id].append(candidate)
    return require_records(groups, candidates, "candidates")


def _checked_records(candidates: Iterable[Candidate], figures: dict[str, Figure]) -> Iterator[tuple[None, Candidate]]:
    """Candidate records as :func:`~vital.records.iter_candidates` checks a file's (without line numbers)."""
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.figure_id not in figures:
            raise InputError(f"figure {candidate.figure_id!r} is not among the figures", field="figure_id")
        if candidate.id in seen:
            raise InputError(f"candidate id {candidate.id!r} appears twice", field="id")
        seen.add(candidate.id)
        yield None, candidate


def _units(groups: dict[str, list[Candidate]], figures: dict[str, Figure], config: JudgeConfig) -> list[_Item]:
    units = []
    for figure_id, candidates in groups.items():
        figure = figures[figure_id]
        if config.pairwise:
            units += [_Item(pair_key(a.id, b.id), figure, a.image or figure.image, a, other=b)
                      for a, b in itertools.combinations(candidates, 2)]
        elif config.unit == "turn":
            units += [_Item(f"{c.id}#{i}", figure, c.image or figure.image, c, turn=i)
                      for c in candidates for i in range(len(c.conversations) // 2)]
        else:
            units += [_Item(c.id, figure, c.image or figure.image, c) for c in candidates]
    return units


def _conversation_score_key(record: dict[str, Any]) -> str:
    """Resume key of a whole-conversation score; a per-turn score here means the file is of another kind."""
    if "turn" in record:
        raise KeyError("turn")
    return record["candidate_id"]


def _finished(out: Path, ties: Path, config: JudgeConfig) -> set[str]:
    if config.pairwise:
        done = finished_ids(out, lambda obj: pair_key(obj["chosen"], obj["rejected"]))
        return done | finished_ids(ties, lambda obj: pair_key(obj["a"], obj["b"]))
    if config.unit == "turn":
        return finished_ids(out, lambda obj: f"{obj['candidate_id']}#{obj['turn']}")
    return finished_ids(out, _conversation_score_key)


async def _compare(judge: Judge, item: _Item) -> Preference | Tie:
    """Both orders of one pair: a preference when they agree on a winner, else a tie."""
    a, b = item.candidate, item.other
    assert b is not None

    def prefer(first: Candidate, second: Candidate) -> Awaitable[tuple[Shown, str]]:
        return judge.prefer(item.figure, item.image, first.conversations, second.conversations)

    both = await judge_both_orders(prefer, a, b)
    if both.outcome == "tie":
        return Tie(figure_id=item.figure.id, a=a.id, b=b.id, verdicts=list(both.verdicts),
                   rationales=list(both.rationales), judge=judge.name, backend=judge.backend)
    chosen, rejected = (a, b) if both.outcome == "a" else (b, a)
    return Preference(figure_id=item.figure.id, chosen=chosen.id, rejected=rejected.id, source="model",
                      annotator=judge.name, weight=1.0, backend=judge.backend, rationale=both.rationales[0])


async def _score(judge: Judge, item: _Item, unit: str) -> Score:
    turns = item.candidate.conversations
    extra: dict[str, Any] = {"unit": unit}
    if item.turn is not None:
        turns = turns[2 * item.turn : 2 * item.turn + 2]
        extra["turn"] = item.turn
    score, rationale = await judge.score(item.figure, item.image, turns, unit)
    return Score(candidate_id=item.candidate.id, score=score, source="model", judge=judge.name,
                 rationale=rationale, backend=judge.backend, **extra)


def judge(
    candidates: CandidateSource,
    figures: FigureSource,
    out: str | Path,
    config: JudgeConfig | None = None,
    engine: EngineConfig | None = None,
    *,
    progress: Progress | None = None,
) -> JudgeResult:
    """Score (or, with ``config.pairwise``, compare) every candidate; append records to ``out`` as they finish.

    ``candidates`` and ``figures`` are files or records; ``engine`` is the
    model connection (default :class:`~vital.llm.EngineConfig`), unused by the
    heuristic backend.  Bad input (an empty file, a candidate of an unknown
    figure, turns that do not alternate) is an :class:`~vital.errors.InputError`
    before anything is judged.
    """
    config = config or JudgeConfig()
    out = Path(out)
    refuse_input_as_output(out, *(source for source in (candidates, figures) if isinstance(source, str | Path)))
    if out.is_dir():
        raise InputError("is a directory; expected a file", path=out)
    figure_by_id = _figures(figures)
    groups = _grouped_candidates(candidates, figure_by_id)
    ties_path = sibling_path(out, "ties.jsonl")
    units = _units(groups, figure_by_id, config)
    done = _finished(out, ties_path, config)
    todo = [item for item in units if item.key not in done]
    tie_count = 0

    with JsonlWriter(out) as writer, FailureLog(out, "judge") as failures, drop_if_empty(failures.path), \
            JsonlWriter(ties_path) as tie_writer, drop_if_empty(ties_path):

        def on_failure(item: _Item, failure: JobFailed) -> None:
            failures.record(item.key, failure.reason, figure_id=item.figure.id, **failure.details)

        def on_result(item: _Item, record: Score | Preference | Tie) -> None:
            nonlocal tie_count
            if isinstance(record, Tie):
                tie_count += 1
                tie_writer.write(record)
            else:
                writer.write(record)

        def make_work(connection: Engine | None) -> Callable[[_Item], Awaitable[Score | Preference | Tie]]:
            chosen: Judge = (HeuristicJudge() if connection is None
                             else ModelJudge(connection, config.temperature, config.max_tokens))
            if config.pairwise:
                return lambda item: _compare(chosen, item)
            return lambda item: _score(chosen, item, config.unit)

        offline = config.backend == "heuristic"
        title = "judging pairs" if config.pairwise else f"judging ({config.unit}s)"
        stats = run_jobs(todo, make_work, on_result=on_result, on_failure=on_failure, total=len(todo),
                         skipped=len(units) - len(todo), title=title + (", heuristic" if offline else ""),
                         engine_config=None if offline else engine or EngineConfig(), out=out,
                         cache=config.cache_file, progress=progress)
    return JudgeResult(out=out, failures=failures.path if stats.failed else None, failed=stats.failed,
                       written=writer.count, ties=tie_count, stats=stats)
