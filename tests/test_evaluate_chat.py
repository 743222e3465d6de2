"""Judged open visual chat: reviews via an OpenAI-compatible double, and the summary (vital.evaluate.chat)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openai_double import DoubleConfig, running_double
from vital.cli import app
from vital.errors import InputError
from vital.evaluate.chat import ChatConfig, ChatSummaryConfig, eval_chat, eval_chat_summary, parse_score_pair
from vital.llm import EngineConfig

QUESTIONS = [
    {
        "question_id": 0,
        "text": "What organ is shown?\n<image>",
        "gpt4_answer": "The liver.",
        "fig_caption": "CT of the liver.",
        "fig_label": "Fig. 1",
        "in_text_mention": [{"tokens": "See Fig. 1."}],
        "domain": {"chest_xray": False, "mri": False, "histology": False, "gross": False, "ct_scan": True},
        "type": "conversation",
    },
    {
        "question_id": 1,
        "text": "Describe the image.\n<image>",
        "gpt4_answer": "A liver lesion.",
        "fig_caption": "MRI and CT of a lesion.",
        "domain": {"mri": True, "ct_scan": True},
        "type": "detailed_description",
    },
    {
        "question_id": 2,
        "text": "What stain?\n<image>",
        "gpt4_answer": "H&E.",
        "fig_caption": "Histology.",
        "domain": {"histology": True},
        "type": "conversation",
    },
]
ANSWERS = {0: "GOOD answer", 1: "weak answer", 2: "GOOD answer"}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def positional_judge(body: dict) -> str:
    """Gives the answer shown first 1 point more than it deserves: a judge with a position bias."""
    prompt = body["messages"][-1]["content"]
    first = re.search(r"\[Assistant 1\]\n(.*?)\n\[End of assistant 1\]", prompt, re.S)[1]
    second = re.search(r"\[Assistant 2\]\n(.*?)\n\[End of assistant 2\]", prompt, re.S)[1]

    def worth(answer: str) -> int:
        return 9 if "GOOD" in answer else 8 if answer.startswith(("The", "A", "H&E")) else 3

    return f"{worth(first) + 1} {worth(second)}\nAssistant 1 was clearer."


@pytest.fixture
def chat_files(tmp_path: Path) -> tuple[Path, Path]:
    questions = write_jsonl(tmp_path / "questions.jsonl", QUESTIONS)
    answers = write_jsonl(
        tmp_path / "answers.jsonl", [{"question_id": key, "text": text} for key, text in ANSWERS.items()]
    )
    return questions, answers


def test_parse_score_pair() -> None:
    assert parse_score_pair("8 6\nbecause") == (8.0, 6.0)
    assert parse_score_pair("  9.5  7 ") == (9.5, 7.0)
    assert parse_score_pair("8,6") == (8.0, 6.0)
    assert parse_score_pair("Scores: 8 6") is None
    assert parse_score_pair("") is None


def test_judge_chat_and_swap_cancels_position_bias(chat_files: tuple[Path, Path], tmp_path: Path) -> None:
    questions, answers = chat_files
    with running_double(DoubleConfig(reply=positional_judge)) as double:
        config = EngineConfig(base_url=double.base_url, model="judge", backoff_base=0.01)
        one_way, swapped = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
        result = eval_chat(questions, answers, one_way, engine=config)
        assert result.done == 3 and result.failed == 0 and result.failures is None
        assert result.summary.categories["overall"]["n"] == 3
        eval_chat(questions, answers, swapped, ChatConfig(swap=True), config)
        assert len(double.state.requests) == 3 + 6
    first = {r["question_id"]: r for r in map(json.loads, one_way.read_text().splitlines())}
    assert (first["0"]["reference_score"], first["0"]["model_score"]) == (9.0, 9.0)  # 8 + 1 bias vs 9
    both = {r["question_id"]: r for r in map(json.loads, swapped.read_text().splitlines())}
    assert (both["0"]["reference_score"], both["0"]["model_score"]) == (8.5, 9.5)  # bias split evenly
    assert [review["order"] for review in both["1"]["reviews"]] == ["reference_first", "model_first"]
    assert both["1"]["judge"] == "openai:judge"
    summary = eval_chat_summary(swapped).categories
    assert summary["overall"]["n"] == 3
    assert summary["mri"]["n"] == 1  # flagged mri and ct_scan: counts for mri, the first in LLaVA-Med's order
    assert summary["detailed_description"]["relative_score"] == pytest.approx(100 * 3.5 / 8.5)


def test_judge_chat_resumes_and_logs_missing_answers(chat_files: tuple[Path, Path], tmp_path: Path) -> None:
    questions, answers = chat_files
    partial = write_jsonl(tmp_path / "partial.jsonl", [{"question_id": 0, "text": "GOOD answer"}])
    out = tmp_path / "reviews.jsonl"
    with running_double(DoubleConfig(reply=positional_judge)) as double:
        config = EngineConfig(base_url=double.base_url, model="judge", backoff_base=0.01)
        first = eval_chat(questions, partial, out, engine=config)
        assert (first.done, first.failed) == (1, 2)
        assert first.failures == tmp_path / "reviews.failures.jsonl"
        failures = [
            json.loads(line) for line in (tmp_path / "reviews.failures.jsonl").read_text().splitlines()
        ]
        assert {f["id"] for f in failures} == {"1", "2"}
        assert "no answer to this question" in failures[0]["reason"]
        again = eval_chat(questions, answers, out, engine=config)
        assert (again.done, again.skipped) == (2, 1)
        assert len(double.state.requests) == 3
    assert sorted(json.loads(line)["question_id"] for line in out.read_text().splitlines()) == ["0", "1", "2"]


def test_unparsable_review_is_retried_then_recorded(chat_files: tuple[Path, Path], tmp_path: Path) -> None:
    questions, answers = chat_files
    out = tmp_path / "reviews.jsonl"
    with running_double(DoubleConfig(reply=lambda body: "Both answers are fine.")) as double:
        config = EngineConfig(base_url=double.base_url, model="judge", max_retries=1, backoff_base=0.01)
        result = eval_chat(questions, answers, out, engine=config)
    assert result.failed == 3 and result.summary is None
    failure = json.loads((tmp_path / "reviews.failures.jsonl").read_text().splitlines()[0])
    assert failure["raw"] == "Both answers are fine."


def test_chat_cli_prints_summary(chat_files: tuple[Path, Path], tmp_path: Path) -> None:
    questions, answers = chat_files
    out = tmp_path / "reviews.jsonl"
    with running_double(DoubleConfig(reply=positional_judge)) as double:
        result = CliRunner().invoke(
            app,
            [
                "eval",
                "chat",
                "--questions",
                str(questions),
                "--answers",
                str(answers),
                "--out",
                str(out),
                "--base-url",
                double.base_url,
                "--model",
                "judge",
                "--json",
            ],
        )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["overall"]["n"] == 3
    assert summary["ct_scan"] == {
        "reference_score": 9.0,
        "model_score": 9.0,
        "relative_score": 100.0,
        "n": 1,
        "ci95": {"relative_score": [100.0, 100.0]},
    }


def test_summary_errors_name_the_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"question_id": 0, "type": "conversation", "domain": {"mri": True}, "result": "8 4\nok"},
            {"question_id": 1, "type": "conversation", "domain": {"mri": True}, "result": "eight, four"},
        ],
    )
    with pytest.raises(InputError) as caught:
        eval_chat_summary(path)
    assert (caught.value.line, caught.value.field) == (2, "result")


def test_llava_med_review_file_summary(shared_data: Path) -> None:
    """LLaVA-Med's summarize_gpt_review rules (re-typed independently) give these numbers on this file."""
    reviews = shared_data / "llava-med-eval" / "llava_med_eval_qa50_qa_ans.jsonl"
    summary = eval_chat_summary(reviews).categories
    printed = CliRunner().invoke(app, ["eval", "chat-summary", str(reviews), "--json"])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == summary
    expected = {
        "conversation": (8.99, 4.24, 47.93, 143),
        "detailed_description": (8.02, 2.84, 41.21, 49),
        "chest_xray": (8.22, 4.65, 58.50, 37),
        "mri": (8.97, 3.05, 35.08, 38),
        "histology": (8.75, 4.02, 47.02, 44),
        "gross": (8.70, 3.79, 46.55, 33),
        "ct_scan": (9.05, 3.90, 44.26, 40),
        "overall": (8.74, 3.89, 46.21, 192),
    }
    assert list(summary) == list(expected)
    for category, (reference, model, relative, n) in expected.items():
        row = summary[category]
        assert row["n"] == n
        assert row["reference_score"] == pytest.approx(reference, abs=0.006)
        assert row["model_score"] == pytest.approx(model, abs=0.006)
        assert row["relative_score"] == pytest.approx(relative, abs=0.006)
        low, high = row["ci95"]["relative_score"]
        assert low < row["relative_score"] < high


def test_relative_score_interval_is_a_bootstrap_over_items(tmp_path: Path) -> None:
    """Half the items score 1/2 of the reference, half 1/1: 75 ± 1.96 × 25 / sqrt(n)."""
    n = 400
    reviews = write_jsonl(
        tmp_path / "r.jsonl",
        [{"question_id": i, "type": "conversation", "reference_score": 8, "model_score": 4 if i % 2 else 8}
         for i in range(n)],
    )
    summary = eval_chat_summary(reviews, ChatSummaryConfig(bootstrap=4000, seed=1)).categories
    assert summary["overall"]["relative_score"] == 75.0
    low, high = summary["overall"]["ci95"]["relative_score"]
    assert low == pytest.approx(75 - 1.96 * 25 / n**0.5, abs=0.5)
    assert high == pytest.approx(75 + 1.96 * 25 / n**0.5, abs=0.5)
    table = CliRunner().invoke(app, ["eval", "chat-summary", str(reviews)])
    assert table.exit_code == 0 and "interval" in table.stdout
    printed = CliRunner().invoke(app, ["eval", "chat-summary", str(reviews), "--bootstrap", "0", "--json"])
    assert json.loads(printed.stdout)["overall"]["ci95"] == {"relative_score": None}
