"""A real HTTP server that speaks the OpenAI chat-completions protocol, for tests and benchmarks.

It listens on 127.0.0.1 (uvicorn, in a thread or as its own process) and can be
told to be slow, to refuse (429 with ``Retry-After``), to fail (500), to hang
past the client's timeout, to return replies the caller cannot use, to
check the API key, or to echo the key back in everything it sends (as a
careless proxy or a prompt-injected model might), for tests that no secret
reaches disk.  It keeps a log of every request and the high-water mark
of requests in flight.

In a test::

    with running_double(DoubleConfig(latency=0.05, faults={"429": 0.1})) as double:
        EngineConfig(base_url=double.base_url, ...)
        ...
        assert double.state.high_water == 8

As a process (benchmarks)::

    python tests/openai_double.py --port 8123 --latency 0.5 --fault 429=0.1

``GET /_stats`` returns the counters as JSON and ``POST /_reset`` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

FAULTS = ("429", "500", "400", "timeout", "malformed", "garbage", "empty")


def default_reply(body: dict[str, Any]) -> str:
    """A well-formed two-round conversation that quotes the start of the last user text."""
    last = body["messages"][-1]["content"]
    if not isinstance(last, str):
        last = " ".join(part.get("text", "") for part in last if part.get("type") == "text")
    text = last
    topic = " ".join(text.split()[:8]) or "the image"
    return (
        "User: What kind of image is this?\n"
        f"Assistant: It is a medical image; {topic}.\n"
        "User: Is there an abnormality?\n"
        "Assistant: Yes, there is a finding described above.\nIt is visible centrally."
    )


@dataclass
class DoubleConfig:
    latency: float = 0.0
    faults: dict[str, float] = field(default_factory=dict)  # fault -> probability, see FAULTS
    faults_first_only: bool = False  # a fault only on the first request with a given body
    retry_after: str | None = "0.05"  # the Retry-After header sent with a 429
    hang_seconds: float = 30.0  # how long a "timeout" request sleeps before answering
    reply: Callable[[dict[str, Any]], str] = default_reply
    api_key: str | None = None  # when set, any other key is answered with 401
    echo_key: bool = False  # put the Authorization header, the key's tail and a masked key in every reply
    keep_bodies: bool = True
    seed: int = 0


@dataclass
class LoggedRequest:
    number: int
    time: float
    outcome: str
    body: dict[str, Any] | None
    authorization: str | None
    body_sha: str
    latency: float = 0.0


@dataclass
class DoubleState:
    requests: list[LoggedRequest] = field(default_factory=list)
    in_flight: int = 0
    high_water: int = 0
    ok: int = 0
    first_time: float | None = None
    last_ok_time: float | None = None
    ok_times: list[float] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def steady_rate(self) -> float | None:
        """Replies per second over the middle 80 % of replies (without ramp-up and tail)."""
        times = sorted(self.ok_times)
        low, high = len(times) // 10, len(times) * 9 // 10
        if high - low < 2 or times[high] <= times[low]:
            return None
        return (high - low) / (times[high] - times[low])

    def stats(self) -> dict[str, Any]:
        outcomes: dict[str, int] = {}
        for request in self.requests:
            outcomes[request.outcome] = outcomes.get(request.outcome, 0) + 1
        return {"requests": len(self.requests), "ok": self.ok, "outcomes": outcomes,
                "high_water": self.high_water,
                "first_time": self.first_time,
                "last_ok_time": self.last_ok_time, "steady_rate": self.steady_rate()}


def build_app(config: DoubleConfig, state: DoubleState) -> Starlette:
    rng = random.Random(config.seed)

    def choose_fault(body_sha: str) -> str:
        if config.faults_first_only and body_sha in state.seen:
            return "ok"
        state.seen.add(body_sha)
        roll, edge = rng.random(), 0.0
        for fault, probability in config.faults.items():
            edge += probability
            if roll < edge:
                return fault
        return "ok"

    async def completions(request: Request) -> Response:
        raw = await request.body()
        body_sha = hashlib.sha256(raw).hexdigest()
        body = json.loads(raw)
        now = time.time()
        state.first_time = state.first_time or now
        authorization = request.headers.get("authorization") or request.headers.get("api-key")
        logged = LoggedRequest(len(state.requests) + 1, now, "ok", body if config.keep_bodies else None,
                               authorization, body_sha)
        state.requests.append(logged)
        state.in_flight += 1
        state.high_water = max(state.high_water, state.in_flight)
        echo = _echo(authorization) if config.echo_key else ""
        try:
            accepted = (f"Bearer {config.api_key}", config.api_key)
            if config.api_key is not None and authorization not in accepted:
                logged.outcome = "401"
                return JSONResponse({"error": {"message": "Incorrect API key provided" + echo}}, status_code=401)
            fault = choose_fault(body_sha)
            logged.outcome = fault
            if fault == "timeout":
                await asyncio.sleep(config.hang_seconds)
            elif config.latency and fault != "429":  # a rate limiter refuses at once
                await asyncio.sleep(config.latency)
            if fault == "429":
                headers = {"retry-after": config.retry_after} if config.retry_after is not None else {}
                error = {"error": {"message": "Rate limit reached" + echo}}
                return JSONResponse(error, status_code=429, headers=headers)
            if fault == "400":
                error = {"error": {"message": "This model's maximum context length is exceeded" + echo}}
                return JSONResponse(error, status_code=400)
            if fault == "500":
                return JSONResponse({"error": {"message": "The server had an error" + echo}}, status_code=500)
            if fault == "garbage":
                return PlainTextResponse(f"<html>upstream hiccup{echo}</html>", status_code=200)
            canned = {"malformed": "I am sorry, I cannot help with that.", "empty": ""}
            text = canned[fault] if fault in canned else config.reply(body)
            text = text + echo if text else text
            state.ok += fault == "ok"
            state.last_ok_time = time.time()
            state.ok_times.append(state.last_ok_time)
            reply = {
                "id": f"chatcmpl-{logged.number}{echo}",
                "object": "chat.completion",
                "created": int(now),
                "model": body.get("model", "double"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(text) // 4,
                          "total_tokens": len(raw) // 4 + len(text) // 4},
            }
            return JSONResponse(reply, headers={"x-request-id": f"req-{logged.number}{echo}"})
        finally:
            logged.latency = time.time() - now
            state.in_flight -= 1

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def reset(request: Request) -> Response:
        fresh = DoubleState()
        state.__dict__.update(fresh.__dict__)
        return JSONResponse({"reset": True})

    return Starlette(routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/openai/deployments/{deployment}/chat/completions", completions, methods=["POST"]),
        Route("/_stats", stats, methods=["GET"]),
        Route("/_reset", reset, methods=["POST"]),
    ])


def _echo(authorization: str | None) -> str:
    """What a server that leaks the key says: the header as sent, the key's last 8 characters, a masked key."""
    key = (authorization or "").removeprefix("Bearer ")
    return f" [you sent {authorization}; key ending {key[-8:]}; key {key[:3]}...****{key[-4:]}]"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class RunningDouble:
    config: DoubleConfig
    state: DoubleState
    port: int

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"


