"""``generate``: candidates for every (figure, k), appended as they finish, resumable, shardable.

The unit of work is one candidate, ``FIGURE_ID/cK``.  Start-up reads the ids
already in the output (one pass that reads each line's leading id without
parsing it), counts the figure lines for the progress bar, and then streams
the figures, reading a line's id from its first bytes when it starts with
``{"id": "..."`` (as our writers write them) and parsing only the lines it
needs: a figure whose candidates are all written is skipped unparsed, which
keeps resuming after 100K finished candidates to about a second.
Each finished candidate is appended and flushed at once; failures (past the
retry limit, unreadable images) go to ``<out>.failures.jsonl`` with the
model's raw reply, and a rerun tries them again.  ``--shard i/n`` keeps the
figures whose id hashes to ``i`` modulo ``n``, the same on every machine.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vital.errors import InputError
from vital.figures import ImageError
from vital.generation.caption import BACKEND as CAPTION_BACKEND
from vital.generation.caption import caption_conversation
from vital.generation.demos import Policy, load_demonstrations, make_policy, stable_seed
from vital.generation.parse import parse_conversation
from vital.generation.prompts import build_messages
from vital.jsonl import (
    FailureLog,
    JsonlWriter,
    finished_ids,
    parse_json_line,
    refuse_input_as_output,
    validation_to_input_error,
    warn,
)
from vital.llm import (
    Engine,
    EngineConfig,
    JobFailed,
    RunStats,
    drop_if_empty,
    run_jobs,
)
from vital.progress import Progress
from vital.records import Candidate, Figure, portable_path, resolve_image

BACKENDS = ("openai", "caption")


@dataclass
class GenerateConfig:
    """What to generate; the model connection is a separate :class:`~vital.llm.EngineConfig`."""

    backend: str = "openai"
    candidates: int = 2
    demos: Path | None = None
    demo_policy: str = "per-domain"
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int = 0
    shard: tuple[int, int] | None = None
    cache: Path | None = None  # response cache file; default: the call log beside the output
    extra_params: dict[str, Any] = field(default_factory=dict)  # more request-body fields

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"unknown backend {self.backend!r} (choose {' or '.join(BACKENDS)})",
                             field="--backend")
        if self.candidates < 1:
            raise InputError("must be at least 1", field="--candidates")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    index, _, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        raise InputError(f"{text!r} is not of the form i/n (e.g. 0/4)", field="--shard") from None
    if not 0 <= shard[0] < shard[1]:
        raise InputError(f"{text!r}: need 0 <= i < n", field="--shard")
    return shard


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


@dataclass
class GenerateReport:
    stats: RunStats
    out: Path
    failures: Path


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
    return match.group(1).decode("utf-8") if match else None


_KS = tuple(str(k) for k in range(1000))  # candidate numbers as they appear in ids


def _jobs(figures: Path, n: int, shard: tuple[int, int] | None, done: set[str],
          skipped: list[int]) -> Iterator[_Job]:
    """Unfinished (figure, k) in file order; figures with every candidate done are not even parsed."""
    base = figures.resolve().parent
    per_figure = Counter(c.rpartition("/c")[0] for c in done if c.rpartition("/c")[2] in _KS[:n])
    complete = {figure_id for figure_id, count in per_figure.items() if count == n}
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
            for k in range(n):
                if candidate_id(figure.id, k) in done:
                    skipped[0] += 1
                else:
                    yield _Job(figure, k)


def generate(figures: str | Path, out: str | Path, config: GenerateConfig | None = None,
             engine_config: EngineConfig | None = None, *, progress: Progress | None = None,
             encoder: Any = None) -> GenerateReport:
    """Write ``config.candidates`` candidates per figure of ``figures`` to ``out`` (see the module docstring).

    ``encoder`` (anything with ``encode(list[str])`` returning normalised
    vectors) serves the ``nearest`` policy; by default the packaged MiniLM.
    """
    config = config or GenerateConfig()
    figures, out = Path(figures), Path(out)
    if not figures.is_file():
        raise InputError("file not found", path=figures)
    refuse_input_as_output(out, figures, config.demos)
    policy: Policy | None = None
    if config.backend == "openai" and config.demos is not None:
        policy = make_policy(config.demo_policy, load_demonstrations(config.demos), seed=config.seed,
                             encoder=encoder)
    elif config.demos is not None:
        warn("the caption backend writes from captions alone; --demos is not used")
    done = finished_ids(out)
    skipped = [0]
    jobs = _jobs(figures, config.candidates, config.shard, done, skipped)
    total = count_lines(figures) * config.candidates
    if config.shard:
        total //= config.shard[1]
    total = max(0, total - len(done))
    out_dir = out.resolve().parent

    def candidate(job: _Job, conversation: list, generator: dict[str, Any],
                  usage: dict[str, Any] | None = None) -> Candidate:
        image = portable_path(job.figure.image, out_dir) if job.figure.image else None
        return Candidate(id=job.id, figure_id=job.figure.id, image=image, conversations=conversation,
                         generator={**generator, "k": job.k}, usage=usage)

    with JsonlWriter(out) as writer, FailureLog(out, "generate") as failures, drop_if_empty(failures.path):

        def on_result(job: _Job, record: Candidate) -> None:
            writer.write(record)

        def on_failure(job: _Job, failure: JobFailed) -> None:
            failures.record(job.id, failure.reason, figure_id=job.figure.id, k=job.k, **failure.details)

        offline = config.backend == "caption"
        engine_config = None if offline else engine_config or EngineConfig()

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

        stats = run_jobs(jobs, make_work, on_result=on_result, on_failure=on_failure, total=total,
                                 title="generating" + (" (caption backend)" if offline else ""),
                                 engine_config=engine_config, out=out, cache=config.cache, progress=progress)
        stats.skipped = skipped[0]
        return GenerateReport(stats, out, failures.path)
