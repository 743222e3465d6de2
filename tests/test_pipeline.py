"""A round from one config: vital init, vital run (skip rule, re-runs, resume, the clinician gate), run.json."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vital
from openai_double import DoubleConfig, running_double
from vital.errors import InputError
from vital.pipeline import EXIT_WAITING

LIGHT_ROUND = """\
[figures]
src = "corpus/corpus.csv"
require_images = true

[sample]
n = 6
clusters = 3
cache_dir = "feature-cache"

[generate]
backend = "caption"
candidates = 3

[judge]
backend = "heuristic"

[selector]
text_encoder = "hashing"
epochs = 2

[select]
top_fraction = 0.5
"""


def vital_cli(*args: object, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vital", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})})


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``folder``: its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def light_round(folder: Path, config: str = LIGHT_ROUND) -> Path:
    from vital.demo.corpus import build_corpus

    build_corpus(folder / "corpus")
    (folder / "vital.toml").write_text(config)
    return folder / "vital.toml"


@pytest.fixture(scope="module")
def demo_round(tmp_path_factory) -> tuple[Path, vital.pipeline.RunResult, list[str]]:
    """The demo round as `make demo` runs it: init --demo, then run."""
    folder = tmp_path_factory.mktemp("demo") / "round"
    config = vital.init(folder, demo=True)
    lines: list[str] = []
    result = vital.run(config, say=lines.append)
    return folder, result, lines


def test_demo_round_runs_every_stage_offline(demo_round):
    folder, result, lines = demo_round
    assert result.exit_status == 0, lines
    assert {name for name, status in result.statuses.items() if status == "done"} == {
        "figures", "sample", "generate", "judge", "annotate", "selector", "select", "tune", "eval"}
    assert result.statuses["draft"] == result.statuses["annotate_demos"] == "off"
    record = json.loads((folder / "run.json").read_text())
    tune = record["stages"]["tune"]
    assert tune["status"] == "done" and tune["counts"]["steps"] > 0 and tune["inputs"]["selected.json"]
    assert set(tune["versions"]) == {"vital", "python", "torch", "transformers"}
    assert record["stages"]["select"]["outputs"]["selected.json"].startswith("sha256:")
    selected = json.loads((folder / "selected.json").read_text())
    assert selected and all(r["conversations"][0]["value"].startswith("<image>\n") for r in selected)
    assert (folder / "tuned" / "config.json").is_file() and (folder / "tuned" / "log.jsonl").is_file()
    compare = json.loads((folder / "eval" / "compare.json").read_text())
    assert compare["comparisons"][0]["n"] == 28  # the tuned model against its base, question by question
    assert result.report == folder / "report.html" and "Evaluation" in result.report.read_text()
    # each stage says how it ended, with its counts
    kept = record["stages"]["select"]["counts"]["kept"]
    assert any(line.startswith("select: done in ") and f"(kept {kept}; considered " in line for line in lines), lines


def test_a_rerun_with_nothing_changed_runs_and_rewrites_nothing(demo_round):
    folder, _, _ = demo_round
    before = snapshot(folder)
    lines: list[str] = []
    result = vital.run(folder / "vital.toml", say=lines.append)
    assert set(result.statuses.values()) <= {"skipped", "off"}, result.statuses
    assert "nothing changed since the last run: every stage is up to date" in lines
    assert snapshot(folder) == before


def test_a_changed_setting_reruns_that_stage_and_what_follows(tmp_path):
    config = light_round(tmp_path)
    vital.run(config)
    select_before = (tmp_path / "selected.json").stat().st_mtime_ns
    config.write_text(LIGHT_ROUND.replace("top_fraction = 0.5", "top_fraction = 0.3"))
    result = vital.run(config)
    assert result.statuses == {"figures": "skipped", "sample": "skipped", "draft": "off", "annotate_demos": "off",
                               "generate": "skipped", "judge": "skipped", "annotate": "off",
                               "selector": "skipped", "select": "done", "tune": "off", "eval": "off"}
    assert (tmp_path / "selected.json").stat().st_mtime_ns != select_before
    kept = json.loads((tmp_path / "run.json").read_text())["stages"]["select"]["counts"]["kept"]
    assert kept == round(0.3 * 48)
    # concurrency is how, not what: changing it re-runs nothing
    config.write_text(LIGHT_ROUND.replace("top_fraction = 0.5", "top_fraction = 0.3")
                      .replace('backend = "heuristic"', 'backend = "heuristic"\nconcurrency = 3'))
    assert set(vital.run(config).statuses.values()) <= {"skipped", "off"}
    # --force and --from
    assert vital.run(config, force=["sample"]).statuses["sample"] == "done"
    statuses = vital.run(config, from_stage="selector").statuses
    assert statuses["selector"] == statuses["select"] == "done" and statuses["judge"] == "skipped"
    assert set(vital.run(config, only=["figures"]).statuses) == {"figures"}


def test_a_changed_input_reruns_what_depends_on_it(tmp_path):
    config = light_round(tmp_path)
    vital.run(config)
    with (tmp_path / "corpus" / "corpus.csv").open("a") as handle:
        handle.write('extra-ct,images/ct_thorax.dcm,"Axial CT of the thorax, again.",,ct_scan\n')
    result = vital.run(config)
    assert all(result.statuses[name] == "done" for name in ("figures", "sample", "generate", "judge", "select"))
    candidates = (tmp_path / "candidates.jsonl").read_text().splitlines()
    assert len(candidates) == 17 * 3 and len({json.loads(c)["id"] for c in candidates}) == 17 * 3


@pytest.mark.parametrize(
    ("edit", "line", "field", "problem"),
    [
        ("[select]\ntop_fraction = 0.5\ncolour = 'red'\n", 3, "[select] colour", "unknown setting"),
        ("[select]\n\ntop_fraction = 'half'\n", 3, "[select] top_fraction", "expected a number"),
        ("[select]\ntop_fraction = 2.0\n", 2, "[select] top_fraction", "must be in (0, 1]"),
        ("[selction]\ntop_fraction = 0.5\n", 1, "[selction]", "unknown section"),
        ("[generate]\ndemos = 'x.jsonl'\n", 2, "[generate] demos", "set by the round itself"),
    ],
    ids=["unknown-key", "wrong-type", "bad-value", "unknown-section", "wired-key"],
)
def test_bad_config_is_exit_2_naming_file_line_and_key(tmp_path, edit, line, field, problem):
    config = tmp_path / "vital.toml"
    header = '[figures]\nsrc = "corpus.csv"\n'
    config.write_text(header + edit)
    with pytest.raises(InputError) as caught:
        vital.run(config)
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(config), line + 2, field)
    assert problem in caught.value.problem
    result = vital_cli("run", config)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {caught.value}"


def test_init_writes_a_starter_that_loads_and_refuses_to_overwrite(tmp_path):
    from vital.pipeline.config import load_round

    config = vital.init(tmp_path / "round")
    text = config.read_text()
    assert "api_key_env" in text and "sk-" not in text
    loaded = load_round(config)
    assert loaded["select"].get(vital.SelectConfig).top_fraction == 0.4
    assert loaded["generate"].get(vital.EngineConfig).model == "gpt-4o"
    with pytest.raises(InputError, match="already exists"):
        vital.init(tmp_path / "round")


GENERATE_ROUND = """\
[figures]
src = "corpus/corpus.csv"

