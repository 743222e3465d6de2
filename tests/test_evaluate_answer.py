"""Answer files from an OpenAI-compatible server and from a tiny random LLaVA, here and on Ray."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from openai_double import DoubleConfig, running_double
from vital.cli import app
from vital.errors import InputError
from vital.evaluate import VqaConfig, eval_vqa, load_questions
from vital.evaluate.answer import (
    YES_NO_SUFFIX,
    AnswerConfig,
    LlavaAnswerer,
    answer_questions,
    benchmark_questions,
    check_checkpoint,
    eval_answer,
)
from vital.jsonl import FailureLog, JsonlWriter
from vital.llm import EngineConfig

VQA_RAD = [
    {
        "qid": 5,
        "image_name": "synpic1.jpg",
        "question": "Is there a mass?",
        "answer": "yes",
        "answer_type": "CLOSED",
        "question_type": "PRES",
        "image_organ": "CHEST",
    },
    {
        "qid": 6,
        "image_name": "synpic2.png",
        "question": "Where is the mass?",
        "answer": "left lung",
        "answer_type": "OPEN",
        "question_type": "POS",
        "image_organ": "CHEST",
    },
    {
        "qid": 7,
        "image_name": "missing.jpg",
        "question": "What organ?",
        "answer": "lung",
        "answer_type": "OPEN",
        "question_type": "ORGAN",
        "image_organ": "CHEST",
    },
]


@pytest.fixture
def benchmark_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "vqa-rad"
    (folder / "images").mkdir(parents=True)
    (folder / "test.json").write_text(json.dumps(VQA_RAD))
    Image.new("RGB", (48, 40), (200, 30, 30)).save(folder / "images" / "synpic1.jpg")
    Image.new("L", (30, 30), 90).save(folder / "images" / "synpic2.png")
    return folder


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight LLaVA (CLIP vision tower + Llama, the demo's base) in a folder."""
    from vital.tuning.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_benchmark_questions_find_the_test_file(benchmark_dir: Path, tmp_path: Path) -> None:
    questions = benchmark_questions("vqa-rad", benchmark_dir)
    assert [q.id for q in questions] == ["5", "6", "7"]
    assert questions[0].image == benchmark_dir / "images" / "synpic1.jpg"
    with pytest.raises(InputError, match="no pvqa_test.json or test.json"):
        benchmark_questions("pathvqa", tmp_path)
    with pytest.raises(InputError, match="unknown benchmark"):
        benchmark_questions("medqa", benchmark_dir)


def test_transformers_backend_on_a_tiny_random_llava(
    tiny_llava: Path, benchmark_dir: Path, tmp_path: Path
) -> None:
    questions = benchmark_questions("vqa-rad", benchmark_dir)
    out = tmp_path / "answers.jsonl"
    local = EngineConfig(model=str(tiny_llava))
    result = answer_questions(
        questions, out, AnswerConfig(backend="transformers", max_tokens=4, yes_no_suffix=True), local
    )
    assert result.stats.usage is None  # no server was called
    assert (result.done, result.failed) == (2, 1)
    assert result.failures == tmp_path / "answers.failures.jsonl"
    records = {r["question_id"]: r for r in read_lines(out)}
    assert set(records) == {"5", "6"}
    assert records["5"]["prompt"] == "Is there a mass?" + YES_NO_SUFFIX + "\n<image>"
    assert records["6"]["prompt"] == "Where is the mass?\n<image>"  # open: no suffix
    assert records["5"]["model_id"] == f"transformers:{tiny_llava.name}"
    # each answer is the model's greedy answer to its own prompt and image
    model = LlavaAnswerer(tiny_llava, max_new_tokens=4)
    for qid, prompt in (("5", "Is there a mass?" + YES_NO_SUFFIX), ("6", "Where is the mass?")):
        assert records[qid]["text"] == model.answer(prompt, Path(records[qid]["metadata"]["image"]))
    assert records["5"]["text"] != records["6"]["text"]
    failure = read_lines(tmp_path / "answers.failures.jsonl")[0]
    assert failure["id"] == "7" and "image not found" in failure["reason"]
    # the answer file scores (the missing one counts as wrong)
    scored = eval_vqa(benchmark_dir / "test.json", out, VqaConfig(allow_missing=True))
    assert (scored.metrics["n_open"], scored.metrics["n_closed"], scored.missing) == (2, 1, 1)
    # a rerun answers only what is missing
    (benchmark_dir / "images" / "missing.jpg").write_bytes(
        (benchmark_dir / "images" / "synpic1.jpg").read_bytes()
    )
    again = eval_answer(
        out, AnswerConfig(benchmark="vqa-rad", data=benchmark_dir, backend="transformers", max_tokens=4), local
    )
    assert (again.done, again.skipped, again.failures) == (1, 2, None)
    assert not (tmp_path / "answers.failures.jsonl").exists()  # nothing failed this time
    assert read_lines(out)[-1]["question_id"] == "7"


