"""Tuning: throughput, memory and checkpoint cost of ``vital tune``.

    python -m benchmarks tune        (make bench BENCH=tune; BENCH_TUNE_STEPS=30, BENCH_TUNE_THREADS=1 by default)

CPU: the tiny LLaVA of :mod:`vital.tuning.tiny` on its bright/dark task (64
records of 59 tokens, 16 of them image tokens), each method in a child
process ``vital tune ... --batch-size 8 --grad-accum 1 --save-steps 10``:
samples/s and tokens/s over the optimizer steps alone (``train_seconds`` in
``tune.json``), seconds per checkpoint (weights or adapter, optimizer,
scheduler, RNG), and the child's peak RSS.  The children run torch on
``BENCH_TUNE_THREADS`` threads (1: on two cores shared with other work, two
threads spin-waiting on each other train the tiny model ten to twenty times
slower than one).

GPU (when CUDA is present): a random-weight model of LLaVA-7B's shape (CLIP
ViT-L/14 at 336 px + a 7B Llama, :data:`vital.tuning.tiny.LLAVA_7B_VISION` /
``LLAVA_7B_TEXT``), built from its config in bfloat16 and saved once, tuned on
records of 576 image tokens and about 400 text tokens with ``--bf16``: ``lora``
on one GPU, and ``full`` with activation checkpointing (under ZeRO-3 over every
GPU when deepspeed is installed, else on one GPU, where it needs about 120 GB).
Reported: tokens/s per GPU, peak GPU memory, and model FLOPs utilisation,
``samples/s/GPU x (k x N_text x tokens + 2 x N_vision x 577) / peak FLOP/s``
with k = 6 for full (forward + both backward products) and 4 for LoRA (the
frozen weights need no weight gradient); the peak is the GPU's dense bf16
rate from the table below, or ``BENCH_PEAK_TFLOPS``.  Without CUDA it prints
``skipped: no GPU``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import run_measured

STEPS = int(os.environ.get("BENCH_TUNE_STEPS", "30"))
THREADS = os.environ.get("BENCH_TUNE_THREADS", "1")
CPU_BATCH = 8
GPU_STEPS, GPU_BATCH, GPU_RECORDS = 10, 4, 64
# Dense bfloat16 tensor-core peaks, TFLOP/s (matched against torch.cuda.get_device_name, longest name first).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A6000": 155.0, "4090": 165.0,
               "A10G": 70.0, "A10": 125.0, "L4": 121.0}


def tune_args(data: Path, base: Path, out: Path, method: str, *extra: str) -> list[str]:
    return ["tune", str(data), "--base", str(base), "--out", str(out), "--method", method, "--json", *extra]


def run_tune(args: list[str], out: Path, processes: int = 1) -> tuple[dict | None, float | None, str]:
    """``vital tune`` in a child process (under torchrun for several): its tune.json (None if it failed), peak
    RSS in MB (one process only), and its last error line."""
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    if processes == 1:
        measured = run_measured(args, env=env)
        returncode, stderr, rss = measured.returncode, measured.stderr, measured.peak_rss_mb
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), "-m", "vital", *args]
        status = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
        returncode, stderr, rss = status.returncode, status.stderr, None
    record = json.loads((out / "tune.json").read_text()) if returncode == 0 else None
    error = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {returncode}"
    return record, rss, error


def cpu_table(root: Path) -> Table:
    from vital.tuning import build_tiny_llava
    from vital.tuning.tiny import write_yes_no_task

    base = build_tiny_llava(root / "base")
    data, _ = write_yes_no_task(root / "task", train=64, held_out=0)
    table = Table(title=f"vital tune, tiny LLaVA on CPU ({os.cpu_count()} cores): {STEPS} steps of {CPU_BATCH} "
                        f"samples, torch threads {THREADS}")
    for column in ("method", "samples/s", "tokens/s", "s per checkpoint", "peak RSS MB", "final loss"):
        table.add_column(column, justify="left" if column == "method" else "right")
    settings = ["--max-steps", str(STEPS), "--batch-size", str(CPU_BATCH), "--grad-accum", "1",
                "--save-steps", "10"]
    lora = ["--lora-r", "8", "--lora-alpha", "16", "--lr", "2e-3"]
    for method, extra in (("lora", lora), ("full", ["--lr", "1e-3"]), ("projector", [])):
        out = root / f"out-{method}"
        record, rss, error = run_tune(tune_args(data, base, out, method, *settings, *extra), out)
        if record is None:
            table.add_row(method, error, "", "", f"{rss:.0f}", "")
            continue
        seconds = record["train_seconds"]
        table.add_row(method, f"{record['steps'] * CPU_BATCH / seconds:.1f}", f"{record['tokens'] / seconds:,.0f}",
                      f"{record['checkpoint_seconds']:.2f}", f"{rss:.0f}", f"{record['final_loss']:.4f}")
    return table


def parameter_counts(base: Path) -> tuple[int, int]:
    """Parameters of the language model (lm_head included) and of the vision tower, from the weight files."""
    from safetensors import safe_open

    text = vision = 0
    for path in base.glob("*.safetensors"):
        with safe_open(path, framework="pt") as weights:
            for key in weights.keys():
                size = 1
                for dim in weights.get_slice(key).get_shape():
                    size *= dim
                if "vision_tower" in key:
                    vision += size
                elif "multi_modal_projector" not in key:
                    text += size
    return text, vision


def peak_flops() -> float | None:
    import torch

    if os.environ.get("BENCH_PEAK_TFLOPS"):
        return float(os.environ["BENCH_PEAK_TFLOPS"]) * 1e12
    name = torch.cuda.get_device_name()
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_TFLOPS[key] * 1e12
    return None


def write_gpu_records(folder: Path) -> Path:
    """Records shaped like LLaVA-Med's: one image, a question, an answer of about 400 tokens."""
    import numpy as np
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    answer = " ".join(["The axial CT scan of the abdomen shows a hypodense lesion in the liver."] * 30)
    records = []
    for index in range(GPU_RECORDS):
        Image.fromarray(rng.integers(0, 255, (336, 336, 3), dtype=np.uint8)).save(folder / "images" / f"{index}.png")
        records.append({"id": str(index), "image": f"images/{index}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the findings in this figure."},
            {"from": "gpt", "value": answer}]})
    data = folder / "data.json"
    data.write_text(json.dumps(records))
    return data