[generate]
base_url = "{url}"
model = "double"
api_key_env = "VITAL_TEST_KEY"
candidates = 2
concurrency = 2
max_retries = 1

[judge]
backend = "heuristic"
"""


def test_kill_9_in_the_middle_of_generation_then_the_same_command_finishes(tmp_path):
    with running_double(DoubleConfig(latency=0.3)) as double:
        config = light_round(tmp_path, GENERATE_ROUND.format(url=double.base_url))
        env = {"VITAL_TEST_KEY": "sk-test", "HF_HUB_OFFLINE": "1"}
        process = subprocess.Popen([sys.executable, "-m", "vital", "run", str(config)], env={**os.environ, **env},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        candidates = tmp_path / "candidates.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not candidates.exists() or candidates.read_text().count("\n") < 6):
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait()
        written = candidates.read_text().count("\n")
        assert 6 <= written < 32, "the kill should land in the middle of generation"
        assert json.loads((tmp_path / "run.json").read_text())["stages"]["generate"]["status"] == "running"
        result = vital_cli("run", config, env=env)
        assert result.returncode == 0, result.stderr
    ids = [json.loads(line)["id"] for line in candidates.read_text().splitlines()]
    assert len(ids) == 32 and len(set(ids)) == 32  # nothing lost, nothing duplicated
    record = json.loads((tmp_path / "run.json").read_text())["stages"]
    assert record["generate"]["status"] == "done" and record["judge"]["status"] == "done"
    assert record["generate"]["counts"]["resumed"] == written


GATED_ROUND = LIGHT_ROUND + """
[annotate]
db = "annotations.db"
require_preferences = 2
"""


def test_the_clinician_gate_waits_then_goes_on_with_their_preferences(tmp_path):
    config = light_round(tmp_path, GATED_ROUND)
    lines: list[str] = []
    first = vital.run(config, say=lines.append)
    assert first.exit_status == EXIT_WAITING
    assert first.statuses["annotate"] == "waiting" and first.statuses["selector"] == "waiting"
    assert first.statuses["select"] == "waiting" and first.statuses["judge"] == "done"
    assert any("vital annotate serve --db" in line for line in lines)
    assert any("vital annotate add-user" in line for line in lines)
    cli = vital_cli("run", config)
    assert cli.returncode == EXIT_WAITING and "waiting for clinicians" in cli.stderr

    client, headers = signed_in_client(tmp_path / "annotations.db", "dr-lee")
    answered = 0
    while (task := client.post("/api/tasks/next", params={"kind": "compare"}, headers=headers)).status_code == 200:
        reply = client.post(f"/api/tasks/{task.json()['task_id']}/answer", json={"choice": "A"}, headers=headers)
        assert reply.status_code == 200, reply.text
        answered += 1
    assert answered >= 2

    second = vital.run(config)
    assert second.exit_status == 0
    assert second.statuses["annotate"] == "done" and second.statuses["selector"] == "done"
    assert second.statuses["judge"] == "skipped"
    pairs = json.loads((tmp_path / "selector" / "metrics.json").read_text())["pairs"]
    assert pairs["human_train"] + pairs["human_held_out"] >= 2


def signed_in_client(db_path: Path, name: str):
    from fastapi.testclient import TestClient

    from vital.annotate import AnnotationDB, ServeConfig, add_user, create_app, issue_login_token, login_url

    db = AnnotationDB(db_path)
    client = TestClient(create_app(db, ServeConfig()))
    user, _ = add_user(db, name)
    client.get(login_url("", issue_login_token(db, user)), follow_redirects=True)
    return client, {"X-CSRF-Token": client.cookies["csrf_token"]}


def test_clinicians_choose_demonstrations_before_the_corpus_is_generated(tmp_path):
    config = light_round(tmp_path, LIGHT_ROUND + '\n[annotate]\nrequire_demonstrations = 2\n')
    first = vital.run(config)
    assert first.exit_status == EXIT_WAITING
    assert first.statuses["draft"] == "done" and first.statuses["annotate_demos"] == "waiting"
    assert first.statuses["generate"] == first.statuses["judge"] == first.statuses["select"] == "waiting"
    drafts = [json.loads(line) for line in (tmp_path / "draft-candidates.jsonl").read_text().splitlines()]
    assert {c["figure_id"] for c in drafts} == {json.loads(line)["id"] for line in
                                                (tmp_path / "sample.jsonl").read_text().splitlines()}
    assert not (tmp_path / "candidates.jsonl").exists()

    client, headers = signed_in_client(tmp_path / "annotations.db", "dr-kim")
    for _ in range(2):
        task = client.post("/api/tasks/next", params={"kind": "demos"}, headers=headers).json()
        best = task["candidates"][0]["id"]
        reply = client.post(f"/api/tasks/{task['task_id']}/answer", json={"best": best, "acceptable": []},
                            headers=headers)
        assert reply.status_code == 200, reply.text
    second = vital.run(config)
    assert second.exit_status == 0, second.statuses
    assert second.statuses["annotate_demos"] == "done" and second.statuses["generate"] == "done"
    demos = (tmp_path / "clinician-demos.jsonl").read_text().splitlines()
    assert len(demos) == 2 and all(json.loads(line)["conversations"] for line in demos)


def test_a_tune_section_without_a_base_is_off_and_says_why(tmp_path):
    (tmp_path / "vital.toml").write_text(LIGHT_ROUND + '\n[tune]\nmethod = "lora"\n')
    lines: list[str] = []
    result = vital.run(tmp_path / "vital.toml", only=["tune"], say=lines.append)
    assert result.statuses["tune"] == "off" and result.exit_status == 0
    assert "tune: off (no base model configured ([tune] base = a local llava-hf checkpoint); nothing to tune)" in lines


def test_no_wait_goes_on_with_the_judge_alone(tmp_path):
    config = light_round(tmp_path, GATED_ROUND)
    result = vital.run(config, no_wait=True)
    assert result.exit_status == 0 and result.statuses["select"] == "done"


def test_the_demo_command_is_init_and_run(tmp_path, demo_round):
    folder, _, _ = demo_round
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, symlinks=True)
    result = vital_cli("demo", "--workspace", copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"report: {copy / 'report.html'}")
