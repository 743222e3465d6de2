"""``vital selector train | score | sweep``: the preference-distilled rating function."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from vital.cli.options import config_options
from vital.selector.config import ScoreConfig, SelectorConfig

Candidates = Annotated[Path, typer.Option("--candidates", help="Candidates JSONL.")]
Figures = Annotated[
    Path | None, typer.Option("--figures", help="Figures JSONL (captions, mentions, images, domains).")
]
Scores = Annotated[
    Path | None,
    typer.Option("--scores", help="Judge scores JSONL (source 'model') to derive judge pairs from."),
]
Preferences = Annotated[
    Path | None,
    typer.Option("--preferences", help="Preferences JSONL: clinician pairs (source 'human') and judge verdicts "
                 "(source 'model')."),
]
CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Feature cache folder (default: $VITAL_CACHE_DIR, else ~/.cache/vital)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print the results as one JSON object and nothing else.")]


def _progress(json_output: bool) -> Any:
    from vital.cli.progress import RichProgress

    return None if json_output else RichProgress(transient=True)


def _print_json(obj: Any) -> None:
    from vital.jsonl import json_safe

    typer.echo(json.dumps(json_safe(obj), allow_nan=False))


def _number(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _print_metrics(metrics: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    pairs = metrics["pairs"]
    held_out = {"human": "clinician", "model": "judge"}.get(metrics["held_out_source"])
    console.print(
        f"trained on {pairs['human_train']} clinician pairs and {pairs['model_pairs']} judge pairs; "
        + (f"held out {pairs['held_out']} {held_out} pairs on {pairs['held_out_figures']} figures"
           if held_out else "nothing held out (no early stopping, no held-out metrics)")
    )
    if metrics.get("images_missing") or metrics.get("images_unreadable"):
        console.print(
            f"[yellow]{metrics['images_missing']} candidates have no image file and "
            f"{metrics['images_unreadable']} an unreadable one: they were scored on text features only"
        )
    if metrics.get("held_out"):
        table = Table(title="held-out pairs")
        table.add_column("rater")
        for name in ("pairs", "agreement", "AUC", "MAP", "mean rank"):
            table.add_column(name, justify="right")
        for label, row in (("selector", metrics["held_out"]), ("judge", metrics.get("judge_on_held_out"))):
            if row:
                table.add_row(
                    label, str(row["pairs"]), *(_number(row[k]) for k in ("agreement", "auc", "map", "mean_rank"))
                )
        console.print(table)
    console.print(f"wrote {out} (head, selector.json, metrics.json, training_curves.png)")


def _weights(text: str) -> list[float]:
    from vital.errors import InputError

    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        weights = []
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
        raise InputError(f"expected comma-separated numbers >= 0, got {text!r}", field="--human-weight")
    return weights


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Train, apply and sweep the preference-distilled selector.", no_args_is_help=True)
    app.add_typer(group, name="selector")

    @group.command()
    @config_options(SelectorConfig)
    def train(
        candidates: Candidates,
        out: Annotated[Path, typer.Option("--out", help="Folder for the trained selector.")],
        figures: Figures = None,
        scores: Scores = None,
        preferences: Preferences = None,
        cache_dir: CacheDir = None,
        json_output: Json = False,
        *,
        config: SelectorConfig,
    ) -> None:
        """Train a selector on clinician preferences (weighted) and judge-score pairs."""
        from vital.selector import Selector

        selector = Selector(config, cache_dir=cache_dir).fit(
            candidates, figures, scores=scores, preferences=preferences, progress=_progress(json_output)
        )
        selector.save(out)
        if json_output:
            _print_json(selector.metrics)
        else:
            _print_metrics(selector.metrics, out)

    @group.command()
    @config_options(ScoreConfig)
    def score(
        model_dir: Annotated[Path, typer.Argument(help="A folder written by 'vital selector train'.")],
        candidates: Candidates,
        out: Annotated[Path, typer.Option("--out", help="Scores JSONL (source 'selector').")],
        figures: Figures = None,
        cache_dir: CacheDir = None,
        json_output: Json = False,
        *,
        config: ScoreConfig,
    ) -> None:
        """Score every candidate with a trained selector."""
        from dataclasses import asdict

        from vital.selector import Selector

        result = Selector.load(model_dir, cache_dir=cache_dir, executor=config.executor).write_scores(
            candidates, figures, out, progress=_progress(json_output)
        )
        if json_output:
            _print_json({**asdict(result), "out": str(result.out)})
            return
        missing = result.images_missing + result.images_unreadable
        note = f" ({missing} without a usable image, scored on text only)" if missing else ""
        typer.echo(f"wrote {result.scored} scores to {result.out}{note}")

    @group.command()
    @config_options(SelectorConfig, exclude=("human_weight", "finetune_encoder"))
    def sweep(
        candidates: Candidates,
        out: Annotated[Path, typer.Option("--out", help="Folder: one selector per weight, sweep.json, sweep.png.")],
        human_weight: Annotated[
            str, typer.Option("--human-weight", help="Comma-separated weights of clinician pairs.")
        ] = "1,10,100,200,300,400",
        figures: Figures = None,
        scores: Scores = None,
        preferences: Preferences = None,
        cache_dir: CacheDir = None,
        json_output: Json = False,
        *,
        config: SelectorConfig,
    ) -> None:
        """Train one selector per clinician-pair weight and plot held-out agreement against the weight."""
        from rich.console import Console
        from rich.table import Table

        from vital.selector import sweep_human_weight

        result = sweep_human_weight(
            candidates, figures, out, config, weights=_weights(human_weight), scores=scores,
            preferences=preferences, cache_dir=cache_dir, progress=_progress(json_output),
        )
        if json_output:
            _print_json(result.to_dict())
            return
        table = Table(title="held-out agreement by human weight")
        for name in ("w", "agreement", "AUC", "MAP", "mean rank", "judge"):
            table.add_column(name, justify="right")
        for run in result.runs:
            table.add_row(
                f"{run['human_weight']:g}",
                *(_number(run[k]) for k in ("agreement", "auc", "map", "mean_rank", "judge_agreement")),
            )
        Console().print(table)
        wrote = f"{result.plot} and " if result.plot else ""
        typer.echo(f"wrote {wrote}{out / 'sweep.json'}")