def write_questions(folder: Path) -> Path:
    """Nine questions: six about images of their own, and among them one whose image is missing and one whose
    image is not an image (both found before anything is asked), and one a JPEG cut short (found by the
    worker that decodes it)."""
    images = folder / "images"
    images.mkdir()
    texts = ["Is there a mass?", "Where is the mass?", "What organ is shown?"]
    names = ["0.png", "1.png", "gone.png", "2.png", "not-an-image.png", "3.png", "cut.jpg", "4.png", "5.png"]
    for i in range(6):
        Image.new("RGB", (24 + 8 * i, 32), (40 * i, 200 - 30 * i, 90)).save(images / f"{i}.png")
    (images / "not-an-image.png").write_bytes(b"not a png")
    jpeg = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")).save(jpeg, "JPEG")
    (images / "cut.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    questions = folder / "questions.jsonl"
    questions.write_text("".join(
        json.dumps({"question_id": name.split(".")[0], "image": name, "text": texts[i % 3]}) + "\n"
        for i, name in enumerate(names)))
    return questions


def test_the_openai_backend_does_not_run_on_ray() -> None:
    with pytest.raises(InputError, match="ray is for --backend transformers") as caught:
        AnswerConfig(executor="ray")
    assert caught.value.field == "executor"
    assert AnswerConfig(backend="transformers", executor="ray").executor == "ray"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_writes_the_local_answer_file_and_resumes_it(local_ray, tiny_llava: Path, tmp_path: Path) -> None:
    questions = write_questions(tmp_path)
    engine = EngineConfig(model=str(tiny_llava))

    def config(**more) -> AnswerConfig:
        return AnswerConfig(questions=questions, images=tmp_path / "images", backend="transformers", max_tokens=4,
                            **more)

    def failures(name: str) -> list[tuple[str, str]]:
        return [(r["id"], r["reason"]) for r in read_lines(tmp_path / f"{name}.failures.jsonl")]

    local = eval_answer(tmp_path / "local.jsonl", config(), engine)
    assert (local.done, local.failed) == (6, 3)
    texts = [r["text"] for r in read_lines(tmp_path / "local.jsonl")]
    assert len(set(texts)) > 2  # the answers differ by question and image: the comparison means something
    reasons = dict(failures("local"))
    assert list(reasons) == ["gone", "not-an-image", "cut"]  # the first two before anything was asked
    assert reasons["gone"].startswith("image not found") and "cannot identify image" in reasons["not-an-image"]
    assert "truncated" in reasons["cut"]

    # a run stopped after four questions (three answered), finished on Ray from the command line: Ray answers
    # the other five (the cut one among them) into the file the local run would have written
    first = eval_answer(tmp_path / "resumed.jsonl", config(limit=4), engine)
    assert (first.done, first.failed) == (3, 1)
    args = ["eval", "answer", "--questions", str(questions), "--images", str(tmp_path / "images"), "--backend",
            "transformers", "--model", str(tiny_llava), "--max-tokens", "4", "--executor", "ray"]
    finished = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "resumed.jsonl")])
    assert finished.exit_code == 1, finished.output  # some questions failed, as in the local run
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert failures("resumed") == failures("local")  # the missing image was tried again, and failed again


