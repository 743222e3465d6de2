"""Markdown + PNG reports from evaluation results (vital.evaluate.report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vital.cli import app
from vital.errors import InputError
from vital.evaluate.report import result_kind, write_report
from vital.evaluate.winrate import win_rate

VQA = {
    "exact_match": 50.0,
    "f1": 60.0,
    "precision": 55.0,
    "recall": 70.0,
    "bleu": 5.0,
    "bleu_1": 40.0,
    "bleu_2": 20.0,
    "bleu_3": 10.0,
    "open_accuracy": 65.0,
    "closed_accuracy": 80.0,
    "closed_recall": 80.0,
    "n_open": 10,
    "n_closed": 12,
    "breakdown": {
        "organ": {
            "CHEST": {"recall": 75.0, "closed_accuracy": 90.0, "n_open": 5, "n_closed": 6},
            "HEAD": {"recall": None, "closed_accuracy": 70.0, "n_open": 0, "n_closed": 6},
        }
    },
}
CHAT = {
    "conversation": {"reference_score": 9.0, "model_score": 6.0, "relative_score": 66.7, "n": 3},
    "mri": {"reference_score": 8.0, "model_score": 6.0, "relative_score": 75.0, "n": 2},
    "overall": {"reference_score": 9.0, "model_score": 6.0, "relative_score": 66.7, "n": 3},
}
WINRATE = {
    "model_a": "ours",
    "model_b": "base",
    "judge": "openai:judge",
    "order_agreement": 90.0,
    "overall": win_rate(["A", "A", "tie", "B"]),
    "by_category": {"mri": win_rate(["A", "tie"])},
}


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_result_kinds() -> None:
    assert (result_kind(VQA), result_kind(CHAT), result_kind(WINRATE)) == ("vqa", "chat", "winrate")
    assert result_kind({"foo": 1}) is None


def test_report_has_tables_and_real_plots(tmp_path: Path) -> None:
    other = dict(VQA, recall=50.0)
    report = write_report(
        [
            ("ours", write(tmp_path / "a.json", VQA)),
            ("base", write(tmp_path / "b.json", other)),
            write(tmp_path / "chat.json", CHAT),
            write(tmp_path / "win.json", WINRATE),
        ],
        tmp_path / "report",
    )
    text = report.read_text()
    assert "| ours | 70.0 | 65.0 | 80.0 |" in text
    assert "| base | 50.0 |" in text
    assert "| HEAD | - / 70.0 | - / 70.0 |" in text
    assert "| mri | 75.0 (2) |" in text
    assert "| ours vs base | 2 | 1 | 1 | 62.5 [" in text
    images = [line[line.index("(") + 1 : -1] for line in text.splitlines() if line.startswith("![")]
    assert {"vqa_overall.png", "vqa_organ_recall.png", "chat_relative.png", "winrate.png"} <= set(images)
    for name in images:
        with Image.open(tmp_path / "report" / name) as image:
            assert image.format == "PNG" and image.width > 400
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 10  # bars, not a blank canvas


def test_report_cli_names_and_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "report", f"mine={write(tmp_path / 'a.json', VQA)}", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert "| mine | 70.0" in (tmp_path / "r" / "report.md").read_text()
    with pytest.raises(InputError, match="not an evaluation result"):
        write_report([write(tmp_path / "x.json", {"foo": 1})], tmp_path / "r2")
