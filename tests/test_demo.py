"""The demo runs every stage offline on a temporary workspace."""

import json

from vital.demo import run_demo
from vital.jsonl import iter_json_lines
from vital.records import Figure


def test_demo_runs_offline_end_to_end(tmp_path):
    workspace = run_demo(tmp_path / "ws")
    figures = [Figure.model_validate(obj) for _, obj in iter_json_lines(workspace.figures)]
    assert 12 <= len(figures) <= 20
    assert all((workspace.root / f.image).is_file() for f in figures)
    assert {d for f in figures for d in f.domains} >= {"ct_scan", "mri", "histology"}
    sample = [obj for _, obj in iter_json_lines(workspace.sample)]
    assert sample and all("cluster" in r for r in sample)
    demos = [Figure.model_validate(obj) for _, obj in iter_json_lines(workspace.demos)]
    assert demos and all(d.conversations for d in demos)
    candidates = [obj for _, obj in iter_json_lines(workspace.candidates)]
    assert len(candidates) >= 2 * len(figures)
    assert sum(1 for _ in iter_json_lines(workspace.scores)) == len(candidates)
    assert (workspace.root / "annotations.db").is_file()
    assert (workspace.root / "selector" / "metrics.json").is_file()
    selected = json.loads((workspace.root / "selected.json").read_text())
    assert 0 < len(selected) < len(candidates)
    for record in selected:
        turns = record["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert sum(t["value"].count("<image>") for t in turns) == 1
        assert turns[0]["value"].startswith("<image>")
        assert (workspace.root / record["image"]).is_file()
    assert (workspace.root / "eval-report" / "report.md").is_file()
