"""vital.tuning: the chat template and its loss mask, learning on an image-dependent task, what each method
trains, LoRA merging, failures, resume after kill -9, two-process DDP, and converting original checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from vital.errors import InputError  # noqa: E402
from vital.records import Turn  # noqa: E402
from vital.tuning import TuneConfig, build_tiny_llava, tune  # noqa: E402
from vital.tuning.tiny import QUESTION, write_yes_no_task  # noqa: E402

# The task's training settings: a few dozen LoRA steps are enough for the tiny base.
LORA = {"method": "lora", "lora_r": 8, "lora_alpha": 16, "lr": 2e-3, "batch_size": 8, "grad_accum": 1}
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on 2 busy cores, two threads spin-wait each other and run ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tune") / "base")


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> tuple[Path, Path]:
    return write_yes_no_task(tmp_path_factory.mktemp("task"))


@pytest.fixture(scope="module")
def tuned(base, task, tmp_path_factory):
    """The tiny base tuned with LoRA on the bright/dark task."""
    out = tmp_path_factory.mktemp("tuned") / "lora"
    return tune(task[0], base, out, TuneConfig(**LORA, max_steps=30, save_steps=10))


def load(folder: Path):
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(folder).eval()


def processor_of(folder: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder)


def state(module) -> dict:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def turns(*values: str) -> list[Turn]:
    return [Turn(speaker="human" if i % 2 == 0 else "gpt", value=v) for i, v in enumerate(values)]


def batch(processor, template: str, examples):
    from vital.tuning.data import collate, encode

    return collate([encode(processor, template, example, 4096) for example in examples],
                   pad_token_id=processor.tokenizer.pad_token_id)


def examples(task_file: Path):
    from vital.tuning.data import Example

    records = json.loads(task_file.read_text())
    return [Example(r["id"], task_file, 1, task_file.parent / r["image"],
                    turns(*(t["value"] for t in r["conversations"]))) for r in records]


# --- the template and the loss mask -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vicuna_v1", "mistral_instruct"])
def test_labels_keep_the_assistant_turns_and_their_end_token_only(base, task, name):
    from vital.tuning.data import IGNORE_INDEX, Example, encode
    from vital.tuning.template import TEMPLATES

    processor = processor_of(base)
    tokenizer = processor.tokenizer
    example = Example("x", task[0], 1, task[0].parent / "images" / "0.png",
                      turns("<image>\nIs it bright?", "Yes, it is.", "Is it dark?", "No."))
    encoded = encode(processor, TEMPLATES[name], example, 4096)
    ids, labels = encoded["input_ids"].tolist(), encoded["labels"].tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids)
    trained = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    assert all(labels[i] == ids[i] for i in trained)
    # token by token: exactly the two answers, each with its end-of-turn token, and nothing else
    spans, current = [], []
    for i in trained:
        if current and i != current[-1] + 1:
            spans.append(current)
            current = []
        current.append(i)
    spans.append(current)
    assert [tokenizer.decode([ids[i] for i in span]) for span in spans] == [" Yes, it is.</s>", " No.</s>"]
    assert [tokens[span[-1]] for span in spans] == ["</s>", "</s>"]
    # the questions, the image tokens, the headers and BOS are all outside the loss
    assert ids.count(processor.image_token_id) == 16
    assert all(labels[i] == IGNORE_INDEX for i, token in enumerate(ids) if token == processor.image_token_id)
    assert ids.count(tokenizer.bos_token_id) == 1 and labels[0] == IGNORE_INDEX
    text = tokenizer.decode(ids)
    assert "Is it bright?" in text and "Is it dark?" in text


def test_padding_is_outside_the_loss(base, task):
    from vital.tuning.data import IGNORE_INDEX
    from vital.tuning.template import chat_template

    processor = processor_of(base)
    short, long = examples(task[0])[:2]
    long.turns = turns("<image>\nIs the image bright? Answer in a long sentence.", "No, it is a dark image.")
    padded = batch(processor, chat_template(processor), [short, long])
    pads = padded["attention_mask"] == 0
    assert pads[0].any() and not pads[1].any()  # the short one was padded on the right
    assert (padded["labels"][pads] == IGNORE_INDEX).all()
    assert (padded["input_ids"][pads] == processor.tokenizer.pad_token_id).all()


def test_answer_prompt_has_one_bos_and_is_the_training_prefix(base, task):
    """The answering side asks exactly as training taught: same tokens up to the first answer token."""
    from vital.figures.images import load_image
    from vital.tuning.data import IGNORE_INDEX, encode
    from vital.tuning.template import chat_template, prompt_inputs

    processor = processor_of(base)
    bos = processor.tokenizer.bos_token_id
    assert processor.tokenizer("Is it?")["input_ids"][0] == bos  # this tokenizer adds BOS by itself
    example = examples(task[0])[0]
    prompt = prompt_inputs(processor, QUESTION, load_image(example.image))["input_ids"][0].tolist()
    assert prompt.count(bos) == 1 and prompt[0] == bos
    trained = encode(processor, chat_template(processor), example, 4096)
    first_answer = next(i for i, label in enumerate(trained["labels"].tolist()) if label != IGNORE_INDEX)
    assert prompt == trained["input_ids"].tolist()[:first_answer]


# --- learning, what each method trains, outputs -------------------------------------------------------------


def answers_of(model: Path, questions: Path, out: Path) -> dict[str, str]:
    """``vital eval answer --backend transformers`` on the question file: question id -> answer."""
    from typer.testing import CliRunner

    from vital.cli import app

    answered = CliRunner().invoke(app, ["eval", "answer", "--backend", "transformers", "--model", str(model),
                                        "--questions", str(questions), "--out", str(out), "--max-tokens", "4"])
    assert answered.exit_code == 0, answered.output
    return {row["question_id"]: row["text"] for row in map(json.loads, out.read_text().splitlines())}


def test_tuned_model_answers_held_out_images_the_base_cannot(base, task, tuned, tmp_path):
    held_out = json.loads(task[1].read_text())
    expected = {r["id"]: r["conversations"][1]["value"] for r in held_out}
    assert sorted(expected.values()) == ["No"] * 4 + ["Yes"] * 4  # a constant answer gets half right
    assert answers_of(tuned.out, task[1], tmp_path / "tuned.jsonl") == expected
    before = answers_of(base, task[1], tmp_path / "base.jsonl")
    assert sum(before[key] == answer for key, answer in expected.items()) < len(expected) / 2


def test_tuned_folder_is_a_checkpoint_with_its_record(base, task, tuned):
    out = tuned.out
    assert tuned.steps == 30 and tuned.examples == 32 and tuned.failed == 0 and tuned.resumed_from is None
    record = json.loads((out / "tune.json").read_text())
    assert record["status"] == "finished" and record["config"]["method"] == "lora"
    assert record["data"] == [{"path": str(task[0].resolve()), "records": 32, "used": 32,
                               "sha256": __import__("hashlib").sha256(task[0].read_bytes()).hexdigest()}]
    assert record["counts"] == {"records": 32, "examples": 32, "failed": 0, "truncated": 0}
    assert {"torch", "transformers", "peft", "vital"} <= set(record["versions"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 31))
    assert all(row["tokens"] > 0 and row["lr"] is not None for row in log)
    assert log[-1]["loss"] < log[0]["loss"] / 10
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "adapter" / "adapter_config.json").is_file()
    processor = processor_of(out)
    assert "{% generation %}" in processor.chat_template  # the template it was trained with travels along


def test_vision_tower_untouched_and_each_method_trains_its_part(base, task, tuned, tmp_path):
    original = load(base)
    vision, language, projector = (state(original.model.vision_tower), state(original.model.language_model),
                                   state(original.model.multi_modal_projector))
    lora = load(tuned.out)
    assert same(state(lora.model.vision_tower), vision)
    assert not same(state(lora.model.language_model), language)
    assert not same(state(lora.model.multi_modal_projector), projector)
    for method in ("full", "projector"):
        result = tune(task[0], base, tmp_path / method,
                      TuneConfig(method=method, max_steps=2, batch_size=4, grad_accum=1, lr=1e-3, warmup=0))
        model = load(result.out)
        assert same(state(model.model.vision_tower), vision), method
        assert not same(state(model.model.multi_modal_projector), projector), method
        assert same(state(model.model.language_model), language) == (method == "projector"), method


def test_a_gradient_reaching_the_vision_tower_stops_training(base):
    from vital.tuning.model import check_no_vision_gradient, check_vision_frozen, prepare, vision_tower

    for method in ("full", "lora", "projector"):
        model = prepare(load(base), method, lora_r=4, lora_alpha=8, lora_dropout=0.0)
        check_vision_frozen(model)
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        assert trainable and not any("vision_tower" in name for name in trainable)
        if method == "lora":
            assert all("lora_" in name or "multi_modal_projector" in name for name in trainable)
            assert any(".language_model." in name and "lora_A" in name for name in trainable)
    weight = next(iter(vision_tower(model).parameters()))
    weight.grad = torch.ones_like(weight)
    with pytest.raises(RuntimeError, match="vision tower"):
        check_no_vision_gradient(model)
    weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="frozen"):
        check_vision_frozen(model)


def test_merged_lora_gives_the_adapter_models_logits(base, task, tuned):
    from peft import PeftModel

    from vital.tuning.template import chat_template

    processor = processor_of(base)
    inputs = batch(processor, chat_template(processor), examples(task[1])[:4])
    inputs.pop("labels")
    with torch.no_grad():
        adapter = PeftModel.from_pretrained(load(base), tuned.out / "adapter").eval()(**inputs).logits
        merged = load(tuned.out)(**inputs).logits
        untuned = load(base)(**inputs).logits
    assert torch.allclose(adapter, merged, atol=1e-4)
    assert not torch.allclose(untuned, merged, atol=1e-2)


# --- failures and bad input ---------------------------------------------------------------------------------


def test_unusable_records_are_listed_and_skipped(base, task, tmp_path):
    good = json.loads(task[0].read_text())[:4]
    for record in good:
        record["image"] = str(task[0].parent / record["image"])
    long_question = "<image>\n" + "Describe the findings in this figure. " * 20
    records = [
        *good,
        {"id": "missing", "image": "nowhere.png", "conversations": good[0]["conversations"]},
        {"id": "broken", "image": good[0]["image"],
         "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "human", "value": "again?"}]},
        {"id": "long-question", "image": good[0]["image"],
         "conversations": [{"from": "human", "value": long_question}, {"from": "gpt", "value": "Yes"}]},
        {"id": "long-answer", "image": good[1]["image"],
         "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},
                           {"from": "gpt", "value": "It is a dark image. " * 20}]},
    ]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in records))
    (tmp_path / "unreadable.png").write_bytes(b"not a png")
    more = tmp_path / "more.json"
    more.write_text(json.dumps([{"id": "unreadable", "image": "unreadable.png",
                                 "conversations": good[0]["conversations"]}]))
    result = tune([data, more], base, tmp_path / "out",
                  TuneConfig(method="projector", max_steps=1, batch_size=2, grad_accum=1, max_length=80))
    failures = {row["id"]: row for row in map(json.loads, (tmp_path / "out" / "failures.jsonl").open())}
    assert set(failures) == {"missing", "broken", "long-question", "unreadable"}
    assert "image not found" in failures["missing"]["reason"]
    assert "alternate" in failures["broken"]["reason"]
    assert "cut into the image tokens" in failures["long-question"]["reason"]
    assert "cannot be read" in failures["unreadable"]["reason"]
    assert failures["broken"]["file"] == str(data) and failures["broken"]["line"] == 6
    assert (result.examples, result.failed, result.truncated) == (5, 4, 1)
    assert result.failures == tmp_path / "out" / "failures.jsonl"
    record = json.loads((tmp_path / "out" / "tune.json").read_text())
    assert [(entry["records"], entry["used"]) for entry in record["data"]] == [(8, 5), (1, 0)]  # per DATA file


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from vital.cli import main

    monkeypatch.setattr(sys, "argv", ["vital", *args])
    capsys.readouterr()  # what came before is not the command's
    with pytest.raises(SystemExit) as exit:
        main()
    return exit.value.code, capsys.readouterr().err.strip()


def test_malformed_data_exits_2_naming_file_and_field(base, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data.json"
    data.write_text(json.dumps([
        {"id": "a", "image": "x.png", "conversations": [{"from": "human", "value": "<image>\nQ?"},
                                                         {"from": "gpt", "value": "A."}]},
        {"id": "b", "image": "x.png", "conversations": [{"from": "human", "text": "Q?"}]},
    ], indent=1))
    code, err = run_cli(monkeypatch, capsys, "tune", str(data), "--base", str(base), "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{data}:" in err and "conversations.0" in err


def test_bad_bases_and_settings_are_refused_in_one_line(base, task, tmp_path, monkeypatch, capsys):
    original = tmp_path / "original"
    original.mkdir()
    (original / "config.json").write_text(json.dumps({"model_type": "llava_mistral", "mm_vision_tower": "clip"}))
    code, err = run_cli(monkeypatch, capsys, "tune", str(task[0]), "--base", str(original), "--out", str(tmp_path))
    assert code == 2 and "vital tune convert" in err and len(err.splitlines()) == 1
    code, err = run_cli(monkeypatch, capsys, "tune", str(task[0]), "--base", str(base), "--out", str(tmp_path),
                        "--lora-dropout", "1.5")
    assert code == 2 and "--lora-dropout" in err
    zero3 = tmp_path / "zero3.json"
    zero3.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    with pytest.raises(InputError, match="deepspeed"):
        tune(task[0], base, tmp_path / "ds", TuneConfig(deepspeed=zero3))


def test_method_defaults():
    assert TuneConfig(method="full").learning_rate == 2e-5
    assert TuneConfig(method="lora").learning_rate == 2e-4
    assert TuneConfig(method="lora", lr=1e-4).learning_rate == 1e-4
    assert TuneConfig(batch_size=4).accumulation(world_size=1) == 32  # 128 samples per optimizer step
    assert TuneConfig(batch_size=4).accumulation(world_size=8) == 4
    assert TuneConfig(grad_accum=3).accumulation(world_size=8) == 3
    with pytest.raises(InputError) as error:
        TuneConfig(method="qlora")
    assert error.value.field == "method"


def test_rerunning_a_finished_run_trains_nothing_and_other_settings_are_refused(base, task, tuned):
    again = tune(task[0], base, tuned.out, TuneConfig(**LORA, max_steps=30, save_steps=10))
    assert (again.resumed_from, again.steps, again.tokens) == (30, 30, 0)
    assert len((tuned.out / "log.jsonl").read_text().splitlines()) == 30
    with pytest.raises(InputError, match="--lr") as error:
        tune(task[0], base, tuned.out, TuneConfig(**{**LORA, "lr": 1e-3}, max_steps=30, save_steps=10))
    assert error.value.field == "--out"


# --- resume after kill -9, and two processes ------------------------------------------------------------------


def tune_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vital", "tune", *args]


@pytest.mark.slow
def test_kill_9_then_the_same_command_continues_from_the_checkpoint(base, task, tmp_path):
    settings = ["--method", "full", "--lr", "1e-3", "--batch-size", "4", "--grad-accum", "2", "--max-steps", "12",
                "--save-steps", "4"]
    command = tune_command(str(task[0]), "--base", str(base), "--out", str(tmp_path / "out"), "--json", *settings)
    first = subprocess.Popen(command, env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "out" / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert first.poll() is None, first.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert json.loads((tmp_path / "out" / "tune.json").read_text())["status"] == "running"

    second = subprocess.run(command, env=SUBPROCESS_ENV, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["resumed_from"] in (4, 8) and result["steps"] == 12
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 13))  # every step once, numbers continuing

    # the interrupted run trained exactly what an uninterrupted one trains
    straight = tune(task[0], base, tmp_path / "straight",
                    TuneConfig(method="full", lr=1e-3, batch_size=4, grad_accum=2, max_steps=12, save_steps=4))
    reference = [json.loads(line) for line in (straight.out / "log.jsonl").read_text().splitlines()]
    assert [row["loss"] for row in log] == pytest.approx([row["loss"] for row in reference], rel=1e-5)
    assert same(state(load(tmp_path / "out")), state(load(straight.out)))


@pytest.mark.slow
def test_two_processes_train_data_parallel(base, task, tmp_path):
    from vital.tuning.template import chat_template

    processor = processor_of(base)
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "vital", "tune", str(task[0]),
         "--base", str(base), "--out", str(out), "--json", *map(str, [
             "--method", "lora", "--lora-r", 8, "--lora-alpha", 16, "--lr", 2e-3, "--batch-size", 4,
             "--grad-accum", 1, "--max-steps", 4, "--save-steps", 2])],
        env=SUBPROCESS_ENV, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["world_size"] == 2  # printed once, by the first process
    record = json.loads((out / "tune.json").read_text())
    assert record["world_size"] == 2 and record["steps"] == 4
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    # 32 records, 4 per process, 2 processes: 8 records per step, a quarter epoch per step
    assert [row["epoch"] for row in log] == [0.25, 0.5, 0.75, 1.0]
    lengths = {len(batch(processor, chat_template(processor), [e])["input_ids"][0]) for e in examples(task[0])}
    assert len(lengths) == 1 and log[0]["tokens"] == 8 * lengths.pop()  # both processes' tokens counted
    load(out)  # the merged checkpoint loads


# --- original LLaVA checkpoints -------------------------------------------------------------------------------


def build_original_llava(root: Path) -> tuple[Path, Path, dict]:
    """A tiny checkpoint in the original LLaVA layout (llava_llama, mlp2x_gelu) and a local CLIP folder."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    torch.manual_seed(0)
    clip = root / "clip"
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=32, patch_size=8)).save_pretrained(clip)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["What does the image show? A CT scan of the liver."] * 3, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    src = root / "llava-v1.5-tiny"
    tokenizer.save_pretrained(src)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, bos_token_id=1, eos_token_id=2)
    weights = dict(LlamaForCausalLM(text).state_dict())
    weights |= {"model.mm_projector.0.weight": torch.randn(64, 32), "model.mm_projector.0.bias": torch.randn(64),
                "model.mm_projector.2.weight": torch.randn(64, 64), "model.mm_projector.2.bias": torch.randn(64)}
    save_file({k: v.contiguous() for k, v in weights.items()}, src / "model.safetensors")
    (src / "config.json").write_text(json.dumps({
        **text.to_dict(), "model_type": "llava_llama", "architectures": ["LlavaLlamaForCausalLM"],
        "mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_projector_type": "mlp2x_gelu",
        "mm_hidden_size": 32, "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "image_aspect_ratio": "pad", "mm_use_im_start_end": False,
    }))
    return src, clip, weights