def test_checkpoints_the_backend_cannot_load_are_one_line(tiny_llava: Path, tmp_path: Path) -> None:
    check_checkpoint(tiny_llava)
    with pytest.raises(InputError, match="not a model folder \\(no config.json\\); --backend transformers loads"):
        check_checkpoint(tmp_path)
    mistral = tmp_path / "llava-med-v1.5"
    mistral.mkdir()
    (mistral / "config.json").write_text(json.dumps({"model_type": "llava_mistral"}))
    (mistral / "model-00001-of-00004.safetensors").write_bytes(b"")
    with pytest.raises(InputError) as caught:
        check_checkpoint(mistral)
    message = str(caught.value)
    assert "found a 'llava_mistral' checkpoint" in message and "model_type 'llava'" in message
    assert "\n" not in message and caught.value.field == "--model"
    unweighted = tmp_path / "no-weights"
    unweighted.mkdir()
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json"):
        (unweighted / name).write_text((tiny_llava / "config.json").read_text() if name == "config.json" else "{}")
    with pytest.raises(InputError, match="no model weights .* found config.json, preprocessor_config.json, tok"):
        check_checkpoint(unweighted)


def test_answer_cli_refuses_an_unloadable_checkpoint_before_loading_it(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "image": "images/a.png", "text": "What?"}) + "\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llava_mistral"}))
    args = ["eval", "answer", "--questions", str(questions), "--out", str(tmp_path / "a.jsonl")]
    result = CliRunner().invoke(app, [*args, "--backend", "transformers", "--model", str(model)])
    assert isinstance(result.exception, InputError) and "llava_mistral" in str(result.exception)


def test_slake_and_pathvqa_answering_with_images(shared_data: Path, tmp_path: Path) -> None:
    """SLAKE's images are beside its questions; PathVQA's release has none: one error, then --images works."""
    slake = benchmark_questions("slake", shared_data / "slake")
    assert all(question.image.exists() for question in slake)
    copied = tmp_path / "slake-images"
    (copied / "xmlab102").mkdir(parents=True)
    (copied / "xmlab102" / "source.jpg").write_bytes((shared_data / "slake/images/xmlab102/source.jpg").read_bytes())
    moved = benchmark_questions("slake", shared_data / "slake", images=copied)
    assert moved[0].image == copied / "xmlab102" / "source.jpg" and moved[0].image.exists()

    engine = EngineConfig(base_url="http://127.0.0.1:9/v1", model="vlm")  # never called
    with pytest.raises(InputError) as caught:
        eval_answer(tmp_path / "p.jsonl", AnswerConfig(benchmark="pathvqa", data=shared_data / "pathvqa"), engine)
    assert "none of the 6761 questions has its image" in str(caught.value)
    assert "PathVQA's release of the questions has no images" in str(caught.value)
    assert caught.value.field == "--images" and not (tmp_path / "p.failures.jsonl").exists()

    first_image = benchmark_questions("pathvqa", shared_data / "pathvqa")[0].image.name  # test_0001.jpg
    pathvqa_images = tmp_path / "pvqa" / "images" / "test"
    pathvqa_images.mkdir(parents=True)
    Image.new("RGB", (20, 20), (120, 60, 90)).save(pathvqa_images / first_image)
    out = tmp_path / "pvqa.jsonl"
    with running_double(DoubleConfig(reply=lambda body: "yes")) as double:
        config = AnswerConfig(benchmark="pathvqa", data=shared_data / "pathvqa", images=tmp_path / "pvqa", limit=12)
        result = eval_answer(out, config, EngineConfig(base_url=double.base_url, model="vlm", backoff_base=0.01))
    answered = {record["question_id"] for record in read_lines(out)}
    assert answered and all(f"{question_id.rsplit('_', 1)[0]}.jpg" == first_image for question_id in answered)
    assert result.done == len(answered) and result.failed == 12 - len(answered)


