"""Generation: reply parsing, prompts with demonstrations, the caption backend, resume, shards, crashes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from openai_double import DoubleConfig, running_double, write_figures
from vital.errors import InputError
from vital.generation import (
    GenerateConfig,
    caption_conversation,
    generate,
    load_demonstrations,
    make_policy,
    parse_conversation,
)
from vital.generation.run import leading_id
from vital.jsonl import FailureLog, failures_path, finished_ids
from vital.llm import EngineConfig, ReplyError
from vital.records import Figure, Turn

VITAL = str(Path(sys.executable).with_name("vital"))
KEY = "sk-generate-secret-0042"

# --- parsing ------------------------------------------------------------------------------------

GOOD_REPLIES = {
    "plain labels": "User: What modality is this?\nAssistant: A CT scan.\n"
                    "User: Which side?\nAssistant: Left.",
    "preamble and blank lines": (
        "Sure! Here is a conversation about the image.\n\nUser: What modality is this?\n\n"
        "Assistant: A CT scan.\n\nUser: Which side?\nAssistant: Left."
    ),
    "bold labels": "**User:** What modality is this?\n**Assistant:** A CT scan.\n"
                   "**User:** Which side?\n**Assistant:** Left.",
    "bold outside colon": "**User**: What modality is this?\n**Assistant**: A CT scan.\n"
                          "**User**: Which side?\n**Assistant**: Left.",
    "headings": "### User\nWhat modality is this?\n### Assistant\nA CT scan.\n\n### User\nWhich side?\n"
                "### Assistant\nLeft.",
    "human/gpt": "Human: What modality is this?\nGPT: A CT scan.\nHuman: Which side?\nGPT: Left.",
    "Q/A": "Q: What modality is this?\nA: A CT scan.\nQ: Which side?\nA: Left.",
    "numbered Q/A": "Q1: What modality is this?\nA1: A CT scan.\nQ2: Which side?\nA2: Left.",
    "question/answer numbered": "Question 1: What modality is this?\nAnswer 1: A CT scan.\n\n"
                                "Question 2: Which side?\nAnswer 2: Left.",
    "list items": "1. **Question:** What modality is this?\n   **Answer:** A CT scan.\n"
                  "2. **Question:** Which side?\n   **Answer:** Left.",
    "numbered questions": "1. What modality is this?\nA CT scan.\n\n2. Which side?\nLeft.",
    "json list of turns": json.dumps([
        {"from": "human", "value": "What modality is this?"}, {"from": "gpt", "value": "A CT scan."},
        {"from": "human", "value": "Which side?"}, {"from": "gpt", "value": "Left."},
    ]),
    "json pairs in a fence": "```json\n" + json.dumps({"conversations": [
        {"question": "What modality is this?", "answer": "A CT scan."},
        {"question": "Which side?", "answer": "Left."},
    ]}) + "\n```",
    "json roles": json.dumps({"messages": [
        {"role": "user", "content": "What modality is this?"}, {"role": "assistant", "content": "A CT scan."},
        {"role": "user", "content": "Which side?"}, {"role": "assistant", "content": "Left."},
    ]}),
    "image token in the wrong place": "User: What modality is this?\nAssistant: A CT scan.\n"
                                      "User: <image>\nWhich side?\nAssistant: Left.",
    "separators": "User: What modality is this?\nAssistant: A CT scan.\n---\n"
                  "User: Which side?\nAssistant: Left.",
}


@pytest.mark.parametrize("name", list(GOOD_REPLIES))
def test_parser_reads_many_formats(name):
    turns = parse_conversation(GOOD_REPLIES[name])
    assert [(t.speaker, t.value) for t in turns] == [
        ("human", "<image>\nWhat modality is this?"), ("gpt", "A CT scan."),
        ("human", "Which side?"), ("gpt", "Left."),
    ]


def test_parser_keeps_multi_line_answers_and_lists():
    reply = ("User: What are the findings?\nAssistant: There are two findings:\n- a nodule in the left lung\n"
             "- a small effusion\n\nBoth are marked by arrows.\nUser: Is the heart enlarged?\nAssistant: No.")
    turns = parse_conversation(reply)
    assert turns[1].value == ("There are two findings:\n- a nodule in the left lung\n- a small effusion\n\n"
                              "Both are marked by arrows.")
    assert len(turns) == 4


@pytest.mark.parametrize("reply, reason", [
    ("", "empty"),
    ("I'm sorry, I can't describe medical images.", "no question-and-answer"),
    ("User: What is this?\nUser: And this?\nAssistant: A CT.", "turn 2 is from 'human', expected 'gpt'"),
    ("Assistant: Hello.\nUser: What is this?\nAssistant: A CT.", "turn 1 is from 'gpt', expected 'human'"),
    ("User: What is this?\nAssistant: A CT.\nUser: Which side?", "no answer"),
    ("User: What is this?\nAssistant:", "no answer"),
    ("User: What is this?\nAssistant: \nUser: Which side?\nAssistant: Left.", "turn 2 is empty"),
])
def test_parser_rejects_unusable_replies(reply, reason):
    with pytest.raises(ReplyError, match=reason):
        parse_conversation(reply)


def test_sentences_starting_with_a_are_not_labels():
    turns = parse_conversation("User: Describe it.\nAssistant: The scan is axial.\n"
                               "A mass is seen on the left.")
    assert turns[1].value == "The scan is axial.\nA mass is seen on the left."


# --- the caption backend ------------------------------------------------------------------------

def test_caption_backend_is_grounded_varied_and_deterministic():
    figure = Figure(id="f", caption="Axial CT of the brain showing a hemorrhage [Figure 2].",
                    mentions=["The haemorrhage (Fig. 2) measured 2 cm."], domains=["ct_scan"])
    first = [caption_conversation(figure, k) for k in range(4)]
    assert first == [caption_conversation(figure, k) for k in range(4)]
    assert len({json.dumps([t.value for t in c]) for c in first}) > 1
    for conversation in first:
        assert conversation[0].value.startswith("<image>\n")
        assert "Figure 2" not in conversation[1].value and "Fig. 2" not in conversation[1].value
        answers = " ".join(t.value for t in conversation if t.speaker == "gpt")
        assert "computed tomography (CT)" in answers and "brain" in answers
    plain = Figure(id="g", caption="A diagram of the study design.")
    assert len(caption_conversation(plain, 0)) == 2  # nothing stated beyond the description


def test_caption_backend_writes_candidates_and_resumes(tmp_path):
    figures = write_figures(tmp_path, 5)
    out = tmp_path / "candidates.jsonl"
    report = generate(figures, out, GenerateConfig(backend="caption", candidates=3))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert report.stats.done == 15 and len({r["id"] for r in records}) == 15
    assert {r["generator"]["backend"] for r in records} == {"caption"}
    assert records[0]["image"] == "images/fig0.png"  # relative to the output's folder
    again = generate(figures, out, GenerateConfig(backend="caption", candidates=3))
    assert (again.stats.done, again.stats.skipped) == (0, 15)
    assert len(out.read_text().splitlines()) == 15


def test_resume_reads_leading_ids_and_still_checks_the_lines_it_needs(tmp_path):
    assert leading_id(b'{"id":"fig1/c0","x":1}\n') == "fig1/c0"
    assert leading_id(b'{ "id" : "a b", "caption": "c"}') == "a b"
    assert leading_id(b'{"figure_id":"x","id":"y"}') is None
    assert leading_id(b'{"id":"say \\"hi\\"","x":1}') is None
    out = tmp_path / "partial.jsonl"
    out.write_bytes(b'{"id":"a/c0"}\n{"figure_id":"b","id":"b/c0"}\n{"id":"c/c0","conversa')
    assert finished_ids(out) == {"a/c0", "b/c0"}  # the torn last line is not finished

    figures = write_figures(tmp_path, 3)
    with figures.open("a") as handle:
        handle.write('{"id": "fig3", "caption": "   "}\n')
    out = tmp_path / "candidates.jsonl"
    with pytest.raises(InputError) as error:
        generate(figures, out, GenerateConfig(backend="caption", candidates=1))
    assert (error.value.line, error.value.field) == (4, "caption")
    assert not out.exists()  # every line still to do is checked before anything is written


def test_figure_records_are_accepted_as_well_as_a_file(tmp_path):
    figures = [Figure(id=f"r{i}", caption=f"Axial CT of the chest, case {i}.") for i in range(3)]
    out = tmp_path / "candidates.jsonl"
    result = generate(iter(figures), out, GenerateConfig(backend="caption", candidates=2))
    assert (result.stats.done, result.failed, result.failures) == (6, 0, None)
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == sorted(
        f"r{i}/c{k}" for i in range(3) for k in (0, 1))
    again = generate({f.id: f for f in figures}, out, GenerateConfig(backend="caption", candidates=2))
    assert (again.stats.done, again.stats.skipped) == (0, 6)
    with pytest.raises(InputError, match="no figure records"):
        generate([], tmp_path / "none.jsonl", GenerateConfig(backend="caption"))
    assert not (tmp_path / "none.jsonl").exists()


def _bad_figures(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "figures.jsonl"
    contents = {
        "empty": b"",
        "blank lines": b"\n  \n\n",
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\n",
        "non-UTF-8": b'{"id": "f\xff", "caption": "x"}\n',
        "torn last line": b'{"id": "fig0", "caption": "Axial CT',
        "wrong JSON type": b'["fig0", "Axial CT"]\n',
        "missing field": b'{"id": "fig0"}\n',
        "wrong field type": b'{"id": "fig0", "caption": ["Axial CT"]}\n',
    }
    if kind == "directory":
        path.mkdir()
    elif kind != "missing file":
        path.write_bytes(contents[kind])
    return path


BAD_FIGURES = {
    "empty": "has no records", "blank lines": "has no records", "directory": "is a directory",
    "missing file": "file not found", "binary": ":1: not valid JSON", "non-UTF-8": ":1: not valid JSON",
    "torn last line": ":1: not valid JSON", "wrong JSON type": ":1: expected a JSON object",
    "missing field": ":1: field 'caption': required field is missing",
    "wrong field type": ":1: field 'caption': ",
}


@pytest.mark.parametrize("kind", list(BAD_FIGURES))
def test_bad_figures_files_are_input_errors_naming_the_file_and_touch_no_output(tmp_path, kind):
    figures = _bad_figures(tmp_path, kind)
    out = tmp_path / "candidates.jsonl"
    out.write_text('{"id":"old/c0","figure_id":"old","conversations":[]}\n')
    before = out.read_bytes()
    with pytest.raises(InputError) as error:
        generate(figures, out, GenerateConfig(backend="caption"))
    assert str(error.value).startswith(f"{figures}") and BAD_FIGURES[kind] in str(error.value)
    assert out.read_bytes() == before and not failures_path(out).exists()


def test_cli_bad_input_is_one_error_line_and_exit_2(tmp_path):
    figures = write_figures(tmp_path, 2)
    (tmp_path / "empty").mkdir()
    empty = _bad_figures(tmp_path / "empty", "empty")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    out = tmp_path / "c.jsonl"
    is_a_directory = f"error: {folder}: is a directory; expected a file"
    cases = [
        ([str(empty), "--out", str(out)], f"error: {empty}: has no records"),
        ([str(folder), "--out", str(out)], is_a_directory),
        ([str(figures), "--out", str(out), "--shard", "4/4"], "error: field '--shard': '4/4': need 0 <= i < n"),
        ([str(figures), "--out", str(out), "--demos", str(folder)], is_a_directory),
    ]
    for arguments, message in cases:
        result = subprocess.run([VITAL, "generate", *arguments], capture_output=True, text=True, timeout=60)
        assert (result.returncode, result.stderr.splitlines()) == (2, [message]), arguments
    assert not out.exists()


def test_bad_settings_name_the_setting(tmp_path):
    for values, message in [
        (dict(shard="4/4"), "field 'shard': '4/4': need 0 <= i < n"),
        (dict(demo_policy="closest"), "field 'demo_policy': unknown policy"),
        (dict(candidates=0), "field 'candidates': must be at least 1"),
        (dict(max_tokens=0), "field 'max_tokens': must be at least 1"),
        (dict(backend="llava"), "field 'backend': 'llava' is not one of openai, caption"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            GenerateConfig(**values)
    figures = write_figures(tmp_path, 1)
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(InputError, match="a-folder: is a directory"):
        generate(figures, tmp_path / "a-folder", GenerateConfig(backend="caption"))


# --- demonstrations -----------------------------------------------------------------------------

def _demo(i: int, domain: str, caption: str, image: str | None = None) -> Figure:
    return Figure(id=f"demo{i}", caption=caption, domains=[domain], image=image,
                  conversations=[Turn(speaker="human", value=f"<image>\nQuestion {i}?"),
                                 Turn(speaker="gpt", value=f"Demonstration answer {i}.")])


def test_policies_choose_per_domain_random_and_nearest():
    demos = [_demo(0, "ct_scan", "CT of the chest"), _demo(1, "ct_scan", "CT of the abdomen"),
             _demo(2, "mri", "MRI of the knee"), _demo(3, "histology", "H&E stain of liver")]
    figure = Figure(id="x", caption="MRI of the left knee with a torn meniscus", domains=["mri"])
    per_domain = make_policy("per-domain", demos)
    chosen = per_domain(figure, 0)
    assert sorted(d.domains[0] for d in chosen) == ["ct_scan", "histology", "mri"]
    assert chosen == per_domain(figure, 0)  # same figure and k: same prompt (cache hits on rerun)
    assert len({tuple(d.id for d in per_domain(figure, k)) for k in range(8)}) > 1
    assert len(make_policy("random:2", demos)(figure, 0)) == 2
    assert make_policy("per-domain", demos)(demos[2], 0)[1].id != "demo2"  # never its own demonstration

    class WordEncoder:  # a bag-of-words test encoder, normalised like the sentence model
        vocabulary = ["ct", "mri", "knee", "chest", "abdomen", "liver", "stain"]

        def encode(self, texts):
            rows = np.array([[t.lower().split().count(w) for w in self.vocabulary] for t in texts], float)
            return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    nearest = make_policy("nearest:1", demos, encoder=WordEncoder())
    assert [d.id for d in nearest(figure, 0)] == ["demo2"]
    for bad in ("closest", "random", "random:x", "random:0", "per-domain:2"):
        with pytest.raises(InputError, match="'demo_policy'"):
            make_policy(bad, demos)
        with pytest.raises(InputError, match="'demo_policy'"):
            GenerateConfig(demo_policy=bad)


def test_biomed_vital_demonstrations_load_without_images(shared_data, caplog):
    demos = load_demonstrations(shared_data / "biomed-vital" / "clinician_demonstrations.json")
    assert len(demos) == 56 and all(d.image is None and d.conversations for d in demos)
    assert "demonstration images are missing" in caplog.text
    chosen = make_policy("per-domain", demos)(Figure(id="x", caption="CT"), 0)
    assert sorted(d.domains[0] for d in chosen) == ["chest_xray", "ct_scan", "gross", "histology", "mri"]


def test_released_demonstrations_with_two_gpt_turns_in_a_row_are_reported_and_left_out(shared_data, caplog):
    demos = load_demonstrations(shared_data / "biomed-vital" / "clinician_demonstrations.json")
    assert {d.meta["demo_index"] for d in demos}.isdisjoint({34, 49})
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 3, left_out  # one line per record, then the count
    assert "'33240703_FIG1' (record id 34): turn 7 is from 'gpt', expected 'human'" in left_out[0]
    assert "'31910164_F3' (record id 49): turn 9 is from 'gpt', expected 'human'" in left_out[1]
    assert "2 of 58 demonstration records are unusable" in left_out[2]


def _conversation(*speakers: str) -> list[dict[str, str]]:
    return [{"from": speaker, "value": f"Turn {i} text."} for i, speaker in enumerate(speakers, start=1)]


def _write_mixed_demos(folder: Path) -> Path:
    """One usable demonstration and four that are not (no conversation; gpt twice; gpt first; no answer)."""
    records = [
        {"id": "good", "caption": "CT of the chest.", "domains": ["ct_scan"],
         "conversations": _conversation("human", "gpt", "human", "gpt")},
        {"id": "bare", "caption": "MRI of the knee.", "domains": ["mri"]},
        {"id": "gpt-twice", "caption": "X-ray of the hand.", "domains": ["chest_xray"],
         "conversations": _conversation("human", "gpt", "gpt")},
        {"id": "gpt-first", "caption": "H&E stain.", "domains": ["histology"],
         "conversations": _conversation("gpt", "human")},
        {"id": "unanswered", "caption": "Gross specimen.", "domains": ["gross"],
         "conversations": _conversation("human")},
    ]
    path = folder / "mixed-demos.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_unusable_demonstrations_are_named_counted_and_never_shown(tmp_path, caplog):
    path = _write_mixed_demos(tmp_path)
    demos = load_demonstrations(path)
    assert [d.id for d in demos] == ["good"]
    messages = [r.getMessage() for r in caplog.records]
    assert f"{path}:2: demonstration 'bare' has no conversation; it is left out" in messages
    assert any(m.startswith(f"{path}:3: demonstration 'gpt-twice': turn 3 is from 'gpt'") for m in messages)
    assert any(m.startswith(f"{path}:4: demonstration 'gpt-first': turn 1 is from 'gpt'") for m in messages)
    assert any(m.startswith(f"{path}:5: demonstration 'unanswered': the last question has no answer")
               for m in messages)
    assert f"{path}: 4 of 5 demonstration records are unusable and left out of prompts (1 usable)" in messages

    figures = write_figures(tmp_path, 3)
    out = tmp_path / "candidates.jsonl"
    with running_double(DoubleConfig()) as double:
        generate(figures, out, GenerateConfig(candidates=2, demos=path, demo_policy="random:5"), _engine(double))
        cli = subprocess.run([VITAL, "generate", str(figures), "--out", str(tmp_path / "cli.jsonl"), "--demos",
                              str(path), "--base-url", double.base_url, "--candidates", "1"],
                             capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    warnings = [line for line in cli.stderr.splitlines() if line.startswith("warning:")]
    assert [w.split(": demonstration ")[-1].split(" ")[0].rstrip(":") for w in warnings[:4]] == [
        "'bare'", "'gpt-twice'", "'gpt-first'", "'unanswered'"]
    assert "4 of 5 demonstration records are unusable" in warnings[4]
    assert {tuple(json.loads(line)["generator"]["demo_ids"]) for line in out.read_text().splitlines()} == {("good",)}
    for request in double.state.requests:
        prompt = json.dumps(request.body["messages"])
        assert "MRI of the knee" not in prompt and "X-ray of the hand" not in prompt and "H&E" not in prompt

    only_bad = tmp_path / "bad-demos.jsonl"
    only_bad.write_text("".join(line + "\n" for line in path.read_text().splitlines()[1:]))
    with pytest.raises(InputError, match="no figure with a usable conversation"):
        load_demonstrations(only_bad)


# --- against the OpenAI double ------------------------------------------------------------------

def _engine(double, **overrides) -> EngineConfig:
    values = dict(base_url=double.base_url, model="double-vlm", concurrency=4, max_retries=3, timeout=5.0,
                  backoff_base=0.01, backoff_max=0.05, api_key_env="VITAL_TEST_KEY")
    values.update(overrides)
    return EngineConfig(**values)


def _write_demos(tmp_path: Path) -> Path:
    path = tmp_path / "demos.jsonl"
    figures = write_figures(tmp_path, 1, name="unused.jsonl")
    image = str(figures.parent / "images" / "fig0.png")
    with path.open("w") as handle:
        handle.write(json.dumps(_demo(1, "ct_scan", "Demo CT caption", image).to_json_dict()) + "\n")
        handle.write(json.dumps(_demo(2, "mri", "Demo MRI caption").to_json_dict()) + "\n")
    return path


def test_prompt_carries_demonstrations_caption_and_image(tmp_path):
    figures = write_figures(tmp_path, 2)
    out = tmp_path / "candidates.jsonl"
    with running_double(DoubleConfig()) as double:
        generate(figures, out, GenerateConfig(candidates=1, demos=_write_demos(tmp_path)), _engine(double))
    body = next(r.body for r in double.state.requests if "Figure 0:" in json.dumps(r.body["messages"][-1]))
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "no medical advice" in body["messages"][0]["content"]
    demo_texts = [m["content"] for m in body["messages"] if m["role"] == "assistant"]
    assert demo_texts == ["User: Question 1?\nAssistant: Demonstration answer 1.",
                          "User: Question 2?\nAssistant: Demonstration answer 2."]
    last = body["messages"][-1]["content"]
    assert last[0]["type"] == "image_url" and last[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "Figure 0: axial CT" in last[1]["text"] and "measured 3 cm" in last[1]["text"]
    images = sum(p["type"] == "image_url" for m in body["messages"] if isinstance(m["content"], list)
                 for p in m["content"])
    assert images == 2  # the CT demonstration's and the figure's (the MRI demonstration has none)
    record = json.loads(out.read_text().splitlines()[0])
    assert record["generator"]["demo_ids"] == ["demo1", "demo2"]
    assert record["generator"]["model"] == "openai:double-vlm"
    assert len(record["generator"]["prompt_sha"]) == 64
    assert record["conversations"][0]["value"].startswith("<image>\n")


def test_faults_end_with_every_candidate_or_a_failure_and_rerun_completes(tmp_path):
    figures = write_figures(tmp_path, 30)
    out = tmp_path / "candidates.jsonl"
    faults = {"429": 0.1, "500": 0.05, "malformed": 0.05}
    with running_double(DoubleConfig(faults=faults, faults_first_only=True)) as double:
        report = generate(figures, out, GenerateConfig(candidates=2), _engine(double, concurrency=8))
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert report.stats.done == 60
    assert sorted(ids) == sorted({f"fig{i}/c{k}" for i in range(30) for k in (0, 1)})
    outcomes = Counter(r.outcome for r in double.state.requests)
    assert outcomes["429"] and outcomes["500"] and outcomes["malformed"]

    with running_double(DoubleConfig(faults={"malformed": 1.0})) as broken:
        more = tmp_path / "more.jsonl"
        report = generate(figures, more, GenerateConfig(candidates=1), _engine(broken, max_retries=1))
    failures = [json.loads(line) for line in failures_path(more).read_text().splitlines()]
    assert report.stats.failed == 30 and len(failures) == 30 and not more.read_text()
    assert failures[0]["raw"] == "I am sorry, I cannot help with that." and failures[0]["attempts"] == 2
    with running_double(DoubleConfig()) as healthy:
        report = generate(figures, more, GenerateConfig(candidates=1), _engine(healthy))
    assert report.stats.done == 30 and len(more.read_text().splitlines()) == 30


def test_shards_split_the_figures_without_overlap(tmp_path):
    figures = write_figures(tmp_path, 40)
    parts = []
    for i in range(3):
        out = tmp_path / f"shard{i}.jsonl"
        generate(figures, out, GenerateConfig(backend="caption", candidates=1, shard=f"{i}/3"))
        parts.append({json.loads(line)["figure_id"] for line in out.read_text().splitlines()})
    assert set.union(*parts) == {f"fig{i}" for i in range(40)}
    assert sum(len(p) for p in parts) == 40 and all(parts)
    for bad in ("3/3", "x/2", "1"):
        with pytest.raises(InputError, match="'shard'"):
            GenerateConfig(shard=bad)


def test_image_problems_are_failures_not_crashes(tmp_path):
    figures = write_figures(tmp_path, 3)
    (tmp_path / "images" / "fig1.png").unlink()
    out = tmp_path / "candidates.jsonl"
    with running_double(DoubleConfig()) as double:
        report = generate(figures, out, GenerateConfig(candidates=1), _engine(double))
    failures = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
    assert report.stats.done == 2 and [f["id"] for f in failures] == ["fig1/c0"]
    assert "image file not found" in failures[0]["reason"]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_sigkill_and_rerun_give_one_candidate_each_and_repeat_no_finished_call(tmp_path):
    figures = write_figures(tmp_path, 24)
    out = tmp_path / "candidates.jsonl"
    env = {**os.environ, "VITAL_TEST_KEY": KEY}

    def command(double) -> list[str]:
        return [VITAL, "generate", str(figures), "--out", str(out), "--candidates", "2",
                "--base-url", double.base_url, "--model", "double-vlm", "--api-key-env", "VITAL_TEST_KEY",
                "--concurrency", "4", "--max-retries", "2"]

    with running_double(DoubleConfig(latency=0.15, api_key=KEY)) as double:
        process = subprocess.Popen(command(double), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 180  # generous: the machine may be busy
        while len(_lines(out)) < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = {json.loads(line)["id"] for line in _lines(out) if line.endswith("}")}
        assert 12 <= len(before) < 48, "the run should be killed part-way"
        answered_first = {r.body_sha for r in double.state.requests if r.outcome == "ok"}
        first_count = len(double.state.requests)

        rerun = subprocess.run(command(double), env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        second = double.state.requests[first_count:]

    ids = [json.loads(line)["id"] for line in _lines(out)]
    assert Counter(ids) == Counter({f"fig{i}/c{k}": 1 for i in range(24) for k in (0, 1)})

    def key_of(request) -> tuple[str, int]:
        text = request.body["messages"][-1]["content"][-1]["text"]
        return text.split(":")[1].split()[1], request.body["seed"]  # "Caption: Figure 0: ..." -> ("0", k)

    finished_before = {(i.split("/")[0].removeprefix("fig"), int(i.split("/c")[1])) for i in before}
    assert not finished_before & {key_of(r) for r in second}, "a finished candidate was requested again"
    repeated = [r for r in second if r.body_sha in answered_first]
    assert len(repeated) <= 4, "only calls in flight at the kill may be sent again"
    assert len(second) <= 48 - len(before)

    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert KEY.encode() not in file.read_bytes(), file
    assert KEY not in rerun.stdout + rerun.stderr


def test_a_server_echoing_the_key_leaves_it_in_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VITAL_TEST_KEY", KEY)
    figures = write_figures(tmp_path, 12)
    out = tmp_path / "candidates.jsonl"
    faults = {"malformed": 0.3, "garbage": 0.1, "500": 0.1}
    with running_double(DoubleConfig(api_key=KEY, echo_key=True, faults=faults, seed=1)) as double:
        result = generate(figures, out, GenerateConfig(candidates=2), _engine(double, max_retries=0))
    assert {r.authorization for r in double.state.requests} == {f"Bearer {KEY}"}
    failures = [json.loads(line) for line in result.failures.read_text().splitlines()]
    assert result.stats.done and result.failed == len(failures) and any(f.get("raw") for f in failures)
    echoed = "[you sent Bearer ***; key ending ***; key sk-...***]"
    assert all(echoed in f.get("raw", f["reason"]) for f in failures)
    assert all(echoed in line for line in out.read_text().splitlines())  # the last answer quotes the echo
    files = [file for file in tmp_path.rglob("*") if file.is_file()]
    assert {f.name for f in files} >= {"candidates.jsonl", "candidates.failures.jsonl", "candidates.llm.sqlite"}
    for file in files:
        data = file.read_bytes()
        assert KEY.encode() not in data and KEY[-8:].encode() not in data, file


def test_a_run_refused_because_another_holds_the_output_touches_nothing(tmp_path):
    figures = write_figures(tmp_path, 20)
    out = tmp_path / "candidates.jsonl"
    failures = failures_path(out)

    def command(double) -> list[str]:
        return [VITAL, "generate", str(figures), "--out", str(out), "--base-url", double.base_url,
                "--model", "double-vlm", "--concurrency", "2", "--max-retries", "0"]

    with running_double(DoubleConfig(latency=0.1, faults={"malformed": 0.4})) as double:
        first = subprocess.Popen(command(double), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120  # generous: the machine may be busy
        while not (_lines(out) and _lines(failures)) and time.monotonic() < deadline:
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)  # hold the first run still while the second tries
        try:
            before = out.read_bytes(), failures.read_bytes()
            assert before[0] and before[1]
            second = subprocess.run(command(double), capture_output=True, text=True, timeout=60)
            with pytest.raises(InputError, match="another run is writing"), FailureLog(out, "generate"):
                pass  # even opened first, the failures file is left alone while its run holds it
            after = out.read_bytes(), failures.read_bytes()
        finally:
            first.send_signal(signal.SIGCONT)
        first_stderr = first.communicate(timeout=120)[1].decode()
    assert second.returncode == 2 and second.stderr.splitlines() == [
        f"error: {out}: another run is writing to this file; wait for it or choose another output"]
    assert after == before
    assert first.returncode == 1, first_stderr
    written = [json.loads(line)["id"] for line in _lines(out)]
    failed = [json.loads(line)["id"] for line in _lines(failures)]
    assert sorted(written + failed) == sorted(f"fig{i}/c{k}" for i in range(20) for k in (0, 1))


def test_cli_refused_key_stops_with_one_line_and_status_2(tmp_path):
    figures = write_figures(tmp_path, 3)
    env = {**os.environ, "VITAL_TEST_KEY": "sk-wrong-key-77"}
    with running_double(DoubleConfig(api_key=KEY)) as double:
        result = subprocess.run(
            [VITAL, "generate", str(figures), "--out", str(tmp_path / "c.jsonl"),
             "--base-url", double.base_url, "--api-key-env", "VITAL_TEST_KEY"],
            env=env, capture_output=True, text=True, timeout=60,
        )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1
    assert "HTTP 401" in errors[0] and "sk-wrong-key-77" not in result.stderr + result.stdout


def test_a_lost_output_is_rebuilt_from_the_cache_without_calls(tmp_path):
    figures = write_figures(tmp_path, 4)
    out = tmp_path / "candidates.jsonl"
    config = GenerateConfig(candidates=2, demos=_write_demos(tmp_path), demo_policy="random:1")
    with running_double(DoubleConfig()) as double:
        generate(figures, out, config, _engine(double))
        first = out.read_text()
        calls = len(double.state.requests)
        out.unlink()
        report = generate(figures, out, config, _engine(double))
    assert calls == 8 and len(double.state.requests) == 8  # same prompts (seeded demo draws): all cached
    assert report.stats.done == 8 and report.stats.usage.cached == 8
    assert sorted(first.splitlines()) == sorted(
        line.replace('"cached":true', '"cached":false') for line in out.read_text().splitlines()
    )
