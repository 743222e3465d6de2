"""docs/api.md's examples run, in order, in one folder: the documented API is the real one."""

from __future__ import annotations

import re
from pathlib import Path

import vital

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_help_lists_the_stages():
    text = vital.__doc__ or ""
    for name in ("import_figures", "sample", "generate", "judge", "Selector", "select", "tune", "run", "eval_"):
        assert f"``{name}" in text, name
    assert {"sample", "generate", "judge", "select", "tune", "run", "eval_vqa"} <= set(vital.__all__)
    assert all(getattr(vital, name) is not None for name in vital.__all__)


def test_the_examples_in_docs_api_md_run(tmp_path, monkeypatch):
    blocks = re.findall(r"(<!-- not run[^>]*-->\n)?```python\n(.*?)```", DOC.read_text(encoding="utf-8"),
                        flags=re.DOTALL)
    blocks = [code for marker, code in blocks if not marker]
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)  # noqa: S102
