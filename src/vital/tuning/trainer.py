"""The pieces of the run that subclass transformers: the trainer and the per-step monitor.

Imported by :func:`vital.tuning.train.tune` when it runs (this module imports
transformers at the top).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME

from vital.jsonl import JsonlWriter
from vital.progress import Task
from vital.tuning.model import check_no_vision_gradient


class LlavaTrainer(Trainer):
    """``Trainer`` that resumes LLaVA weights correctly, and a finished run without an extra step.

    transformers 5 saves a LLaVA checkpoint's weights under their legacy names
    (``language_model.model.*``) and maps them back in ``from_pretrained``, but
    ``Trainer`` resumes full weights with a plain ``load_state_dict``, which
    matches none of them and silently keeps the base weights.  Resuming through
    ``from_pretrained`` maps them.  Adapters (LoRA) and DeepSpeed checkpoints
    take the trainer's own path.
    """

    def finished(self, checkpoint: Path) -> bool:
        """Is ``checkpoint`` the last step of its run?"""
        state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_NAME))
        return state.max_steps > 0 and state.global_step >= state.max_steps

    def load_finished(self, checkpoint: Path) -> None:
        """Take the weights and state of a finished run's last checkpoint, without training: resumed there,
        ``train`` would run one step past the end."""
        self._load_from_checkpoint(str(checkpoint))
        self.state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target: Any = model if model is not None else self.model
        if hasattr(target, "peft_config"):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        # float32 here; load_state_dict then copies each weight into the dtype it trains in
        saved = type(target).from_pretrained(resume_from_checkpoint, dtype=torch.float32)
        target.load_state_dict(saved.state_dict())


class Monitor(TrainerCallback):
    """One ``log.jsonl`` line and a progress update per optimizer step; the vision-tower gradient check.

    The time of a step runs from the previous step's log (or checkpoint) to its
    own log, so ``seconds`` in ``log.jsonl`` leaves checkpoint writing out;
    :attr:`checkpoint_seconds` holds those.
    """

    def __init__(self, log: JsonlWriter | None, task: Task) -> None:
        self.log, self.task = log, task
        self.checkpoint_seconds: list[float] = []
        self.train_seconds = 0.0
        self.last_loss: float | None = None
        self.first_tokens = self.tokens = 0
        self.mark = time.perf_counter()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.first_tokens = self.tokens = state.num_input_tokens_seen
        self.task.update(total=state.max_steps)
        if state.global_step:
            self.task.advance(state.global_step, status=f"resumed at step {state.global_step}")
        self.mark = time.perf_counter()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        check_no_vision_gradient(model)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= state.max_steps:
            control.should_save = True  # a checkpoint at the end too: rerunning a finished run trains nothing
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return  # the trainer's end-of-run summary
        now = time.perf_counter()
        tokens, seconds = state.num_input_tokens_seen - self.tokens, now - self.mark
        self.tokens, self.mark, self.last_loss = state.num_input_tokens_seen, now, float(logs["loss"])
        self.train_seconds += seconds
        if self.log is not None:
            self.log.write({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                            "loss": self.last_loss, "lr": logs.get("learning_rate"), "tokens": tokens,
                            "seconds": round(seconds, 4)})
        rate = tokens / seconds if seconds > 0 else 0.0
        self.task.advance(status=f"loss {self.last_loss:.4f} · {rate:,.0f} tokens/s")

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.perf_counter()
        self.checkpoint_seconds.append(now - self.mark)
        self.mark = now
