"""Original LLaVA / LLaVA-Med checkpoints (``model_type`` llava_llama, llava_mistral, llava) to the llava-hf layout.

The original layout (the ``llava`` package's ``LlavaLlamaForCausalLM`` /
``LlavaMistralForCausalLM``) is a language model checkpoint with the
projector beside it (``model.mm_projector.0/2``) and the CLIP tower named by
``mm_vision_tower`` (its weights in the checkpoint only when it was saved
with the tower loaded).  :func:`convert_checkpoint` maps the state-dict keys
the way transformers' own ``convert_llava_weights_to_hf.py`` does:

==========================================  ==============================================
original                                    llava-hf (``LlavaForConditionalGeneration``)
==========================================  ==============================================
``model.embed_tokens / layers / norm``      ``model.language_model.*``
``lm_head``                                 ``lm_head``
``model.mm_projector.0`` / ``.2``           ``model.multi_modal_projector.linear_1`` / ``_2``
``model.vision_tower.vision_tower.*``       ``model.vision_tower.*``
(tower not in the checkpoint)               the CLIP folder's ``vision_model.*``
==========================================  ==============================================

then adds ``<image>`` (and ``<pad>`` when missing) to the tokenizer, grows
the embeddings for them (new rows drawn around the mean of the old ones, as
transformers does), and saves model + ``LlavaProcessor`` (the CLIP folder's
image processor, padding to a square when the original did, and the shipped
chat template of the original's conversation mode).  What llava-hf cannot
express (a single linear projector, image start/end tokens) is refused in one
line.  Every argument is a local folder; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from vital.errors import InputError
from vital.tuning.model import is_original_layout, read_config
from vital.tuning.template import chat_template

IMAGE_TOKEN, PAD_TOKEN = "<image>", "<pad>"
# The conversation template each original model family was trained with.
FAMILY_TEMPLATE = {"llava_llama": "vicuna_v1", "llava": "vicuna_v1", "llava_mistral": "mistral_instruct"}
EMBEDDING_MULTIPLE = 64  # grown embedding tables are padded to a multiple of 64 rows, as transformers does


def hf_key(key: str) -> str | None:
    """The llava-hf name of an original state-dict key (``None`` for buffers llava-hf does not keep)."""
    if key.endswith(".inv_freq") or key == "model.image_newline":
        return None
    if key.startswith("model.vision_tower.vision_tower."):
        return "model.vision_tower." + key.removeprefix("model.vision_tower.vision_tower.")
    if key.startswith("model.mm_projector."):
        layer, rest = key.removeprefix("model.mm_projector.").split(".", 1)
        linear = {"0": "linear_1", "2": "linear_2"}.get(layer)
        if linear is None:
            raise InputError(f"unexpected projector weight {key} (expected mm_projector.0 and .2, mlp2x_gelu)")
        return f"model.multi_modal_projector.{linear}.{rest}"
    if key.startswith("model."):
        return "model.language_model." + key.removeprefix("model.")
    if key.startswith("lm_head."):
        return key
    raise InputError(f"unexpected weight {key!r} in an original LLaVA checkpoint")


def _original_state_dict(src: Path) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    shards = sorted(src.glob("*.safetensors"))
    if shards:
        tensors = {}
        for shard in shards:
            tensors.update(load_file(shard))
        return tensors
    shards = sorted(src.glob("pytorch_model*.bin")) or sorted(src.glob("model_state_dict*.bin"))
    if not shards:
        raise InputError(f"no weights (*.safetensors or pytorch_model*.bin) in {src}", field="SRC")
    tensors = {}
    for shard in shards:
        tensors.update(torch.load(shard, map_location="cpu", weights_only=True))
    return tensors


def _vision_folder(original: dict[str, Any], vision_tower: Path | None) -> Path:
    if vision_tower is not None:
        folder = vision_tower
    else:
        named = original.get("mm_vision_tower") or original.get("vision_tower")
        folder = Path(str(named or "")).expanduser()
        if not named or not folder.is_dir():
            raise InputError(f"the checkpoint's vision tower {named!r} is not a local folder; pass --vision-tower "
                             "DIR, a local copy of that CLIP checkpoint (config, weights, preprocessor_config.json)",
                             field="--vision-tower")
    if not (folder / "preprocessor_config.json").is_file():
        raise InputError(f"{folder} has no preprocessor_config.json (the CLIP image processor)",
                         field="--vision-tower")
    return folder


def _refuse_unconvertible(original: dict[str, Any]) -> None:
    projector = original.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise InputError(f"its projector is {projector!r}; llava-hf has only the two-layer mlp2x_gelu projector "
                         "(LLaVA 1.5 and later, LLaVA-Med v1.5), so this checkpoint cannot be converted", field="SRC")
    if original.get("mm_use_im_start_end"):
        raise InputError("it uses image start/end tokens (mm_use_im_start_end), which llava-hf does not",
                         field="SRC")


def convert_checkpoint(src: str | Path, out: str | Path, *, vision_tower: str | Path | None = None,
                       template: str | None = None) -> Path:
    """Write the llava-hf version of the original LLaVA / LLaVA-Med checkpoint ``src`` to ``out``.

    ``vision_tower`` is a local CLIP folder, needed when the checkpoint's
    ``mm_vision_tower`` is a hub name (as it usually is); ``template``
    overrides the chat template chosen from the model family.
    """
    import torch
    from transformers import (
        AddedToken,
        AutoTokenizer,
        CLIPVisionConfig,
        CLIPVisionModel,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaImageProcessor,
        LlavaProcessor,
        MistralConfig,
    )

    src, out = Path(src), Path(out)
    original = read_config(src, "SRC")
    if not is_original_layout(original):
        hint = "it is already llava-hf: pass it as --base" if original.get("model_type") == "llava" else (
            f"model_type {original.get('model_type')!r} is not an original LLaVA checkpoint")
        raise InputError(f"nothing to convert in {src}: {hint}", field="SRC")
    _refuse_unconvertible(original)
    vision_dir = _vision_folder(original, Path(vision_tower) if vision_tower is not None else None)
    family = original["model_type"]

    text_class = MistralConfig if family == "llava_mistral" else LlamaConfig
    known = set(text_class().to_dict())
    vision_config = CLIPVisionConfig.from_pretrained(vision_dir)
    tokenizer = AutoTokenizer.from_pretrained(src)
    tokenizer.add_tokens(AddedToken(IMAGE_TOKEN, special=True, normalized=False), special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    vocabulary = tokenizer.get_vocab()
    text_config = text_class(**{k: v for k, v in original.items() if k in known and k != "model_type"})
    strategy: Literal["default", "full"] = (
        "default" if original.get("mm_vision_select_feature", "patch") == "patch" else "full")
    vision = vision_config.to_dict()
    patches = (vision["image_size"] // vision["patch_size"]) ** 2
    config = LlavaConfig(
        text_config=text_config.to_dict(), vision_config=vision,
        image_token_index=vocabulary[IMAGE_TOKEN],
        vision_feature_layer=original.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy=strategy, projector_hidden_act="gelu",
        image_seq_length=patches if strategy == "default" else patches + 1,
    )

    state = {}
    for key, value in _original_state_dict(src).items():
        new_key = hf_key(key)
        if new_key is not None:
            state[new_key] = value
    if "lm_head.weight" not in state:  # tied embeddings are saved once
        state["lm_head.weight"] = state["model.language_model.embed_tokens.weight"].clone()
    if not any(key.startswith("model.vision_tower.") for key in state):
        tower = CLIPVisionModel.from_pretrained(vision_dir).state_dict()
        state.update({f"model.vision_tower.{key}": value for key, value in tower.items()})
    dtype = state["model.language_model.embed_tokens.weight"].dtype
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False,
                                                assign=True)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise InputError(f"the weights do not fit a LLaVA of this config ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected; first: {first})", field="SRC")
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=EMBEDDING_MULTIPLE)
    model.config.get_text_config().pad_token_id = vocabulary[tokenizer.pad_token]  # a row exists only now
    model.generation_config.pad_token_id = vocabulary[tokenizer.pad_token]

    image_processor = LlavaImageProcessor.from_pretrained(
        vision_dir, do_pad=original.get("image_aspect_ratio") == "pad")
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=vision["patch_size"],
        vision_feature_select_strategy=strategy, num_additional_image_tokens=1,
        chat_template=chat_template(None, template or FAMILY_TEMPLATE[family]),
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
