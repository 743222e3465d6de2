"""Ground-truth formats, matching by id, VQA metrics with intervals, details (vital.evaluate.questions, .vqa)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vital.cli import app
from vital.errors import InputError
from vital.evaluate import VqaConfig, eval_vqa, load_questions, read_predictions

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


def write_records(path: Path, records: list, *, as_jsonl: bool) -> Path:
    """A JSON list, or JSONL (whatever the file's name)."""
    if as_jsonl:
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        return path
    return write_json(path, records)


def write_answers(path: Path, answers: dict) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for question_id, text in answers.items():
            handle.write(json.dumps({"question_id": question_id, "text": text}) + "\n")
    return path


# --- formats --------------------------------------------------------------------------------------


def test_vqa_rad_format(tmp_path: Path) -> None:
    questions = load_questions(write_json(tmp_path / "test.json", VQA_RAD))
    assert [q.id for q in questions] == ["1", "2", "3"]
    assert questions[1].categories == {"question_type": ("POS", "PRES"), "organ": ("CHEST",), "region": ("chest",)}
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
        "language": ("en",),
        "region": ("head",),
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
    path = write_records(tmp_path / "test.json", LLAVA_MED, as_jsonl=as_jsonl)
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
    result = eval_vqa(tmp_path / "test.json", answers)
    assert result.metrics["closed_accuracy"] == 100.0
    assert result.metrics["recall"] == 100.0
    assert result.ignored == 1
    assert eval_vqa(questions, read_predictions(answers)).metrics == result.metrics


def test_missing_prediction_is_an_error_unless_allowed(tmp_path: Path) -> None:
    gt = write_json(tmp_path / "test.json", VQA_RAD)
    answers = write_answers(tmp_path / "a.jsonl", {1: "yes", 2: "left upper lobe"})
    with pytest.raises(InputError, match="no prediction for 1 of 3 questions"):
        eval_vqa(gt, answers)
    result = eval_vqa(gt, answers, VqaConfig(allow_missing=True))
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
    compat = eval_vqa(gt, answers, VqaConfig(compat="llava-med")).metrics
    ours = eval_vqa(gt, answers).metrics
    assert (compat["n_closed"], ours["n_closed"]) == (1, 2)  # "CLOSED " is skipped by LLaVA-Med
    assert compat["closed_accuracy"] == 0.0  # "normal" does not contain "yes"
    assert ours["closed_accuracy"] == 50.0
    assert compat["precision"] == 75.0 and ours["precision"] == 100.0  # "assistant:" is a wrong word


def test_breakdown_counts_multi_type_questions_in_each_type(tmp_path: Path) -> None:
    gt = write_json(tmp_path / "test.json", VQA_RAD)
    answers = write_answers(tmp_path / "a.jsonl", {1: "no", 2: "left upper lobe", 3: "2"})
    breakdown = eval_vqa(gt, answers).breakdown
    assert breakdown["question_type"]["POS"]["n_open"] == 1
    assert breakdown["question_type"]["PRES"]["n_open"] == 1
    assert breakdown["question_type"]["PRES"]["closed_accuracy"] == 0.0
    assert breakdown["organ"]["HEAD"]["closed_accuracy"] == 100.0
    assert breakdown["organ"]["HEAD"]["recall"] is None  # no open question there


def test_cli_json_and_exit_status(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gt = write_json(tmp_path / "test.json", VQA_RAD)
    answers = write_answers(tmp_path / "a.jsonl", {1: "yes", 2: "left upper lobe", 3: "2", 7: "x"})
    result = CliRunner().invoke(app, ["eval", "vqa", "--gt", str(gt), "--pred", str(answers), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_open"] == 1 and data["closed_accuracy"] == 100.0
    assert {"exact_match", "f1", "bleu_3", "closed_recall", "breakdown"} <= set(data)
    assert "ignored 1 predictions" in caplog.text
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


@pytest.mark.parametrize(
    ("name", "content", "line", "problem"),
    [
        ("latin1.json", b'[\n{"qid": 1,\n "question": "Gr\xf6\xdfe?"}\n]', 3, "not UTF-8 text"),
        ("scan.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00", 1, "not UTF-8 text"),
        ("latin1.jsonl", json.dumps(VQA_RAD[0]).encode() + b'\n{"qid": "\xe9"}\n', 2, "not valid JSON"),
    ],
)
def test_non_utf8_or_binary_ground_truth_names_file_and_line(
    tmp_path: Path, name: str, content: bytes, line: int, problem: str
) -> None:
    gt = tmp_path / name
    gt.write_bytes(content)
    answers = write_answers(tmp_path / "a.jsonl", {1: "yes"})
    result = CliRunner().invoke(app, ["eval", "vqa", "--gt", str(gt), "--pred", str(answers)])
    error = result.exception
    assert isinstance(error, InputError), result.output
    assert (error.path, error.line) == (str(gt), line) and problem in error.problem


@pytest.mark.parametrize("which", ["--gt", "--pred"])
def test_a_directory_as_input_is_named(tmp_path: Path, which: str) -> None:
    files = {"--gt": write_json(tmp_path / "test.json", VQA_RAD), "--pred": write_answers(tmp_path / "a.jsonl", {})}
    files[which] = tmp_path
    result = CliRunner().invoke(app, ["eval", "vqa", "--gt", str(files["--gt"]), "--pred", str(files["--pred"])])
    assert isinstance(result.exception, InputError)
    assert str(result.exception) == f"{tmp_path}: is a directory; expected a file"


# --- flat ground truth, intervals, details, breakdowns that do not mix ----------------------------


@pytest.mark.parametrize("as_jsonl", [False, True])
def test_flat_ground_truth(tmp_path: Path, as_jsonl: bool) -> None:
    records = [
        {"question_id": "a1", "question": "Is there a mass?", "answer": "yes", "answer_type": "CLOSED",
         "image": "img/1.png", "organ": "lung", "benchmark": "ours"},
        {"question_id": 7, "question": "How many nodules?", "answer": 3, "answer_type": "OPEN"},
    ]
    gt = write_records(tmp_path / ("flat.jsonl" if as_jsonl else "flat.json"), records, as_jsonl=as_jsonl)
    questions = load_questions(gt)
    assert [(q.id, q.answer, q.answer_type, q.benchmark) for q in questions] == [
        ("a1", "yes", "CLOSED", "ours"),
        ("7", "3", "OPEN", "flat"),
    ]
    assert questions[0].image == tmp_path / "images" / "img" / "1.png"  # images/ first, as for the benchmarks
    assert questions[0].categories == {"organ": ("lung",)} and questions[1].categories == {}
    result = eval_vqa(gt, write_answers(tmp_path / "a.jsonl", {"a1": "Yes.", 7: "three nodules"}))
    assert (result.metrics["closed_accuracy"], result.metrics["recall"]) == (100.0, 100.0)
    assert result.breakdown["organ"]["lung"]["n_closed"] == 1
    assert result.label_sets == {"organ": "flat+ours"}  # two benchmarks named in one file: one mixed label set


def test_closed_accuracy_interval_matches_the_binomial_interval(tmp_path: Path) -> None:
    """1000 closed questions, 600 right: the bootstrap interval is close to p ± 1.96 sqrt(p(1-p)/n)."""
    n, right = 1000, 600
    records = [
        {"question_id": i, "question": "Normal?", "answer": "yes", "answer_type": "CLOSED"} for i in range(n)
    ]
    records += [{"question_id": f"o{i}", "question": "What?", "answer": "left lung", "answer_type": "OPEN"}
                for i in range(200)]
    gt = write_json(tmp_path / "flat.json", records)
    answers = {i: "yes" if i < right else "no" for i in range(n)}
    answers.update({f"o{i}": "left lung" if i % 2 else "left" for i in range(200)})
    pred = write_answers(tmp_path / "a.jsonl", answers)
    result = eval_vqa(gt, pred, VqaConfig(bootstrap=4000, seed=3))
    half_width = 100 * 1.96 * (0.6 * 0.4 / n) ** 0.5
    low, high = result.ci95["closed_accuracy"]
    assert low == pytest.approx(60 - half_width, abs=0.6) and high == pytest.approx(60 + half_width, abs=0.6)
    # open recall is 1 or 1/2 per question: mean 0.75, standard deviation 0.25
    low, high = result.ci95["recall"]
    assert low == pytest.approx(75 - 1.96 * 25 / 200**0.5, abs=0.8) and high == pytest.approx(
        75 + 1.96 * 25 / 200**0.5, abs=0.8
    )
    assert eval_vqa(gt, pred, VqaConfig(bootstrap=4000, seed=3)).ci95 == result.ci95  # seeded
    assert set(eval_vqa(gt, pred, VqaConfig(bootstrap=0)).ci95.values()) == {None}


@pytest.mark.parametrize("compat", [None, "llava-med"])
def test_details_rows_average_to_the_headline(tmp_path: Path, compat: str | None) -> None:
    gt = write_json(tmp_path / "test.json", VQA_RAD + [dict(VQA_RAD[1], qid=4, answer="right lower lobe")])
    pred = write_answers(
        tmp_path / "a.jsonl", {1: "Assistant: Normal", 2: "left lobe", 3: "2", 4: "lower lobe lobe right"}
    )
    details = tmp_path / "details.jsonl"
    result = eval_vqa(gt, pred, VqaConfig(compat=compat, details=details))
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert result.details == details and len(rows) == result.metrics["n_open"] + result.metrics["n_closed"]
    for kind, headline in (("open", "recall"), ("closed", "closed_accuracy")):
        scores = [row["score"] for row in rows if row["answer_type"] == kind]
        assert 100 * sum(scores) / len(scores) == pytest.approx(result.metrics[headline])
    open_rows = [row for row in rows if row["answer_type"] == "open"]
    for metric in ("precision", "f1", "bleu_1"):
        mean = 100 * sum(row["metrics"][metric] for row in open_rows) / len(open_rows)
        assert mean == pytest.approx(result.metrics[metric])
    first = next(row for row in rows if row["question_id"] == "2")
    assert first["question"] == "Where is the mass?" and first["answer"] == "Left upper lobe"
    assert first["prediction"] == "left lobe" and first["organ"] == ["CHEST"]
    assert first["question_type"] == ["POS", "PRES"] and first["benchmark"] == "vqa-rad"


def test_details_on_the_real_answer_file_in_both_modes(shared_data: Path, tmp_path: Path) -> None:
    gt = shared_data / "vqa-rad" / "test.json"
    pred = shared_data / "llava-med-eval" / "answer_file_vqa_rad.jsonl"
    for compat, closed in ((None, 21.69), ("llava-med", 29.78)):
        details = tmp_path / f"{compat}.jsonl"
        result = eval_vqa(gt, pred, VqaConfig(compat=compat, details=details, bootstrap=200))
        rows = [json.loads(line) for line in details.read_text().splitlines()]
        closed_scores = [row["score"] for row in rows if row["answer_type"] == "closed"]
        open_scores = [row["score"] for row in rows if row["answer_type"] == "open"]
        assert round(100 * sum(closed_scores) / len(closed_scores), 2) == closed == round(
            result.metrics["closed_accuracy"], 2
        )
        assert 100 * sum(open_scores) / len(open_scores) == pytest.approx(63.32, abs=0.006)
        low, high = result.ci95["closed_accuracy"]
        assert low < closed < high and high - low < 15


def test_breakdowns_are_normalised_per_benchmark(tmp_path: Path) -> None:
    """VQA-RAD's ABD and SLAKE's Abdomen stay labels of two label sets; only the region breakdown joins them."""
    rad = write_json(tmp_path / "rad.json", [dict(VQA_RAD[0], image_organ="ABD"), VQA_RAD[1]])
    slake = write_json(tmp_path / "slake.json", [dict(SLAKE[0], location="Abdomen"), SLAKE[2]])
    rad_result = eval_vqa(rad, write_answers(tmp_path / "r.jsonl", {1: "yes", 2: "left upper lobe"}))
    slake_result = eval_vqa(slake, write_answers(tmp_path / "s.jsonl", {10: "lung", 12: "yes"}))
    assert set(rad_result.breakdown["organ"]) == {"ABD", "CHEST"}
    assert set(slake_result.breakdown["organ"]) == {"Abdomen", "Brain"}
    assert rad_result.label_sets["organ"] == "vqa-rad" and slake_result.label_sets["organ"] == "slake"
    assert rad_result.label_sets["region"] == slake_result.label_sets["region"] == "body-region"
    assert set(rad_result.breakdown["region"]) == {"abdomen", "chest"}
    assert set(slake_result.breakdown["region"]) == {"abdomen", "head"}
    assert slake_result.breakdown["region"]["abdomen"]["n_open"] == 1
    assert slake_result.breakdown["region"]["head"]["closed_accuracy"] == 0.0
    assert (rad_result.benchmark, slake_result.benchmark) == ("vqa-rad", "slake")
    assert slake_result.to_json()["label_sets"]["language"] == "slake"


def test_every_slake_organ_has_a_region(shared_data: Path) -> None:
    from vital.evaluate.questions import BODY_REGIONS

    for lang in ("en", "zh"):
        for question in load_questions(shared_data / "slake" / "test.json", lang=lang):
            assert question.categories["organ"][0] in BODY_REGIONS["slake"]
    assert {q.categories["organ"][0] for q in load_questions(shared_data / "vqa-rad" / "test.json")} == set(
        BODY_REGIONS["vqa-rad"]
    )


def test_cli_table_shows_intervals_and_greys_small_cells(tmp_path: Path) -> None:
    gt = write_json(tmp_path / "test.json", VQA_RAD)
    answers = write_answers(tmp_path / "a.jsonl", {1: "yes", 2: "left upper lobe", 3: "2"})
    table = CliRunner().invoke(app, ["eval", "vqa", "--gt", str(gt), "--pred", str(answers), "--min-n", "2"])
    assert table.exit_code == 0, table.output
    assert "95% interval" in table.stdout and "fewer than 2 questions" in table.stdout
    bad = CliRunner().invoke(app, ["eval", "vqa", "--gt", str(gt), "--pred", str(answers), "--bootstrap", "-1"])
    assert isinstance(bad.exception, InputError) and bad.exception.field == "--bootstrap"


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
        result = eval_vqa(gt, pred, VqaConfig(compat="llava-med"))
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
    compat = eval_vqa(gt, pred, VqaConfig(compat="llava-med")).metrics
    ours = eval_vqa(gt, pred).metrics
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
        perfect = eval_vqa(gt, truth, VqaConfig(compat=compat, **kwargs)).metrics
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
        nothing = eval_vqa(gt, empty, VqaConfig(compat=compat, **kwargs)).metrics
        for key in ("recall", "exact_match", "f1", "bleu", "open_accuracy", "closed_accuracy"):
            assert nothing[key] == 0.0, (compat, key)
    assert eval_vqa(gt, truth, VqaConfig(**kwargs)).metrics["exact_match"] == pytest.approx(100.0)