def test_a_refused_second_run_leaves_the_first_runs_failures_intact(benchmark_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    config = AnswerConfig(benchmark="vqa-rad", data=benchmark_dir)
    engine = EngineConfig(base_url="http://127.0.0.1:9/v1", model="vlm")
    with JsonlWriter(out) as first_run, FailureLog(out, "eval-answer") as first_failures:
        first_run.write({"question_id": "5", "text": "yes"})
        first_failures.record("7", "image not found")
        before = first_failures.path.read_bytes()
        with pytest.raises(InputError, match="another run is writing to this file"):
            eval_answer(out, config, engine)
        assert first_failures.path.read_bytes() == before
        first_failures.record("6", "timed out")  # the first run goes on writing to the same file
    assert [r["id"] for r in read_lines(tmp_path / "answers.failures.jsonl")] == ["7", "6"]
    assert read_lines(out) == [{"question_id": "5", "text": "yes"}]


def test_openai_backend_sends_the_image(benchmark_dir: Path, tmp_path: Path) -> None:
    def reply(body: dict) -> str:
        text, image = body["messages"][0]["content"]
        assert image["image_url"]["url"].startswith(("data:image/jpeg;base64,", "data:image/png;base64,"))
        return "Assistant: yes" if "Is there" in text["text"] else "left lung"

    out = tmp_path / "answers.jsonl"
    with running_double(DoubleConfig(reply=reply)) as double:
        config = EngineConfig(base_url=double.base_url, model="vlm", backoff_base=0.01)
        result = answer_questions(benchmark_questions("vqa-rad", benchmark_dir), out, AnswerConfig(), config)
        assert (result.done, result.failed) == (2, 1)
        assert result.stats.usage.calls == 2
    compat = eval_vqa(
        benchmark_dir / "test.json", out, VqaConfig(allow_missing=True, compat="llava-med")
    ).metrics
    assert compat["closed_accuracy"] == 100.0
    assert read_lines(out)[0]["model_id"] == "openai:vlm"


def test_answer_cli_with_question_file_and_limit(benchmark_dir: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(
            json.dumps(
                {"question_id": q["qid"], "image": q["image_name"], "text": q["question"] + "\n<image>"}
            )
            + "\n"
            for q in VQA_RAD
        )
    )
    assert [q.answer for q in load_questions(questions, need_answers=False)] == ["", "", ""]
    with pytest.raises(InputError, match="without answers"):
        load_questions(questions)
    out = tmp_path / "answers.jsonl"
    with running_double(DoubleConfig(reply=lambda body: "yes")) as double:
        result = CliRunner().invoke(
            app,
            [
                "eval",
                "answer",
                "--questions",
                str(questions),
                "--images",
                str(benchmark_dir / "images"),
                "--out",
                str(out),
                "--limit",
                "1",
                "--base-url",
                double.base_url,
                "--model",
                "vlm",
            ],
        )
    assert result.exit_code == 0, result.output
    assert [r["question_id"] for r in read_lines(out)] == ["5"]
    missing = CliRunner().invoke(app, ["eval", "answer", "--benchmark", "vqa-rad", "--out", str(out)])
    assert missing.exit_code != 0


def test_kill_9_then_rerun_answers_every_question_once(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from collections import Counter

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(images / "one.png")
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"question_id": i, "image": "images/one.png", "text": f"Question {i}?"}) + "\n"
            for i in range(40)
        )
    )
    out = tmp_path / "answers.jsonl"

    def lines() -> list[str]:
        return out.read_text().splitlines() if out.exists() else []

    vital = str(Path(sys.executable).with_name("vital"))
    with running_double(DoubleConfig(latency=0.1, reply=lambda body: "left lung")) as double:
        command = [
            vital,
            "eval",
            "answer",
            "--questions",
            str(questions),
            "--out",
            str(out),
            "--base-url",
            double.base_url,
            "--model",
            "vlm",
            "--concurrency",
            "4",
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
        )
        deadline = time.monotonic() + 60
        while len(lines()) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = len([line for line in lines() if line.endswith("}")])
        assert 8 <= before < 40, "the run should be killed part-way"
        sent_before = len(double.state.requests)
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert len(double.state.requests) - sent_before <= 40 - before
    ids = Counter(json.loads(line)["question_id"] for line in lines())
    assert ids == Counter({str(i): 1 for i in range(40)})
