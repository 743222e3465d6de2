"""Annotation app: loading a corpus into items, answers per second against a real server, exports.

    python -m benchmarks annotate      (BENCH_ANNOTATE_FIGURES=1000 for a quicker run)

Loading, export and stats run as child ``vital`` processes (their own time and
peak memory).  The server is a child ``vital annotate serve`` process on
127.0.0.1 with SQLite in WAL mode; annotators are threads, each with its own
HTTP client and session, doing what the page does: ask for the next task,
then post an answer.  Last, oversized request bodies are sent to the same
server, which must refuse them without its peak memory growing.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.common import run_measured

SENTENCES = [
    "The image shows an axial slice with a well-defined hypodense lesion in the right lobe of the liver.",
    "There is no evidence of free fluid, and the visible bowel loops are of normal calibre.",
    "The finding is most consistent with a simple cyst, although a follow-up ultrasound would confirm it.",
    "Cortical bone appears intact, with no fracture line or periosteal reaction.",
    "Scattered lymphocytes surround the glandular structures, which retain their normal architecture.",
]


def write_corpus(root: Path, n_figures: int, per_figure: int = 4) -> tuple[Path, Path]:
    rng = random.Random(0)
    figures, candidates = root / "figures.jsonl", root / "candidates.jsonl"
    with figures.open("w") as fig_out, candidates.open("w") as cand_out:
        for f in range(n_figures):
            caption = " ".join(rng.sample(SENTENCES, 2))
            fig_out.write(
                json.dumps(
                    {
                        "id": f"fig{f:06d}",
                        "caption": caption,
                        "domains": ["ct_scan"],
                        "mentions": [rng.choice(SENTENCES)],
                    }
                )
                + "\n"
            )
            for k in range(per_figure):
                turns = []
                for _ in range(3):
                    turns += [
                        {"from": "human", "value": "What does the image show?"},
                        {"from": "gpt", "value": " ".join(rng.sample(SENTENCES, 3))},
                    ]
                cand_out.write(
                    json.dumps({"id": f"fig{f:06d}/c{k}", "figure_id": f"fig{f:06d}", "conversations": turns})
                    + "\n"
                )
    return figures, candidates


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(db: str, port: int, overlap: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vital",
            "annotate",
            "serve",
            "--db",
            db,
            "--port",
            str(port),
            "--overlap",
            str(overlap),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the annotation server did not start")


def annotate_for(seconds: float, url: str, tokens: list[str]) -> tuple[int, list[float], list[float]]:
    """Each token is one annotator thread; returns answers and latencies (ms) of next and answer."""
    answers, next_ms, answer_ms = [], [], []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def annotator(token: str) -> None:
        rng = random.Random(token)
        mine_next, mine_answer = [], []
        with httpx.Client(base_url=url, timeout=30) as client:
            client.get(f"/login?token={token}")
            headers = {"X-CSRF-Token": client.cookies["csrf_token"]}
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = client.post("/api/tasks/next", params={"kind": "compare"}, headers=headers)
                mine_next.append((time.perf_counter() - started) * 1000)
                if response.status_code == 204:
                    break
                started = time.perf_counter()
                choice = rng.choice(["A", "B", "tie", "both_bad"])
                client.post(
                    f"/api/tasks/{response.json()['task_id']}/answer",
                    json={"choice": choice},
                    headers=headers,
                ).raise_for_status()
                mine_answer.append((time.perf_counter() - started) * 1000)
        with lock:
            answers.append(len(mine_answer))
            next_ms.extend(mine_next)
            answer_ms.extend(mine_answer)

    threads = [threading.Thread(target=annotator, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(answers), next_ms, answer_ms


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def send_oversized(url: str, token: str, bodies: int, size: int) -> list[int]:
    """POST ``bodies`` answers of ``size`` bytes each, half of them chunked; the status codes.

    The bodies are streamed from one 1 MB block, so that this process stays
    small (the children it starts later would inherit its peak memory).
    """
    block = b"x" * (1 << 20)
    statuses = []
    with httpx.Client(base_url=url, timeout=60) as client:
        client.get(f"/login?token={token}")
        for number in range(bodies):
            headers = {"X-CSRF-Token": client.cookies["csrf_token"]}
            if number % 2:
                headers["Content-Length"] = str(size)
            content = (block for _ in range(size // len(block)))
            statuses.append(client.post("/api/tasks/1/answer", content=content, headers=headers).status_code)
    return statuses


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def add_measured_row(table: Table, label: str, args: list[str], count: int, unit: str) -> None:
    """Run ``vital ARGS`` as a child process and add its time, rate and peak memory to ``table``."""
    result = run_measured(args)
    if result.returncode != 0:
        raise SystemExit(f"{label} failed:\n{result.stderr}")
    rate = f"{count / result.seconds:,.0f} {unit}/s"
    table.add_row(label, f"{result.seconds:.1f}", rate, f"{result.peak_rss_mb:.0f}", "")


def main() -> None:
    from vital.annotate import AnnotationDB, add_user, issue_login_token

    n = int(os.environ.get("BENCH_ANNOTATE_FIGURES", "5000"))
    annotators = int(os.environ.get("BENCH_ANNOTATE_CLIENTS", "8"))
    seconds = float(os.environ.get("BENCH_ANNOTATE_SECONDS", "20"))
    console = Console()
    table = Table(title=f"annotate: {n:,} figures x 4 candidates ({n:,} demos + {6 * n:,} comparison items)")
    for column in ("step", "seconds", "rate", "peak RSS (MB)", "notes"):
        table.add_column(column, justify="left" if column in ("step", "notes") else "right")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        figures, candidates = write_corpus(root, n)
        db = str(root / "annotations.db")
        load = ["annotate", "load", "--db", db, "--figures", str(figures), "--candidates", str(candidates)]
        for label in ("load (cold)", "load again (idempotent)"):
            add_measured_row(table, label, load, 7 * n, "items")
        database = AnnotationDB(db)
        tokens = [
            issue_login_token(database, add_user(database, f"annotator{i}")[0]) for i in range(annotators + 1)
        ]
        port = free_port()
        server = serve(db, port, overlap=2)
        try:
            done, next_ms, answer_ms = annotate_for(seconds, f"http://127.0.0.1:{port}", tokens[:-1])
            before = peak_rss_mb(server.pid)
            statuses = send_oversized(f"http://127.0.0.1:{port}", tokens[-1], bodies=6, size=50 << 20)
            growth = peak_rss_mb(server.pid) - before
        finally:
            server.terminate()
            server.wait(10)
        table.add_row(
            f"{annotators} annotators, next + answer",
            f"{seconds:.0f}",
            f"{done / seconds:,.0f} answers/s",
            "",
            f"next p50 {percentile(next_ms, 0.5):.0f} ms, p95 {percentile(next_ms, 0.95):.0f} ms; "
            f"answer p50 {percentile(answer_ms, 0.5):.0f} ms, p95 {percentile(answer_ms, 0.95):.0f} ms",
        )
        table.add_row(
            "6 bodies of 50 MB (3 chunked), limit 1 MB",
            "",
            ", ".join(f"{count} x {status}" for status, count in sorted(Counter(statuses).items())),
            f"+{growth:.1f}",
            f"server peak RSS {before:.0f} MB before; the growth is the RSS column",
        )
        export = [
            "annotate",
            "export",
            "--db",
            db,
            "--kind",
            "preferences",
            "--out",
            str(root / "prefs.jsonl"),
        ]
        add_measured_row(table, "export preferences", export, done, "answers")
        add_measured_row(
            table, "stats (kappa, alpha)", ["annotate", "stats", "--db", db, "--json"], done, "answers"
        )
    console.print(table)


if __name__ == "__main__":
    main()
