"""``vital selector train | score | sweep``: the preference-distilled rating function."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from vital.cli.options import flag_group
from vital.jsonl import json_safe

PANEL = "Training"

Candidates = Annotated[Path, typer.Option("--candidates", help="Candidates JSONL.")]
Figures = Annotated[
    Path | None, typer.Option("--figures", help="Figures JSONL (captions, mentions, images, domains).")
]
Scores = Annotated[
    Path | None,
    typer.Option("--scores", help="Judge scores JSONL (source 'model') to derive model pairs from."),
]
Preferences = Annotated[
    Path | None, typer.Option("--preferences", help="Preference JSONL (clinician pairs, source 'human').")
]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="Feature cache folder (default: $VITAL_CACHE_DIR, else ~/.cache/vital)."
    ),
]
TextEncoder = Annotated[
    str,
    typer.Option(
        "--text-encoder",
        help="minilm (packaged all-MiniLM-L6-v2), hashing, a sentence-transformers name or folder, "
        "or open_clip:hf-hub:... / open_clip:local-dir:... (BiomedCLIP's text tower).",
    ),
]
ImageEncoder = Annotated[
    str,
    typer.Option(
        "--image-encoder",
        help="descriptor (model-free pixel statistics), none, "
        "or open_clip:hf-hub:... / open_clip:local-dir:...",
    ),
]
Layout = Annotated[
    str,
    typer.Option("--text-layout", help="split (caption and conversation apart) or joint (the reference)."),
]
ModelPairs = Annotated[
    str, typer.Option("--model-pairs", help="Judge pairs within a figure, across figures, both, or none.")
]
MaxModelPairs = Annotated[int, typer.Option("--max-model-pairs", help="Cap on judge pairs.")]
Loss = Annotated[str, typer.Option("--loss", help="hinge (the reference, margin --margin) or logistic.")]
Margin = Annotated[float, typer.Option("--margin", help="Hinge margin.", rich_help_panel=PANEL)]
Epochs = Annotated[int, typer.Option("--epochs", rich_help_panel=PANEL)]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Pairs per step.", rich_help_panel=PANEL)]
LearningRate = Annotated[float, typer.Option("--lr", help="Head learning rate.", rich_help_panel=PANEL)]
HiddenSize = Annotated[int, typer.Option("--hidden-size", rich_help_panel=PANEL)]
HiddenLayers = Annotated[int, typer.Option("--hidden-layers", rich_help_panel=PANEL)]
HeldOut = Annotated[
    float,
    typer.Option("--held-out", help="Share of clinician pairs held out (by figure).", rich_help_panel=PANEL),
]
Patience = Annotated[
    int,
    typer.Option(
        "--patience", help="Epochs without held-out gain before stopping (0: never).", rich_help_panel=PANEL
    ),
]
Seed = Annotated[int, typer.Option("--seed", rich_help_panel=PANEL)]
Json = Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object and nothing else.")]


# name -> (annotation, default) of the flags `train` and `sweep` share; the order is the order in --help.
_TRAINING_FLAGS: dict[str, tuple[Any, Any]] = {
    "model_pairs": (ModelPairs, "both"),
    "max_model_pairs": (MaxModelPairs, 30_000),
    "text_encoder": (TextEncoder, "minilm"),
    "image_encoder": (ImageEncoder, "descriptor"),
    "text_layout": (Layout, "split"),
    "loss": (Loss, "hinge"),
    "margin": (Margin, 1.0),
    "epochs": (Epochs, 6),
    "batch_size": (BatchSize, 64),
    "lr": (LearningRate, 1e-3),
    "hidden_size": (HiddenSize, 512),
    "hidden_layers": (HiddenLayers, 3),
    "held_out": (HeldOut, 0.2),
    "patience": (Patience, 3),
    "seed": (Seed, 0),
}
_CONFIG_NAMES = {"lr": "learning_rate", "held_out": "held_out_fraction"}


def _selector_config(**flags: Any) -> Any:
    from vital.selector import SelectorConfig

    return SelectorConfig(**{_CONFIG_NAMES.get(name, name): value for name, value in flags.items()})


training_options = flag_group(_TRAINING_FLAGS, "config", _selector_config)
"""Add the shared training flags to a command and pass it ``config=SelectorConfig(...)``."""


def _number(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _print_metrics(metrics: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    pairs = metrics["pairs"]
    console.print(
        f"trained on {pairs['human_train']} clinician pairs and {pairs['model_pairs']} judge pairs; "
        f"held out {pairs['held_out']} {metrics['held_out_source']} pairs "
        f"on {pairs['held_out_figures']} figures"
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
                    label,
                    str(row["pairs"]),
                    *(_number(row[k]) for k in ("agreement", "auc", "map", "mean_rank")),
                )
        console.print(table)
    console.print(f"wrote {out} (head, selector.json, metrics.json, training_curves.png)")


def _load_inputs(
    candidates: Path, figures: Path | None, scores: Path | None, preferences: Path | None
) -> tuple:
    from vital.jsonl import read_records
    from vital.records import Preference
    from vital.selector import read_candidates, read_figure_index
    from vital.selector.pairs import read_scores

    figure_index = read_figure_index(figures) if figures else {}
    candidate_list = read_candidates(candidates, figure_index if figures else None)
    judge = read_scores(scores, source="model") if scores else None
    prefs = list(read_records(preferences, Preference)) if preferences else []
    return candidate_list, figure_index, judge, prefs


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Train, apply and sweep the preference-distilled selector.", no_args_is_help=True
    )
    app.add_typer(group, name="selector")

    @group.command()
    @training_options
    def train(
        candidates: Candidates,
        out: Annotated[Path, typer.Option("--out", help="Folder for the trained selector.")],
        figures: Figures = None,
        scores: Scores = None,
        preferences: Preferences = None,
        human_weight: Annotated[
            float, typer.Option("--human-weight", help="Weight of each clinician pair.")
        ] = 1.0,
        finetune_encoder: Annotated[
            bool,
            typer.Option("--finetune-encoder", help="Train the encoders too (slow; re-encodes every step)."),
        ] = False,
        cache_dir: CacheDir = None,
        json_output: Json = False,
        *,
        config: Any,
    ) -> None:
        """Train a selector on clinician preferences (weighted) and judge-score pairs."""
        from vital.embeddings import default_cache_dir
        from vital.selector import Selector

        config = replace(config, human_weight=human_weight, finetune_encoder=finetune_encoder)
        candidate_list, figure_index, judge, prefs = _load_inputs(candidates, figures, scores, preferences)
        selector = Selector(config, cache_dir=cache_dir or default_cache_dir(), show_progress=not json_output)
        selector.fit(candidate_list, figure_index, preferences=prefs, scores=judge)
        selector.save(out)
        if json_output:
            typer.echo(json.dumps(json_safe(selector.metrics), allow_nan=False))
        else:
            _print_metrics(selector.metrics, out)

    @group.command()
    def score(
        model_dir: Annotated[Path, typer.Argument(help="A folder written by 'vital selector train'.")],
        candidates: Candidates,
        out: Annotated[Path, typer.Option("--out", help="Scores JSONL (source 'selector').")],
        figures: Figures = None,
        cache_dir: CacheDir = None,
    ) -> None:
        """Score every candidate with a trained selector."""
        from vital.embeddings import default_cache_dir
        from vital.selector import Selector
        from vital.selector.model import write_scores

        candidate_list, figure_index, _, _ = _load_inputs(candidates, figures, None, None)
        selector = Selector.load(model_dir, cache_dir=cache_dir or default_cache_dir())
        features = selector.features(candidate_list, figure_index)
        values = selector.score(candidate_list, figure_index, features=features)
        written = write_scores(out, candidate_list, values, judge=f"selector:{Path(model_dir).name}")
        missing = features.images_missing + features.images_unreadable
        note = f" ({missing} without a usable image, scored on text only)" if missing else ""
        typer.echo(f"wrote {written} scores to {out}{note}")

    @group.command()
    @training_options
    def sweep(
        candidates: Candidates,
        out: Annotated[
            Path, typer.Option("--out", help="Folder: one selector per weight, sweep.json, sweep.png.")
        ],
        human_weight: Annotated[
            str, typer.Option("--human-weight", help="Comma-separated weights of clinician pairs.")
        ] = "1,10,100,200,300,400",
        figures: Figures = None,
        scores: Scores = None,
        preferences: Preferences = None,
        cache_dir: CacheDir = None,
        json_output: Json = False,
        *,
        config: Any,
    ) -> None:
        """Train one selector per clinician-pair weight and plot held-out agreement against the weight."""
        from rich.console import Console
        from rich.table import Table

        from vital.embeddings import default_cache_dir
        from vital.errors import InputError
        from vital.selector import sweep_human_weight

        try:
            weights = [float(w) for w in human_weight.split(",") if w.strip()]
        except ValueError:
            raise InputError(
                f"expected comma-separated numbers, got {human_weight!r}", field="--human-weight"
            ) from None
        candidate_list, figure_index, judge, prefs = _load_inputs(candidates, figures, scores, preferences)
        rows = sweep_human_weight(
            weights,
            candidate_list,
            figure_index,
            config=config,
            out=out,
            preferences=prefs,
            scores=judge,
            cache_dir=cache_dir or default_cache_dir(),
            show_progress=not json_output,
        )
        if json_output:
            typer.echo(json.dumps(json_safe({"runs": rows}), allow_nan=False))
            return
        table = Table(title="held-out agreement by human weight")
        for name in ("w", "agreement", "AUC", "MAP", "mean rank", "judge"):
            table.add_column(name, justify="right")
        for row in rows:
            table.add_row(
                f"{row['human_weight']:g}",
                *(_number(row[k]) for k in ("agreement", "auc", "map", "mean_rank", "judge_agreement")),
            )
        Console().print(table)
        typer.echo(f"wrote {out / 'sweep.png'} and {out / 'sweep.json'}")
