"""The command line contract: help, version, exit status 2 with one clear line for bad input."""

import json
import subprocess
import sys

import pytest


def vital(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "vital", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_help_lists_every_stage():
    result = vital("--help")
    assert result.returncode == 0
    for command in ("figures", "sample", "generate", "judge", "annotate", "selector", "select", "eval", "demo"):
        assert command in result.stdout, command


def test_version():
    result = vital("--version")
    assert result.returncode == 0 and result.stdout.startswith("vital ")


def test_jsonl_broken_on_line_7_exits_2_naming_line_7(tmp_path):
    src = tmp_path / "figures.jsonl"
    lines = [json.dumps({"pair_id": f"p{i}", "fig_caption": "Axial CT."}) for i in range(10)]
    lines[6] = '{"pair_id": "p6", "fig_caption": "Axial CT."'  # unterminated object
    src.write_text("\n".join(lines) + "\n")
    result = vital("figures", "import", src, "--out", tmp_path / "out.jsonl")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert f"{src}:7:" in result.stderr and "not valid JSON" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_unknown_format_exits_2(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("id,image,caption\na,b.png,c\n")
    result = vital("figures", "import", src, "--format", "parquet", "--out", tmp_path / "o.jsonl")
    assert result.returncode == 2
    expected = "error: field '--format': 'parquet' is not one of auto, llava-med, biomed-vital, csv, vital\n"
    assert result.stderr == expected


def test_missing_caption_field_exits_2(tmp_path):
    src = tmp_path / "f.jsonl"
    src.write_text('{"id": "a", "caption": "x"}\n{"id": "b", "caption": "y"}\n{"id": "c"}\n')
    result = vital("sample", src, "--n", "2", "--out", tmp_path / "s.jsonl")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {src}:3: field 'caption': required field is missing"


def test_import_prints_a_summary_table(tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("id,image,caption,domains\na,missing.png,Chest radiograph.,CXR\n")
    result = vital("figures", "import", src, "--out", tmp_path / "f.jsonl")
    assert result.returncode == 1, result.stderr  # imported, but one figure has no image: listed as a failure
    assert "chest_xray" in result.stdout and "1 missing" in result.stdout
    assert f"listed in {tmp_path / 'f.failures.jsonl'}" in result.stderr


@pytest.mark.parametrize("args", [["sample"], ["figures", "import"]])
def test_usage_errors_exit_2(args):
    assert vital(*args).returncode == 2


def test_generate_refuses_to_append_to_its_own_input(tmp_path):
    figures = tmp_path / "figures.jsonl"
    figures.write_text('{"id": "a", "caption": "Axial CT of the chest."}\n')
    result = vital("generate", figures, "--out", figures, "--backend", "caption")
    assert result.returncode == 2 and "--out" in result.stderr
    assert figures.read_text().count("\n") == 1


def test_judge_pairwise_into_a_scores_file_exits_2(tmp_path):
    figures = tmp_path / "figures.jsonl"
    figures.write_text('{"id": "a", "caption": "Axial CT of the chest."}\n')
    candidates = tmp_path / "candidates.jsonl"
    assert vital("generate", figures, "--out", candidates, "--backend", "caption", "--candidates", "2").returncode == 0
    scores = tmp_path / "scores.jsonl"
    assert vital("judge", candidates, "--figures", figures, "--out", scores, "--backend", "heuristic").returncode == 0
    result = vital("judge", candidates, "--figures", figures, "--out", scores, "--pairwise", "--backend", "heuristic")
    assert result.returncode == 2 and "field 'chosen'" in result.stderr


def test_failed_items_give_exit_status_1_and_keep_a_failures_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    figures = tmp_path / "figures.jsonl"
    figures.write_text('{"id": "a", "caption": "Axial CT of the chest."}\n')
    out = tmp_path / "candidates.jsonl"
    result = vital("generate", figures, "--out", out, "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0")
    assert result.returncode == 1 and "retry them" in result.stderr
    assert (tmp_path / "candidates.failures.jsonl").is_file()
    assert "sk-test-not-a-real-key" not in result.stderr + result.stdout
