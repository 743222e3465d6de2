"""Ground-truth formats, prediction matching and aggregated VQA metrics (vital.evaluate.questions, .vqa)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vital.cli import app
from vital.errors import InputError
from vital.evaluate import evaluate_vqa, load_questions, read_predictions, score_vqa

VQA_RAD = [
    {
        "qid": 1,
        "image_name": "synpic1.jpg",
        "question": "Is there a mass?",
        "answer": "Yes",
        "answer_type": "CLOSED",
        "question_type": "PRES",
        "image_organ": "CHEST",
    },
    {
        "qid": 2,
        "image_name": "synpic1.jpg",
        "question": "Where is the mass?",
        "answer": "Left upper lobe",
        "answer_type": "OPEN",
        "question_type": "POS, PRES",
        "image_organ": "CHEST",
    },
    {
        "qid": 3,
        "image_name": "synpic2.jpg",
        "question": "How many lesions?",
        "answer": 2,
        "answer_type": "CLOSED ",
        "question_type": "COUNT",
        "image_organ": "HEAD",
    },
]
SLAKE = [
    {
        "qid": 10,
        "img_name": "xmlab1/source.jpg",
        "question": "Which organ?",
        "answer": "Lung",
        "q_lang": "en",
        "answer_type": "OPEN",
        "modality": "CT",
        "content_type": "Organ",
        "location": "Lung",
    },
    {
        "qid": 11,
        "img_name": "xmlab1/source.jpg",
        "question": "哪个器官?",
        "answer": "肺",
        "q_lang": "zh",
        "answer_type": "OPEN",
        "modality": "CT",
        "content_type": "Organ",
        "location": "Lung",
    },
    {
        "qid": 12,
        "img_name": "xmlab2/source.jpg",
        "question": "Is it normal?",
        "answer": "No",
        "q_lang": "en",
        "answer_type": "CLOSED",
        "modality": "MRI",
        "content_type": "Abnormality",
        "location": "Brain",
    },
]
PATHVQA = [
    {"img_id": "test_0000", "sentf": {"pvqa": []}, "labelf": {"pvqa": []}},
    {
        "img_id": "test_0001",
        "sentf": {"pvqa": ["What is shown?", "Is this a carcinoma?"]},
        "labelf": {"pvqa": [{"squamous cell carcinoma": 1}, {"yes": 1}]},
    },
]
LLAVA_MED = [
    {
        "id": "q1",
        "image": "img/a.jpg",
        "answer_type": "OPEN",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat organ?"},
            {"from": "gpt", "value": "liver"},
        ],
    },
    {
        "id": "q2",
        "image": "img/a.jpg",
        "answer_type": "CLOSED",
        "conversations": [
            {"from": "human", "value": "Is it enlarged?\n<image>"},
            {"from": "gpt", "value": "no"},
        ],
    },
]


def write_json(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def write_answers(path: Path, answers: dict) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for question_id, text in answers.items():
            handle.write(json.dumps({"question_id": question_id, "text": text}) + "\n")
    return path


# --- formats --------------------------------------------------------------------------------------


def test_vqa_rad_format(tmp_path: Path) -> None:
    questions = load_questions(write_json(tmp_path / "test.json", VQA_RAD))
    assert [q.id for q in questions] == ["1", "2", "3"]
    assert questions[1].categories == {"question_type": ("POS", "PRES"), "organ": ("CHEST",)}
    assert questions[2].answer == "2"  # numbers become text
    assert questions[0].image == tmp_path / "images" / "synpic1.jpg"


def test_slake_format_keeps_one_language(tmp_path: Path) -> None:
    path = write_json(tmp_path / "test.json", SLAKE)
    assert [q.id for q in load_questions(path)] == ["10", "12"]
    assert [q.answer for q in load_questions(path, lang="zh")] == ["肺"]
    assert len(load_questions(path, lang="all")) == 3
    assert load_questions(path)[1].categories == {
        "organ": ("Brain",),
        "modality": ("MRI",),
        "content_type": ("Abnormality",),
    }
    with pytest.raises(InputError, match="no questions found in language 'fr'"):
        load_questions(path, lang="fr")


def test_pathvqa_format_pairs_questions_with_labels(tmp_path: Path) -> None:
    questions = load_questions(write_json(tmp_path / "pvqa_test.json", PATHVQA))
    assert [(q.id, q.answer, q.answer_type) for q in questions] == [
        ("test_0001_0", "squamous cell carcinoma", "OPEN"),
        ("test_0001_1", "yes", "CLOSED"),
    ]


@pytest.mark.parametrize("as_jsonl", [False, True])
def test_llava_med_conversation_format(tmp_path: Path, as_jsonl: bool) -> None:
    path = tmp_path / "test.json"
    if as_jsonl:
        path.write_text("".join(json.dumps(record) + "\n" for record in LLAVA_MED))
    else:
        write_json(path, LLAVA_MED)
    questions = load_questions(path)
    assert [(q.id, q.question, q.answer, q.answer_type) for q in questions] == [
        ("q1", "What organ?", "liver", "OPEN"),
        ("q2", "Is it enlarged?", "no", "CLOSED"),
    ]
    assert questions[0].image == tmp_path / "img" / "a.jpg"


def test_unknown_format_names_the_line(tmp_path: Path) -> None:
    path = write_json(tmp_path / "x.json", [{"foo": 1}])
    with pytest.raises(InputError) as caught:
        load_questions(path)
    assert caught.value.line == 2
    assert "cannot tell the ground-truth format" in str(caught.value)


def test_bad_record_error_names_file_line_and_field(tmp_path: Path) -> None:
    records = [dict(record) for record in VQA_RAD]
    del records[2]["answer"]
    path = write_json(tmp_path / "test.json", records)
    with pytest.raises(InputError) as caught:
        load_questions(path)
    error = caught.value
    assert (error.path, error.field) == (str(path), "answer")
    assert path.read_text().splitlines()[error.line - 1].strip() == "{"
    assert error.line > 10  # the third element, not the first line of the file


def test_broken_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "test.json"
    first = json.dumps(VQA_RAD[0])
    path.write_text(f'[\n{first},\n{{"qid": 2,, }}\n]')
    with pytest.raises(InputError) as caught:
        load_questions(path)
    assert caught.value.line == 3


def test_duplicate_question_ids_are_refused(tmp_path: Path) -> None:
    path = write_json(tmp_path / "test.json", [VQA_RAD[0], VQA_RAD[0]])
    with pytest.raises(InputError, match="duplicate question id '1'"):
        load_questions(path)


# --- predictions ----------------------------------------------------------------------------------


def test_predictions_are_matched_by_id_not_order(tmp_path: Path) -> None:
    questions = load_questions(write_json(tmp_path / "test.json", VQA_RAD))
    answers = write_answers(tmp_path / "a.jsonl", {3: "2", "2": "left upper lobe", 1: "yes", 99: "extra"})
    result = evaluate_vqa(tmp_path / "test.json", answers)
    assert result.metrics["closed_accuracy"] == 100.0
    assert result.metrics["recall"] == 100.0
    assert result.ignored == 1
    assert score_vqa(questions, read_predictions(answers)).metrics == result.metrics


def test_missing_prediction_is_an_error_unless_allowed(tmp_path: Path) -> None:
    gt = write_json(tmp_path / "test.json", VQA_RAD)
    answers = write_answers(tmp_path / "a.jsonl", {1: "yes", 2: "left upper lobe"})
    with pytest.raises(InputError, match="no prediction for 1 of 3 questions"):
        evaluate_vqa(gt, answers)
    result = evaluate_vqa(gt, answers, allow_missing=True)
    assert result.missing == 1
    assert result.metrics["closed_accuracy"] == 50.0


def test_prediction_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"question_id": 1, "text": "yes"}\n{"question_id": 1, "text": "no"}\n')
    with pytest.raises(InputError, match="second prediction for question '1' \\(first on line 1\\)"):
        read_predictions(path)
    path.write_text('{"question_id": 1, "text": "yes"}\n{"question_id": 2}\n')
    with pytest.raises(InputError) as caught:
        read_predictions(path)
    assert (caught.value.line, caught.value.field) == (2, "text")


def test_modes_differ_on_vqa_rad_trailing_space_and_normal(tmp_path: Path) -> None:
    gt = write_json(tmp_path / "test.json", VQA_RAD)
    answers = write_answers(
        tmp_path / "a.jsonl", {1: "Assistant: Normal", 2: "Assistant: left upper lobe", 3: "2"}
    )
    compat = evaluate_vqa(gt, answers, compat="llava-med").metrics
    ours = evaluate_vqa(gt, answers).metrics
    assert (compat["n_closed"], ours["n_closed"]) == (1, 2)  # "CLOSED " is skipped by LLaVA-Med
    assert compat["closed_accuracy"] == 0.0  # "normal" does not contain "yes"
    assert ours["closed_accuracy"] == 50.0
    assert compat["precision"] == 75.0 and ours["precision"] == 100.0  # "assistant:" is a wrong word


def test_breakdown_counts_multi_type_questions_in_each_type(tmp_path: Path) -> None:
    gt = write_json(tmp_path / "test.json", VQA_RAD)
    answers = write_answers(tmp_path / "a.jsonl", {1: "no", 2: "left upper lobe", 3: "2"})
    breakdown = evaluate_vqa(gt, answers).breakdown
    assert breakdown["question_type"]["POS"]["n_open"] == 1
    assert breakdown["question_type"]["PRES"]["n_open"] == 1
    assert breakdown["question_type"]["PRES"]["closed_accuracy"] == 0.0
    assert breakdown["organ"]["HEAD"]["closed_accuracy"] == 100.0
    assert breakdown["organ"]["HEAD"]["recall"] is None  # no open question there


def test_cli_json_and_exit_status(tmp_path: Path) -> None:
    gt = write_json(tmp_path / "test.json", VQA_RAD)
    answers = write_answers(tmp_path / "a.jsonl", {1: "yes", 2: "left upper lobe", 3: "2", 7: "x"})
    result = CliRunner().invoke(app, ["eval", "vqa", "--gt", str(gt), "--pred", str(answers), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_open"] == 1 and data["closed_accuracy"] == 100.0
    assert {"exact_match", "f1", "bleu_3", "closed_recall", "breakdown"} <= set(data)
    assert "ignored 1 predictions" in result.stderr
    table = CliRunner().invoke(app, ["eval", "vqa", "--gt", str(gt), "--pred", str(answers)])
    assert "closed_accuracy" in table.stdout and "by organ" in table.stdout


def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    gt = write_json(tmp_path / "test.json", VQA_RAD)
    answers = tmp_path / "a.jsonl"
    answers.write_text('{"question_id": 1, "text": "yes"}\n{"question_id": 2, "text": 5}\n')
    vital = Path(sys.executable).with_name("vital")
    run = subprocess.run(
        [str(vital), "eval", "vqa", "--gt", str(gt), "--pred", str(answers)], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: {answers}:2: field 'text': expected a string, found int"


# --- the real benchmarks --------------------------------------------------------------------------


def test_llava_med_parity_on_vqa_rad(shared_data: Path) -> None:
    """LLaVA-Med's scorer on these files (its rules re-typed independently) gives these numbers."""
    gt = shared_data / "vqa-rad" / "test.json"
    expected = {
        "answer_file_vqa_rad.jsonl": {
            "recall": 63.32,
            "closed_accuracy": 29.78,
            "exact_match": 41.61,
            "f1": 49.61,
            "precision": 41.78,
            "bleu": 6.80,
            "bleu_1": 41.30,
            "bleu_2": 22.73,
            "bleu_3": 11.21,
            "open_accuracy": 58.10,
            "closed_recall": 21.69,
        },
        "answer_file_vqa_rad3_closed.jsonl": {
            "recall": 63.33,
            "closed_accuracy": 72.43,
            "exact_match": 41.48,
            "f1": 49.37,
            "precision": 41.65,
            "bleu": 6.43,
            "bleu_1": 40.84,
            "bleu_2": 21.47,
            "bleu_3": 11.12,
            "open_accuracy": 58.10,
            "closed_recall": 72.43,
        },
    }
    for name, numbers in expected.items():
        pred = shared_data / "llava-med-eval" / name
        result = evaluate_vqa(gt, pred, compat="llava-med")
        args = ["eval", "vqa", "--gt", str(gt), "--pred", str(pred), "--compat", "llava-med", "--json"]
        printed = CliRunner().invoke(app, args)
        assert printed.exit_code == 0 and json.loads(printed.stdout) == result.to_json()
        assert (result.metrics["n_open"], result.metrics["n_closed"]) == (179, 272)
        for key, value in numbers.items():
            assert result.metrics[key] == pytest.approx(value, abs=0.006), (name, key)
        assert result.ignored == 2248 - 451


