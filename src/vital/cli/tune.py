"""``vital tune DATA... --base DIR --out DIR``: LLaVA-style instruction tuning; ``vital tune convert``:
original LLaVA / LLaVA-Med checkpoints to the llava-hf layout."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from vital.cli.options import config_options
from vital.tuning.config import TuneConfig
from vital.tuning.template import TEMPLATE_NAMES


class _TuneGroup(TyperGroup):
    """``vital tune convert ...`` runs the conversion; anything else (``vital tune DATA ...``, ``--help``)
    is the training command, so that training keeps the short form."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args:
            args = ["train", "--help"]
        elif args[0] not in self.commands:
            args = ["train", *args]
        return super().parse_args(ctx, args)


def _print_result(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vital tune ({result.method}) -> {result.out}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rate = result.tokens / result.train_seconds if result.train_seconds else 0.0
    rows = {
        "optimizer steps": result.steps,
        "resumed from step": result.resumed_from if result.resumed_from is not None else "-",
        "records trained on": result.examples,
        "records set aside (failures.jsonl)": result.failed,
        "records cut at --max-length": result.truncated,
        "processes": result.world_size,
        "tokens (this run)": f"{result.tokens:,}",
        "tokens/s": f"{rate:,.0f}",
        "final loss": f"{result.final_loss:.4f}" if result.final_loss is not None else "-",
        "seconds per checkpoint": f"{result.checkpoint_seconds:.2f}" if result.checkpoint_seconds else "-",
        "peak GPU memory": f"{result.peak_gpu_memory_gb:.1f} GB" if result.peak_gpu_memory_gb else "-",
        "elapsed": f"{result.seconds:.1f} s",
    }
    for name, value in rows.items():
        table.add_row(name, str(value))
    Console(stderr=True).print(table)


def register(app: typer.Typer) -> None:
    tune_app = typer.Typer(
        cls=_TuneGroup,
        help="Instruction-tune a LLaVA checkpoint on LLaVA-format data (vital tune DATA --base DIR --out DIR).",
    )

    @tune_app.command("train", hidden=True)
    @config_options(TuneConfig)
    def train(
        data: list[Path] | None = typer.Argument(
            None, help="LLaVA-format JSON or JSONL (as vital select writes it); several files are merged."),
        base: Path = typer.Option(..., "--base", help="The base: a local llava-hf checkpoint folder (model and "
                                  "processor). Original LLaVA layouts: vital tune convert first."),
        out: Path = typer.Option(..., "--out", help="Output folder: the tuned checkpoint, tune.json, log.jsonl, "
                                 "loss.png, failures.jsonl, checkpoints/. Rerun the same command to resume."),
        more_data: list[Path] = typer.Option([], "--data", help="One more DATA file (repeatable)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object and nothing else."),
        *,
        config: TuneConfig,
    ) -> None:
        """Instruction-tune a LLaVA checkpoint (full, lora or projector) on LLaVA-format data, resumably.

        Under torchrun --nproc_per_node N -m vital tune ... (or accelerate launch) it trains data-parallel.

        vital tune convert SRC --out DST turns an original LLaVA / LLaVA-Med checkpoint into the llava-hf layout.
        """
        import json

        from vital.cli.progress import RichProgress, quiet_libraries
        from vital.errors import InputError
        from vital.jsonl import json_safe
        from vital.tuning import tune

        files = [*(data or []), *more_data]
        if not files:
            raise InputError("give at least one DATA file", field="DATA")
        quiet_libraries()
        try:
            result = tune(files, base, out, config, progress=None if as_json else RichProgress())
        except Exception as exc:
            torch = sys.modules.get("torch")  # imported by tune() once the inputs are checked, not before (seconds)
            if torch is None or not isinstance(exc, torch.OutOfMemoryError):
                raise
            raise InputError("out of GPU memory: lower it (raise --grad-accum to keep the batch), add "
                             "--activation-checkpointing, use --method lora, or shard with --deepspeed "
                             "(docs/tune.md)",
                             field="--batch-size") from None
        if os.environ.get("RANK", "0") != "0":
            return  # under torchrun the first process reports
        if as_json:
            fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(result).items()}
            typer.echo(json.dumps(json_safe(fields), allow_nan=False))
        else:
            _print_result(result)
        if result.failed:
            typer.echo(f"{result.failed} records were set aside (reasons in {result.failures}); the model was "
                       "tuned on the rest.", err=True)
            raise typer.Exit(1)

    @tune_app.command("convert")
    def convert(
        src: Path = typer.Argument(..., help="An original LLaVA / LLaVA-Med checkpoint folder (model_type "
                                   "llava_llama, llava_mistral or llava)."),
        out: Path = typer.Option(..., "--out", help="Folder for the llava-hf checkpoint."),
        vision_tower: Path | None = typer.Option(
            None, "--vision-tower", help="A local CLIP checkpoint folder, when the checkpoint's mm_vision_tower is "
            "a hub name (e.g. a copy of openai/clip-vit-large-patch14-336)."),
        template: str | None = typer.Option(
            None, "--template", help=f"Chat template to save ({', '.join(TEMPLATE_NAMES)}). Default: the "
            "family's (vicuna_v1 for llava_llama, mistral_instruct for llava_mistral)."),
    ) -> None:
        """Convert an original LLaVA / LLaVA-Med checkpoint to the llava-hf layout (vital tune --base takes it)."""
        from vital.cli.progress import quiet_libraries
        from vital.tuning import convert_checkpoint

        quiet_libraries()
        typer.echo(f"wrote {convert_checkpoint(src, out, vision_tower=vision_tower, template=template)}")

    app.add_typer(tune_app, name="tune")
