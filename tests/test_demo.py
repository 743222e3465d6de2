"""The demo runs every stage offline on a temporary workspace."""

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