def test_default_mode_on_vqa_rad_does_not_count_normal_as_no(shared_data: Path) -> None:
    gt = shared_data / "vqa-rad" / "test.json"
    pred = shared_data / "llava-med-eval" / "answer_file_vqa_rad.jsonl"
    compat = evaluate_vqa(gt, pred, compat="llava-med").metrics
    ours = evaluate_vqa(gt, pred).metrics
    assert ours["closed_accuracy"] == pytest.approx(21.69, abs=0.006)
    assert ours["closed_accuracy"] < compat["closed_accuracy"]
    assert ours["recall"] == pytest.approx(compat["recall"], abs=0.5)


@pytest.mark.parametrize(
    ("relative", "kwargs", "n_open", "n_closed"),
    [
        ("vqa-rad/test.json", {}, 179, 272),
        ("slake/test.json", {}, 645, 416),
        ("slake/test.json", {"lang": "zh"}, 613, 420),
        ("pathvqa/pvqa_test.json", {}, 3370, 3391),
    ],
)
def test_real_benchmarks_end_to_end(
    shared_data: Path, tmp_path: Path, relative: str, kwargs: dict, n_open: int, n_closed: int
) -> None:
    gt = shared_data / relative
    questions = load_questions(gt, **kwargs)
    truth = write_answers(tmp_path / "truth.jsonl", {q.id: q.answer for q in questions})
    empty = write_answers(tmp_path / "empty.jsonl", {q.id: "" for q in questions})
    for compat in (None, "llava-med"):
        perfect = evaluate_vqa(gt, truth, compat=compat, **kwargs).metrics
        assert (perfect["n_open"], perfect["n_closed"]) == (n_open, n_closed)
        for key in (
            "recall",
            "precision",
            "f1",
            "open_accuracy",
            "closed_accuracy",
            "closed_recall",
            "bleu_1",
        ):
            assert perfect[key] == pytest.approx(100.0), (compat, key)
        nothing = evaluate_vqa(gt, empty, compat=compat, **kwargs).metrics
        for key in ("recall", "exact_match", "f1", "bleu", "open_accuracy", "closed_accuracy"):
            assert nothing[key] == 0.0, (compat, key)
    assert evaluate_vqa(gt, truth, **kwargs).metrics["exact_match"] == pytest.approx(100.0)
