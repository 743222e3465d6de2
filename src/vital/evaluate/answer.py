"""Ask a model every benchmark question, with its image, and write a LLaVA-Med answer file.

Two backends:

``openai``
    any OpenAI-compatible vision-language server, through :mod:`vital.llm`
    (concurrency, retries, response cache, call log beside the output);
``transformers``
    a LLaVA-style checkpoint in a local folder, loaded with
    ``LlavaForConditionalGeneration`` and its processor, greedy decoding on
    the CPU (or ``device``).

The answer file has one line per question, ``{question_id, prompt, text,
answer_id, model_id, metadata}`` as LLaVA-Med writes them, so ``vital eval
vqa`` (and LLaVA-Med's own scorer) read it.  Runs resume: questions already
in the file are skipped, and a question that cannot be answered (missing
image, failed call) goes to ``<out>.failures.jsonl``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vital.errors import InputError
from vital.evaluate.questions import IMAGE_TOKEN, Question, load_questions
from vital.evaluate.runs import run_resumable

BENCHMARKS = {
    "vqa-rad": ("test.json",),
    "slake": ("test.json",),
    "pathvqa": ("pvqa_test.json", "test.json"),
}
# What LLaVA-Med appends to closed questions in its yes/no answer files.
YES_NO_SUFFIX = ' (Answer with either "Yes" or "No").'
BACKENDS = ("openai", "transformers")


def benchmark_questions(
    benchmark: str, data: str | Path, *, lang: str = "en", images: str | Path | None = None
) -> list[Question]:
    """The test questions of a benchmark folder (``vqa-rad``, ``slake`` or ``pathvqa``)."""
    if benchmark not in BENCHMARKS:
        raise InputError(f"unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    data = Path(data)
    for name in BENCHMARKS[benchmark]:
        if (data / name).exists():
            return load_questions(data / name, format=benchmark, lang=lang, images=images)
    raise InputError(f"no {' or '.join(BENCHMARKS[benchmark])} in this folder", path=data)


def question_prompt(question: Question, *, yes_no_suffix: bool = False) -> str:
    """The question text, with LLaVA-Med's yes/no instruction for closed questions when asked."""
    closed = question.answer_type.strip().upper() == "CLOSED"
    return question.question + (YES_NO_SUFFIX if yes_no_suffix and closed else "")


def _answer_id(model_id: str, question_id: str, text: str) -> str:
    return hashlib.sha256(f"{model_id}\0{question_id}\0{text}".encode()).hexdigest()[:22]


class LlavaAnswerer:
    """A LLaVA-style checkpoint from a local folder (model weights + processor), answering greedily."""

    def __init__(self, path: str | Path, *, max_new_tokens: int = 128, device: str = "cpu") -> None:
        path = Path(path)
        if not (path / "config.json").exists():
            raise InputError("not a model folder (no config.json)", path=path, field="--model")
        import torch
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        self.torch = torch
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = LlavaForConditionalGeneration.from_pretrained(path).to(device).eval()
        self.device, self.max_new_tokens = device, max_new_tokens
        self.name = f"transformers:{path.name}"

    def _text(self, prompt: str) -> str:
        if getattr(self.processor, "chat_template", None):
            conversation = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
            ]
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        token = getattr(self.processor, "image_token", IMAGE_TOKEN)
        return (
            f"USER: {token}\n{prompt} ASSISTANT:"  # the LLaVA-1.5 layout, for processors without a template
        )

    def answer(self, prompt: str, image: Path) -> str:
        from vital.figures.images import load_image

        inputs = self.processor(images=load_image(image), text=self._text(prompt), return_tensors="pt")
        inputs = inputs.to(self.device)
        with self.torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.processor.decode(new_tokens, skip_special_tokens=True).strip()


def answer_questions(
    questions: list[Question],
    out: str | Path,
    *,
    backend: str = "openai",
    engine_config: Any = None,
    model_path: str | Path | None = None,
    yes_no_suffix: bool = False,
    max_new_tokens: int = 128,
    device: str = "cpu",
    cache: str | Path | None = None,
) -> Any:
    """Answer ``questions`` into the answer file ``out`` (resumable); see the module docstring.

    ``backend="openai"`` needs ``engine_config`` (a :class:`vital.llm.EngineConfig`);
    ``backend="transformers"`` needs ``model_path``.  Returns the run's
    :class:`vital.llm.RunStats`.
    """
    from vital.figures.images import ImageError
    from vital.llm import JobFailed, image_part

    if backend not in BACKENDS:
        raise InputError(
            f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}", field="--backend"
        )
    local = (
        LlavaAnswerer(model_path, max_new_tokens=max_new_tokens, device=device)
        if backend == "transformers"
        else None
    )
    if local is None and engine_config is None:
        raise InputError("the openai backend needs a model connection", field="--base-url")
    model_id = local.name if local is not None else engine_config.label

    def make_work(engine: Any) -> Any:
        async def work(question: Question) -> dict[str, Any]:
            prompt = question_prompt(question, yes_no_suffix=yes_no_suffix)
            if question.image is None or not question.image.exists():
                raise JobFailed(f"image not found: {question.image}")
            try:
                if local is not None:
                    text = local.answer(prompt, question.image)
                else:
                    part = image_part(question.image, engine.config.image_max_side)
                    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}, part]}]
                    completion = await engine.complete(messages, temperature=0.0, max_tokens=max_new_tokens)
                    text = completion.text.strip()
            except ImageError as exc:
                raise JobFailed(f"image {question.image}: {exc}") from None
            return {
                "question_id": question.id,
                "prompt": f"{prompt}\n{IMAGE_TOKEN}",
                "text": text,
                "answer_id": _answer_id(model_id, question.id, text),
                "model_id": model_id,
                "metadata": {"backend": backend, "image": str(question.image)},
            }

        return work

    return run_resumable(
        questions,
        out,
        make_work=make_work,
        stage="eval-answer",
        title=f"answering, {model_id}",
        engine_config=engine_config if local is None else None,
        cache=cache,
    )
