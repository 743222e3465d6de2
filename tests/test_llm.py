"""The engine against a real HTTP server speaking the OpenAI protocol (tests/openai_double.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image

from openai_double import DoubleConfig, running_double
from vital.errors import InputError
from vital.llm import (
    CallFailed,
    Engine,
    EngineConfig,
    JobFailed,
    ReplyError,
    estimate_cost,
    image_data_url,
    load_prices,
    map_jobs,
)
from vital.llm.limits import TokenBucket

KEY = "sk-test-DO-NOT-LEAK-4242"


def messages(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def config_for(double, **overrides) -> EngineConfig:
    values = dict(base_url=double.base_url, model="double-model", concurrency=4, max_retries=3, timeout=5.0,
                  backoff_base=0.01, backoff_max=0.05, api_key_env="VITAL_TEST_KEY")
    values.update(overrides)
    return EngineConfig(**values)


def complete_all(config: EngineConfig, texts: list[str], store: Path | None = None, **kwargs):
    async def run():
        async with Engine(config, store=store) as engine:
            results = await asyncio.gather(
                *(engine.complete(messages(t), **kwargs) for t in texts), return_exceptions=True
            )
            return results, engine

    return asyncio.run(run())


def test_concurrency_reaches_but_never_exceeds_the_limit():
    with running_double(DoubleConfig(latency=0.1)) as double:
        results, engine = complete_all(config_for(double, concurrency=8), [f"q{i}" for i in range(40)])
    assert all(not isinstance(r, Exception) for r in results)
    assert double.state.high_water == 8
    assert engine.usage.calls == 40 and engine.usage.requests == 40


def test_429_waits_as_long_as_retry_after_says():
    refuse_once = DoubleConfig(faults={"429": 1.0}, faults_first_only=True, retry_after="0.4")
    with running_double(refuse_once) as double:
        results, engine = complete_all(config_for(double), ["one question"])
    assert not isinstance(results[0], Exception)
    first, second = double.state.requests
    assert (first.outcome, second.outcome) == ("429", "ok")
    assert second.time - first.time >= 0.4
    assert engine.usage.retries == 1


@pytest.mark.parametrize("fault", ["500", "timeout", "garbage", "empty"])
def test_server_errors_timeouts_and_broken_replies_are_retried(fault):
    double_config = DoubleConfig(faults={fault: 1.0}, faults_first_only=True, hang_seconds=5)
    with running_double(double_config) as double:
        results, engine = complete_all(config_for(double, timeout=0.5), ["a", "b", "c"])
    assert [r.text.startswith("User:") for r in results] == [True, True, True]
    assert [r.outcome for r in double.state.requests].count(fault) == 3
    assert engine.usage.retries == 3


def test_unusable_replies_are_retried_then_fail_with_the_raw_text(tmp_path):
    def parse(text: str) -> str:
        if "sorry" in text:
            raise ReplyError("a refusal")
        return text

    with running_double(DoubleConfig(faults={"malformed": 1.0})) as double:
        results, engine = complete_all(config_for(double, max_retries=2), ["q"],
                                       store=tmp_path / "log.sqlite", parse=parse)
    failure = results[0]
    assert isinstance(failure, CallFailed)
    assert failure.details["raw"] == "I am sorry, I cannot help with that."
    assert failure.details["attempts"] == 3 and len(double.state.requests) == 3
    log = sqlite3.connect(tmp_path / "log.sqlite")
    statuses = [row[0] for row in log.execute("SELECT status FROM calls")]
    assert statuses == ["unparsable"] * 3
    assert engine.usage.failed == 1


def test_client_errors_are_not_retried():
    with running_double(DoubleConfig(faults={"400": 1.0})) as double:
        results, _ = complete_all(config_for(double), ["q"])
        assert isinstance(results[0], CallFailed) and "HTTP 400" in str(results[0])
        assert len(double.state.requests) == 1
        config = config_for(double, base_url=double.root + "/no-such-prefix/v1")
        results, _ = complete_all(config, ["q"])
    assert isinstance(results[0], InputError) and "HTTP 404" in str(results[0])


def test_cache_answers_repeated_requests_without_calls(tmp_path):
    store = tmp_path / "run.llm.sqlite"
    with running_double(DoubleConfig()) as double:
        first, _ = complete_all(config_for(double), ["x", "y"], store=store, temperature=0.2)
        again, engine = complete_all(config_for(double), ["x", "y"], store=store, temperature=0.2)
        changed, _ = complete_all(config_for(double), ["x"], store=store, temperature=0.9)
        uncached, _ = complete_all(config_for(double, cache=False), ["x"], store=store, temperature=0.2)
    assert [r.text for r in again] == [r.text for r in first]
    assert all(r.cached for r in again) and engine.usage.requests == 0 and engine.usage.cached == 2
    assert not changed[0].cached and not uncached[0].cached
    assert len(double.state.requests) == 4  # 2 + 0 + 1 (other temperature) + 1 (cache off)


def test_the_key_is_sent_but_never_stored_or_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("VITAL_TEST_KEY", KEY)
    store = tmp_path / "log.sqlite"
    with running_double(DoubleConfig(api_key=KEY, faults={"500": 0.5})) as double:
        results, _ = complete_all(config_for(double), [f"q{i}" for i in range(6)], store=store)
        assert all(not isinstance(r, Exception) for r in results)
        assert {r.authorization for r in double.state.requests} == {f"Bearer {KEY}"}
        monkeypatch.setenv("VITAL_TEST_KEY", "sk-wrong")
        refused, _ = complete_all(config_for(double), ["q"], store=store)
    assert isinstance(refused[0], InputError)
    assert "HTTP 401" in str(refused[0]) and "--api-key-env" in str(refused[0]) and KEY not in str(refused[0])
    for file in tmp_path.iterdir():
        assert KEY.encode() not in file.read_bytes(), file


def test_a_server_echoing_the_key_leaves_no_trace_of_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VITAL_TEST_KEY", KEY)
    store = tmp_path / "log.sqlite"

    def parse(text: str) -> str:
        if "sorry" in text:
            raise ReplyError("a refusal")
        return text

    faults = {"500": 0.2, "garbage": 0.1, "malformed": 0.2}
    with running_double(DoubleConfig(api_key=KEY, echo_key=True, faults=faults, seed=3)) as double:
        results, _ = complete_all(config_for(double, max_retries=1), [f"q{i}" for i in range(30)], store=store,
                                  parse=parse)
    texts = [r.text for r in results if not isinstance(r, Exception)]
    raws = [r.details["raw"] for r in results if isinstance(r, CallFailed) and r.details.get("raw")]
    reasons = [str(r) for r in results if isinstance(r, CallFailed)]
    assert texts and raws and any("HTTP 500" in reason for reason in reasons)
    assert all("[you sent Bearer ***; key ending ***; key sk-...***]" in t for t in texts + raws)
    kept = " ".join(texts + raws + reasons + [r.request_id or "" for r in results if not isinstance(r, Exception)])
    assert KEY not in kept and KEY[-8:] not in kept and "****4242" not in kept
    rows = sqlite3.connect(store).execute("SELECT * FROM calls UNION ALL SELECT *, NULL, NULL, NULL, NULL, NULL, "
                                          "NULL, NULL FROM responses").fetchall()
    assert any("***" in str(row) for row in rows)  # the echoes reached the log, redacted
    for file in tmp_path.iterdir():
        data = file.read_bytes()
        assert KEY.encode() not in data and KEY[-8:].encode() not in data and b"****4242" not in data, file


def test_azure_urls_and_key_header(monkeypatch):
    monkeypatch.setenv("VITAL_TEST_KEY", KEY)
    with running_double(DoubleConfig(api_key=KEY)) as double:
        config = config_for(double, azure_endpoint=double.root, azure_deployment="gpt4v")
        results, _ = complete_all(config, ["q"])
    assert results[0].text
    request = double.state.requests[0]
    assert request.authorization == KEY and "model" not in request.body
    assert config.label == "azure:gpt4v"


def test_call_log_keeps_one_row_per_attempt(tmp_path):
    store = tmp_path / "log.sqlite"
    with running_double(DoubleConfig(faults={"429": 1.0}, faults_first_only=True, retry_after="0")) as double:
        complete_all(config_for(double), ["q"], store=store)
    rows = sqlite3.connect(store).execute(
        "SELECT attempt, status, request_id, prompt_tokens, latency_s, prompt_sha FROM calls ORDER BY id"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, "429"), (2, "200")]
    assert rows[1][2] == "req-2" and rows[1][3] > 0 and rows[1][4] >= 0 and len(rows[1][5]) == 64


def test_requests_per_minute_are_paced():
    with running_double(DoubleConfig()) as double:
        started = time.monotonic()
        complete_all(config_for(double, concurrency=30, rpm=1200), [f"q{i}" for i in range(30)])
        elapsed = time.monotonic() - started
    # a bucket of one second's worth (20) goes at once; the other 10 need 0.5 s at 20/s
    assert elapsed >= 0.45


def test_token_bucket_debt_makes_the_next_caller_wait():
    async def run():
        bucket = TokenBucket(per_minute=600)  # 10 per second, holds 10
        await bucket.take(25)  # more than it holds: allowed once, leaves a debt of 15
        started = time.monotonic()
        await bucket.take(1)
        return time.monotonic() - started

    assert asyncio.run(run()) >= 1.5


def test_backoff_is_exponential_with_jitter_and_obeys_the_server():
    engine = Engine(EngineConfig(backoff_base=1.0, backoff_max=8.0))
    waits = [engine.backoff(attempt, None) for attempt in (1, 2, 3, 4, 5, 6)]
    for attempt, wait in zip((1, 2, 3, 4, 5, 6), waits, strict=True):
        ceiling = min(8.0, 2 ** (attempt - 1))
        assert ceiling / 2 <= wait <= ceiling
    assert 3.0 <= engine.backoff(1, 3.0) <= 3.3


def test_map_jobs_records_item_failures_and_stops_on_other_errors():
    results, failures = [], []

    async def work(n: int) -> int:
        if n % 3 == 0:
            raise JobFailed(f"{n} is a multiple of 3", n=n)
        return n * 10

    stats = asyncio.run(map_jobs(range(10), work, on_result=lambda j, r: results.append(r),
                                 on_failure=lambda j, f: failures.append(f.details["n"]), workers=3))
    assert sorted(results) == [10, 20, 40, 50, 70, 80] and sorted(failures) == [0, 3, 6, 9]
    assert (stats.done, stats.failed) == (6, 4)

    async def broken(n: int) -> int:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        asyncio.run(map_jobs(range(5), broken, on_result=print, on_failure=print, workers=2))


def _decode(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_images_become_data_urls(tmp_path):
    import pydicom.data

    png = tmp_path / "wide.png"
    Image.new("RGB", (300, 100), "white").save(png)
    assert image_data_url(str(png)).startswith("data:image/png;base64,")
    assert base64.b64decode(image_data_url(str(png)).split(",", 1)[1]) == png.read_bytes()
    assert _decode(image_data_url(str(png), 60)).size == (60, 20)
    dicom = pydicom.data.get_testdata_file("CT_small.dcm")
    url = image_data_url(dicom)
    assert url.startswith("data:image/png;base64,") and _decode(url).size == (128, 128)
    from vital.figures.images import ImageError

    with pytest.raises(ImageError):
        image_data_url(str(tmp_path / "missing.png"))


def test_cost_estimate_and_price_files(tmp_path):
    prices = {"gpt-4o": (2.5, 10.0)}
    assert estimate_cost("gpt-4o-2024-08-06", 1_000_000, 100_000, prices) == pytest.approx(3.5)
    assert estimate_cost("llava-local", 10, 10, prices) is None
    path = tmp_path / "prices.json"
    path.write_text('{"llava-local": {"input": 0.1, "output": 0.2}}')
    assert load_prices(path) == {"llava-local": (0.1, 0.2)}
    path.write_text('{"llava-local": {"input": "cheap"}}')
    with pytest.raises(InputError, match="llava-local"):
        load_prices(path)


def test_config_rejects_bad_values():
    with pytest.raises(InputError, match="'concurrency'"):
        EngineConfig(concurrency=0)
    with pytest.raises(InputError, match="'azure_deployment'"):
        EngineConfig(azure_endpoint="https://x.openai.azure.com")


def test_image_cache_keeps_recent_urls_within_its_byte_budget():
    from vital.llm.images import _UrlCache

    cache = _UrlCache(budget=12)
    cache.put(("a", None), "aaaaa")
    cache.put(("b", None), "bbbbb")
    assert cache.get(("a", None)) == "aaaaa"  # now the most recent
    cache.put(("c", None), "ccccc")  # 15 > 12: the least recent ("b") goes
    assert cache.get(("b", None)) is None and cache.get(("a", None)) and cache.get(("c", None))
    assert cache.size == 10


def test_sixteen_bit_png_is_windowed_to_eight_bits_before_sending(tmp_path):
    import base64
    import io

    import numpy as np
    from PIL import Image

    from vital.llm import image_part

    path = tmp_path / "deep.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    url = image_part(path)["image_url"]["url"]
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.mode == "RGB"
