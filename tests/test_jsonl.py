import json
import os
import subprocess
import sys

import pytest

from vital.errors import InputError
from vital.jsonl import (
    FailureLog,
    JsonlWriter,
    atomic_writer,
    failures_path,
    finished_ids,
    iter_json_lines,
    read_records,
    write_json_atomic,
)
from vital.records import Candidate, Figure


def test_reader_names_file_line_and_field(tmp_path):
    path = tmp_path / "figures.jsonl"
    lines = [json.dumps({"id": f"f{i}", "caption": "A chest radiograph."}) for i in range(6)]
    lines.append(json.dumps({"id": "f6"}))  # line 7: no caption
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        list(read_records(path, Figure))
    assert str(info.value) == f"{path}:7: field 'caption': required field is missing"


def test_reader_reports_malformed_json_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "caption": "x"}\n{"id": "b", "caption": \n{"id": "c", "caption": "y"}\n')
    with pytest.raises(InputError) as info:
        list(iter_json_lines(path))
    assert info.value.line == 2 and "not valid JSON" in str(info.value)


def test_reader_reports_wrong_type_and_nested_field(tmp_path):
    path = tmp_path / "c.jsonl"
    bad = {"id": "a/c0", "figure_id": "a", "conversations": [{"from": "robot", "value": "hi"}]}
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(InputError) as info:
        list(read_records(path, Candidate))
    assert info.value.field == "conversations.0.from" and info.value.line == 1


def test_torn_last_line_is_skipped_when_resuming_and_an_error_when_reading_input(tmp_path, caplog):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "x": 1}\n{"id": "c", "capt')
    assert finished_ids(path) == {"a", "b"}
    assert "torn last line" in caplog.text
    with pytest.raises(InputError) as info:
        list(iter_json_lines(path))
    assert info.value.line == 3 and "incomplete" in str(info.value)


def test_mistyped_last_line_without_newline_is_not_dropped(tmp_path):
    path = tmp_path / "figures.jsonl"
    path.write_text('{"id": "a", "caption": "x"}\n{"id": "b", "caption": "y",}')
    with pytest.raises(InputError) as info:
        list(read_records(path, Figure))
    assert info.value.line == 2


def test_writer_cuts_a_torn_tail_instead_of_merging(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "val')
    with JsonlWriter(path) as writer:
        writer.write({"id": "c"})
    assert [obj["id"] for _, obj in iter_json_lines(path)] == ["a", "c"]
    assert path.read_text().endswith('{"id":"c"}\n')


def test_writer_appends_and_flushes_each_record(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as writer:
        writer.write(Figure(id="x", caption="A CT slice."))
        assert path.read_text().count("\n") == 1  # visible before close
        writer.write({"id": "y"})
    with JsonlWriter(path) as writer:
        writer.write({"id": "z"})
    assert finished_ids(path) == {"x", "y", "z"}


def test_killed_writer_resumes_without_loss_or_duplicates(tmp_path):
    """A process killed with SIGKILL mid-run; a second run skips what is done and finishes the rest."""
    path = tmp_path / "out.jsonl"
    script = f"""
import os, signal, sys
from vital.jsonl import JsonlWriter, finished_ids
done = finished_ids({str(path)!r})
with JsonlWriter({str(path)!r}) as writer:
    for i in range(200):
        if str(i) in done:
            continue
        writer.write({{"id": str(i), "text": "x" * 5000}})
        if i == 120 and sys.argv[1] == "kill":
            writer._handle.write('{{"id": "torn", "text": "')
            writer._handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
"""
    first = subprocess.run([sys.executable, "-c", script, "kill"], capture_output=True)
    assert first.returncode == -9
    assert finished_ids(path) == {str(i) for i in range(121)}
    subprocess.run([sys.executable, "-c", script, "run"], check=True, capture_output=True)
    ids = [obj["id"] for _, obj in iter_json_lines(path)]
    assert sorted(ids, key=int) == [str(i) for i in range(200)]


def test_failure_log_path_and_record(tmp_path):
    out = tmp_path / "candidates.jsonl"
    assert failures_path(out).name == "candidates.failures.jsonl"
    assert failures_path(tmp_path / "selected.json").name == "selected.failures.jsonl"
    with FailureLog(out, "generate") as log:
        log.record("fig1/c0", "reply had no question", raw="...")
    (_, record), = iter_json_lines(failures_path(out))
    assert record["id"] == "fig1/c0" and record["stage"] == "generate" and record["raw"] == "..."


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "export.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic_writer(path) as handle:
        handle.write("partial")
        raise RuntimeError("boom")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["export.json"]


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        list(iter_json_lines(tmp_path / "absent.jsonl"))


def test_non_object_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(InputError) as info:
        list(iter_json_lines(path))
    assert info.value.line == 2 and "expected a JSON object" in str(info.value)


def test_finished_ids_on_absent_file(tmp_path):
    assert finished_ids(tmp_path / "nothing.jsonl") == set()
    assert not os.path.exists(tmp_path / "nothing.jsonl")


def test_failure_log_lists_only_the_latest_run(tmp_path):
    out = tmp_path / "candidates.jsonl"
    with FailureLog(out, "generate") as log:
        log.record("a", "timeout")
        log.record("b", "timeout")
    with FailureLog(out, "generate") as log:
        log.record("b", "timeout again")
    assert [obj["id"] for _, obj in iter_json_lines(failures_path(out))] == ["b"]


def test_non_utf8_line_names_the_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "\xff"}\n')
    with pytest.raises(InputError) as info:
        list(iter_json_lines(path))
    assert info.value.line == 2


def test_finished_ids_fast_path_agrees_with_parsing(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as writer:
        for i in range(50):
            writer.write({"id": f"fig{i}/c0", "x": i})
    assert finished_ids(path) == {f"fig{i}/c0" for i in range(50)}
    numbered = tmp_path / "answers.jsonl"
    numbered.write_text('{"question_id":3,"text":"yes"}\n{"question_id":"q-4","text":"no"}\n')
    assert finished_ids(numbered, "question_id") == {"3", "q-4"}
    mixed = tmp_path / "mixed.jsonl"  # a line whose id is not first, and an escaped id: parsed instead
    mixed.write_text('{"id":"a"}\n{"x":1,"id":"b"}\n{"id":"say \\"hi\\""}\n')
    assert finished_ids(mixed) == {"a", "b", 'say "hi"'}


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    path = tmp_path / "selected.json"
    write_json_atomic(path, [])
    reference = tmp_path / "plain.json"
    reference.write_text("[]")
    assert path.stat().st_mode == reference.stat().st_mode


def test_output_that_is_also_an_input_is_refused(tmp_path):
    from vital.jsonl import refuse_input_as_output

    figures = tmp_path / "figures.jsonl"
    with pytest.raises(InputError) as info:
        refuse_input_as_output(tmp_path / "." / "figures.jsonl", tmp_path / "demos.jsonl", figures)
    assert info.value.field == "--out"
    refuse_input_as_output(tmp_path / "candidates.jsonl", figures, None)


def test_resuming_into_a_file_of_another_kind_is_an_input_error(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text('{"candidate_id": "a/c0", "score": 7, "source": "model"}\n')
    with pytest.raises(InputError) as info:
        finished_ids(path, lambda obj: obj["chosen"])
    assert (info.value.line, info.value.field) == (1, "chosen")


def test_json_files_are_strict_json(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"agreement": float("nan"), "curve": [1.0, float("inf")], "n": 3})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c)) == {
        "agreement": None, "curve": [1.0, None], "n": 3,
    }


def test_a_complete_record_without_its_newline_counts_as_unfinished(tmp_path):
    """The resume index and the writer agree: such a record is redone once, never lost or doubled."""
    path = tmp_path / "out.jsonl"
    path.write_text('{"id":"a"}\n{"id":"b"}')
    assert finished_ids(path) == {"a"}
    path.write_text('{"id": "a"}\n{"id": "b"}')  # the slow (parsing) path agrees with the fast one
    assert finished_ids(path) == {"a"}
    with JsonlWriter(path) as writer:
        writer.write({"id": "b"})
    assert [obj["id"] for _, obj in iter_json_lines(path)] == ["a", "b"]


def test_two_writers_on_one_output_are_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as writer:
        writer.write({"id": "a"})
        with pytest.raises(InputError, match="another run is writing"), JsonlWriter(path):
            pass
    with JsonlWriter(path) as writer:  # free again once the first run is done
        writer.write({"id": "b"})
    assert finished_ids(path) == {"a", "b"}