@contextmanager
def running_double(config: DoubleConfig | None = None) -> Iterator[RunningDouble]:
    """Serve the double in a background thread on a free port for the duration of the block."""
    config = config or DoubleConfig()
    state = DoubleState()
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(build_app(config, state), log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the OpenAI double did not start")
        time.sleep(0.01)
    try:
        yield RunningDouble(config, state, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def write_figures(folder: Path, n: int, *, image_size: int = 16, name: str = "figures.jsonl") -> Path:
    """``n`` figure records with small PNG images, for tests and benchmarks of model-calling stages.

    Captions differ per figure (``Figure i ...``), so a request can be traced back to its figure.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    path = folder / name
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            image = folder / "images" / f"fig{i % 50}.png"
            if not image.exists():
                Image.new("RGB", (image_size, image_size), (i * 5 % 256, 80, 120)).save(image)
            record = {
                "id": f"fig{i}", "image": f"images/{image.name}",
                "caption": f"Figure {i}: axial CT of the chest showing a 3 cm nodule in the left lung.",
                "mentions": [f"The nodule in figure {i} measured 3 cm."], "domains": ["ct_scan"],
            }
            handle.write(json.dumps(record) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fault", action="append", default=[], help="FAULT=PROBABILITY, e.g. 429=0.1")
    parser.add_argument("--first-only", action="store_true", help="faults only on a body's first request")
    parser.add_argument("--retry-after", default="0.05")
    args = parser.parse_args()
    faults = {name: float(p) for name, _, p in (item.partition("=") for item in args.fault)}
    config = DoubleConfig(latency=args.latency, faults=faults, faults_first_only=args.first_only,
                          retry_after=args.retry_after, keep_bodies=False)
    uvicorn.run(build_app(config, DoubleState()), host="127.0.0.1", port=args.port, log_level="warning",
                lifespan="off", access_log=False)


if __name__ == "__main__":
    main()
