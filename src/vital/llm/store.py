"""SQLite beside the output: an audit log of every HTTP attempt and a response cache.

Both tables may live in one file (the default, ``<output>.llm.sqlite``) or the
cache may be shared between runs (``--cache-file PATH``).  WAL journaling and one
commit per row keep a process killed with SIGKILL from losing a finished call,
at well under a millisecond per row.  The API key is never stored: rows hold
hashes and counts, and what came from the server (reply text, error messages,
request ids) only after :meth:`vital.llm.Engine.redact` blanked out the key,
its tail and masked forms of it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    request_id TEXT,
    model TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    latency_s REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    prompt_sha TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    usage TEXT NOT NULL,
    time REAL NOT NULL
);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None)  # autocommit: one row, one commit
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=10000")
    connection.executescript(_SCHEMA)
    return connection


@dataclass
class CallRecord:
    """One HTTP attempt, as the audit log keeps it."""

    model: str
    attempt: int
    status: str
    prompt_sha: str
    cache_key: str
    latency_s: float | None = None
    request_id: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


class CallLog:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def add(self, call: CallRecord) -> None:
        self.connection.execute(
            "INSERT INTO calls (time, request_id, model, attempt, status, latency_s, prompt_tokens,"
            " completion_tokens, prompt_sha, cache_key, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                time.time(), call.request_id, call.model, call.attempt, call.status, call.latency_s,
                call.prompt_tokens, call.completion_tokens, call.prompt_sha, call.cache_key, call.error,
            ),
        )


class ResponseCache:
    """Reply text and usage by request key (model + messages + parameters)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def get(self, key: str) -> tuple[str, dict[str, Any]] | None:
        row = self.connection.execute("SELECT text, usage FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def put(self, key: str, model: str, text: str, usage: dict[str, Any]) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO responses (key, model, text, usage, time) VALUES (?,?,?,?,?)",
            (key, model, text, json.dumps(usage), time.time()),
        )

    def delete(self, key: str) -> None:
        self.connection.execute("DELETE FROM responses WHERE key = ?", (key,))
