"""Markdown + PNG reports from evaluation results (vital.evaluate.report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vital.cli import app
from vital.errors import InputError
from vital.evaluate.report import ReportConfig, eval_report, result_kind
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
    "ci95": {"recall": [60.0, 80.0], "closed_accuracy": [71.0, 88.0], "f1": [50.0, 70.0]},
    "benchmark": "vqa-rad",
    "breakdown": {
        "organ": {
            "CHEST": {"recall": 75.0, "closed_accuracy": 90.0, "n_open": 5, "n_closed": 12,
                      "ci95": {"recall": [60.0, 90.0], "closed_accuracy": [80.0, 100.0]}},
            "HEAD": {"recall": None, "closed_accuracy": 70.0, "n_open": 0, "n_closed": 6,
                     "ci95": {"recall": None, "closed_accuracy": [40.0, 95.0]}},
        },
        "region": {
            "chest": {"recall": 75.0, "closed_accuracy": 90.0, "n_open": 5, "n_closed": 12, "ci95": {}},
        },
    },
    "label_sets": {"organ": "vqa-rad", "region": "body-region"},
}
SLAKE = dict(
    VQA,
    benchmark="slake",
    breakdown={
        "organ": {"Lung": {"recall": 50.0, "closed_accuracy": 60.0, "n_open": 20, "n_closed": 20, "ci95": {}}},
        "region": {"chest": {"recall": 50.0, "closed_accuracy": 60.0, "n_open": 20, "n_closed": 20, "ci95": {}}},
    },
    label_sets={"organ": "slake", "region": "body-region"},
)
CHAT = {
    "conversation": {"reference_score": 9.0, "model_score": 6.0, "relative_score": 66.7, "n": 30,
                     "ci95": {"relative_score": [60.0, 72.0]}},
    "mri": {"reference_score": 8.0, "model_score": 6.0, "relative_score": 75.0, "n": 2,
            "ci95": {"relative_score": [70.0, 80.0]}},
    "overall": {"reference_score": 9.0, "model_score": 6.0, "relative_score": 66.7, "n": 30,
                "ci95": {"relative_score": [60.0, 72.0]}},
}
WINRATE = {
    "model_a": "ours",
    "model_b": "base",
    "judge": "openai:judge",
    "order_agreement": 90.0,
    "overall": win_rate(["A", "A", "tie", "B"] * 5),
    "by_benchmark": {"vqa-rad": win_rate(["A", "A", "tie", "B"] * 3)},
    "by_category": {"mri": win_rate(["A", "tie"])},
}
COMPARE = {
    "compare": "vqa",
    "a": "base",
    "mode": "llava-med",
    "comparisons": [
        {"b": "ours", "n": 451, "missing": {"a": 0, "b": 2},
         "metrics": {"closed_accuracy": {"a": 29.78, "b": 72.43, "diff": 42.65, "ci95": [34.9, 49.6],
                                         "p_value": 1e-22, "test": "mcnemar-exact", "n": 272},
                     "recall": {"a": 63.3, "b": 63.3, "diff": 0.0, "ci95": [-3.8, 3.8], "p_value": 1.0,
                                "test": "sign-flip", "n": 179}}},
    ],
}


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_result_kinds() -> None:
    kinds = [result_kind(data) for data in (VQA, CHAT, WINRATE, COMPARE)]
    assert kinds == ["vqa", "chat", "winrate", "compare"]
    assert result_kind({"foo": 1}) is None


def test_report_has_tables_and_real_plots(tmp_path: Path) -> None:
    other = dict(VQA, recall=50.0)
    result = eval_report(
        [
            ("ours", write(tmp_path / "a.json", VQA)),
            ("base", write(tmp_path / "b.json", other)),
            write(tmp_path / "chat.json", CHAT),
            write(tmp_path / "win.json", WINRATE),
            write(tmp_path / "cmp.json", COMPARE),
        ],
        tmp_path / "report",
    )
    text = result.out.read_text()
    assert "| ours | 70.0 [60.0, 80.0] | 65.0 | 80.0 [71.0, 88.0] |" in text
    assert "| base | 50.0 [60.0, 80.0] |" in text
    assert "| conversation | 66.7 [60.0, 72.0] (n=30) |" in text
    assert "| mri | _n=2 < 10_ |" in text  # too few questions: greyed, no number
    assert "| ours vs base | 10 | 5 | 5 | 20 | 62.5 [" in text
    assert "| closed_accuracy | 29.78 | 72.43 | 42.65 | [34.90, 49.60] | 1e-22 | mcnemar-exact | 272 |" in text
    images = [line.rsplit("(", 1)[1][:-1] for line in text.splitlines() if line.startswith("![")]
    assert {plot.path.name for plot in result.plots} == set(images)
    assert {"vqa_overall.png", "chat_relative.png", "winrate_benchmark.png", "compare_cmp.png"} <= set(images)
    for name in images:
        with Image.open(tmp_path / "report" / name) as image:
            assert image.format == "PNG" and image.width > 400
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 10  # bars, not a blank canvas


def test_plots_carry_intervals_and_counts(tmp_path: Path) -> None:
    result = eval_report([("ours", write(tmp_path / "a.json", VQA)), write(tmp_path / "chat.json", CHAT)],
                         tmp_path / "r", ReportConfig(min_n=10))
    plots = {plot.path.name: plot for plot in result.plots}
    overall = plots["vqa_overall.png"]
    assert overall.groups == ["open recall", "closed accuracy", "open F1", "open accuracy"]
    assert overall.errors["ours"][:3] == [[60.0, 80.0], [71.0, 88.0], [50.0, 70.0]]
    assert overall.counts["ours"] == [10, 12, 10, 10]
    organ = plots["vqa_organ_vqa-rad_closed_accuracy.png"]
    assert organ.groups == ["CHEST", "HEAD"] and organ.counts["ours"] == [12, 6]
    assert organ.series["ours"] == [90.0, None]  # HEAD has 6 < 10 closed questions: no bar
    assert organ.errors["ours"][0] == [80.0, 100.0]
    chat = plots["chat_relative.png"]
    assert chat.series["chat"] == [66.7, None, 66.7] and chat.counts["chat"] == [30, 2, 30]
    assert chat.errors["chat"][0] == [60.0, 72.0]


def test_drawn_bars_have_error_bars_and_n_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    drawn: list[dict] = []
    labels: list[list[str]] = []
    bar, bar_label = matplotlib.axes.Axes.bar, matplotlib.axes.Axes.bar_label
    monkeypatch.setattr(matplotlib.axes.Axes, "bar", lambda self, *a, **k: drawn.append(k) or bar(self, *a, **k))
    monkeypatch.setattr(matplotlib.axes.Axes, "bar_label",
                        lambda self, bars, labels_=None, **k: labels.append(k["labels"]) or bar_label(self, bars, **k))
    eval_report([("ours", write(tmp_path / "a.json", VQA))], tmp_path / "r")
    below, above = drawn[0]["yerr"]
    assert below[:2] == [10.0, 9.0] and above[:2] == [10.0, 8.0]  # recall 70 in [60, 80], closed 80 in [71, 88]
    assert labels[0] == ["n=10", "n=12", "n=10", "n=10"]


def test_breakdowns_of_two_benchmarks_never_share_an_axis(tmp_path: Path) -> None:
    result = eval_report([("rad", write(tmp_path / "rad.json", VQA)), ("slake", write(tmp_path / "s.json", SLAKE))],
                         tmp_path / "r")
    plots = {plot.path.name: plot for plot in result.plots}
    assert plots["vqa_organ_vqa-rad_recall.png"].groups == ["CHEST", "HEAD"]
    assert list(plots["vqa_organ_vqa-rad_recall.png"].series) == ["rad"]
    assert plots["vqa_organ_slake_recall.png"].groups == ["Lung"]
    assert list(plots["vqa_organ_slake_recall.png"].series) == ["slake"]
    region = plots["vqa_region_body-region_recall.png"]  # mapped explicitly onto one vocabulary: shared
    assert region.groups == ["chest"] and list(region.series) == ["rad", "slake"]
    text = result.out.read_text()
    assert "### By organ (vqa-rad labels)" in text and "### By organ (slake labels)" in text


def test_report_cli_names_and_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "report", f"mine={write(tmp_path / 'a.json', VQA)}", "--out", str(tmp_path / "r"),
              "--min-n", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "| mine | 70.0" in (tmp_path / "r" / "report.md").read_text()
    with pytest.raises(InputError, match="not an evaluation result"):
        eval_report([write(tmp_path / "x.json", {"foo": 1})], tmp_path / "r2")
    with pytest.raises(InputError, match="is a directory"):
        eval_report([tmp_path], tmp_path / "r3")