def test_convert_maps_an_original_llava_checkpoint_to_llava_hf(tmp_path, task, monkeypatch, capsys):
    from transformers import CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from vital.evaluate.answer import LlavaAnswerer
    from vital.tuning.model import check_base

    src, clip, weights = build_original_llava(tmp_path)
    code, err = run_cli(monkeypatch, capsys, "tune", "convert", str(src), "--out", str(tmp_path / "hf"))
    assert code == 2 and "--vision-tower" in err and len(err.splitlines()) == 1  # the tower is a hub name
    code, _ = run_cli(monkeypatch, capsys, "tune", "convert", str(src), "--out", str(tmp_path / "hf"),
                      "--vision-tower", str(clip))
    assert code in (0, None)
    out = tmp_path / "hf"
    check_base(out)
    converted, processor = load(out), processor_of(out)
    assert processor.image_token == "<image>" and processor.tokenizer.pad_token == "<pad>"
    assert processor.image_processor.do_pad  # image_aspect_ratio "pad", as LLaVA 1.5 preprocesses
    assert converted.config.vision_feature_layer == -2
    assert converted.config.text_config.pad_token_id == processor.tokenizer.pad_token_id
    assert converted.config.image_token_index == processor.image_token_id

    language = LlamaForCausalLM(LlamaConfig.from_pretrained(src))
    language.load_state_dict({k: v for k, v in weights.items() if "mm_projector" not in k})
    ids = processor.tokenizer("What does the image show?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = language(input_ids=ids).logits
        logits = converted(input_ids=ids).logits[..., : expected.shape[-1]]
    assert torch.allclose(expected, logits, atol=1e-5)  # the language model came across intact
    assert torch.equal(converted.model.multi_modal_projector.linear_2.weight, weights["model.mm_projector.2.weight"])
    assert same(state(converted.model.vision_tower), state(CLIPVisionModel.from_pretrained(clip)))
    answer = LlavaAnswerer(out, max_new_tokens=3).answer("What does the image show?", task[0].parent / "images/0.png")
    assert isinstance(answer, str)


def test_convert_refuses_what_llava_hf_cannot_hold(tmp_path, base):
    from vital.tuning import convert_checkpoint
    from vital.tuning.convert import hf_key

    assert hf_key("model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight") == (
        "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight")
    assert hf_key("model.layers.3.self_attn.q_proj.weight") == "model.language_model.layers.3.self_attn.q_proj.weight"
    assert hf_key("model.mm_projector.0.bias") == "model.multi_modal_projector.linear_1.bias"
    assert hf_key("model.layers.0.self_attn.rotary_emb.inv_freq") is None
    linear = tmp_path / "llava-v1"
    linear.mkdir()
    (linear / "config.json").write_text(json.dumps({"model_type": "llava", "mm_vision_tower": "clip",
                                                    "mm_hidden_size": 1024}))
    with pytest.raises(InputError, match="mlp2x_gelu"):
        convert_checkpoint(linear, tmp_path / "out")
    with pytest.raises(InputError, match="already llava-hf"):
        convert_checkpoint(base, tmp_path / "out")
