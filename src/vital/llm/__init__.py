"""An async engine for OpenAI-compatible chat completions, shared by ``generate``, ``judge`` and ``eval``.

One :class:`Engine` per run.  It bounds the requests in flight (``concurrency``),
optionally paces them (``rpm``, ``tpm``), times each out, retries 429, 5xx,
timeouts, transport errors and malformed replies with exponential backoff and
jitter (honouring ``Retry-After``/``retry-after-ms``), sums token usage and an
estimated cost, logs every HTTP attempt to SQLite (request id, model, latency,
status, usage, prompt hash; never the key) and answers repeated requests from
a response cache keyed by model, messages and parameters::

    import asyncio
    from vital.llm import Engine, EngineConfig, ReplyError, image_part, map_jobs

    config = EngineConfig(base_url="http://127.0.0.1:8000/v1", model="gpt-4o", concurrency=32)

    def parse_number(text: str) -> float:          # raise ReplyError to have the call retried
        try:
            return float(text.strip())
        except ValueError:
            raise ReplyError("no number in the reply") from None

    async def ask(engine: Engine, question: str, image: str) -> float:
        messages = [{"role": "user", "content": [{"type": "text", "text": question}, image_part(image)]}]
        completion = await engine.complete(messages, parse=parse_number, temperature=0.0, max_tokens=16)
        return completion.parsed                    # .text, .usage, .cached, .request_id as well

    async def main() -> None:
        async with Engine(config, store="answers.llm.sqlite") as engine:
            stats = await map_jobs(
                jobs,                                   # any iterable; streamed, never listed
                lambda job: ask(engine, job.question, job.image),
                on_result=lambda job, value: writer.write(...),
                on_failure=lambda job, exc: failures.record(job.id, str(exc), **exc.details),
                workers=engine.workers,                 # a little more than concurrency
                total=n_jobs, title="answering", engine=engine,
                progress=None,                          # or any vital.progress.Progress (the CLI's draws bars)
            )
        stats.done, stats.failed, stats.usage.requests, stats.cost   # items, calls, tokens, estimated cost

From synchronous code, :func:`run_jobs` does the same in one call, opening an
engine that logs beside the output (``<out>.llm.sqlite``), or running an
offline backend on one worker when ``engine_config`` is ``None``::

    stats = run_jobs(jobs, lambda engine: (lambda job: ask(engine, job.question, job.image)),
                     on_result=..., on_failure=..., title="answering",
                     engine_config=config, out="answers.jsonl")

``Engine.complete`` raises :class:`CallFailed` (a :class:`JobFailed`; ``.details``
carries ``raw`` text and ``attempts``) when an item cannot be done within
``max_retries``; :func:`map_jobs` hands :class:`JobFailed` to ``on_failure`` and
carries on.  A refused key or unknown model (401/403/404) is not an item's
fault: it raises :class:`vital.errors.InputError` and stops the run.

Resume is the caller's: skip jobs whose ids are already in the output
(:func:`vital.jsonl.finished_ids`), and the response cache makes any call that
finished before a crash free on the rerun.  ``tests/openai_double.py`` is a
real OpenAI-protocol server for tests (latency, 429/500/timeouts/malformed
replies, request log, concurrency high-water mark).  The CLI flags for all of this are
:class:`EngineConfig`'s fields (see :mod:`vital.config`).
"""

from vital.jsonl import sibling_path
from vital.llm.engine import (
    CallFailed,
    Completion,
    Engine,
    EngineConfig,
    JobFailed,
    ReplyError,
    Usage,
)
from vital.llm.images import image_data_url, image_part
from vital.llm.prices import DEFAULT_PRICES, estimate_cost, load_prices
from vital.llm.runner import RunStats, drop_if_empty, map_jobs, run_jobs

__all__ = [
    "DEFAULT_PRICES",
    "CallFailed",
    "Completion",
    "Engine",
    "EngineConfig",
    "JobFailed",
    "ReplyError",
    "RunStats",
    "Usage",
    "estimate_cost",
    "image_data_url",
    "image_part",
    "drop_if_empty",
    "load_prices",
    "map_jobs",
    "run_jobs",
    "sibling_path",
]
