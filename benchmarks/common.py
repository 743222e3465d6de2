"""Helpers shared by the benchmarks: run a command in a child process and measure its time and peak memory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass


@dataclass
class Measurement:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stderr: str


def run_measured(args: list[str], env: dict[str, str] | None = None) -> Measurement:
    """Run ``python -m vital ARGS`` and report its wall time and peak RSS (stderr kept for errors)."""
    argv = [sys.executable, "-m", "vital", *args]
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    return Measurement(seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), stderr)
