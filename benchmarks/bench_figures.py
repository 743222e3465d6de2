"""Import and sample a generated corpus of LLaVA-Med-style figure records (100K by default).

    python -m benchmarks figures          (BENCH_FIGURES=20000 for a quicker run)

Each step runs as a child ``vital`` process so that its peak memory is its own.
The corpus is a LLaVA-Med dict of domain -> records with captions of realistic
length (40-90 words) and one or two in-text mentions; images are not present,
so every figure is also written to the failures file (as a real corpus without
its images would be).

Embedding caption + mentions (128 tokens) with MiniLM on 2 CPU cores runs at
tens of texts per second, so a cold 100K sample takes hours.  The benchmark
therefore measures cold sampling on the first BENCH_COLD figures, and the
cached path on the whole corpus with the cache filled beforehand under the
right keys (with random unit vectors: clustering costs the same).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import run_measured

MODALITY = {
    "chest_xray": ["Posteroanterior chest radiograph", "Portable anteroposterior chest x-ray", "Lateral chest film"],
    "ct_scan": ["Axial contrast-enhanced CT", "Non-contrast CT of the head", "Coronal reformatted CT of the abdomen"],
    "mri": ["Axial T2-weighted MRI", "Sagittal T1-weighted MRI after gadolinium", "Diffusion-weighted MR image"],
    "histology": ["Photomicrograph (H&E, x200)", "Immunohistochemistry for CD34 (x400)", "PAS-stained section (x100)"],
    "gross": [
        "Gross photograph of the resected specimen", "Cut surface of the excised mass", "Intraoperative photograph"
    ],
}
FINDINGS = [
    "a well-circumscribed {size} mass with heterogeneous enhancement", "diffuse ground-glass opacities",
    "a {size} cystic lesion with a thin enhancing wall", "multiple small nodules scattered in both lobes",
    "marked thickening of the wall with surrounding fat stranding", "a hyperintense lesion with perilesional oedema",
    "sheets of atypical cells with frequent mitoses", "a lobulated tan-white tumour with areas of necrosis",
    "a moderate pleural effusion with compressive atelectasis", "an infiltrative lesion encasing adjacent vessels",
]
LOCATIONS = ["in the right upper lobe", "in the left frontal lobe", "in segment VI of the liver", "at the L4-L5 level",
             "in the pancreatic head", "in the left kidney", "within the posterior mediastinum", "in the right parotid"]
CONTEXT = [
    "The arrow marks the lesion.", "Compare with the prior examination shown in panel A.",
    "No lymphadenopathy is seen.", "Findings are consistent with the clinical suspicion of malignancy.",
    "The patient was referred for biopsy.", "Follow-up imaging six months later showed partial regression.",
    "Scale bar, 100 µm.", "The differential diagnosis included infection and lymphoma.",
]


def caption(rng: random.Random, domain: str) -> str:
    parts = [f"{rng.choice(MODALITY[domain])} showing {rng.choice(FINDINGS).format(size=f'{rng.randint(1, 9)} cm')} "
             f"{rng.choice(LOCATIONS)}."]
    parts += rng.sample(CONTEXT, rng.randint(2, 5))
    return " ".join(parts)


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    domains = list(MODALITY)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("{")
        for d, domain in enumerate(domains):
            handle.write(("," if d else "") + f"\n{json.dumps(domain)}: [\n")
            for i in range(n // len(domains)):
                record = {
                    "pair_id": f"{10_000_000 + d * n + i}_F{rng.randint(1, 6)}",
                    "pmid": str(10_000_000 + d * n + i),
                    "fig_label": f"Figure {rng.randint(1, 6)}",
                    "fig_caption": caption(rng, domain),
                    "in_text_mention": [{"tokens": caption(rng, domain)} for _ in range(rng.randint(1, 2))],
                    "domain": {name: name == domain for name in domains},
                }
                handle.write(("," if i else "") + json.dumps(record) + "\n")
            handle.write("]")
        handle.write("}\n")


def prefill_cache(figures: Path, cache_dir: Path) -> None:
    """Fill the sampling cache for every figure, as a finished cold run would have."""
    import numpy as np

    from vital.embeddings import DEFAULT_TEXT_MODEL, EmbeddingCache, content_key
    from vital.records import read_figures
    from vital.sampling import SAMPLE_MAX_TOKENS, figure_text

    keys = [content_key(figure_text(figure)) for figure in read_figures(figures)]
    vectors = np.random.default_rng(0).standard_normal((len(keys), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    EmbeddingCache(cache_dir, f"{DEFAULT_TEXT_MODEL}@{SAMPLE_MAX_TOKENS}", 384).add(keys, vectors)


def head_lines(src: Path, dst: Path, n: int) -> None:
    with src.open() as reader, dst.open("w") as writer:
        for _, line in zip(range(n), reader, strict=False):
            writer.write(line)


def main() -> None:
    n = int(os.environ.get("BENCH_FIGURES", "100000"))
    n_cold = min(n, int(os.environ.get("BENCH_COLD", "2000")))
    console = Console()
    table = Table(title=f"figures: import and sample generated LLaVA-Med records (load {os.getloadavg()[0]:.1f})")
    for column in ("step", "seconds", "records/s", "peak RSS (MB)"):
        table.add_column(column, justify="right" if column != "step" else "left")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = root / "captions.json"
        write_corpus(corpus, n)
        size_mb = corpus.stat().st_size / 1e6
        figures = root / "figures.jsonl"
        cold = root / "cold" / "figures.jsonl"
        # (label, records, arguments, exit status): the generated corpus has no image files, so import lists
        # every figure in figures.failures.jsonl and exits 1, as it would for a real corpus without its images
        runs = [
            (f"import {n:,} ({size_mb:.0f} MB JSON)", n, ["figures", "import", corpus, "--out", figures], 1),
            (f"sample {n_cold:,}, embeddings cold", n_cold,
             ["sample", cold, "--n", "200", "--clusters", "60", "--out", root / "s0.jsonl"], 0),
            (f"sample {n:,}, embeddings cached", n,
             ["sample", figures, "--n", "1000", "--clusters", "60", "--out", root / "s1.jsonl"], 0),
        ]
        for label, count, args, expected_status in runs:
            if args[0] == "sample" and args[1] == cold:
                cold.parent.mkdir()
                head_lines(figures, cold, n_cold)
            elif args[0] == "sample":
                prefill_cache(figures, root / "cache")
            result = run_measured(
                [str(a) for a in args], env={"HF_HUB_OFFLINE": "1", "VITAL_CACHE_DIR": str(root / "cache")}
            )
            if result.returncode != expected_status:
                raise SystemExit(f"{label} exited {result.returncode}:\n{result.stderr}")
            if args[0] == "figures" and sum(1 for _ in figures.open("rb")) != n:
                raise SystemExit(f"{label} wrote fewer than {n:,} figures")
            rate = f"{count / result.seconds:,.0f}"
            table.add_row(label, f"{result.seconds:.1f}", rate, f"{result.peak_rss_mb:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
