"""Pairwise win rate with order swap and bootstrap interval (vital.evaluate.winrate)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openai_double import DoubleConfig, running_double
from vital.cli import app
from vital.errors import InputError
from vital.evaluate.winrate import WinrateConfig, eval_winrate, summarize_verdicts, win_rate
from vital.llm import EngineConfig

QUESTIONS = [
    {
        "question_id": i,
        "text": f"Question {i}?",
        "fig_caption": "A CT scan.",
        "domain": {"ct_scan": True} if i % 2 else {"mri": True},
        "type": "conversation" if i < 4 else "detailed_description",
        "benchmark": "qa50" if i < 3 else "vqa-rad",
    }
    for i in range(6)
]
# Model A is better on questions 0-3, B on 4, and they are equally good on 5.
ANSWERS_A = {i: ("GOOD" if i < 4 else "plain" if i == 5 else "poor") + f" answer {i}" for i in range(6)}
ANSWERS_B = {i: ("GOOD" if i == 4 else "plain" if i == 5 else "poor") + f" answer {i}" for i in range(6)}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def shown(body: dict) -> tuple[str, str]:
    prompt = body["messages"][-1]["content"]
    return (
        re.search(r"\[Answer A\]\n(.*?)\n\[End of answer A\]", prompt, re.S)[1],
        re.search(r"\[Answer B\]\n(.*?)\n\[End of answer B\]", prompt, re.S)[1],
    )


def fair_judge(body: dict) -> str:
    first, second = shown(body)
    winner = "A" if "GOOD" in first else "B" if "GOOD" in second else "tie"
    return json.dumps({"winner": winner, "rationale": "one is more accurate"})


def position_biased_judge(body: dict) -> str:
    first, second = shown(body)
    return json.dumps({"winner": "A" if "GOOD" in first or "plain" in first else "B", "rationale": "first"})


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    return (
        write_jsonl(tmp_path / "q.jsonl", QUESTIONS),
        write_jsonl(tmp_path / "a.jsonl", [{"question_id": k, "text": v} for k, v in ANSWERS_A.items()]),
        write_jsonl(tmp_path / "b.jsonl", [{"question_id": k, "text": v} for k, v in ANSWERS_B.items()]),
    )


def test_win_rate_and_bootstrap_interval() -> None:
    result = win_rate(["A"] * 60 + ["tie"] * 20 + ["B"] * 20, resamples=4000, seed=1)
    assert (result["wins"], result["ties"], result["losses"], result["n"]) == (60, 20, 20, 100)
    assert result["win_rate"] == 70.0
    assert result["ci_low"] < 70.0 < result["ci_high"]
    # the standard error of the mean score is about 4 points here, so the 95% interval is about +-8
    assert 5 < result["win_rate"] - result["ci_low"] < 11
    assert win_rate(["A"] * 10)["ci_low"] == 100.0


def test_fair_judge_decides_and_position_bias_becomes_ties(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    questions, a, b = files
    with running_double(DoubleConfig(reply=fair_judge)) as double:
        config = EngineConfig(base_url=double.base_url, model="judge", backoff_base=0.01)
        details = tmp_path / "fair.details.jsonl"
        result = eval_winrate(
            questions, a, b, tmp_path / "fair.jsonl", WinrateConfig(name_a="ours", name_b="base", details=details),
            config,
        )
        assert result.done == 6
        assert len(double.state.requests) == 12  # both orders for every question
    fair = summarize_verdicts(tmp_path / "fair.jsonl")
    assert result.summary == fair
    assert (fair["model_a"], fair["model_b"], fair["judge"]) == ("ours", "base", "openai:judge")
    assert {k: fair["overall"][k] for k in ("wins", "ties", "losses")} == {"wins": 4, "ties": 1, "losses": 1}
    assert fair["overall"]["win_rate"] == pytest.approx(100 * 4.5 / 6)
    assert fair["order_agreement"] == 100.0
    assert fair["by_category"]["mri"]["n"] == 3 and fair["by_category"]["ct_scan"]["n"] == 3
    # per benchmark and per question type: qa50 is questions 0-2 (A wins all), vqa-rad 3-5 (win, loss, tie)
    assert fair["by_benchmark"]["qa50"]["win_rate"] == 100.0
    assert fair["by_benchmark"]["vqa-rad"]["win_rate"] == pytest.approx(100 * 1.5 / 3)
    assert fair["by_category"]["detailed_description"]["win_rate"] == pytest.approx(100 * 0.5 / 2)
    assert list(fair["by_category"]) == ["conversation", "detailed_description", "mri", "ct_scan"]
    rows = {row["question_id"]: row for row in map(json.loads, details.read_text().splitlines())}
    assert {key: rows[key]["score_a"] for key in rows} == {"0": 1, "1": 1, "2": 1, "3": 1, "4": 0, "5": 0.5}
    assert rows["4"]["verdicts"] == {"a_first": "B", "b_first": "B"} and rows["4"]["benchmark"] == "vqa-rad"
    assert 100 * sum(row["score_a"] for row in rows.values()) / len(rows) == fair["overall"]["win_rate"]

    with running_double(DoubleConfig(reply=position_biased_judge)) as double:
        config = EngineConfig(base_url=double.base_url, model="judge", backoff_base=0.01)
        eval_winrate(questions, a, b, tmp_path / "biased.jsonl", engine=config)
    biased = summarize_verdicts(tmp_path / "biased.jsonl")
    # Questions 0-3: A wins both ways. 4: B wins both ways. 5: "plain" vs "plain" -> always the first: a flip.
    assert {k: biased["overall"][k] for k in ("wins", "ties", "losses")} == {
        "wins": 4,
        "ties": 1,
        "losses": 1,
    }
    assert biased["order_agreement"] == pytest.approx(100 * 5 / 6)
    records = {
        r["question_id"]: r for r in map(json.loads, (tmp_path / "biased.jsonl").read_text().splitlines())
    }
    record = records["5"]  # records are written as they finish, not in question order
    assert record["verdicts"] == {"a_first": "A", "b_first": "B"} and record["outcome"] == "tie"
    assert biased["model_a"] == "a"  # default names: the answer files


def test_winrate_cli(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    questions, a, b = files
    out = tmp_path / "verdicts.jsonl"
    with running_double(DoubleConfig(reply=fair_judge)) as double:
        args = [
            "eval",
            "winrate",
            "--questions",
            str(questions),
            "--a",
            str(a),
            "--b",
            str(b),
            "--out",
            str(out),
            "--base-url",
            double.base_url,
            "--model",
            "judge",
            "--name-a",
            "ours",
            "--json",
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        again = CliRunner().invoke(app, args)  # resumed: nothing left to judge
        assert len(double.state.requests) == 12
    assert json.loads(result.stdout)["overall"]["wins"] == 4
    assert json.loads(again.stdout) == json.loads(result.stdout)
    table = CliRunner().invoke(app, args[:-1] + ["--base-url", "http://127.0.0.1:9/v1"])
    assert table.exit_code == 0 and "win rate of A" in table.stdout


def test_mixed_verdict_files_are_refused(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "v.jsonl",
        [
            {"question_id": 0, "model_a": "x", "model_b": "y", "outcome": "A"},
            {"question_id": 1, "model_a": "x", "model_b": "z", "outcome": "A"},
        ],
    )
    with pytest.raises(InputError) as caught:
        summarize_verdicts(path)
    assert caught.value.line == 2
