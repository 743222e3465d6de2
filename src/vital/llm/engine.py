"""The engine: one ``complete(messages, **params)`` call, made robust.

Life of a call: look the request up in the response cache; otherwise, for each
attempt, wait for the rate limiters, take a concurrency slot, POST with a
total timeout, log the attempt, and either return the reply or release the
slot and sleep before the next attempt.  Sleeping happens *outside* the slot,
so a call backing off does not stop others from using the connection.

HTTP goes through aiohttp.  httpx was the first choice, but its connection
pool (httpcore over anyio) spent about 4.4 ms of CPU per request at
concurrency 32 against 0.5 ms for aiohttp (measured on this project's 2-core
machine), and at 64 requests/s on a busy machine that difference decides
whether the engine keeps up with the server (benchmarks/bench_generate.py).
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.jsonl import sibling_path
from vital.llm.limits import TokenBucket
from vital.llm.prices import DEFAULT_PRICES, estimate_cost, load_prices
from vital.llm.store import CallLog, CallRecord, ResponseCache, connect

if TYPE_CHECKING:  # aiohttp is imported when an engine opens (it takes a while: TLS contexts at import)
    import aiohttp
    from multidict import CIMultiDictProxy

RETRYABLE_STATUS = {408, 409, 429}  # and every 5xx
FATAL_STATUS = {401: "refused the API key", 403: "refused access", 404: "does not know this model or URL"}
IMAGE_TOKEN_ESTIMATE = 765  # a high-detail 512x512 tile set, for pacing tokens-per-minute only
DEFAULT_MAX_TOKENS_ESTIMATE = 512


class JobFailed(Exception):
    """One item could not be done; :func:`vital.llm.map_jobs` records it and carries on.

    ``details`` go into the failures file next to the reason (``raw`` reply text, ``attempts``...).
    """

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class CallFailed(JobFailed):
    """A call that did not succeed within ``max_retries`` retries (or could never succeed, e.g. HTTP 400)."""


class ReplyError(ValueError):
    """Raised by a ``parse`` function for a reply it cannot use; the engine retries the call."""


PANEL = "Model connection"


@dataclass
class EngineConfig(StageConfig):
    """Where to send requests and how hard to push (the model-connection flags of every model stage).

    Azure OpenAI is used when ``azure_endpoint`` is set: requests go to
    ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``
    with an ``api-key`` header; otherwise to ``{base_url}/chat/completions`` with
    ``Authorization: Bearer``.  The key is read from the environment variable
    named ``api_key_env``; a local server (vLLM, Ollama, llama.cpp) may need none.
    """

    base_url: str = setting("https://api.openai.com/v1", "OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, "
                            "llama.cpp), ending in /v1.", panel=PANEL)
    model: str = setting("gpt-4o", "Model name sent with each request.", panel=PANEL)
    api_key_env: str = setting("OPENAI_API_KEY", "Environment variable holding the API key (never taken "
                               "from the command line).", panel=PANEL, changes_output=False)
    azure_endpoint: str | None = setting(None, "Azure OpenAI resource endpoint; switches to Azure's URL "
                                         "scheme.", panel=PANEL)
    azure_deployment: str | None = setting(None, "Azure OpenAI deployment name.", panel=PANEL)
    azure_api_version: str = setting("2024-06-01", "Azure OpenAI API version.", panel=PANEL)
    concurrency: int = setting(8, "Requests in flight at most.", panel=PANEL, changes_output=False)
    max_retries: int = setting(5, "Retries per call after 429, 5xx, timeouts and unusable replies.", panel=PANEL,
                               changes_output=False)
    timeout: float = setting(120.0, "Seconds a request may take in all.", panel=PANEL, changes_output=False)
    rpm: float | None = setting(None, "Requests-per-minute limit to keep under.", panel=PANEL,
                                changes_output=False)
    tpm: float | None = setting(None, "Tokens-per-minute limit to keep under (estimated before, settled "
                                "after each call).", panel=PANEL, changes_output=False)
    image_max_side: int | None = setting(None, "Downscale images so their longer side is at most this many "
                                         "pixels.", panel=PANEL)
    cache: bool = setting(True, "Answer repeated requests from the response cache.", panel=PANEL,
                          changes_output=False)
    prices: Path | None = setting(None, 'JSON {"model": {"input": $/1M tokens, "output": $/1M tokens}} for '
                                  "the cost estimate.", panel=PANEL, changes_output=False)
    backoff_base: float = setting(1.0, "First retry delay in seconds (doubling, with jitter).", cli=False,
                                  changes_output=False)
    backoff_max: float = setting(60.0, "Longest retry delay in seconds.", cli=False, changes_output=False)

    def validate(self) -> None:
        if self.concurrency < 1:
            raise InputError("must be at least 1", field="concurrency")
        if self.max_retries < 0:
            raise InputError("must not be negative", field="max_retries")
        if self.timeout <= 0:
            raise InputError("must be positive", field="timeout")
        if self.azure_endpoint and not self.azure_deployment:
            raise InputError("Azure OpenAI needs a deployment name", field="azure_deployment")

    @cached_property
    def price_table(self) -> dict[str, tuple[float, float]]:
        """The default prices, extended or replaced by the ``prices`` file."""
        return {**DEFAULT_PRICES, **(load_prices(self.prices) if self.prices else {})}

    @property
    def url(self) -> str:
        if self.azure_endpoint:
            return (
                f"{self.azure_endpoint.rstrip('/')}/openai/deployments/{self.azure_deployment}"
                f"/chat/completions?api-version={self.azure_api_version}"
            )
        return f"{self.base_url.rstrip('/')}/chat/completions"

    @property
    def label(self) -> str:
        """How records name this model: ``openai:gpt-4o`` or ``azure:deployment``."""
        return f"azure:{self.azure_deployment}" if self.azure_endpoint else f"openai:{self.model}"


@dataclass
class Usage:
    """Running totals for one engine."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0  # replies that were used
    requests: int = 0  # HTTP attempts, including failed ones
    retries: int = 0
    cached: int = 0
    failed: int = 0  # calls given up


