"""``vital.tune``: LLaVA-style supervised instruction tuning, resumable, on one process or many.

Read top to bottom, :func:`tune` does:

1. check the inputs (the base is a local llava-hf folder, the DATA files are
   LLaVA JSON) and choose the chat template;
2. read the records and set aside those that cannot be trained on
   (:mod:`vital.tuning.data`), listed in ``OUT_DIR/failures.jsonl``;
3. find the last complete checkpoint under ``OUT_DIR/checkpoints`` and, when
   there is one, make sure it belongs to the same run (settings, base, data
   hashes as recorded in ``OUT_DIR/tune.json``);
4. load the base, make the method's parameters trainable
   (:func:`vital.tuning.model.prepare`), and train with ``transformers.Trainer``
   (AdamW, cosine schedule with warm-up, checkpoints every ``save_steps`` and at
   the last step, resumed with optimizer, scheduler, RNG and data position);
   :class:`~vital.tuning.trainer.Monitor` writes one ``log.jsonl`` line per optimizer step, reports
   progress, and asserts before each optimizer step that no gradient reached
   the vision tower;
5. write the tuned checkpoint, ``loss.png`` and ``tune.json``.

Under ``torchrun`` / ``accelerate launch`` every process runs the same
function; the trainer makes it data-parallel (gloo on CPU, NCCL on GPUs), and
only the first process writes files.  ``deepspeed`` hands a ZeRO config to the
trainer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import time
from collections.abc import Iterable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

from vital import __version__
from vital.conversation import read_llava
from vital.errors import InputError
from vital.jsonl import FailureLog, JsonlWriter, input_file, iter_json_lines, write_json_atomic, write_jsonl_atomic
from vital.progress import SILENT, Progress, or_silent
from vital.tuning.config import TuneConfig, TuneResult
from vital.tuning.data import TrainingData, TuneDataset, collate, read_examples
from vital.tuning.model import check_base, prepare, save_tuned
from vital.tuning.template import chat_template, marks_assistant_turns

CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2
# Settings that may change between a run and its resumption without changing what is trained.
RESUMABLE_CHANGES = ("save_steps", "device")


class _FailuresFile(FailureLog):
    """The failure log as ``OUT_DIR/failures.jsonl`` (inside the output folder, not beside it)."""

    def __init__(self, out: Path) -> None:
        super().__init__(out, "tune")
        self.path = out / "failures.jsonl"


def _data_files(data: str | Path | Iterable[str | Path]) -> list[Path]:
    files = [Path(data)] if isinstance(data, str | Path) else [Path(path) for path in data]
    if not files:
        raise InputError("no DATA file given", field="data")
    for path in files:  # the records' shape is checked before transformers loads (seconds)
        for _ in read_llava(input_file(path), check=False):
            pass
    return files


def _world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process, as torchrun and accelerate set them."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (one whose trainer state was written, which the trainer does last)."""
    if not folder.is_dir():
        return None
    steps = []
    for child in folder.glob("checkpoint-*"):
        suffix = child.name.removeprefix("checkpoint-")
        state = child / "trainer_state.json"
        if suffix.isdigit() and state.is_file():
            try:
                json.loads(state.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # killed while writing it
            steps.append((int(suffix), child))
    return max(steps)[1] if steps else None


def _check_same_run(out: Path, run: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint of a run with other settings, another base or other data."""
    try:
        before = json.loads((out / "tune.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        raise InputError(f"{out / CHECKPOINTS} holds checkpoints but {out / 'tune.json'} is missing or torn; "
                         "choose a new --out or delete the checkpoints to start over", field="--out") from None
    names = {"base": "base", "data": "data files", "examples": "usable records"}
    differences = [name for key, name in names.items() if before.get(key) != run[key]]
    old, new = before.get("config", {}), run["config"]
    differences += [f"--{name.replace('_', '-')}" for name in new
                    if name not in RESUMABLE_CHANGES and old.get(name) != new[name]]
    if differences:
        raise InputError(f"{out} holds checkpoints of another run (different {', '.join(differences)}); rerun "
                         "with the same settings and data to resume, or choose a new --out", field="--out")


def _training_arguments(config: TuneConfig, out: Path, world_size: int) -> Any:
    import torch
    from transformers import TrainingArguments

    cpu = config.device == "cpu" or (config.device is None and not torch.cuda.is_available())
    if config.device is not None and config.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"{config.device} asked for, but torch sees no CUDA device", field="--device")
    if config.device is not None and config.device.startswith("cuda:") and world_size == 1:
        torch.cuda.set_device(config.device)
    bf16 = config.bf16 if config.bf16 is not None else (not cpu and torch.cuda.is_bf16_supported())
    return TrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup,
        weight_decay=config.weight_decay,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.accumulation(world_size),
        bf16=bf16,
        activation_checkpointing=config.activation_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=KEEP_CHECKPOINTS,
        logging_strategy="steps",
        logging_steps=1,
        include_num_input_tokens_seen="non_padding",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=cpu,
        ddp_backend="gloo" if cpu and world_size > 1 else None,
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=not cpu,
        deepspeed=str(config.deepspeed) if config.deepspeed else None,
        remove_unused_columns=False,  # the collator's keys are the model's inputs; pixel_values must stay
        report_to="none",
        disable_tqdm=True,
    )


def _restart_log(path: Path, step: int) -> JsonlWriter:
    """``log.jsonl`` cut back to the steps up to ``step`` (the checkpoint resumed from), open for appending."""
    if path.exists():
        kept = [obj for _, obj in iter_json_lines(path, skip_torn_tail=True) if obj.get("step", 0) <= step]
        write_jsonl_atomic(path, kept)
    return JsonlWriter(path)


def plot_loss(log: Path, out: Path) -> None:
    """``loss.png``: the training loss per optimizer step, from ``log.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [obj for _, obj in iter_json_lines(log, skip_torn_tail=True)] if log.exists() else []
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot([row["step"] for row in rows], [row["loss"] for row in rows], linewidth=1)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("training loss")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"vital": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__}


def _load_model(base: Path, config: TuneConfig, *, bf16: bool) -> Any:
    """The base with the method's parameters trainable (see :func:`vital.tuning.model.prepare`).

    Under bf16 the frozen weights of lora and projector load in bfloat16 (half the memory); full tuning loads
    float32, as mixed precision keeps float32 weights (DeepSpeed converts them itself).
    """
    import torch
    from transformers import LlavaForConditionalGeneration, set_seed

    frozen_16bit = bf16 and config.method != "full" and config.deepspeed is None
    model = LlavaForConditionalGeneration.from_pretrained(base, dtype=torch.bfloat16 if frozen_16bit else torch.float32)
    set_seed(config.seed)  # LoRA's initial weights; the trainer seeds the same generators again for the run
    return prepare(model, config.method, lora_r=config.lora_r, lora_alpha=config.lora_alpha,
                   lora_dropout=config.lora_dropout)


def _last_loss(history: list[dict[str, Any]]) -> float | None:
    """The last training loss the trainer logged (a rerun of a finished run trains no step of its own)."""
    return next((float(entry["loss"]) for entry in reversed(history) if "loss" in entry), None)


def _write_record(out: Path, run: dict[str, Any], training: TrainingData, result: TuneResult) -> None:
    """``tune.json`` of a finished run."""
    write_json_atomic(out / "tune.json", {
        "status": "finished", **run,
        "counts": {"records": sum(f["records"] for f in training.files), "examples": result.examples,
                   "failed": result.failed, "truncated": result.truncated},
        "steps": result.steps, "resumed_from": result.resumed_from, "world_size": result.world_size,
        "tokens": result.tokens, "seconds": round(result.seconds, 2), "train_seconds": round(result.train_seconds, 2),
        "checkpoint_seconds": result.checkpoint_seconds, "peak_gpu_memory_gb": result.peak_gpu_memory_gb,
        "final_loss": result.final_loss, "versions": _versions(),
    })


def _record_failures(out: Path, training: TrainingData) -> Path | None:
    with _FailuresFile(out) as failures:
        for item in training.rejected:
            failures.record(item.id, item.reason, file=str(item.path), line=item.line)
    return failures.path if training.rejected else None


def tune(
    data: str | Path | Iterable[str | Path],
    base: str | Path,
    out: str | Path,
    config: TuneConfig | None = None,
    *,
    progress: Progress | None = None,
) -> TuneResult:
    """Instruction-tune the LLaVA checkpoint ``base`` on the LLaVA-format ``data`` file(s) into ``out``.

    ``out`` becomes a checkpoint ``LlavaForConditionalGeneration.from_pretrained``
    and ``vital eval answer --backend transformers`` load, with ``tune.json``,
    ``log.jsonl``, ``loss.png`` and ``failures.jsonl`` beside it.  Calling it
    again with the same arguments resumes from the last checkpoint in
    ``out/checkpoints``.  See the module docstring for the steps.
    """
    started = time.perf_counter()
    config = config or TuneConfig()
    files, base, out = _data_files(data), Path(base), Path(out)
    check_base(base)
    if out.resolve() == base.resolve():
        raise InputError("is the base checkpoint; choose another output folder", field="--out")
    if config.deepspeed is not None and importlib.util.find_spec("deepspeed") is None:
        raise InputError("needs the deepspeed package (pip install deepspeed, on a machine with CUDA)",
                         field="--deepspeed")
    rank, world_size = _world()
    main = rank == 0

    import torch
    from transformers import AutoProcessor
    from transformers.trainer_callback import PrinterCallback

    from vital.tuning.trainer import LlavaTrainer, Monitor

    processor = AutoProcessor.from_pretrained(base)
    template = chat_template(processor, config.template)
    if not marks_assistant_turns(template):
        raise InputError("the base's chat template does not mark the assistant turns with {% generation %}, so "
                         "the loss cannot be limited to them; pass --template vicuna_v1 or mistral_instruct",
                         field="--template")
    processor.chat_template = template
    training = read_examples(files, processor, template, max_length=config.max_length,
                             image_root=config.image_root)
    # What a checkpoint must share to be resumed: the settings, the base, the data and the records kept from it.
    run = {"config": config.to_dict(), "base": str(base.resolve()), "data": training.files,
           "examples": len(training.examples)}
    resume = last_checkpoint(out / CHECKPOINTS)
    if resume is not None:
        _check_same_run(out, run)
    failures = _record_failures(out, training) if main else None
    if not training.examples:
        raise InputError(f"no record can be trained on ({len(training.rejected)} set aside; reasons in "
                         f"{out / 'failures.jsonl'})", path=files[0])
    if main:
        write_json_atomic(out / "tune.json", {"status": "running", **run})

    args = _training_arguments(config, out, world_size)  # before the model: ZeRO-3 partitions it as it loads
    model = _load_model(base, config, bf16=args.bf16)
    resumed_from = int(resume.name.removeprefix("checkpoint-")) if resume is not None else None
    log = _restart_log(out / "log.jsonl", resumed_from or 0) if main else None
    with log if log is not None else nullcontext(), \
            or_silent(progress if main else SILENT).task(f"tuning ({config.method})") as task:
        monitor = Monitor(log, task)
        trainer = LlavaTrainer(
            model=model, args=args, train_dataset=TuneDataset(training.examples, processor, template,
                                                              config.max_length),
            data_collator=partial(collate, pad_token_id=processor.tokenizer.pad_token_id),
            processing_class=processor, callbacks=[monitor],
        )
        trainer.remove_callback(PrinterCallback)
        if resume is not None and trainer.finished(resume):
            trainer.load_finished(resume)  # a rerun of a finished run: nothing to train, the output is rewritten
        else:
            trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)

    save_tuned(trainer, processor, out, base, deepspeed=config.deepspeed is not None)
    result = TuneResult(
        out=out, method=config.method, steps=trainer.state.global_step, resumed_from=resumed_from,
        examples=len(training.examples), failed=len(training.rejected), failures=failures if main else None,
        truncated=training.truncated,
        tokens=monitor.tokens - monitor.first_tokens, seconds=time.perf_counter() - started,
        train_seconds=monitor.train_seconds,
        peak_gpu_memory_gb=torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None,
        final_loss=monitor.last_loss if monitor.last_loss is not None else _last_loss(trainer.state.log_history),
        world_size=world_size,
        checkpoint_seconds=(sum(monitor.checkpoint_seconds) / len(monitor.checkpoint_seconds)
                            if monitor.checkpoint_seconds else None),
    )
    if main:
        plot_loss(out / "log.jsonl", out / "loss.png")
        _write_record(out, run, training, result)
    trainer.accelerator.wait_for_everyone()
    return result
