"""The base checkpoint, what each method trains, and the tuned checkpoint written to OUT_DIR.

* :func:`check_base` refuses, in one line saying what to do, anything but a
  local llava-hf folder (original LLaVA / LLaVA-Med layouts go through
  ``vital tune convert`` first).
* :func:`prepare` freezes the vision tower always and then, per method:
  ``full`` trains the language model and the projector, ``projector`` the
  projector only, ``lora`` puts peft LoRA adapters on the language model's
  attention and MLP projections (:data:`LORA_TARGETS`, a pattern that cannot
  match the CLIP tower, whose layers have the same names) and trains the
  projector fully (peft ``modules_to_save``, so the adapter carries it).
  Trainable weights are kept in float32 whatever the base's dtype.
* :func:`check_vision_frozen` / :func:`check_no_vision_gradient` are the
  assertions the trainer runs before training and before every optimizer step.
* :func:`save_tuned` writes the checkpoint in the base's dtype: LoRA merged
  into the weights (the adapter kept under ``OUT_DIR/adapter``), with the
  processor and the chat template the model was trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vital.errors import InputError

# Original LLaVA / LLaVA-Med configs (the llava package's classes) rather than llava-hf's.
ORIGINAL_MODEL_TYPES = ("llava_llama", "llava_mistral", "llava")
LORA_TARGETS = r".*\.language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
PROJECTOR = "multi_modal_projector"


def read_config(folder: Path, field: str) -> dict[str, Any]:
    """A checkpoint folder's ``config.json``; an :class:`InputError` naming ``field`` when it has none."""
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder} (every model argument is a local folder)", field=field)
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"not a model folder (no config.json in {folder})", field=field) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config.json is not valid JSON ({exc})", path=path) from None
    if not isinstance(config, dict):
        raise InputError("config.json is not a JSON object", path=path)
    return config


def is_original_layout(config: dict[str, Any]) -> bool:
    """An original LLaVA / LLaVA-Med config (llava-hf's own ``llava`` configs have a ``text_config``)."""
    model_type = config.get("model_type")
    return model_type in ORIGINAL_MODEL_TYPES and "text_config" not in config and (
        model_type != "llava" or "mm_vision_tower" in config or "mm_hidden_size" in config)


def check_base(folder: Path) -> None:
    """Refuse anything but a local llava-hf checkpoint with its processor."""
    config = read_config(folder, "--base")
    model_type = config.get("model_type")
    if is_original_layout(config):
        raise InputError(
            f"{folder} is an original LLaVA checkpoint (model_type {model_type}); convert it to the llava-hf "
            f"layout first: vital tune convert {folder} --out {folder}-hf", field="--base")
    if model_type != "llava":
        raise InputError(f"model_type {model_type!r} is not a LLaVA checkpoint (llava-hf layout, model_type "
                         "'llava', LlavaForConditionalGeneration)", path=folder, field="--base")
    check_weights(folder, "--base")
    if not any((folder / name).exists() for name in ("processor_config.json", "preprocessor_config.json")):
        raise InputError(f"{folder} has no processor (processor_config.json or preprocessor_config.json); save "
                         "the model's AutoProcessor beside it", field="--base")


def check_weights(folder: Path, field: str) -> None:
    """A checkpoint folder holds its weights (checked before loading, which would fail with a traceback)."""
    if not [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]:
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:6])
        raise InputError(f"no model weights (*.safetensors or pytorch_model*.bin) beside config.json; found {found}",
                         path=folder, field=field)


def vision_tower(model: Any) -> Any:
    """The CLIP tower of a LLaVA model, also inside a peft wrapper."""
    llava = model.get_base_model() if hasattr(model, "get_base_model") else model
    return llava.model.vision_tower


def check_vision_frozen(model: Any) -> None:
    trainable = [name for name, p in vision_tower(model).named_parameters() if p.requires_grad]
    if trainable:
        raise RuntimeError(f"the vision tower must stay frozen, but {len(trainable)} of its parameters are "
                           f"trainable (first: {trainable[0]})")


def check_no_vision_gradient(model: Any) -> None:
    reached = [name for name, p in vision_tower(model).named_parameters() if p.grad is not None]
    if reached:
        raise RuntimeError(f"a gradient reached the frozen vision tower ({len(reached)} parameters, first: "
                           f"{reached[0]})")


def prepare(model: Any, method: str, *, lora_r: int, lora_alpha: int, lora_dropout: float) -> Any:
    """The model with the method's parameters trainable and the rest frozen (a peft model for ``lora``)."""
    model.requires_grad_(method == "full")
    vision_tower(model).requires_grad_(False)
    if method == "projector":
        getattr(model.model, PROJECTOR).requires_grad_(True)
    elif method == "lora":
        from peft import LoraConfig, get_peft_model

        adapter = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                             target_modules=LORA_TARGETS, modules_to_save=[PROJECTOR])
        model = get_peft_model(model, adapter)
    for parameter in model.parameters():
        if parameter.requires_grad:  # a learning-rate-sized update vanishes in a 16-bit weight
            parameter.data = parameter.data.float()
    check_vision_frozen(model)
    return model


def checkpoint_dtype(folder: Path) -> Any:
    """The dtype a checkpoint's weights are stored in (``dtype`` / ``torch_dtype`` of its config; float32 if
    neither says)."""
    import torch

    config = read_config(folder, "--base")
    name = config.get("dtype") or config.get("torch_dtype") or config.get("text_config", {}).get("dtype")
    value = getattr(torch, str(name), None) if name else None
    return value if isinstance(value, torch.dtype) else torch.float32


def save_tuned(trainer: Any, processor: Any, out: Path, base: Path, *, deepspeed: bool) -> None:
    """Write the tuned checkpoint to ``out`` in the base's dtype: LoRA merged, the adapter itself under
    ``out/adapter``.  Every process calls this (under DeepSpeed ZeRO-3 the weights are spread over them and the
    trainer gathers them); the first one writes.

    Training keeps trainable weights in float32 beside a 16-bit frozen rest; one dtype throughout is what
    ``from_pretrained`` and generation expect.
    """
    lora = hasattr(trainer.model, "peft_config")
    if deepspeed:
        trainer.save_model(str(out / "adapter" if lora else out))
    if not trainer.is_world_process_zero():
        return
    dtype = checkpoint_dtype(base)
    if lora:
        model = trainer.model
        if deepspeed:  # the in-memory weights are partitioned: merge the saved adapter into the base instead
            from peft import PeftModel
            from transformers import LlavaForConditionalGeneration

            model = PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(base, dtype=dtype),
                                              out / "adapter")
        else:
            model.save_pretrained(out / "adapter")
        model.merge_and_unload().to(dtype).save_pretrained(out)
    elif not deepspeed:
        trainer.model.to(dtype).save_pretrained(out)
    processor.save_pretrained(out)
