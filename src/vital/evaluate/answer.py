"""Ask a model every benchmark question, with its image, and write a LLaVA-Med answer file.

Two backends:

``openai``
    any OpenAI-compatible vision-language server, through :mod:`vital.llm`
    (concurrency, retries, response cache, call log beside the output);
``transformers``
    a LLaVA-style checkpoint in a local folder, loaded with
    ``LlavaForConditionalGeneration`` and its processor, greedy decoding on
    the CPU (or ``device``), in this process or, with ``executor="ray"``, on
    Ray actors that each load the checkpoint once and use the GPU Ray gave
    them (:mod:`vital.executor`).  Each question is answered on its own, so
    batching never changes an answer, and every executor writes the same file.

The answer file has one line per question, ``{question_id, prompt, text,
answer_id, model_id, metadata}`` as LLaVA-Med writes them, so ``vital eval
vqa`` (and LLaVA-Med's own scorer) read it.  Runs resume: questions already
in the file are skipped, and a question that cannot be answered (missing
image, failed call) goes to ``<out>.failures.jsonl``; when no question has its
image the run stops before it starts, with one error.

>>> import vital
>>> config = vital.AnswerConfig(benchmark="vqa-rad", data="vqa-rad/", yes_no_suffix=True)
>>> result = vital.eval_answer("answers.jsonl", config, vital.EngineConfig(base_url=..., model="llava"))
>>> result.done, result.failed, result.failures
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vital.config import StageConfig, setting
from vital.conversation import IMAGE_TOKEN
from vital.errors import InputError
from vital.evaluate.questions import Question, load_questions
from vital.evaluate.runs import RunResult, run_batches, run_resumable
from vital.executor import executor_setting, torch_device
from vital.progress import Progress
from vital.tuning.model import check_weights

BENCHMARKS = {
    "vqa-rad": ("test.json",),
    "slake": ("test.json",),
    "pathvqa": ("pvqa_test.json", "test.json"),
}
# What LLaVA-Med appends to closed questions in its yes/no answer files.
YES_NO_SUFFIX = ' (Answer with either "Yes" or "No").'
BACKENDS = ("openai", "transformers")
# The checkpoints the transformers backend loads (config.json's model_type): LlavaForConditionalGeneration's.
SUPPORTED_MODEL_TYPES = ("llava",)
ANSWER_BATCH_SIZE = 4
"""Questions sent to a worker at a time by the transformers backend (it answers them one by one)."""
CPU_ACTORS = 1
"""Answering actors on a Ray cluster without GPUs: each holds the whole checkpoint (a 7B is 14 GB), so one."""


@dataclass
class AnswerConfig(StageConfig):
    """Which questions to ask, and how to answer them (the model connection is an :class:`EngineConfig`)."""

    benchmark: str | None = setting(None, "vqa-rad, slake or pathvqa (with --data).", choices=tuple(BENCHMARKS))
    data: Path | None = setting(None, "The benchmark's folder (test file and images/).")
    questions: Path | None = setting(
        None, "Instead of a benchmark: a ground-truth or LLaVA-Med question file."
    )
    images: Path | None = setting(None, "Folder the image names are relative to.")
    backend: str = setting(
        "openai", "openai (any OpenAI-compatible VLM server) or transformers (--model DIR).", choices=BACKENDS
    )
    yes_no_suffix: bool = setting(
        False, 'Append LLaVA-Med\'s (Answer with either "Yes" or "No"). to closed questions.'
    )
    max_tokens: int = setting(128, "Longest answer, in tokens.")
    device: str = setting(
        "cpu", "torch device for the transformers backend in this process (auto: cuda when there is one); "
        "with --executor ray each actor uses the GPU it was given, else its CPU.", changes_output=False)
    lang: str = setting("en", "SLAKE question language (en, zh, or all).")
    limit: int | None = setting(None, "Only the first N questions.")
    cache_file: Path | None = setting(
        None, "Response cache to use (default: OUT's .llm.sqlite).", changes_output=False
    )
    executor: str = executor_setting()

    def validate(self) -> None:
        if self.benchmark is not None and self.questions is not None:
            raise InputError("give either --benchmark with --data, or --questions, not both", field="benchmark")
        if self.benchmark is not None and self.data is None:
            raise InputError("--benchmark needs --data (the benchmark's folder)", field="data")
        if self.max_tokens < 1:
            raise InputError("must be at least 1", field="max_tokens")
        if self.limit is not None and self.limit < 1:
            raise InputError("must be at least 1", field="limit")
        if self.executor == "ray" and self.backend != "transformers":
            raise InputError(
                "ray is for --backend transformers (its model on Ray actors); the openai backend sends its "
                "requests from this process, as many at once as --concurrency says", field="executor")

    def load_questions(self) -> list[Question]:
        """The questions to ask: the benchmark's test questions or the question file's, up to ``limit``."""
        if self.benchmark is not None:
            assert self.data is not None  # validate() saw to it
            items = benchmark_questions(self.benchmark, self.data, lang=self.lang, images=self.images)
        elif self.questions is not None:
            items = load_questions(self.questions, lang=self.lang, images=self.images, need_answers=False)
        else:
            raise InputError("give either --benchmark with --data, or --questions", field="--benchmark")
        return items[: self.limit] if self.limit is not None else items


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


def _answer_record(question: Question, prompt: str, text: str, model_id: str, backend: str) -> dict[str, Any]:
    """A line of the answer file, as LLaVA-Med writes them."""
    return {
        "question_id": question.id,
        "prompt": f"{prompt}\n{IMAGE_TOKEN}",
        "text": text,
        "answer_id": _answer_id(model_id, question.id, text),
        "model_id": model_id,
        "metadata": {"backend": backend, "image": str(question.image)},
    }


def check_checkpoint(path: str | Path) -> None:
    """Stop with one line unless ``path`` holds a checkpoint the transformers backend can load.

    Checked before any loading: a model folder (``config.json``) whose
    ``model_type`` is one of :data:`SUPPORTED_MODEL_TYPES`, with weights.
    """
    path = Path(path)
    supported = "; --backend transformers loads LLaVA checkpoints in the transformers layout (model_type "
    supported += f"{', '.join(map(repr, SUPPORTED_MODEL_TYPES))}, e.g. the llava-hf conversions)"
    if not (path / "config.json").is_file():
        raise InputError(f"not a model folder (no config.json){supported}", path=path, field="--model")
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        raise InputError(f"config.json is not a JSON object{supported}", path=path, field="--model") from None
    if model_type not in SUPPORTED_MODEL_TYPES:
        hint = ""
        if model_type == "llava_mistral":
            hint = " (LLaVA-Med v1.5's original layout: serve it with an OpenAI-compatible server and use "
            hint += "--backend openai, or convert it to the transformers layout)"
        raise InputError(f"found a {model_type!r} checkpoint{hint}{supported}", path=path, field="--model")
    check_weights(path, "--model")


def _check_images(questions: list[Question], images: Path | None) -> None:
    """One error when not one question has its image (a run would fail every question the same way)."""
    if not questions or any(q.image is not None and q.image.exists() for q in questions):
        return
    first = next((q.image for q in questions if q.image is not None), None)
    looked = f" (the first would be {first})" if first is not None else ""
    where = f"in {images}" if images is not None else "beside the questions"
    hint = "give --images DIR, the folder the image names are relative to"
    if images is None and all(q.benchmark == "pathvqa" for q in questions):
        hint = "PathVQA's release of the questions has no images: " + hint
    raise InputError(
        f"none of the {len(questions)} questions has its image {where}{looked}; {hint}", field="--images"
    )


class LlavaAnswerer:
    """A LLaVA-style checkpoint from a local folder (model weights + processor), answering greedily."""

    def __init__(self, path: str | Path, *, max_new_tokens: int = 128, device: str = "cpu") -> None:
        """``device="auto"`` is the GPU when this process can see one, else the CPU."""
        path = Path(path)
        if not (path / "config.json").exists():
            raise InputError("not a model folder (no config.json)", path=path, field="--model")
        import torch
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        device = torch_device(device)
        self.torch = torch
        self.processor = AutoProcessor.from_pretrained(path)
        model: Any = LlavaForConditionalGeneration.from_pretrained(path)  # its typed .to() refuses a str device
        self.model = model.to(device).eval()
        self.device, self.max_new_tokens = device, max_new_tokens
        self.name = f"transformers:{path.name}"

    def answer(self, prompt: str, image: Path) -> str:
        """The model's greedy answer, asked as ``vital tune`` trained it: the processor's chat template (else
        the shipped vicuna_v1) with the generation prompt, one BOS (:func:`vital.tuning.template.prompt_inputs`)."""
        from vital.figures.images import load_image
        from vital.tuning.template import prompt_inputs

        inputs = prompt_inputs(self.processor, prompt, load_image(image)).to(self.device)
        with self.torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.processor.decode(new_tokens, skip_special_tokens=True).strip()


@dataclass(frozen=True)
class LlavaWorker:
    """The transformers backend's worker factory: what an executor sends each worker (the checkpoint's folder
    and the generation settings, never the weights).

    Called where it runs, it loads the checkpoint once (:class:`LlavaAnswerer`) and returns the batch
    function: ``{"prompt", "image"}`` dicts in, one answer each out, asked one at a time (batched generation
    pads the prompts, which could change a greedy answer).  An image that cannot be decoded there gives its
    :class:`~vital.figures.images.ImageError` in place of the answer.
    """

    path: str
    max_new_tokens: int
    device: str = "auto"

    def __call__(self) -> Callable[[list[dict[str, str]]], list[Any]]:
        from vital.figures.images import ImageError

        answerer = LlavaAnswerer(self.path, max_new_tokens=self.max_new_tokens, device=self.device)

        def answer_one(question: dict[str, str]) -> str | ImageError:
            try:
                return answerer.answer(question["prompt"], Path(question["image"]))
            except ImageError as exc:
                return exc

        return lambda questions: [answer_one(question) for question in questions]


def answer_questions(
    questions: Iterable[Question],
    out: str | Path,
    config: AnswerConfig | None = None,
    engine: Any = None,
    *,
    progress: Progress | None = None,
) -> RunResult:
    """Answer ``questions`` into the answer file ``out`` (resumable); see the module docstring.

    ``config.backend="openai"`` needs ``engine`` (a :class:`vital.llm.EngineConfig`);
    ``"transformers"`` loads the checkpoint folder ``engine.model`` (``--model DIR``) on ``config.executor``.
    """
    from vital.figures.images import ImageError
    from vital.llm import JobFailed, image_part

    config = config or AnswerConfig()
    questions = list(questions)
    if engine is None:
        needed = "the checkpoint folder (--model DIR)" if config.backend == "transformers" else "a model connection"
        raise InputError(f"the {config.backend} backend needs {needed}", field="--model")
    _check_images(questions, config.images)
    if config.backend == "transformers":
        return _answer_with_checkpoint(questions, out, config, Path(engine.model), progress)

    def make_work(client: Any) -> Any:
        async def work(question: Question) -> dict[str, Any]:
            prompt = question_prompt(question, yes_no_suffix=config.yes_no_suffix)
            if question.image is None or not question.image.exists():
                raise JobFailed(f"image not found: {question.image}")
            try:
                part = image_part(question.image, client.config.image_max_side)
            except ImageError as exc:
                raise JobFailed(f"image {question.image}: {exc}") from None
            messages = [{"role": "user", "content": [{"type": "text", "text": prompt}, part]}]
            completion = await client.complete(messages, temperature=0.0, max_tokens=config.max_tokens)
            return _answer_record(question, prompt, completion.text.strip(), engine.label, config.backend)

        return work

    return run_resumable(
        questions,
        out,
        make_work=make_work,
        inputs=(config.questions,),
        stage="eval-answer",
        title=f"answering, {engine.label}",
        engine_config=engine,
        cache=config.cache_file,
        progress=progress,
    )


def _answer_with_checkpoint(
    questions: list[Question], out: str | Path, config: AnswerConfig, checkpoint: Path, progress: Progress | None
) -> RunResult:
    """The transformers backend: :class:`LlavaWorker` on ``config.executor``.  A missing or unreadable image
    fails its question here, before anything is sent to a worker."""
    from vital.figures.images import ImageError, verify_image
    from vital.llm import JobFailed

    check_checkpoint(checkpoint)
    model_id = f"transformers:{checkpoint.name}"

    def prepare(question: Question) -> dict[str, str]:
        if question.image is None or not question.image.exists():
            raise JobFailed(f"image not found: {question.image}")
        try:
            verify_image(question.image)
        except ImageError as exc:
            raise JobFailed(f"image {question.image}: {exc}") from None
        return {"prompt": question_prompt(question, yes_no_suffix=config.yes_no_suffix), "image": str(question.image)}

    def finish(question: Question, answer: str | ImageError) -> dict[str, Any]:
        if isinstance(answer, ImageError):
            raise JobFailed(f"image {question.image}: {answer}")
        prompt = question_prompt(question, yes_no_suffix=config.yes_no_suffix)
        return _answer_record(question, prompt, answer, model_id, config.backend)

    device = config.device if config.executor == "local" else "auto"  # a Ray actor: the GPU it was given
    return run_batches(
        questions,
        out,
        prepare=prepare,
        make_worker=LlavaWorker(str(checkpoint), config.max_tokens, device),
        finish=finish,
        executor=config.executor,
        batch_size=ANSWER_BATCH_SIZE,
        stage="eval-answer",
        title=f"answering, {model_id}",
        progress=progress,
        inputs=(config.questions,),
        cpu_actors=CPU_ACTORS,
    )


def eval_answer(
    out: str | Path, config: AnswerConfig, engine: Any = None, *, progress: Progress | None = None
) -> RunResult:
    """Answer the questions ``config`` names (a benchmark folder or a question file) into ``out``.

    See :func:`answer_questions`, which takes :class:`Question` records instead.
    """
    return answer_questions(config.load_questions(), out, config, engine, progress=progress)
