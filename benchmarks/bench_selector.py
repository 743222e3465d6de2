"""Selector: feature extraction, training from the cache, scoring and selection at 100K candidates.

    python -m benchmarks selector      (BENCH_SELECTOR_FIGURES=2000 for a quicker run)

The benchmark writes 20,000 small PNG images (48x48, grey or colour patterns),
20,000 figures and 100,000 candidates (5 per figure), and judge scores, then
measures, in this process:

* feature extraction with the offline encoders -- the image descriptor and the
  hashing text encoder -- with the number of encoder calls and items, then the
  same again from the cache (no calls);
* the packaged MiniLM sentence model's throughput on 300 of the texts (all
  distinct texts of the corpus would take far longer than this benchmark's
  three minutes on 2 CPU cores, so their time is projected from that sample);
* training the reference-shaped head (3 x 512, hinge, batch 64) on 30,000
  judge pairs for 6 epochs from the cache;
* scoring all 100,000 candidates, and selecting the top 40 % with at most 2
  per figure and near-duplicate removal, with the LLaVA export and report;
* the process's peak resident memory after each stage.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

N_FIGURES = int(os.environ.get("BENCH_SELECTOR_FIGURES", "20000"))
PER_FIGURE = 5
ORGANS = ["liver", "kidney", "lung", "brain", "spleen", "pancreas", "heart", "colon", "femur", "thyroid"]
FINDINGS = ["cyst", "mass", "abscess", "haemorrhage", "calcification", "infarct", "nodule", "effusion"]
KINDS = [
    ("ct_scan", "Axial CT"),
    ("mri", "T2-weighted MRI"),
    ("chest_xray", "Chest radiograph"),
    ("histology", "H&E section"),
]
HEDGE = "It is difficult to say from the image; clinical correlation is recommended."


class Counted:
    """Pass-through to an encoder, counting calls and items."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.name, self.dim = encoder.name, encoder.dim
        self.calls = 0
        self.items = 0

    def encode(self, items):
        self.calls += 1
        self.items += len(items)
        return self.encoder.encode(items)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_corpus(root: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    figures, candidates, scores = root / "figures.jsonl", root / "candidates.jsonl", root / "scores.jsonl"
    yy, xx = np.mgrid[0:48, 0:48]
    patterns = [np.sin(xx / (2 + p % 7)) * np.cos(yy / (3 + p % 5)) * 60 + 60 for p in range(35)]
    noise = rng.normal(0, 12, (96, 96, 3))
    with figures.open("w") as fig_out, candidates.open("w") as cand_out, scores.open("w") as score_out:
        for f in range(N_FIGURES):
            domain, modality = KINDS[f % 4]
            organ, finding = ORGANS[rng.integers(len(ORGANS))], FINDINGS[rng.integers(len(FINDINGS))]
            dy, dx = rng.integers(0, 48, 2)
            layer = patterns[f % 35][..., None] + 40 * (f % 4) + noise[dy : dy + 48, dx : dx + 48]
            pixels = np.clip(layer, 0, 255).astype(np.uint8)
            if domain in ("ct_scan", "mri", "chest_xray"):
                pixels = pixels[..., :1].repeat(3, axis=2)
            Image.fromarray(pixels).save(root / "images" / f"{f}.png", compress_level=1)
            size = int(rng.integers(1, 9))
            caption = f"{modality} of the {organ} showing a {finding} of {size} cm (case {f})."
            fig_out.write(
                json.dumps(
                    {
                        "id": f"f{f}",
                        "image": f"images/{f}.png",
                        "caption": caption,
                        "domains": [domain],
                        "mentions": [f"A {finding} is seen in the {organ}."],
                    }
                )
                + "\n"
            )
            for k in range(PER_FIGURE):
                detail = rng.integers(0, 4)
                answer = [
                    HEDGE,
                    f"There is a {finding} in the {organ}.",
                    f"The {modality.lower()} shows a {finding} of about {size} cm in the {organ}.",
                    f"The {modality.lower()} shows a {size} cm {finding} in the {organ}; "
                    f"its margins and the surrounding tissue are described in case {f}, variant {k}.",
                ][detail]
                cid = f"f{f}-c{k}"
                conversation = [
                    {"from": "human", "value": f"<image>\nWhat does this image show? ({k})"},
                    {"from": "gpt", "value": answer},
                ]
                cand_out.write(
                    json.dumps({"id": cid, "figure_id": f"f{f}", "conversations": conversation}) + "\n"
                )
                score_out.write(
                    json.dumps(
                        {
                            "candidate_id": cid,
                            "score": int(2 + 2 * detail + rng.integers(0, 2)),
                            "source": "model",
                        }
                    )
                    + "\n"
                )
    return figures, candidates, scores


def main() -> None:
    from vital.conversation import conversation_text
    from vital.records import figure_index, read_candidates, read_scores
    from vital.selection import SelectConfig, select
    from vital.selector import Featurizer, Selector, SelectorConfig
    from vital.selector.encoders import HashingTextEncoder, ImageDescriptor, SentenceEncoder

    console = Console()
    rows: list[tuple[str, str, str, str]] = []

    def add(stage: str, seconds: float, detail: str) -> None:
        rows.append((stage, f"{seconds:.1f}", detail, f"{peak_mb():.0f}"))

    with tempfile.TemporaryDirectory(prefix="bench-selector-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        figures_path, candidates_path, scores_path = write_corpus(root)
        add(
            "write corpus",
            time.perf_counter() - started,
            f"{N_FIGURES:,} PNG images, {N_FIGURES * PER_FIGURE:,} candidates",
        )

        started = time.perf_counter()
        figures = figure_index(figures_path)
        candidates = read_candidates(candidates_path, figures)
        judge = read_scores(scores_path)
        add(
            "read records",
            time.perf_counter() - started,
            f"{len(candidates):,} candidates, {len(judge):,} scores",
        )

        text, image = Counted(HashingTextEncoder()), Counted(ImageDescriptor())
        cache = root / "cache"
        featurizer = Featurizer(text, image, "split", cache)
        started = time.perf_counter()
        features = featurizer.transform(candidates, figures)
        add(
            "features, cold cache",
            time.perf_counter() - started,
            f"images: {image.calls} calls / {image.items:,} items; "
            f"texts: {text.calls} calls / {text.items:,} items",
        )
        calls_before = (text.calls, image.calls)
        started = time.perf_counter()
        features = featurizer.transform(candidates, figures)
        new_calls = text.calls - calls_before[0] + image.calls - calls_before[1]
        add("features, warm cache", time.perf_counter() - started, f"{new_calls} encoder calls")

        unique_texts = text.items
        minilm = SentenceEncoder()
        sample = [conversation_text(c.conversations) for c in candidates[:300]]
        minilm.encode(sample[:8])  # load the model outside the timing
        started = time.perf_counter()
        minilm.encode(sample)
        per_text = (time.perf_counter() - started) / len(sample)
        add(
            "MiniLM, 300 texts",
            per_text * len(sample),
            f"{1 / per_text:.0f} texts/s; the {unique_texts:,} distinct texts would take "
            f"~{per_text * unique_texts / 60:.0f} min",
        )

        config = SelectorConfig(
            text_encoder="hashing",
            model_pairs="both",
            max_model_pairs=30_000,
            epochs=6,
            patience=0,
            held_out=0.05,
        )
        selector = Selector(config, text_encoder=text, image_encoder=image, cache_dir=cache)
        started = time.perf_counter()
        selector.fit(candidates, figures, scores=judge, features=features)
        pairs = selector.metrics["pairs"]
        held = selector.metrics["held_out"]
        add(
            "train 6 epochs",
            time.perf_counter() - started,
            f"{pairs['model_pairs']:,} judge pairs, head {features.dim}->3x512->1; "
            f"held-out judge agreement {held['agreement']:.3f}",
        )

        started = time.perf_counter()
        values = selector.predict(candidates, features=features)
        add("score", time.perf_counter() - started, f"{len(values):,} candidates")

        started = time.perf_counter()
        scores = dict(zip((c.id for c in candidates), values.tolist(), strict=True))
        result = select(candidates, scores, root / "selected.json", SelectConfig(top_fraction=0.4, per_figure=2),
                        figures=figures)
        add(
            "select + export + report",
            time.perf_counter() - started,
            f"kept {result.kept:,} (top 40 %, <= 2 per figure, near-duplicates removed)",
        )

    table = Table(
        title=f"selector: {N_FIGURES:,} images, {N_FIGURES * PER_FIGURE:,} candidates (2 CPU cores)"
    )
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("detail")
    table.add_column("peak RSS MB", justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
