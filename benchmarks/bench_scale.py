"""Scale: feature extraction on the local executor and on a local Ray, BiomedCLIP-shaped encoder throughput,
and the PMC-15M plan computed from them.

    python -m benchmarks scale        (BENCH_SCALE_FIGURES=4000, BENCH_SCALE_MINILM_FIGURES=200 and
                                       BENCH_SCALE_QUESTIONS=40 by default)

1. The selector's feature extraction (images + texts, cold cache) in a fresh child process per run: on the
   local executor, then on a local Ray (started by the run) with 1 and with 2 actors.  Twice: with the
   model-free encoders (image descriptor, hashing texts: almost no work per item, so the figure is Ray's
   overhead) and with MiniLM for the texts (real model work per item).  Per run: Ray's start-up (``ray.init``),
   the extraction, the whole run with shut-down, items encoded per second, the overhead against the local run,
   and the driver's peak memory (Ray's workers are other processes).
   Then ``vital eval answer --backend transformers``: the tiny random LLaVA (``build_tiny_llava``) answering
   the same questions locally and on a local Ray (without GPUs one actor, loading the model once): Ray's
   start-up, the answering, questions/s, the overhead against the local run, and whether the answer files
   are byte for byte the same.
2. BiomedCLIP-shaped towers with random weights built from their configurations (no download): the
   ViT-B/16 image tower (open_clip ``ViT-B-16``) at 224 px and a BERT-base text tower at 256 tokens
   (BiomedCLIP's PubMedBERT shape): images/s and texts/s on this CPU, FLOPs per item (from the weights),
   and image decoding + preprocessing per image on one core.
3. The PMC-15M plan: GPU-hours from a published GPU throughput of ViT-B/16 (the text tower's scaled by FLOPs:
   the same transformer blocks over 256 tokens instead of 197), the generation and judging budget
   from the real BioMed-VITAL demonstrations (``../shared/data``; skipped without it) and
   :mod:`vital.llm.prices`, and the feature cache's size.  docs/scale.md explains the numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

N_FIGURES = int(os.environ.get("BENCH_SCALE_FIGURES", "4000"))
N_MINILM_FIGURES = int(os.environ.get("BENCH_SCALE_MINILM_FIGURES", "200"))
N_QUESTIONS = int(os.environ.get("BENCH_SCALE_QUESTIONS", "40"))
ANSWER_TOKENS = 8
RUNS = [("local", None), ("ray", 1), ("ray", 2)]
ENCODERS = {"model-free": ("hashing", "descriptor"), "MiniLM": ("minilm", "descriptor")}

PMC_FIGURES = 15_000_000
CANDIDATES_PER_FIGURE = 2  # vital generate's default
# timm's published inference benchmark (huggingface/pytorch-image-models, results/
# benchmark-infer-amp-nchw-pt240-cu124-{rtx4090,rtx3090}.csv): vit_base_patch16_224, AMP, batch 1024.
PUBLISHED_VIT_B16 = {"RTX 4090": 2787.15, "RTX 3090": 1570.66}
IMAGE_DIM = TEXT_DIM = 512  # BiomedCLIP's joint embedding
MINILM_DIM = 384
RATE_LIMITS = [(10_000, 2_000_000), (10_000, 30_000_000)]  # (--rpm, --tpm) examples
MODELS = ["gpt-4o", "gpt-4o-mini"]  # priced by vital.llm.prices
JUDGE_REPLY_TOKENS = 60  # {"score": n, "rationale": one or two sentences}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- 1. executors ---------------------------------------------------------------


def write_corpora(root: Path) -> dict[str, Path]:
    """The selector benchmark's corpus (PNG images, 5 candidates per figure), at two sizes."""
    from benchmarks import bench_selector

    folders = {}
    for name, figures in (("model-free", N_FIGURES), ("MiniLM", N_MINILM_FIGURES)):
        folder = root / name.lower()
        bench_selector.N_FIGURES = figures  # write_corpus reads the size from its module
        bench_selector.write_corpus(folder)
        folders[name] = folder
    return folders


