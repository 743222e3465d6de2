import json
from collections import Counter

import numpy as np
import pytest

from vital.errors import InputError
from vital.jsonl import iter_json_lines
from vital.sampling import SampleConfig, round_robin, sample

TOPICS = {
    "ct_scan": [
        "Axial CT of the abdomen shows a {} lesion in the liver.",
        "Contrast CT of the chest with a {} nodule.",
    ],
    "mri": ["T2-weighted MRI of the brain shows a {} hyperintensity.", "Sagittal MRI of the knee with a {} tear."],
    "histology": ["H&E stained section with {} glandular atypia.", "Immunohistochemistry shows {} nuclear staining."],
    "chest_xray": [
        "Chest radiograph shows {} consolidation in the right lower lobe.",
        "PA chest x-ray with {} effusion.",
    ],
}
WORDS = ["small", "large", "subtle", "marked", "diffuse", "focal", "mild", "severe", "patchy", "rounded"]


@pytest.fixture
def figures_file(tmp_path):
    path = tmp_path / "figures.jsonl"
    with path.open("w") as handle:
        for domain, templates in TOPICS.items():
            for t, template in enumerate(templates):
                for w, word in enumerate(WORDS):
                    record = {"id": f"{domain}-{t}-{w}", "caption": template.format(word), "domains": [domain]}
                    handle.write(json.dumps(record) + "\n")
    return path


def test_sampling_is_deterministic_covers_clusters_and_domains(figures_file, tmp_path):
    first = sample(figures_file, tmp_path / "a.jsonl", SampleConfig(n=12, clusters=8, seed=3))
    second = sample(figures_file, tmp_path / "b.jsonl", SampleConfig(n=12, clusters=8, seed=3))
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    records = [obj for _, obj in iter_json_lines(tmp_path / "a.jsonl")]
    assert len(records) == 12 and len({r["id"] for r in records}) == 12
    assert set(first.cluster_picked) == set(range(8))  # every cluster represented when n >= k
    assert set(Counter(r["domains"][0] for r in records)) == set(TOPICS)
    assert all("cluster" in r for r in records)
    assert first.cluster_picked == second.cluster_picked


def test_different_seed_gives_a_different_sample(figures_file, tmp_path):
    sample(figures_file, tmp_path / "a.jsonl", SampleConfig(n=10, clusters=5, seed=1))
    sample(figures_file, tmp_path / "b.jsonl", SampleConfig(n=10, clusters=5, seed=2))
    assert (tmp_path / "a.jsonl").read_text() != (tmp_path / "b.jsonl").read_text()


def test_second_run_reuses_the_embedding_cache(figures_file, tmp_path, monkeypatch):
    sample(figures_file, tmp_path / "a.jsonl", SampleConfig(n=5, clusters=3))
    import vital.embeddings

    def refuse(self, texts):
        raise AssertionError(f"re-embedded {len(texts)} texts")

    monkeypatch.setattr(vital.embeddings.TextEncoder, "encode", refuse)
    sample(figures_file, tmp_path / "b.jsonl", SampleConfig(n=5, clusters=3))


def test_round_robin_balances_domains_inside_a_cluster():
    labels = np.zeros(9, dtype=int)
    domains = ["mri"] * 6 + ["ct_scan"] * 3
    picked = round_robin(labels, domains, 4, seed=0)
    assert Counter(domains[i] for i in picked) == {"mri": 2, "ct_scan": 2}


def test_n_larger_than_corpus_takes_everything(figures_file, tmp_path):
    summary = sample(figures_file, tmp_path / "all.jsonl", SampleConfig(n=1000, clusters=4))
    assert summary.picked == summary.n_figures == 80


def test_bad_arguments(figures_file, tmp_path):
    with pytest.raises(InputError, match="at least 1"):
        sample(figures_file, tmp_path / "x.jsonl", SampleConfig(n=0))
    duplicate = tmp_path / "dup.jsonl"
    duplicate.write_text('{"id": "a", "caption": "x"}\n{"id": "a", "caption": "y"}\n')
    with pytest.raises(InputError, match="more than once"):
        sample(duplicate, tmp_path / "x.jsonl", SampleConfig(n=1))


def test_image_encoder_adds_image_vectors_and_tolerates_missing_images(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    records = []
    for i in range(12):
        Image.fromarray(np.full((16, 16), 20 * i, np.uint8)).save(folder / f"{i}.png")
        records.append({"id": f"f{i}", "caption": "Axial CT of the chest.", "image": f"images/{i}.png"})
    records.append({"id": "no-image", "caption": "Axial CT of the chest.", "image": "images/absent.png"})
    path = tmp_path / "figures.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = sample(path, tmp_path / "s.jsonl", SampleConfig(n=4, clusters=4, image_encoder="descriptor"))
    # identical captions: only the image vectors can separate the figures into 4 clusters
    assert summary.picked == 4 and len(summary.cluster_picked) == 4


def test_an_unreadable_image_does_not_break_clustering(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    records = []
    for i in range(6):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(folder / f"{i}.png")
        records.append({"id": f"f{i}", "caption": f"Axial CT number {i}.", "image": f"images/{i}.png"})
    (folder / "broken.png").write_bytes(b"\x89PNG not an image")
    records.append({"id": "broken", "caption": "Axial CT.", "image": "images/broken.png"})
    path = tmp_path / "figures.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = sample(path, tmp_path / "s.jsonl", SampleConfig(n=3, clusters=3, image_encoder="descriptor"))
    assert summary.picked == 3