@dataclass
class Completion:
    text: str
    usage: dict[str, int]
    parsed: Any = None
    cached: bool = False
    prompt_sha: str = ""
    request_id: str | None = None
    latency_s: float = 0.0
    attempts: int = 1


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _retry_after(headers: CIMultiDictProxy[str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _estimate_tokens(messages: list[dict[str, Any]], max_tokens: int | None) -> int:
    """A rough prompt + completion size (4 characters a token), to pace ``tpm`` before a reply."""
    characters = images = 0
    for message in messages:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        for part in parts:
            if part.get("type") == "image_url":
                images += 1
            else:
                characters += len(part.get("text") or "")
    return characters // 4 + images * IMAGE_TOKEN_ESTIMATE + (max_tokens or DEFAULT_MAX_TOKENS_ESTIMATE)


class _Attempt(Exception):
    """Why one attempt failed, and how long the server asked us to wait."""

    def __init__(self, status: str, message: str, retryable: bool, wait: float | None = None,
                 raw: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retryable, self.wait, self.raw = status, message, retryable, wait, raw


class Engine:
    """An async client for one OpenAI-compatible chat-completions endpoint.

    Use as ``async with Engine(config, store=path) as engine``.  ``store`` is the
    SQLite file for the call log (and the response cache unless ``cache`` names
    another file); ``None`` keeps neither.
    """

    def __init__(self, config: EngineConfig, *, store: str | Path | None = None,
                 cache: str | Path | None = None) -> None:
        self.config = config
        self.usage = Usage()
        self._key = os.environ.get(config.api_key_env) or None
        self._redact = _Redactor(self._key)
        self._store_path = store
        self._cache_path = cache if cache is not None else store
        self._log: CallLog | None = None
        self._cache: ResponseCache | None = None
        self._connections: list[Any] = []
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(config.concurrency)
        self._rpm = TokenBucket(config.rpm) if config.rpm else None
        self._tpm = TokenBucket(config.tpm) if config.tpm else None

    @classmethod
    def beside(cls, output: str | Path, config: EngineConfig, *, cache: str | Path | None = None) -> Engine:
        """An engine logging to ``<output>.llm.sqlite`` (its response cache too, unless ``cache``)."""
        return cls(config, store=sibling_path(output, "llm.sqlite"), cache=cache)

    @property
    def workers(self) -> int:
        """Items to keep in progress: enough that calls sleeping before a retry leave no slot idle."""
        return self.config.concurrency + max(2, self.config.concurrency // 2)

    @property
    def cost(self) -> float | None:
        return estimate_cost(self.config.model, self.usage.prompt_tokens, self.usage.completion_tokens,
                             self.config.price_table)

    async def __aenter__(self) -> Engine:
        headers = {"Content-Type": "application/json"}
        if self._key:
            if self.config.azure_endpoint:
                headers["api-key"] = self._key
            else:
                headers["Authorization"] = f"Bearer {self._key}"
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.config.concurrency, limit_per_host=0)
        self._session = aiohttp.ClientSession(headers=headers, connector=connector, trust_env=True,
                                              timeout=aiohttp.ClientTimeout(total=None))
        if self._store_path is not None:
            connection = connect(self._store_path)
            self._connections.append(connection)
            self._log = CallLog(connection)
        if self._cache_path is not None and self.config.cache:
            if self._cache_path == self._store_path:
                connection = self._connections[0]
            else:
                connection = connect(self._cache_path)
                self._connections.append(connection)
            self._cache = ResponseCache(connection)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        for connection in self._connections:
            connection.close()
        self._connections.clear()

    def redact(self, text: str) -> str:
        """``text`` with the API key, its tail and masked forms of it blanked out.

        Everything the server sends passes through here before it is kept
        (reply text, error messages, raw replies, request ids): servers,
        proxies and prompt-injected models can echo the key or the
        ``Authorization`` header.
        """
        return self._redact(text)

    def backoff(self, attempt: int, server_wait: float | None) -> float:
        """Seconds to sleep before retry number ``attempt`` (1-based).

        The server's ``Retry-After`` wins when given (plus up to 10 % jitter so
        that the calls it stopped do not return together); otherwise
        exponential backoff with "equal jitter": half of ``base * 2**(attempt-1)``
        (capped at ``backoff_max``) plus a random part of the other half.
        """
        if server_wait is not None:
            return server_wait * (1.0 + 0.1 * random.random())
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def complete(self, messages: list[dict[str, Any]], *, parse: Callable[[str], Any] | None = None,
                       **params: Any) -> Completion:
        """Send one chat completion; return its text, usage and (with ``parse``) the parsed value.

        ``params`` go into the request body as they are (``temperature``,
        ``max_tokens``, ``seed``, ``response_format``...).  ``parse`` may raise
        :class:`ReplyError` to have the call retried; a reply that fails to
        parse is never cached.  Raises :class:`CallFailed` when no usable reply
        came within ``max_retries`` retries.
        """
        config = self.config
        body: dict[str, Any] = {"messages": messages, **params}
        if not config.azure_endpoint:
            body["model"] = config.model
        payload = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
        # the endpoint is part of the key: two servers may serve different models under one name
        endpoint = config.azure_endpoint or config.base_url
        cache_key = sha256(f"{config.label}\0{endpoint}".encode() + b"\0" + payload)
        prompt_sha = sha256(json.dumps(messages, sort_keys=True).encode("utf-8"))

        if self._cache is not None:
            hit = self._cache.get(cache_key)
            if hit is not None:
                text, usage = hit
                text = self.redact(text)  # a row written before the key was known to be echoed
                try:
                    parsed = parse(text) if parse else None
                except ReplyError:
                    self._cache.delete(cache_key)
                else:
                    self.usage.cached += 1
                    return Completion(text, usage, parsed, cached=True, prompt_sha=prompt_sha)

        estimate = _estimate_tokens(messages, params.get("max_tokens") or params.get("max_completion_tokens"))
        last: _Attempt | None = None
        for attempt in range(1, config.max_retries + 2):
            if attempt > 1:
                self.usage.retries += 1
                await asyncio.sleep(self.backoff(attempt - 1, last.wait if last else None))
            if self._rpm:
                await self._rpm.take(1)
            if self._tpm:
                await self._tpm.take(estimate)
            try:
                completion = await self._attempt(payload, attempt, prompt_sha, cache_key, parse)
            except _Attempt as failure:
                if self._tpm:
                    self._tpm.settle(estimate, 0)
                last = failure
                if not failure.retryable:
                    break
                continue
            used = completion.usage.get("prompt_tokens", 0) + completion.usage.get("completion_tokens", 0)
            if self._tpm:
                self._tpm.settle(estimate, used)
            if self._cache is not None:
                self._cache.put(cache_key, config.model, completion.text, completion.usage)
            completion.attempts = attempt
            completion.prompt_sha = prompt_sha
            return completion
        self.usage.failed += 1
        assert last is not None
        details: dict[str, Any] = {"attempts": attempt, "status": last.status}
        if last.raw is not None:
            details["raw"] = last.raw
        raise CallFailed(last.message, **details)

    async def _attempt(self, payload: bytes, attempt: int, prompt_sha: str, cache_key: str,
                       parse: Callable[[str], Any] | None) -> Completion:
        import aiohttp

        assert self._session is not None, "Engine used outside `async with`"
        call = CallRecord(self.config.model, attempt, "error", prompt_sha, cache_key)
        try:
            async with self._slots:
                self.usage.requests += 1
                started = time.monotonic()
                try:
                    async with asyncio.timeout(self.config.timeout):
                        async with self._session.post(self.config.url, data=payload) as response:
                            body = await response.read()
                except TimeoutError:
                    raise _Attempt("timeout", f"no reply within {self.config.timeout:g} s", True) from None
                except aiohttp.ClientError as exc:
                    raise _Attempt("transport", f"connection failed ({type(exc).__name__})", True) from None
                finally:
                    call.latency_s = time.monotonic() - started
            call.status = str(response.status)
            request_id = response.headers.get("x-request-id") or response.headers.get("apim-request-id")
            call.request_id = self.redact(request_id) if request_id else None
            completion = self._read(response.status, response.headers, body, parse)
            call.request_id = call.request_id or completion.request_id
            call.prompt_tokens = completion.usage.get("prompt_tokens")
            call.completion_tokens = completion.usage.get("completion_tokens")
            completion.latency_s = call.latency_s or 0.0
            return completion
        except _Attempt as failure:
            call.status = call.status if failure.status == "http" else failure.status
            call.error = failure.message
            raise
        finally:
            if self._log is not None:
                self._log.add(call)

    def _read(self, status: int, headers: CIMultiDictProxy[str], body: bytes,
              parse: Callable[[str], Any] | None) -> Completion:
        if status != 200:
            message = self.redact(_server_message(body))
            if status in FATAL_STATUS:
                raise InputError(
                    f"the server at {self.config.url} {FATAL_STATUS[status]} (HTTP {status}: {message})",
                    field="--api-key-env" if status in (401, 403) else "--model",
                )
            retryable = status in RETRYABLE_STATUS or status >= 500
            raise _Attempt("http", f"HTTP {status}: {message}", retryable, _retry_after(headers))
        try:
            data = json.loads(body)
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raw = self.redact(body[:20_000].decode("utf-8", "replace"))
            raise _Attempt("malformed", "the reply is not a chat completion", True, raw=raw) from None
        if not isinstance(text, str) or not text.strip():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            raise _Attempt("malformed", self.redact(f"empty reply (finish_reason={reason})"), True,
                           raw=self.redact(str(text or "")))
        text = self.redact(text)
        usage_in = data.get("usage")
        usage_in = usage_in if isinstance(usage_in, dict) else {}
        usage = {
            "prompt_tokens": _token_count(usage_in.get("prompt_tokens")),
            "completion_tokens": _token_count(usage_in.get("completion_tokens")),
        }
        parsed = None
        if parse is not None:
            try:
                parsed = parse(text)
            except ReplyError as exc:
                self._count(usage)  # the tokens were spent even though the reply is unusable
                raise _Attempt("unparsable", f"unusable reply: {exc}", True, raw=text) from None
        self._count(usage)
        self.usage.calls += 1
        request_id = data.get("id")
        return Completion(text, usage, parsed, request_id=self.redact(str(request_id)) if request_id else None)

    def _count(self, usage: dict[str, int]) -> None:
        self.usage.prompt_tokens += usage["prompt_tokens"]
        self.usage.completion_tokens += usage["completion_tokens"]


class _Redactor:
    """Blanks out the key, its last 8 characters, and masked forms ending in its last 4 (OpenAI's error
    message shows ``sk-proj-****abcd``; the visible prefix is not secret).

    Cheap substring tests come first, so that a reply without any of them
    (nearly all) costs a few microseconds, not a regular-expression scan.
    """

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.tail = key[-8:] if key else ""
        self.last4 = key[-4:] if key and len(key) >= 8 else ""
        self.masked = re.compile(r"(?:\*{3,}|\.{3,}|…)" + re.escape(self.last4)) if self.last4 else None

    def __call__(self, text: str) -> str:
        if not self.key:
            return text
        if self.tail in text:  # the key holds its tail, so this finds both
            text = text.replace(self.key, "***").replace(self.tail, "***")
        if self.masked is not None and self.last4 in text:
            text = self.masked.sub("***", text)
        return text


def _token_count(value: Any) -> int:
    """A usage count from a reply, or 0 when the server sent something that is not a count."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _server_message(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return str(message or body[:300].decode("utf-8", "replace") or "no message").strip()