def gpu_table(root: Path) -> Table | str:
    import torch

    if not torch.cuda.is_available():
        return "skipped: no GPU"
    from vital.tuning.tiny import LLAVA_7B_TEXT, LLAVA_7B_VISION, build_random_llava

    base = build_random_llava(root / "llava-7b-shape", vision=LLAVA_7B_VISION, text=LLAVA_7B_TEXT, device="cuda",
                              dtype=torch.bfloat16)
    torch.cuda.empty_cache()
    data = write_gpu_records(root / "gpu-data")
    n_text, n_vision = parameter_counts(base)
    gpus = torch.cuda.device_count()
    peak = peak_flops()
    zero3 = root / "zero3.json"
    zero3.write_text(json.dumps(ZERO3))
    has_deepspeed = importlib.util.find_spec("deepspeed") is not None
    settings = ["--max-steps", str(GPU_STEPS), "--batch-size", str(GPU_BATCH), "--grad-accum", "1", "--bf16",
                "--save-steps", "1000", "--warmup", "0"]
    runs = [("lora", 1, []), ("full, activation checkpointing", gpus if has_deepspeed else 1,
                              ["--activation-checkpointing", *(["--deepspeed", str(zero3)] if has_deepspeed else [])])]
    table = Table(title=f"vital tune, LLaVA-7B shape, random weights, bf16, {torch.cuda.get_device_name()}, "
                        f"batch {GPU_BATCH} per GPU")
    for column in ("method", "GPUs", "tokens/s per GPU", "peak GPU memory GB", "MFU"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, processes, extra in runs:
        method = name.split(",")[0]
        out = root / f"gpu-{method}"
        record, _, error = run_tune(tune_args(data, base, out, method, *settings, *extra), out, processes)
        if record is None:
            table.add_row(name, str(processes), error, "", "")
            continue
        seconds = record["train_seconds"]
        per_gpu = record["tokens"] / seconds / processes
        samples_per_gpu = record["steps"] * GPU_BATCH / seconds
        tokens_per_sample = record["tokens"] / (record["steps"] * GPU_BATCH * processes)
        flops = samples_per_gpu * ((6 if method == "full" else 4) * n_text * tokens_per_sample + 2 * n_vision * 577)
        table.add_row(name, str(processes), f"{per_gpu:,.0f}", f"{record['peak_gpu_memory_gb']:.1f}",
                      f"{flops / peak:.1%}" if peak else "- (set BENCH_PEAK_TFLOPS)")
    return table


# ZeRO-3 as LLaVA's scripts/zero3.json has it; "auto" values are filled in by the trainer from the flags.
ZERO3 = {
    "bf16": {"enabled": "auto"},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_optimization": {
        "stage": 3, "overlap_comm": True, "contiguous_gradients": True, "sub_group_size": 1e9,
        "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
        "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": True,
    },
}


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        root = Path(tmp)
        console.print(cpu_table(root))
        console.print(gpu_table(root))


if __name__ == "__main__":
    main()
