"""Score 100K VQA predictions (both modes, with per-question details), compare two answer files on
100K questions, and summarise 100K chat reviews.

    python -m benchmarks evaluate          (BENCH_EVAL=20000 for a quicker run)

The ground truth is a VQA-RAD-style JSON list (40 % open, 60 % closed, with
question types and organs), the predictions LLaVA-Med answer files whose
texts look like a model's (a role prefix, a short answer, sometimes a
sentence around it), in shuffled order so that matching by id is exercised;
a second model's file (another seed) is the B of ``eval compare``.  Each
command runs as a child ``vital`` process: the times include start-up,
reading, matching, scoring, the bootstrap (1,000 resamples: every metric's
interval, and every breakdown cell's for recall and accuracy) and printing,
and the memory is the child's peak.  The target is under 10 s per command for
100K predictions.
"""

from __future__ import annotations

import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import run_measured

OPEN_ANSWERS = [
    "left lower lobe",
    "right kidney",
    "pleural effusion",
    "axial",
    "mri",
    "ct with contrast",
    "brain",
    "small bowel obstruction",
    "ring enhancing lesion",
    "3",
    "t2 weighted",
    "posteroanterior",
    "cardiomegaly",
    "middle cerebral artery",
    "liver",
    "fat",
    "pneumothorax",
    "1.5 cm",
]
FILLERS = ["The image shows", "There is", "This is consistent with", "Findings suggest", "I think it is"]
TYPES = ["PRES", "POS", "ABN", "SIZE", "MODALITY", "PLANE", "ORGAN", "OTHER", "POS, PRES"]
ORGANS = ["CHEST", "ABD", "HEAD"]


def write_vqa(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path, Path, int]:
    """The ground truth, two models' answer files, and how many distinct (answer, prediction) pairs the first
    file holds."""
    rng = random.Random(seed)
    questions = []
    for qid in range(n):
        closed = rng.random() < 0.6
        answer = rng.choice(["yes", "no"]) if closed else rng.choice(OPEN_ANSWERS)
        if not closed and rng.random() < 0.3:
            answer = f"{answer} {rng.randint(1, 9)}.{rng.randint(0, 9)} cm"
        questions.append(
            {
                "qid": qid,
                "image_name": f"synpic{qid % 300}.jpg",
                "question": "Is there a finding?",
                "answer": answer,
                "answer_type": "CLOSED" if closed else "OPEN",
                "question_type": rng.choice(TYPES),
                "image_organ": rng.choice(ORGANS),
            }
        )
    gt = folder / "test.json"
    gt.write_text(json.dumps(questions), encoding="utf-8")
    first, texts = write_answers(folder / "answers.jsonl", questions, rng, right=0.6)
    second, _ = write_answers(folder / "answers-b.jsonl", questions, rng, right=0.65)
    return gt, first, second, len({(q["answer"], text) for q, text in zip(questions, texts, strict=True)})


def write_answers(path: Path, questions: list[dict], rng: random.Random, *, right: float) -> tuple[Path, list[str]]:
    """A model's answer file (the right answer with probability ``right``, often inside a sentence) and its
    texts in question order."""
    answers = []
    for question in questions:
        qid = question["qid"]
        said = question["answer"] if rng.random() < right else rng.choice(OPEN_ANSWERS + ["yes", "no", "normal"])
        if rng.random() < 0.4:
            said = f"{rng.choice(FILLERS)} {said} in the {rng.choice(OPEN_ANSWERS)} region, {qid % 97} mm."
        answers.append(
            {
                "question_id": str(qid) if qid % 7 == 0 else qid,
                "prompt": "Is there a finding?",
                "text": f"Assistant: {said}",
                "model_id": path.stem,
            }
        )
    texts = [answer["text"] for answer in answers]
    rng.shuffle(answers)
    with path.open("w", encoding="utf-8") as handle:
        for answer in answers:
            handle.write(json.dumps(answer) + "\n")
    return path, texts


def write_reviews(folder: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path = folder / "reviews.jsonl"
    domains = ["chest_xray", "mri", "histology", "gross", "ct_scan"]
    with path.open("w", encoding="utf-8") as handle:
        for index in range(n):
            flags = {name: rng.random() < 0.3 for name in domains}
            handle.write(
                json.dumps(
                    {
                        "question_id": index,
                        "type": rng.choice(["conversation", "detailed_description"]),
                        "domain": flags,
                        "result": f"{rng.randint(6, 10)} {rng.randint(1, 10)}\nThe first answer is better.",
                    }
                )
                + "\n"
            )
    return path


def main() -> None:
    n = int(os.environ.get("BENCH_EVAL", "100000"))
    console = Console()
    table = Table(title=f"vital eval on {n:,} synthetic items (child process, 2 cores)")
    for name in ("command", "items", "wall s", "CPU s", "items/CPU s", "peak MB", "target"):
        table.add_column(name, justify="left" if name in ("command", "target") else "right")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gt, pred, pred_b, distinct = write_vqa(folder, n)
        reviews = write_reviews(folder, n)
        details = folder / "details.jsonl"
        runs = [
            (
                "eval vqa --json (default)",
                ["eval", "vqa", "--gt", str(gt), "--pred", str(pred), "--json"],
                "< 10 s",
            ),
            (
                "eval vqa --compat llava-med --json",
                ["eval", "vqa", "--gt", str(gt), "--pred", str(pred), "--compat", "llava-med", "--json"],
                "< 10 s",
            ),
            ("eval vqa (tables)", ["eval", "vqa", "--gt", str(gt), "--pred", str(pred)], "< 10 s"),
            (
                "eval vqa --details FILE --json",
                ["eval", "vqa", "--gt", str(gt), "--pred", str(pred), "--details", str(details), "--json"],
                "< 10 s",
            ),
            (
                "eval compare --json (A vs B)",
                ["eval", "compare", "--gt", str(gt), "--a", str(pred), "--b", str(pred_b), "--json"],
                "< 10 s",
            ),
            ("eval chat-summary --json", ["eval", "chat-summary", str(reviews), "--json"], ""),
        ]
        for label, args, target in runs:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            measured = run_measured(args)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            if measured.returncode != 0:
                raise SystemExit(f"{label} failed: {measured.stderr}")
            table.add_row(
                label,
                f"{n:,}",
                f"{measured.seconds:.2f}",
                f"{cpu:.2f}",
                f"{n / cpu:,.0f}",
                f"{measured.peak_rss_mb:.0f}",
                target,
            )
    console.print(table)
    console.print(f"{distinct:,} distinct (answer, prediction) pairs among the {n:,} questions")
    console.print(
        f"load average while running: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores); "
        f"machine speed: a 20M-step pure-Python loop took {_reference_loop_seconds():.2f} CPU s "
        "(about 1 s on a quiet modern core)"
    )


def _reference_loop_seconds() -> float:
    """CPU seconds of a fixed pure-Python loop, to tell a slow or busy machine from slow code."""
    started = time.process_time()
    total = 0
    for step in range(20_000_000):
        total += step
    return time.process_time() - started


if __name__ == "__main__":
    main()
