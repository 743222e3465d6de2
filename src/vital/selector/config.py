"""The selector's settings: one dataclass, the flags of ``vital selector train | sweep`` and what is saved
with a trained selector.

Light to import (no numpy, no torch): the command line builds its flags from it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.executor import executor_setting

LAYOUTS = ("split", "joint")
MODEL_PAIR_MODES = ("within", "across", "both", "none")
LOSSES = ("hinge", "logistic")

TRAINING = "Training"


@dataclass
class SelectorConfig(StageConfig):
    """What the selector sees (encoders, layout), which pairs it learns from, and how it is trained."""

    text_encoder: str = setting(
        "minilm", "Text encoder: minilm (the packaged all-MiniLM-L6-v2), hashing (no model; fast, weaker), a "
        "sentence-transformers name or folder, or open_clip:hf-hub:... / open_clip:local-dir:... (e.g. "
        "BiomedCLIP's text tower).")
    image_encoder: str = setting(
        "descriptor", "Image encoder: descriptor (model-free pixel statistics), none, or open_clip:hf-hub:... / "
        "open_clip:local-dir:... (e.g. BiomedCLIP's image tower; pretrained weights required).")
    text_layout: str = setting(
        "split", "split: caption+mentions and conversation encoded apart, plus their cosine; joint: one string, "
        "as the reference does.", choices=LAYOUTS)
    model_pairs: str = setting(
        "both", "Pairs from judge scores: within a figure, across figures, both, or none.",
        choices=MODEL_PAIR_MODES)
    max_model_pairs: int = setting(30_000, "At most this many judge pairs.")
    human_weight: float = setting(
        1.0, "Weight of each clinician pair against a judge pair's 1 (the paper sweeps 1 to 400).")
    hidden_size: int = setting(512, "Width of the head's hidden layers.", panel=TRAINING)
    hidden_layers: int = setting(3, "Hidden layers of the head (0: a linear head).", panel=TRAINING)
    dropout: float = setting(0.1, "Dropout after each hidden layer.", panel=TRAINING)
    loss: str = setting("hinge", "hinge (the reference; margin --margin) or logistic (Bradley-Terry).",
                        choices=LOSSES, panel=TRAINING)
    margin: float = setting(1.0, "Hinge margin.", panel=TRAINING)
    lr: float = setting(1e-3, "Learning rate of the head (the encoders have --encoder-lr).", panel=TRAINING)
    encoder_lr: float = setting(1e-5, "Learning rate of the encoders with --finetune-encoder (the reference's).",
                                panel=TRAINING)
    weight_decay: float = setting(1e-4, "AdamW weight decay.", panel=TRAINING)
    epochs: int = setting(6, "Passes over the training pairs.", panel=TRAINING)
    batch_size: int = setting(64, "Pairs per optimiser step.", panel=TRAINING)
    held_out: float = setting(
        0.2, "Share of clinician pairs held out, by figure, for early stopping and the metrics (judge pairs "
        "when there are no clinician pairs).", panel=TRAINING)
    patience: int = setting(3, "Stop after this many epochs without held-out gain (0: never stop early).",
                            panel=TRAINING)
    finetune_encoder: bool = setting(
        False, "Train the encoders too (slow: features are recomputed every step).", panel=TRAINING)
    seed: int = setting(0, "Seed of pair sampling, the held-out split, the head's initial weights, batch order "
                        "and dropout.", panel=TRAINING)
    executor: str = executor_setting()

    def validate(self) -> None:
        checks = [
            (self.max_model_pairs >= 0, "max_model_pairs", "must not be negative"),
            (self.human_weight >= 0, "human_weight", "must not be negative"),
            (self.hidden_size > 0, "hidden_size", "must be positive"),
            (self.hidden_layers >= 0, "hidden_layers", "must not be negative"),
            (0 <= self.dropout < 1, "dropout", "must be in [0, 1)"),
            (self.margin > 0, "margin", "must be positive"),
            (self.lr > 0, "lr", "must be positive"),
            (self.encoder_lr > 0, "encoder_lr", "must be positive"),
            (self.weight_decay >= 0, "weight_decay", "must not be negative"),
            (self.epochs > 0, "epochs", "must be positive"),
            (self.batch_size > 0, "batch_size", "must be positive"),
            (0 <= self.held_out < 1, "held_out", "must be in [0, 1)"),
            (self.patience >= 0, "patience", "must not be negative"),
        ]
        for ok, name, problem in checks:
            if not ok:
                raise InputError(problem, field=name)


@dataclass
class ScoreConfig(StageConfig):
    """How ``vital selector score`` runs; what it computes is the trained selector's."""

    executor: str = executor_setting()
