"""PNG plots of training curves and human-weight sweeps (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(curves: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Training and held-out loss (both weight-normalised, so on one scale), and agreement, per epoch."""
    plt = _pyplot()
    epochs = [point["epoch"] for point in curves]
    figure, (loss_axis, agreement_axis) = plt.subplots(1, 2, figsize=(9, 3.4))
    loss_axis.plot(epochs, [p["train_loss"] for p in curves], marker="o", label="training")
    if any("held_out_loss" in p for p in curves):
        held_loss = [p.get("held_out_loss", math.nan) for p in curves]
        loss_axis.plot(epochs, held_loss, marker="o", label="held out")
    loss_axis.set(xlabel="epoch", ylabel="pairwise loss per unit weight", title="loss")
    loss_axis.legend()
    agreement_axis.plot(epochs, [p["train_agreement"] for p in curves], marker="o", label="training pairs")
    if any("held_out_agreement" in p for p in curves):
        held = [p.get("held_out_agreement", math.nan) for p in curves]
        agreement_axis.plot(epochs, held, marker="o", label="held-out pairs")
    agreement_axis.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    agreement_axis.set(xlabel="epoch", ylabel="agreement", title="pairwise agreement", ylim=(0, 1.02))
    agreement_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Held-out agreement against the clinician-pair weight, with the judge's agreement for comparison."""
    plt = _pyplot()
    weights = [row["human_weight"] for row in rows]
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    axis.plot(weights, [row["agreement"] for row in rows], marker="o", label="selector (held-out pairs)")
    judge = [row["judge_agreement"] for row in rows if not math.isnan(row["judge_agreement"])]
    if judge:
        axis.axhline(judge[0], color="tab:red", linestyle="--", label="judge on the same pairs")
    axis.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    if min(weights) > 0 and max(weights) / min(weights) >= 20:
        axis.set_xscale("log")
    axis.set(xlabel="human weight w", ylabel="agreement", ylim=(0, 1.02), title="agreement by human weight")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
