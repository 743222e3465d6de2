"""``generate``: candidates for every (figure, k), appended as they finish, resumable, shardable.

>>> result = generate("figures.jsonl", "candidates.jsonl", GenerateConfig(candidates=2), EngineConfig(...))
>>> result.stats.done, result.failed, result.failures

The unit of work is one candidate, ``FIGURE_ID/cK``.  ``figures`` is a figures
file or figure records.  Start-up takes the output's lock (a second run on the
same output is refused before it touches anything), reads the ids already in
the output (one pass that reads each line's leading id without parsing it),
counts the figure lines for the progress bar, and then streams the figures,
reading a line's id from its first bytes when it starts with ``{"id": "..."``
(as our writers write them) and parsing only the lines it needs: a figure
whose candidates are all written is skipped unparsed, which keeps resuming
after 100K finished candidates to about a second.
Each finished candidate is appended and flushed at once; failures (past the
retry limit, unreadable images) go to ``<out>.failures.jsonl`` with the
model's raw reply, and a rerun tries them again.  ``shard="i/n"`` keeps the
figures whose id hashes to ``i`` modulo ``n``, the same on every machine.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.figures import ImageError
from vital.generation.caption import BACKEND as CAPTION_BACKEND
from vital.generation.caption import caption_conversation
from vital.generation.demos import Policy, load_demonstrations, make_policy, parse_policy, stable_seed
from vital.generation.parse import parse_conversation
from vital.generation.prompts import build_messages
from vital.jsonl import (
    FailureLog,
    JsonlWriter,
    finished_ids,
    input_file,
    parse_json_line,
    refuse_input_as_output,
    validation_to_input_error,
    warn,
)
from vital.llm import Engine, EngineConfig, JobFailed, RunStats, run_jobs
from vital.progress import Progress
from vital.records import Candidate, Figure, FigureSource, portable_path, resolve_image

BACKENDS = ("openai", "caption")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    index, _, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        raise InputError(f"{text!r} is not of the form i/n (e.g. 0/4)", field="shard") from None
    if not 0 <= shard[0] < shard[1]:
        raise InputError(f"{text!r}: need 0 <= i < n", field="shard")
    return shard


@dataclass
class GenerateConfig(StageConfig):
    """What to generate; the model connection is a separate :class:`~vital.llm.EngineConfig`."""

    backend: str = setting("openai", "openai (a server) or caption (offline).", choices=BACKENDS)
    candidates: int = setting(2, "Candidates per figure (ids FIGURE_ID/cK).")
    demos: Path | None = setting(
        None, "Demonstrations: figures with conversations (JSONL, or BioMed-VITAL JSON).")
    demo_policy: str = setting("per-domain", "per-domain, nearest[:k] (caption embeddings) or random:k.")
    temperature: float = setting(0.7, "Sampling temperature.")
    max_tokens: int = setting(1024, "Longest reply, in tokens.")
    seed: int = setting(0, "Seeds demonstration draws; candidate k sends seed+k.")
    shard: str | None = setting(None, "i/n: figures whose id hashes to i of n.")
    cache_file: Path | None = setting(None, "Response cache to use (default: OUT's .llm.sqlite).",
                                      changes_output=False)
    extra_params: dict[str, Any] = setting(factory=dict, help="More request-body fields.", cli=False)

    def validate(self) -> None:
        if self.candidates < 1:
            raise InputError("must be at least 1", field="candidates")
        if self.max_tokens < 1:
            raise InputError("must be at least 1", field="max_tokens")
        if self.temperature < 0:
            raise InputError("must not be negative", field="temperature")
        parse_policy(self.demo_policy)
        if self.shard is not None:
            parse_shard(self.shard)

    @property
    def parsed_shard(self) -> tuple[int, int] | None:
        """``shard`` as ``(i, n)``, or ``None`` for every figure."""
        return None if self.shard is None else parse_shard(self.shard)


@dataclass
class GenerateResult:
    """What a run wrote: ``stats.done`` new candidates in ``out``; ``failed`` listed in ``failures``."""

    out: Path
    failures: Path | None
    failed: int
    stats: RunStats


def in_shard(figure_id: str, shard: tuple[int, int] | None) -> bool:
    return shard is None or stable_seed("shard", figure_id) % shard[1] == shard[0]


def candidate_id(figure_id: str, k: int) -> str:
    return f"{figure_id}/c{k}"


def count_lines(path: Path) -> int:
    """Lines in a file, counted in binary blocks (for a progress bar's total; no parsing)."""
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
    return count


def has_content(path: Path) -> bool:
    """Does the file hold anything but whitespace?  (Reads only up to the first record.)"""
    with path.open("rb") as handle:
        while block := handle.read(1 << 16):
            if block.strip():
                return True
    return False


@dataclass
class _Job:
    figure: Figure
    k: int

    @property
    def id(self) -> str:
        return candidate_id(self.figure.id, self.k)


_LEADING_ID = re.compile(rb'^\{\s*"id"\s*:\s*"([^"\\\n]*)"')


def leading_id(raw: bytes) -> str | None:
    """The id of a JSON line that starts with ``{"id": "..."`` (no escapes), without parsing the line."""
    match = _LEADING_ID.match(raw)
    try:
        return match.group(1).decode("utf-8") if match else None
    except UnicodeDecodeError:
        return None  # the line is parsed, and its error reported with its line number


_KS = tuple(str(k) for k in range(1000))  # candidate numbers as they appear in ids


def _complete_figures(done: set[str], n: int) -> set[str]:
    """Ids of the figures whose ``n`` candidates are all in ``done``."""
    per_figure = Counter(c.rpartition("/c")[0] for c in done if c.rpartition("/c")[2] in _KS[:n])
    return {figure_id for figure_id, count in per_figure.items() if count == n}


def _figure_jobs(figure: Figure, n: int, done: set[str], skipped: list[int]) -> Iterator[_Job]:
    for k in range(n):
        if candidate_id(figure.id, k) in done:
            skipped[0] += 1
        else:
            yield _Job(figure, k)


def _jobs_from_file(figures: Path, n: int, shard: tuple[int, int] | None, done: set[str],
                    skipped: list[int]) -> Iterator[_Job]:
    """Unfinished (figure, k) in file order; figures with every candidate done are not even parsed."""
    base = figures.resolve().parent
    complete = _complete_figures(done, n)
    with figures.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            figure_id = leading_id(raw)
            if figure_id is not None:
                if not in_shard(figure_id, shard):
                    continue
                if figure_id in complete:
                    skipped[0] += n
                    continue
            obj = parse_json_line(raw, figures, line)
            if obj is None:
                continue
            try:
                figure = Figure.model_validate(obj)
            except ValidationError as exc:
                raise validation_to_input_error(exc, figures, line) from None
            if figure_id is None and not in_shard(figure.id, shard):
                continue
            image = resolve_image(figure.image, base)
            figure.image = str(image) if image else None
            yield from _figure_jobs(figure, n, done, skipped)


def _jobs_from_records(figures: Iterable[Figure], n: int, shard: tuple[int, int] | None, done: set[str],
                       skipped: list[int]) -> Iterator[_Job]:
    """Unfinished (figure, k) of figure records, in their order (image paths as the records give them)."""
    for figure in figures:
        if in_shard(figure.id, shard):
            yield from _figure_jobs(figure, n, done, skipped)


def _records(figures: Iterable[Figure] | Mapping[str, Figure]) -> tuple[Iterable[Figure], int | None]:
    """Figure records and how many there are (``None`` for an iterator); none at all is an :class:`InputError`."""
    records = figures.values() if isinstance(figures, Mapping) else figures
    count = len(records) if isinstance(records, Sized) else None
    iterator = iter(records)
    first = next(iterator, None)
    if first is None:
        raise InputError("no figure records were given")
    return itertools.chain([first], iterator), count


def generate(figures: FigureSource, out: str | Path, config: GenerateConfig | None = None,
             engine: EngineConfig | None = None, *, progress: Progress | None = None,
             encoder: Any = None) -> GenerateResult:
    """Write ``config.candidates`` candidates per figure of ``figures`` to ``out`` (see the module docstring).

    ``engine`` is the model connection of the ``openai`` backend (default
    :class:`~vital.llm.EngineConfig`); ``encoder`` (anything with
    ``encode(list[str])`` returning normalised vectors) serves the ``nearest``
    policy, by default the packaged MiniLM.
    """
    config = config or GenerateConfig()
    out = Path(out)
    if out.is_dir():
        raise InputError("is a directory; expected a file", path=out)
    from_file = isinstance(figures, str | Path)
    if from_file:
        figures_file = input_file(figures)  # type: ignore[arg-type]
        if not has_content(figures_file):
            raise InputError("has no records", path=figures_file)
        refuse_input_as_output(out, figures_file, config.demos)
    else:
        records, count = _records(figures)  # type: ignore[arg-type]
        refuse_input_as_output(out, config.demos)
    offline = config.backend == "caption"
    policy: Policy | None = None
    pool = load_demonstrations(config.demos) if config.demos is not None else None  # checked even if unused
    if not offline and pool is not None:
        policy = make_policy(config.demo_policy, pool, seed=config.seed, encoder=encoder)
    engine_config = None if offline else engine or EngineConfig()
    n, shard = config.candidates, config.parsed_shard
    out_dir = out.resolve().parent

    def candidate(job: _Job, conversation: list, generator: dict[str, Any],
                  usage: dict[str, Any] | None = None) -> Candidate:
        image = portable_path(job.figure.image, out_dir) if job.figure.image else None
        return Candidate(id=job.id, figure_id=job.figure.id, image=image, conversations=conversation,
                         generator={**generator, "k": job.k}, usage=usage)

    async def write_from_caption(job: _Job) -> Candidate:
        return candidate(job, caption_conversation(job.figure, job.k), dict(CAPTION_BACKEND))

    async def ask_model(engine: Engine, job: _Job) -> Candidate:
        assert engine_config is not None
        if not job.figure.image:
            raise JobFailed("figure has no image")
        demos = policy(job.figure, job.k) if policy else []
        try:
            messages = build_messages(job.figure, demos, engine_config.image_max_side)
        except ImageError as exc:
            raise JobFailed(f"image {job.figure.image}: {exc}") from None
        seed = config.seed + job.k
        completion = await engine.complete(
            messages, parse=parse_conversation, temperature=config.temperature,
            max_tokens=config.max_tokens, seed=seed, **config.extra_params,
        )
        generator = {
            "backend": "openai", "model": engine_config.label, "demo_ids": [d.id for d in demos],
            "demo_policy": config.demo_policy if policy else None, "prompt_sha": completion.prompt_sha,
            "temperature": config.temperature, "seed": seed,
        }
        usage = {**completion.usage, "cached": completion.cached, "attempts": completion.attempts}
        return candidate(job, completion.parsed, generator, usage)

    def make_work(engine: Engine | None) -> Callable[[_Job], Awaitable[Candidate]]:
        return write_from_caption if engine is None else lambda job: ask_model(engine, job)

    if from_file:  # every figure still to do is checked before anything is written (done ones are not parsed)
        for _ in _jobs_from_file(figures_file, n, shard, finished_ids(out), [0]):
            pass
    # the output's lock first: a run refused because another one is writing touches nothing
    with JsonlWriter(out) as writer, FailureLog(out, "generate") as failures:
        done = finished_ids(out)
        skipped = [0]
        if from_file:
            jobs = _jobs_from_file(figures_file, n, shard, done, skipped)
            total: int | None = count_lines(figures_file) * n // (shard[1] if shard else 1)
        else:
            jobs = _jobs_from_records(records, n, shard, done, skipped)
            total = None if count is None else count * n // (shard[1] if shard else 1)
        if total is not None:
            total = max(0, total - len(done))
        stats = run_jobs(jobs, make_work, on_result=lambda job, record: writer.write(record),
                         on_failure=lambda job, failure: failures.record(
                             job.id, failure.reason, figure_id=job.figure.id, k=job.k, **failure.details),
                         total=total, title="generating" + (" (caption backend)" if offline else ""),
                         engine_config=engine_config, out=out, cache=config.cache_file, progress=progress)
    stats.skipped = skipped[0]
    if offline and pool is not None:  # said at the end, so that bad input is the only line on stderr
        warn("the caption backend writes from captions alone; --demos is not used")
    return GenerateResult(out=out, failures=failures.path if stats.failed else None, failed=stats.failed,
                          stats=stats)
