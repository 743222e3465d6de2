"""``TuneConfig`` (the settings of ``vital tune``, one source for Python, the CLI and ``vital.toml``) and
``TuneResult``.  Light to import: the CLI reads it at start-up."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.tuning.template import TEMPLATE_NAMES

METHODS = ("full", "lora", "projector")
# The learning rate each method uses unless --lr says otherwise: LLaVA-Med stage 2 (full), LLaVA's LoRA recipe,
# LLaVA stage 1 (projector only).
METHOD_LR = {"full": 2e-5, "lora": 2e-4, "projector": 1e-3}
# Samples per optimizer step that --grad-accum's default aims at (LLaVA-Med stage 2's batch of 128).
TARGET_BATCH = 128

_TRAINING, _LORA, _RUN = "Training", "LoRA", "Run"


@dataclass
class TuneConfig(StageConfig):
    """How to instruction-tune: the method, the optimisation, LoRA, and the run's hardware and checkpoints."""

    method: str = setting(
        "lora", "full: the language model and the projector (LLaVA-Med stage 2); lora: LoRA adapters on the "
        "language model's attention and MLP projections, the projector fully (LLaVA's LoRA recipe); projector: "
        "the projector only (LLaVA stage 1). The vision tower is always frozen.", choices=METHODS, panel=_TRAINING)
    epochs: float = setting(3.0, "Passes over the data (LLaVA-Med stage 2: 3).", panel=_TRAINING)
    max_steps: int | None = setting(None, "Stop after this many optimizer steps (overrides --epochs).",
                                    panel=_TRAINING)
    lr: float | None = setting(
        None, "Peak learning rate (cosine schedule). Default: the method's: full 2e-5, lora 2e-4, projector 1e-3.",
        panel=_TRAINING)
    batch_size: int = setting(4, "Samples per forward pass, per process.", panel=_TRAINING)
    grad_accum: int | None = setting(
        None, f"Forward passes per optimizer step. Default: enough for about {TARGET_BATCH} samples per step "
        "over all processes (LLaVA-Med's batch).", panel=_TRAINING)
    max_length: int = setting(
        2048, "Longest training sequence in tokens, image tokens included. Longer records are cut at the end; a "
        "record whose cut would reach its image tokens or leave no answer token is a failure.", panel=_TRAINING)
    warmup: float = setting(0.03, "Linear warm-up: a fraction of the steps if below 1, else a number of steps.",
                            panel=_TRAINING)
    weight_decay: float = setting(0.0, "AdamW weight decay.", panel=_TRAINING)
    template: str | None = setting(
        None, "Conversation template: the base's chat template when it has one, else vicuna_v1; naming one "
        "overrides the base's (mistral_instruct for Mistral bases such as LLaVA-Med v1.5).",
        choices=TEMPLATE_NAMES, panel=_TRAINING)
    image_root: Path | None = setting(
        None, "Folder the records' image paths are relative to (default: each DATA file's folder).",
        panel=_TRAINING)
    lora_r: int = setting(128, "LoRA rank.", panel=_LORA)
    lora_alpha: int = setting(256, "LoRA alpha (scale = alpha / r).", panel=_LORA)
    lora_dropout: float = setting(0.05, "Dropout on the LoRA path.", panel=_LORA)
    bf16: bool | None = setting(None, "bfloat16 mixed precision. Default: on with a CUDA GPU that supports it.",
                                panel=_RUN)
    activation_checkpointing: bool = setting(
        False, "Recompute activations in the backward pass: much less memory, about a third more compute.",
        panel=_RUN)
    save_steps: int = setting(
        500, "Checkpoint every this many optimizer steps (weights or adapter, optimizer, scheduler, RNG, data "
        "position); the same command resumes from the last one.", panel=_RUN)
    seed: int = setting(0, "Seed of the data order, dropout and LoRA initialisation.", panel=_RUN)
    device: str | None = setting(None, "cpu, cuda, ... Default: cuda when available, else cpu. Under torchrun "
                                 "each process takes its own GPU.", panel=_RUN)
    deepspeed: Path | None = setting(
        None, "A DeepSpeed config (JSON, e.g. ZeRO-3; see docs/tune.md), passed to the trainer. Needs deepspeed "
        "installed.", panel=_RUN)

    def validate(self) -> None:
        positive = ("batch_size", "max_length", "lora_r", "lora_alpha", "save_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise InputError("must be at least 1", field=name)
        for name in ("max_steps", "grad_accum"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError("must be at least 1", field=name)
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise InputError("must be a positive number", field="epochs")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError("must be a positive number", field="lr")
        if not (math.isfinite(self.warmup) and self.warmup >= 0):
            raise InputError("must be 0 or more", field="warmup")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InputError("must be 0 or more", field="weight_decay")
        if not 0 <= self.lora_dropout < 1:
            raise InputError("must be in [0, 1)", field="lora_dropout")
        if self.image_root is not None and not self.image_root.is_dir():
            raise InputError(f"not a folder: {self.image_root}", field="image_root")
        if self.deepspeed is not None and not self.deepspeed.is_file():
            raise InputError(f"file not found: {self.deepspeed}", field="deepspeed")

    @property
    def learning_rate(self) -> float:
        """``lr``, or the method's default (:data:`METHOD_LR`)."""
        return self.lr if self.lr is not None else METHOD_LR[self.method]

    def accumulation(self, world_size: int) -> int:
        """``grad_accum``, or as many forward passes as make about :data:`TARGET_BATCH` samples per step."""
        if self.grad_accum is not None:
            return self.grad_accum
        return max(1, math.ceil(TARGET_BATCH / (self.batch_size * world_size)))


@dataclass
class TuneResult:
    """What a tuning run did.  ``out`` is the tuned checkpoint (``from_pretrained``-ready)."""

    out: Path
    method: str
    steps: int  # optimizer steps reached (the run's last step number)
    resumed_from: int | None  # the checkpoint step this run continued from, if it resumed
    examples: int  # records trained on
    failed: int  # records set aside (reasons in ``failures``)
    failures: Path | None
    truncated: int  # records cut at --max-length (answer tokens lost, image intact)
    tokens: int  # tokens processed in this run (all processes, image tokens included)
    seconds: float  # the whole call, loading and saving included
    train_seconds: float  # the optimizer steps alone (tokens / train_seconds is the training rate)
    final_loss: float | None
    world_size: int
    checkpoint_seconds: float | None  # mean time to write one checkpoint in this run
    peak_gpu_memory_gb: float | None  # this process's peak CUDA memory (None without CUDA)