def extract(folder: Path, encoders: str, executor: str, actors: int | None) -> dict:
    """One run, in this (child) process: what the parent tabulates."""
    from vital.executor import LocalExecutor, RayExecutor
    from vital.records import figure_index, read_candidates
    from vital.selector import Selector, SelectorConfig

    text, image = ENCODERS[encoders]
    figures = figure_index(folder / "figures.jsonl")
    candidates = read_candidates(folder / "candidates.jsonl", figures)
    cache = folder / f"cache-{executor}-{actors}"
    featurizer = Selector(SelectorConfig(text_encoder=text, image_encoder=image), cache_dir=cache).featurizer
    featurizer.text_encoder.dim  # noqa: B018 -- load the text model (MiniLM) outside the timing, as both paths do
    began = time.perf_counter()
    running = RayExecutor(actors=actors) if executor == "ray" else contextlib.nullcontext(LocalExecutor())
    with running as pool:
        started = time.perf_counter()
        features = featurizer.transform(candidates, figures, executor=pool)
        extracted = time.perf_counter()
    ended = time.perf_counter()
    return {"startup": started - began, "extract": extracted - started, "total": ended - began,
            "items": sum(features.encoded.values()), "peak_mb": peak_mb()}


def run_child(*args: str) -> dict:
    """``extract`` or ``answer`` in a fresh process, with the load average it started at."""
    argv = [sys.executable, "-m", "benchmarks.bench_scale", "--child", *args]
    load = os.getloadavg()[0]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load": load}


def executor_table(root: Path) -> Table:
    folders = write_corpora(root)
    table = Table(title="feature extraction, cold cache (images + texts), one child process per run")
    for name in ("encoders", "executor", "items", "Ray start-up s", "extraction s", "run s", "items/s",
                 "overhead vs local", "driver peak RSS MB", "load avg"):
        table.add_column(name, justify="left" if name in ("encoders", "executor") else "right")
    for encoders, folder in folders.items():
        local_total = None
        for executor, actors in RUNS:
            run = run_child("extract", str(folder), encoders, executor, str(actors or 0))
            if executor == "local":
                local_total = run["total"]
            assert local_total is not None
            table.add_row(
                encoders, "local" if executor == "local" else f"ray, {actors} actor{'s' * (actors != 1)}",
                f"{run['items']:,}", "–" if executor == "local" else f"{run['startup']:.1f}",
                f"{run['extract']:.1f}", f"{run['total']:.1f}", f"{run['items'] / run['extract']:,.0f}",
                "1.00" if executor == "local" else f"{run['total'] / local_total:.2f}x",
                f"{run['peak_mb']:.0f}", f"{run['load']:.1f}",
            )
    return table


