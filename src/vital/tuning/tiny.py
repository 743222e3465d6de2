"""A tiny random-weight LLaVA, built offline in seconds: the demo's tune base and the tests' model.

:func:`build_tiny_llava` writes a complete llava-hf checkpoint folder: a CLIP
vision tower and a Llama language model of two layers each, a byte-level BPE
tokenizer trained on the spot (it adds BOS as Llama's does, and knows
``<s>``, ``</s>``, ``<pad>``, ``<image>``), and a ``LlavaProcessor`` with the
shipped ``vicuna_v1`` chat template.  Everything a real base has, at a size
that trains on a CPU; it answers nonsense until it is tuned.
:func:`build_random_llava` builds the same at any shape (the benchmark's
LLaVA-7B-shaped model, :data:`LLAVA_7B_VISION` + :data:`LLAVA_7B_TEXT`), and
:func:`write_yes_no_task` writes a task such a model can learn in a few steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vital.tuning.template import TEMPLATES, VICUNA_SYSTEM

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<image>")  # ids 0, 1, 2, 3
VOCAB_SIZE = 1024  # at most; the corpus below gives fewer merges
MAX_POSITIONS = 4096
OUTPUT_STD = 0.25
# Two layers each; 32-pixel images in 8-pixel patches are 16 image tokens.
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "image_size": 32, "patch_size": 8}
TINY_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4}
# LLaVA-1.5-7B's and LLaVA-Med v1.5's shape: CLIP ViT-L/14 at 336 pixels (576 image tokens) and a 7B Llama.
LLAVA_7B_VISION = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "image_size": 336, "patch_size": 14}
LLAVA_7B_TEXT = {"vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "num_key_value_heads": 32}

# What the tokenizer learns its merges from: the template, and the words of biomedical image conversations.
CORPUS = (
    VICUNA_SYSTEM,
    "USER: <image>\nQuestion ASSISTANT: Answer</s>USER: [INST] [/INST] Yes. No. Yes, No, yes no",
    "What does this image show? Describe the findings in this figure. What is the modality of this image?",
    "Is there an abnormality? Is the image bright or dark? Which organ is shown? Where is the lesion?",
    "This is an axial CT scan of the abdomen showing a hypodense lesion in the liver.",
    "The chest radiograph shows bilateral opacities, consistent with pneumonia; the heart is not enlarged.",
    "A T2-weighted MRI of the brain shows a hyperintense mass in the left temporal lobe with oedema.",
    "The histology section (H&E stain) shows glandular tissue with nuclear atypia, suggesting carcinoma.",
    "Immunohistochemistry staining of cells; the retina fundus photograph shows the optic disc and vessels.",
    "The figure shows a gross specimen of the kidney with a cyst, a nodule, an effusion or a haemorrhage.",
    "The image is a microscopy slide of cells stained for a protein marker, at high magnification.",
    "The scan is a template of the human brain in standard space, with grey and white matter visible.",
    "Findings: no fracture, no mass, normal size; impression: benign, malignant, acute, chronic.",
    "The patient presented with pain, fever and cough. Clinical correlation is recommended.",
)


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(CORPUS * 4, trainer)
    bos = SPECIAL_TOKENS.index("<s>")
    bpe.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]),
    ])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"}, model_max_length=MAX_POSITIONS,
    )


def build_tiny_llava(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight LLaVA (llava-hf layout, processor and chat template included) to ``out_dir``."""
    # A real model's output layer is large after pre-training; at this width the usual 0.02 would cap every logit
    # near 1, and a method that leaves the output layer frozen (LoRA) could never be sure of an answer.
    return build_random_llava(out_dir, vision=TINY_VISION, text=TINY_TEXT, vision_feature_layer=-1, seed=seed,
                              output_std=OUTPUT_STD)


def build_random_llava(
    out_dir: str | Path, *, vision: dict[str, Any], text: dict[str, Any], vision_feature_layer: int = -2,
    seed: int = 0, output_std: float | None = None, device: str | None = None, dtype: Any = None,
) -> Path:
    """A random-weight LLaVA of any shape (``vision``: CLIPVisionConfig fields with ``image_size`` and
    ``patch_size``; ``text``: LlamaConfig fields), with this module's tokenizer, processor and vicuna_v1
    template, saved to ``out_dir``.  ``device``/``dtype`` say where to build it (a 7B shape on a GPU, in
    bfloat16); the caller's random state is left as it was."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out_dir = Path(out_dir)
    tokenizer = _tokenizer()
    image_size, patch_size = vision["image_size"], vision["patch_size"]
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=TEMPLATES["vicuna_v1"],
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(**{"vocab_size": len(tokenizer), "max_position_embeddings": MAX_POSITIONS, **text},
                                bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"]),
        image_token_index=ids["<image>"],
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy="default",
    )
    cuda = [torch.device(device).index or 0] if device is not None and device.startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
        if output_std is not None:
            torch.nn.init.normal_(model.lm_head.weight, std=output_std)
    model.generation_config.pad_token_id = ids["<pad>"]
    model.generation_config.eos_token_id = ids["</s>"]
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


QUESTION = "Is the image bright?"


def write_yes_no_task(folder: str | Path, *, train: int = 32, held_out: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """A task whose answer depends on the image alone, to show that tuning learned something.

    Each record asks :data:`QUESTION` about a noisy grey image, bright
    (answer ``Yes``) or dark (``No``), alternating.  Writes ``train.json`` and
    ``held_out.json`` (LLaVA format; the held-out records also carry
    ``answer_type: CLOSED``, so ``vital eval answer --questions`` and ``vital
    eval vqa --gt`` read the file) with their images under ``images/``, and
    returns the two paths.  A tiny base answers it after a few dozen LoRA
    steps; untuned, it cannot.
    """
    import json

    import numpy as np
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for index in range(train + held_out):
        bright = index % 2 == 0
        level = rng.uniform(170, 230) if bright else rng.uniform(25, 85)
        pixels = np.clip(rng.normal(level, 20, (40, 40)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).convert("RGB").save(folder / "images" / f"{index}.png")
        records.append({
            "id": f"q{index}",
            "image": f"images/{index}.png",
            "conversations": [{"from": "human", "value": f"<image>\n{QUESTION}"},
                              {"from": "gpt", "value": "Yes" if bright else "No"}],
        })
    paths = folder / "train.json", folder / "held_out.json"
    paths[0].write_text(json.dumps(records[:train], indent=1))
    paths[1].write_text(json.dumps([{**r, "answer_type": "CLOSED"} for r in records[train:]], indent=1))
    return paths
