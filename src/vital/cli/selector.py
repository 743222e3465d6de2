"""``vital selector train | score | sweep``: the preference-distilled rating function."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from vital.cli.options import config_options
from vital.jsonl import json_safe
from vital.selector.model import SelectorConfig

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
Json = Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object and nothing else.")]


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
    from vital.records import Preference, figure_index, read_candidates, read_scores

    figure_index = figure_index(figures) if figures else {}
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
        from vital.embeddings import default_cache_dir
        from vital.selector import Selector

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
    @config_options(SelectorConfig, exclude=("human_weight", "finetune_encoder"))
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
        config: SelectorConfig,
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