def write_questions(root: Path) -> Path:
    """The tiny LLaVA, and ``N_QUESTIONS`` questions about noise images of their own."""
    from PIL import Image

    # built in a process of its own: a child's peak RSS starts at its parent's, which torch would raise
    build = f"from vital.tuning.tiny import build_tiny_llava; build_tiny_llava({str(root / 'tiny-llava')!r})"
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True)
    (root / "images").mkdir()
    rows = []
    for i in range(N_QUESTIONS):
        pixels = (np.random.default_rng(i).random((40, 40, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        rows.append({"question_id": i, "image": f"{i}.png", "text": "What is shown in this image?"})
    questions = root / "questions.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return questions


def answer(root: Path, executor: str) -> dict:
    """One answering run, in this (child) process; on Ray, the local Ray is started (and timed) first."""
    from vital.evaluate.answer import AnswerConfig, eval_answer
    from vital.executor import LOCAL_OBJECT_STORE_MB, machine_cpus
    from vital.llm import EngineConfig

    began = time.perf_counter()
    if executor == "ray":
        import ray

        ray.init(num_cpus=machine_cpus(), object_store_memory=LOCAL_OBJECT_STORE_MB * 2**20,
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    started = time.perf_counter()
    config = AnswerConfig(questions=root / "questions.jsonl", images=root / "images", backend="transformers",
                          max_tokens=ANSWER_TOKENS, executor=executor)
    out = root / f"answers-{executor}.jsonl"
    result = eval_answer(out, config, EngineConfig(model=str(root / "tiny-llava")))
    answered = time.perf_counter()
    if executor == "ray":
        ray.shutdown()
    return {"startup": started - began, "answer": answered - started, "total": time.perf_counter() - began,
            "done": result.done, "out": str(out), "peak_mb": peak_mb()}


def answer_table(root: Path) -> Table:
    from vital.evaluate.answer import CPU_ACTORS
    from vital.executor import actor_shape, machine_cpus

    questions = write_questions(root)
    actors = actor_shape(machine_cpus(), 0, cpu_actors=CPU_ACTORS).actors  # what a local Ray runs here
    table = Table(title=f"eval answer --backend transformers: the tiny LLaVA, {N_QUESTIONS} questions, "
                        f"{ANSWER_TOKENS} new tokens each, one child process per run")
    for name in ("executor", "answered", "Ray start-up s", "answering s", "run s", "questions/s",
                 "overhead vs local", "same file as local", "driver peak RSS MB", "load avg"):
        table.add_column(name, justify="left" if name == "executor" else "right")
    runs = {executor: run_child("answer", str(questions.parent), executor) for executor in ("local", "ray")}
    local_file = Path(runs["local"]["out"]).read_bytes()
    for executor, run in runs.items():
        table.add_row(
            "local" if executor == "local" else f"ray, {actors} actor{'s' * (actors != 1)}", str(run["done"]),
            "–" if executor == "local" else f"{run['startup']:.1f}", f"{run['answer']:.1f}",
            f"{run['total']:.1f}", f"{run['done'] / run['answer']:.1f}",
            "1.00" if executor == "local" else f"{run['total'] / runs['local']['total']:.2f}x",
            "yes" if Path(run["out"]).read_bytes() == local_file else "NO", f"{run['peak_mb']:.0f}",
            f"{run['load']:.1f}",
        )
    return table


# -- 2. BiomedCLIP-shaped towers --------------------------------------------------


def tower_throughput() -> dict[str, float]:
    """Images/s and texts/s of random-weight BiomedCLIP-shaped towers on this CPU, and decode + preprocess."""
    import open_clip
    import torch
    from PIL import Image
    from transformers import BertConfig, BertModel

    from vital.figures.images import load_image

    with contextlib.redirect_stderr(io.StringIO()):  # "no pretrained weights loaded": that is the point
        clip = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    preprocess = open_clip.image_transform(224, is_train=False)
    bert = BertModel(BertConfig()).eval()  # bert-base: 12 layers x 768, as PubMedBERT
    rng = np.random.default_rng(0)
    columns = np.sin(np.arange(512) / 23.0)[None, :, None] * 60 + 120
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(32):  # smooth shading with noise: compresses about as a figure does (~90 KB)
            path = Path(tmp) / f"{i}.jpg"
            pixels = np.clip(columns + rng.normal(0, 8, (512, 512, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(path, quality=90)
            paths.append(path)
        torch.set_num_threads(1)  # a data loader worker: one core
        passes = []
        for _ in range(3):
            started = time.perf_counter()
            batch = torch.stack([preprocess(load_image(path)) for path in paths])
            passes.append((time.perf_counter() - started) / len(paths))
        torch.set_num_threads(threads)
        decode = float(np.median(passes))
    tokens = torch.randint(1000, 30000, (32, 256))

    def per_second(run, n: int, repeats: int = 2) -> float:
        with torch.no_grad():
            run()  # warm-up
            started = time.perf_counter()
            for _ in range(repeats):
                run()
        return n * repeats / (time.perf_counter() - started)

    def gflops(blocks: torch.nn.Module, tokens: int, layers: int = 12, width: int = 768) -> float:
        """A transformer's forward pass: 2 x (weights x tokens + the attention products, 2 x layers x
        tokens^2 x width) multiply-adds (embeddings, norms and softmax are left out: < 1 %)."""
        weights = sum(parameter.numel() for parameter in blocks.parameters())
        return 2 * (weights * tokens + 2 * layers * tokens**2 * width) / 1e9

    return {
        "images": per_second(lambda: clip.encode_image(batch), len(batch)),
        "texts": per_second(lambda: bert(input_ids=tokens).pooler_output, len(tokens)),
        "image_gflops": gflops(clip.visual.transformer, (224 // 16) ** 2 + 1),  # 196 patches + the class token
        "text_gflops": gflops(bert.encoder, tokens.shape[1]),
        "decode_ms": decode * 1000,
        "threads": threads,
    }


def tower_table(measured: dict[str, float]) -> Table:
    table = Table(title=f"BiomedCLIP-shaped towers, random weights, CPU ({measured['threads']} threads, "
                        f"load average {os.getloadavg()[0]:.1f})")
    table.add_column("what")
    table.add_column("per second", justify="right")
    table.add_row(f"image tower ViT-B/16, 224 px, batch 32 ({measured['image_gflops']:.1f} GFLOPs an image)",
                  f"{measured['images']:.1f} images")
    table.add_row(f"text tower BERT-base, 256 tokens, batch 32 ({measured['text_gflops']:.1f} GFLOPs a text)",
                  f"{measured['texts']:.1f} texts")
    table.add_row("decode a 512x512 JPEG + resize, crop, normalise (one core; median of 3 passes)",
                  f"{1000 / measured['decode_ms']:.0f} images ({measured['decode_ms']:.1f} ms each)")
    return table


# -- 3. the PMC-15M plan --------------------------------------------------------------


def request_sizes() -> dict[str, dict[str, float]] | None:
    """Mean tokens in and out per request, by stage: vital's own prompts built around the released
    BioMed-VITAL demonstrations that load (text: characters / 4, the engine's own estimate; each image: the
    engine's 765-token estimate); the reply: a demonstration's conversation (generation) or a short JSON
    verdict (judging)."""
    from vital.conversation import PROMPT_LABELS, conversation_text
    from vital.generation.demos import PerDomain, RandomK, load_demonstrations
    from vital.generation.prompts import build_messages
    from vital.judging.prompts import SCORE_REPLY, WHAT_CONVERSATION, judge_messages
    from vital.llm.engine import IMAGE_TOKEN_ESTIMATE

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "biomed-vital" / "clinician_demonstrations.json"
    if not path.is_file():
        return None
    logging.getLogger("vital").setLevel(logging.ERROR)  # the released images are absent: known, and counted here
    demos = load_demonstrations(path)

    def tokens_in(messages: list[dict], images: int) -> float:
        characters = 0
        for message in messages:
            content = message["content"]
            parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
            characters += sum(len(part["text"]) for part in parts if part.get("type") == "text")
        return characters / 4 + IMAGE_TOKEN_ESTIMATE * images

    replies = [len(conversation_text(d.conversations or [], labels=PROMPT_LABELS, separator="\n")) / 4 for d in demos]
    sizes = {}
    for name, policy in (("generate, --demo-policy per-domain (default)", PerDomain(demos)),
                         ("generate, --demo-policy random:2", RandomK(demos, 2))):
        prompts = [tokens_in(build_messages(d, policy(d, 0)), 1 + len(policy(d, 0))) for d in demos]
        sizes[name] = {"in": float(np.mean(prompts)), "out": float(np.mean(replies))}
    judged = [tokens_in(judge_messages(d, WHAT_CONVERSATION, SCORE_REPLY, [("Conversation", d.conversations or [])]),
                        1) for d in demos]
    sizes["judge (scores)"] = {"in": float(np.mean(judged)), "out": JUDGE_REPLY_TOKENS}
    return sizes


def plan_tables(measured: dict[str, float]) -> list[Table]:
    from vital.llm.prices import DEFAULT_PRICES, estimate_cost

    gpus = Table(title=f"PMC-15M encoders: {PMC_FIGURES / 1e6:.0f}M images and {PMC_FIGURES / 1e6:.0f}M captions "
                       "(BiomedCLIP towers)")
    for name in ("per GPU", "ViT-B/16 images/s (published)", "text tower texts/s (by FLOPs)", "GPU-hours images",
                 "GPU-hours texts", "CPU cores to decode for it"):
        gpus.add_column(name, justify="right")
    for gpu, images in PUBLISHED_VIT_B16.items():
        texts = images * measured["image_gflops"] / measured["text_gflops"]  # the same blocks, more tokens
        gpus.add_row(gpu, f"{images:,.0f}", f"{texts:,.0f}", f"{PMC_FIGURES / images / 3600:.1f}",
                     f"{PMC_FIGURES / texts / 3600:.1f}", f"{images * measured['decode_ms'] / 1000:.0f}")
    gpus.add_row("this CPU (measured)", f"{measured['images']:.1f}", f"{measured['texts']:.1f}",
                 f"{PMC_FIGURES / measured['images'] / 3600:,.0f} (CPU)",
                 f"{PMC_FIGURES / measured['texts'] / 3600:,.0f} (CPU)", "")

    cache = Table(title="feature cache (float32 rows: dims x 4 bytes x items, plus a 33-byte key per row)")
    cache.add_column("block")
    cache.add_column("items", justify="right")
    cache.add_column("dims", justify="right")
    cache.add_column("GB", justify="right")
    rows = [("images (BiomedCLIP)", PMC_FIGURES, IMAGE_DIM), ("captions (BiomedCLIP text)", PMC_FIGURES, TEXT_DIM),
            ("captions (MiniLM, vital sample)", PMC_FIGURES, MINILM_DIM),
            ("conversations (MiniLM, selector)", PMC_FIGURES * CANDIDATES_PER_FIGURE, MINILM_DIM)]
    total = 0.0
    for name, items, dims in rows:
        size = items * (dims * 4 + 33) / 1e9
        total += size
        cache.add_row(name, f"{items / 1e6:.0f}M", str(dims), f"{size:.1f}")
    cache.add_row("total", "", "", f"{total:.0f}")

    tables = [gpus, cache]
    sizes = request_sizes()
    if sizes is None:
        return tables
    requests = PMC_FIGURES * CANDIDATES_PER_FIGURE
    budget = Table(title=f"generation and judging: {PMC_FIGURES / 1e6:.0f}M figures x {CANDIDATES_PER_FIGURE} "
                         f"candidates = {requests / 1e6:.0f}M requests a stage (sizes from the BioMed-VITAL "
                         "demonstrations)")
    for name in ("stage", "tokens in / out a request", "tokens in + out", *(f"$ {m}" for m in MODELS),
                 *(f"days at --rpm {r:,} --tpm {t:,}" for r, t in RATE_LIMITS)):
        budget.add_column(name, justify="left" if name == "stage" else "right")
    for stage, size in sizes.items():
        dollars = [estimate_cost(model, int(size["in"] * requests), int(size["out"] * requests), DEFAULT_PRICES)
                   for model in MODELS]
        days = [requests / min(rpm, tpm / (size["in"] + size["out"])) / 60 / 24 for rpm, tpm in RATE_LIMITS]
        budget.add_row(stage, f"{size['in']:,.0f} / {size['out']:,.0f}",
                       f"{(size['in'] + size['out']) * requests / 1e9:,.1f}B",
                       *(f"{d:,.0f}" for d in dollars), *(f"{d:,.1f}" for d in days))
    tables.append(budget)
    return tables


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        console.print(executor_table(Path(tmp)))
    with tempfile.TemporaryDirectory(prefix="bench-scale-answer-") as tmp:
        console.print(answer_table(Path(tmp)))
    measured = tower_throughput()
    console.print(tower_table(measured))
    for table in plan_tables(measured):
        console.print(table)


if __name__ == "__main__":
    if sys.argv[1:3] == ["--child", "extract"]:
        folder, encoders, executor, actors = sys.argv[3:7]
        print(json.dumps(extract(Path(folder), encoders, executor, int(actors) or None)))
    elif sys.argv[1:3] == ["--child", "answer"]:
        print(json.dumps(answer(Path(sys.argv[3]), sys.argv[4])))
    else:
        main()
