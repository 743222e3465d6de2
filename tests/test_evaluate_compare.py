"""Paired comparison of answer files and of chat reviews (vital.evaluate.compare)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vital.cli import app
from vital.errors import InputError
from vital.evaluate.compare import CompareConfig, eval_compare


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def answers(path: Path, texts: dict) -> Path:
    return write_jsonl(path, [{"question_id": key, "text": text} for key, text in texts.items()])


@pytest.fixture
def closed_table(tmp_path: Path) -> tuple[Path, Path, Path]:
    """12 closed questions (answer yes): both right 3, only A right 1, only B right 6, both wrong 2."""
    gt = write_jsonl(
        tmp_path / "gt.jsonl",
        [{"question_id": i, "question": "Abnormal?", "answer": "yes", "answer_type": "CLOSED"} for i in range(12)]
        + [{"question_id": f"o{i}", "question": "Where?", "answer": "left upper lobe", "answer_type": "OPEN"}
           for i in range(8)],
    )
    right_a = {0, 1, 2, 3}
    right_b = {0, 1, 2, 4, 5, 6, 7, 8, 9}
    a = {i: "yes" if i in right_a else "no" for i in range(12)}
    b = {i: "yes" if i in right_b else "no" for i in range(12)}
    a.update({f"o{i}": "left" for i in range(8)})  # recall 1/3 on every open question
    b.update({f"o{i}": "left upper lobe" for i in range(8)})  # recall 1
    return gt, answers(tmp_path / "a.jsonl", a), answers(tmp_path / "b.jsonl", b)


def test_closed_accuracy_uses_mcnemars_exact_test(closed_table: tuple[Path, Path, Path]) -> None:
    gt, a, b = closed_table
    result = eval_compare(gt, a, b)
    (comparison,) = result.comparisons
    row = comparison.metrics["closed_accuracy"]
    assert (row.a, row.b, row.n) == (pytest.approx(100 * 4 / 12), pytest.approx(100 * 9 / 12), 12)
    assert row.diff == pytest.approx(100 * 5 / 12)
    assert row.test == "mcnemar-exact" and row.p_value == pytest.approx(2 * (1 + 7) / 2**7)  # 0.125
    low, high = row.ci95
    assert low < row.diff < high
    recall = comparison.metrics["recall"]
    assert recall.test == "sign-flip" and recall.diff == pytest.approx(100 * 2 / 3)
    assert recall.p_value == pytest.approx(2 / 2**8, abs=0.004)  # all 8 differences positive: 2/256 two-sided
    assert recall.ci95 == [pytest.approx(100 * 2 / 3), pytest.approx(100 * 2 / 3)]  # the same gain everywhere


def test_a_file_compared_with_itself(closed_table: tuple[Path, Path, Path]) -> None:
    gt, a, _ = closed_table
    (comparison,) = eval_compare(gt, a, a, CompareConfig(compat="llava-med")).comparisons
    for name, row in comparison.metrics.items():
        assert (row.diff, row.ci95, row.p_value) == (0.0, [0.0, 0.0], 1.0), name
        assert row.a == row.b


def test_missing_questions_are_counted_and_left_out(closed_table: tuple[Path, Path, Path], tmp_path: Path) -> None:
    gt, a, b = closed_table
    texts = [json.loads(line) for line in b.read_text().splitlines()]
    partial = write_jsonl(tmp_path / "partial.jsonl", [t for t in texts if t["question_id"] not in (0, 4, "o1")])
    result = eval_compare(gt, a, [b, partial])
    full, cut = result.comparisons
    assert (full.b, full.n, full.missing) == ("b", 20, {"a": 0, "b": 0})
    assert (cut.b, cut.n, cut.missing) == ("partial", 17, {"a": 0, "b": 3})
    closed = cut.metrics["closed_accuracy"]
    assert closed.n == 10 and closed.a == pytest.approx(100 * 3 / 10)  # A is scored on the same 10 questions
    assert cut.metrics["recall"].n == 7


def test_chat_reviews_are_compared_by_relative_score(tmp_path: Path) -> None:
    def reviews(path: Path, model_scores: dict[int, float]) -> Path:
        return write_jsonl(path, [
            {"question_id": i, "type": "conversation" if i < 4 else "detailed_description",
             "domain": {"mri": True}, "reference_score": 8, "model_score": score}
            for i, score in model_scores.items()
        ])

    a = reviews(tmp_path / "a.jsonl", {i: 4 for i in range(6)})
    b = reviews(tmp_path / "b.jsonl", {i: 6 for i in range(1, 6)})  # question 0 was not reviewed for B
    result = eval_compare(None, a, b)
    assert result.kind == "chat"
    (comparison,) = result.comparisons
    assert comparison.missing == {"a": 0, "b": 1} and comparison.n == 5
    assert list(comparison.metrics) == ["conversation", "detailed_description", "mri", "overall"]
    overall = comparison.metrics["overall"]
    assert (overall.a, overall.b, overall.diff, overall.n) == (50.0, 75.0, 25.0, 5)
    assert overall.test == "sign-flip" and overall.p_value == pytest.approx(2 / 32, abs=0.01)
    with pytest.raises(InputError, match="needs the ground truth"):
        eval_compare(None, answers(tmp_path / "x.jsonl", {1: "yes"}), b)


def test_compare_cli_json_and_table(closed_table: tuple[Path, Path, Path]) -> None:
    gt, a, b = closed_table
    args = ["eval", "compare", "--gt", str(gt), "--a", str(a), "--b", str(b), "--b", str(a)]
    printed = CliRunner().invoke(app, [*args, "--json"])
    assert printed.exit_code == 0, printed.output
    data = json.loads(printed.stdout)
    assert data["compare"] == "vqa" and [c["b"] for c in data["comparisons"]] == ["b", "a"]
    assert data["comparisons"][0]["metrics"]["closed_accuracy"]["p_value"] == pytest.approx(0.125)
    assert data["comparisons"][1]["metrics"]["closed_accuracy"]["diff"] == 0.0
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "closed_accuracy" in table.stdout and "mcnemar-exact" in table.stdout


def test_llava_med_answer_files_compared(shared_data: Path) -> None:
    """The plain and the yes/no-prompted answer files of LLaVA-Med 7B on VQA-RAD, in compat mode."""
    gt = shared_data / "vqa-rad" / "test.json"
    plain = shared_data / "llava-med-eval" / "answer_file_vqa_rad.jsonl"
    yes_no = shared_data / "llava-med-eval" / "answer_file_vqa_rad3_closed.jsonl"
    (comparison,) = eval_compare(gt, plain, yes_no, CompareConfig(compat="llava-med")).comparisons
    closed = comparison.metrics["closed_accuracy"]
    assert (round(closed.a, 2), round(closed.b, 2), closed.n) == (29.78, 72.43, 272)
    assert round(closed.diff, 2) == 42.65
    assert closed.ci95[0] > 30 and closed.p_value < 1e-10
    recall = comparison.metrics["recall"]
    assert (round(recall.a, 2), round(recall.b, 2), recall.n) == (63.32, 63.33, 179)
    assert recall.ci95[0] < 0 < recall.ci95[1] and recall.p_value > 0.5
    assert comparison.n == 451 and comparison.missing == {"a": 0, "b": 0}
