"""The selector: features and their cache, pairs, training, evaluation, persistence, CLI."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vital.errors import InputError
from vital.jsonl import read_records
from vital.records import Preference, Score, figure_index, read_candidates, read_scores
from vital.selector import Selector, SelectorConfig
from vital.selector.encoders import HashingTextEncoder, ImageDescriptor
from vital.selector.metrics import agreement, auc, mean_average_precision, mean_rank
from vital.selector.pairs import Pairs, model_pairs, split_by_figure

ORGANS = ["liver", "kidney", "lung", "brain", "spleen", "pancreas", "heart", "colon"]
FINDINGS = ["cyst", "mass", "abscess", "hemorrhage", "calcification", "infarct", "nodule", "effusion"]
MODALITIES = [("ct_scan", "CT"), ("mri", "MRI"), ("chest_xray", "Radiograph"), ("histology", "H&E section")]
HEDGES = [
    "I cannot determine that from the image alone; please consult a specialist.",
    "It is not possible to say from this picture; a radiologist should review it.",
    "Unclear. The image does not allow a reliable answer.",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def make_corpus(
    root: Path, n_figures: int = 60, *, judge_prefers_off_topic: bool = False, clinicians_prefer: str = "good"
) -> dict[str, Path]:
    """Figures with small images (every 7th missing), three candidates each, clinician pairs and judge scores.

    Per figure: a ``good`` answer restating its own finding, a ``hedge``, and an ``off`` answer that
    describes another figure.  Clinicians prefer ``clinicians_prefer`` (good) over the other two.  The
    judge scores good 8, off 5, hedge 2 -- or, with ``judge_prefers_off_topic``, rates the off-topic answer
    above the good one.
    """
    rng = random.Random(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    figures, candidates, preferences, scores = [], [], [], []
    for i in range(n_figures):
        domain, modality = MODALITIES[i % 4]
        organ, finding = rng.choice(ORGANS), rng.choice(FINDINGS)
        image = f"images/f{i}.png"
        if i % 7 != 3:
            pixels = (np.random.default_rng(i).random((24, 24, 3)) * (60 + 45 * (i % 4))).astype("uint8")
            Image.fromarray(pixels).save(root / image)
        caption = f"{modality} of the {organ} showing a {finding} measuring {rng.randint(1, 9)} cm."
        figures.append(
            {
                "id": f"f{i}",
                "image": image,
                "caption": caption,
                "domains": [domain],
                "mentions": [f"The {finding} of the {organ} is visible."],
            }
        )
    judge = {"good": 8, "off": 5, "hedge": 2}
    if judge_prefers_off_topic:
        judge = {"good": 5, "off": 9, "hedge": 2}
    for i, figure in enumerate(figures):
        question = {"from": "human", "value": "<image>\nWhat does the image show?"}
        other = figures[(i + 17) % n_figures]
        answers = {
            "good": figure["caption"].replace(" showing", ", which shows"),
            "hedge": HEDGES[i % len(HEDGES)],
            "off": other["caption"],
        }
        for kind, answer in answers.items():
            cid = f"{figure['id']}-{kind}"
            candidates.append(
                {
                    "id": cid,
                    "figure_id": figure["id"],
                    "conversations": [question, {"from": "gpt", "value": answer}],
                }
            )
            scores.append({"candidate_id": cid, "score": judge[kind], "source": "model", "judge": "test"})
        for rejected in sorted(set(answers) - {clinicians_prefer}):
            preferences.append(
                {
                    "figure_id": figure["id"],
                    "chosen": f"{figure['id']}-{clinicians_prefer}",
                    "rejected": f"{figure['id']}-{rejected}",
                    "source": "human",
                    "annotator": "dr-a",
                }
            )
    return {
        "figures": write_jsonl(root / "figures.jsonl", figures),
        "candidates": write_jsonl(root / "candidates.jsonl", candidates),
        "preferences": write_jsonl(root / "preferences.jsonl", preferences),
        "scores": write_jsonl(root / "scores.jsonl", scores),
    }


def load(paths: dict[str, Path]):
    figures = figure_index(paths["figures"])
    candidates = read_candidates(paths["candidates"], figures)
    preferences = list(read_records(paths["preferences"], Preference))
    scores = read_scores(paths["scores"])
    return candidates, figures, preferences, scores


class CountingText(HashingTextEncoder):
    """Hashed word features (learnable), counting every text it is asked to encode."""

    def __init__(self):
        super().__init__(dim=256)
        self.name = "counting-text"
        self.seen: list[str] = []

    def encode(self, items):
        self.seen.extend(items)
        return super().encode(items)


class CountingImages(ImageDescriptor):
    name = "counting-images"

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, items):
        self.seen.extend(str(item) for item in items)
        return super().encode(items)


FAST = dict(text_encoder="hashing", hidden_size=64, epochs=8, patience=0, max_model_pairs=1500)


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus")


def test_each_image_and_text_is_encoded_once_across_training_and_scoring(corpus, tmp_path):
    candidates, figures, preferences, scores = load(corpus)
    text, images = CountingText(), CountingImages()
    cache = tmp_path / "cache"
    selector = Selector(
        SelectorConfig(**FAST), text_encoder=text, image_encoder=images, cache_dir=cache
    )
    selector.fit(candidates, figures, preferences=preferences, scores=scores)
    assert len(images.seen) == len(set(images.seen)) == 60 - 9  # every 7th image is missing
    assert len(text.seen) == len(set(text.seen))
    assert len(text.seen) == 60 + 60 + 3 + 60 - 0  # captions, good answers, hedges, off-topic answers
    first_counts = (len(text.seen), len(images.seen))
    selector.save(tmp_path / "model")
    again = Selector(
        SelectorConfig(**{**FAST, "human_weight": 50}),
        text_encoder=text,
        image_encoder=images,
        cache_dir=cache,
    )
    again.fit(candidates, figures, preferences=preferences, scores=scores)
    loaded = Selector.load(
        tmp_path / "model", text_encoder=text, image_encoder=images, cache_dir=cache
    )
    loaded.predict(candidates, figures)
    assert (len(text.seen), len(images.seen)) == first_counts  # nothing re-encoded
    assert selector.metrics["images_missing"] == 27  # 9 figures x 3 candidates, counted


def test_learns_informative_answers_over_hedges_and_off_topic_ones_with_minilm(corpus, tmp_path):
    candidates, figures, preferences, _ = load(corpus)
    config = SelectorConfig(image_encoder="none", epochs=15, hidden_size=128, patience=0)
    selector = Selector(config, cache_dir=tmp_path / "cache")
    selector.fit(candidates, figures, preferences=preferences)
    held = selector.metrics["held_out"]
    assert selector.metrics["held_out_source"] == "human"
    assert held["pairs"] >= 20
    assert held["agreement"] >= 0.9
    assert held["auc"] >= 0.9


@pytest.mark.parametrize("loss", ["hinge", "logistic"])
def test_both_losses_learn_from_clinician_pairs(corpus, tmp_path, loss):
    candidates, figures, preferences, _ = load(corpus)
    selector = Selector(
        SelectorConfig(**{**FAST, "loss": loss}), cache_dir=tmp_path / "c"
    )
    selector.fit(candidates, figures, preferences=preferences)
    assert selector.metrics["held_out"]["agreement"] >= 0.9
    assert selector.curves[-1]["train_loss"] < selector.curves[0]["train_loss"]


def test_human_weight_moves_the_selector_from_the_judge_towards_the_clinicians(tmp_path):
    paths = make_corpus(tmp_path / "conflict", judge_prefers_off_topic=True)
    candidates, figures, preferences, scores = load(paths)
    results = {}
    for weight in (0.001, 100.0):
        config = SelectorConfig(**{**FAST, "human_weight": weight, "model_pairs": "within"})
        selector = Selector(config, cache_dir=tmp_path / "cache")
        selector.fit(candidates, figures, preferences=preferences, scores=scores)
        results[weight] = selector.metrics
    judge = results[100.0]["judge_on_held_out"]["agreement"]
    assert judge == pytest.approx(0.5)  # the judge gets good > hedge right and good > off wrong
    assert results[100.0]["held_out"]["agreement"] >= 0.9 > judge
    assert (
        results[0.001]["held_out"]["agreement"] <= 0.6
    )  # the judge's view wins when clinicians weigh nothing


def test_model_pairs_from_judge_scores():
    ids = [f"c{i}" for i in range(8)]
    index = {cid: i for i, cid in enumerate(ids)}
    figure_ids = ["a", "a", "a", "b", "b", "c", "c", "c"]
    scores = {"c0": 9, "c1": 5, "c2": 5, "c3": 7, "c4": 1, "c5": 3, "c6": 3, "c7": 8}
    within = model_pairs(scores, index, figure_ids, mode="within", cap=100)
    got = set(zip(within.preferred.tolist(), within.other.tolist(), strict=True))
    assert got == {(0, 1), (0, 2), (3, 4), (7, 5), (7, 6)}  # ties (c1, c2) and (c5, c6) are not pairs
    across = model_pairs(scores, index, figure_ids, mode="across", cap=100, seed=1)
    for high, low in zip(across.preferred, across.other, strict=True):
        assert figure_ids[high] != figure_ids[low] and scores[ids[high]] > scores[ids[low]]
    assert len(across) > 10
    capped = model_pairs(scores, index, figure_ids, mode="both", cap=6, seed=1)
    assert len(capped) == 6
    assert np.all(capped.weight == 1.0)
    excluded = model_pairs(scores, index, figure_ids, mode="both", cap=100, exclude_figures={"a"})
    assert not {0, 1, 2} & set(excluded.preferred.tolist() + excluded.other.tolist())
    assert len(model_pairs(scores, index, figure_ids, mode="none")) == 0


def test_held_out_split_keeps_every_figure_on_one_side():
    figure_ids = [f"f{i // 3}" for i in range(60)]
    preferred = np.arange(0, 60, 3)
    pairs = Pairs(
        np.concatenate([preferred, preferred]),
        np.concatenate([preferred + 1, preferred + 2]),
        np.ones(40, np.float32),
    )
    train, held, held_figures, dropped = split_by_figure(pairs, figure_ids, 0.25, seed=3)
    assert dropped == 0 and len(train) + len(held) == 40 and 8 <= len(held) <= 14
    train_figures = {figure_ids[i] for i in np.concatenate([train.preferred, train.other])}
    assert not train_figures & held_figures
    assert {figure_ids[i] for i in held.preferred} <= held_figures


def test_metrics_match_hand_computed_values():
    preferred = np.array([0.9, 0.4, 0.7])
    other = np.array([0.1, 0.8, 0.7])
    assert agreement(preferred, other) == pytest.approx((1 + 0 + 0.5) / 3)
    # pooled ranking, descending: 0.9(P) 0.8(N) 0.7(P) 0.7(N) 0.4(P) 0.1(N): positives at 0, 2, 4
    assert mean_rank(preferred, other) == pytest.approx((0 + 2 + 4) / 3 / 6)
    assert mean_average_precision(preferred, other) == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    assert auc(np.array([3.0, 2.0]), np.array([1.0, 0.0])) == 1.0


def test_save_and_load_give_identical_scores(corpus, tmp_path):
    candidates, figures, preferences, scores = load(corpus)
    selector = Selector(SelectorConfig(**FAST), cache_dir=tmp_path / "cache")
    selector.fit(candidates, figures, preferences=preferences, scores=scores)
    before = selector.predict(candidates, figures)
    selector.save(tmp_path / "model")
    for name in ("head.pt", "selector.json", "metrics.json", "curves.json", "training_curves.png"):
        assert (tmp_path / "model" / name).is_file()
    loaded = Selector.load(tmp_path / "model", cache_dir=tmp_path / "other-cache")
    assert np.array_equal(loaded.predict(candidates, figures), before)
    assert loaded.metrics["held_out"] == selector.metrics["held_out"]


def test_loading_with_a_different_encoder_is_refused(corpus, tmp_path):
    candidates, figures, preferences, _ = load(corpus)
    selector = Selector(SelectorConfig(**FAST), cache_dir=tmp_path / "cache")
    selector.fit(candidates, figures, preferences=preferences)
    selector.save(tmp_path / "model")
    with pytest.raises(InputError, match="trained with text encoder"):
        Selector.load(tmp_path / "model", text_encoder=CountingText())


def test_no_pairs_is_a_clear_error(corpus, tmp_path):
    candidates, figures, _, _ = load(corpus)
    with pytest.raises(InputError, match="no training pairs"):
        Selector(SelectorConfig(**FAST)).fit(candidates, figures)


def test_unknown_figure_names_the_line(corpus, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = corpus["candidates"].read_text().splitlines()
    lines[4] = lines[4].replace('"figure_id": "f1"', '"figure_id": "nope"')
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as error:
        read_candidates(bad, figure_index(corpus["figures"]))
    assert error.value.line == 5 and error.value.field == "figure_id"


def test_image_descriptor_tells_images_apart_and_flags_unreadable_files(tmp_path):
    descriptor = ImageDescriptor()
    dark = tmp_path / "dark.png"
    bright = tmp_path / "bright.png"
    broken = tmp_path / "broken.png"
    Image.fromarray(np.full((40, 40), 30, np.uint8)).save(dark)
    Image.fromarray(np.full((40, 40), 220, np.uint8)).save(bright)
    broken.write_bytes(b"not an image")
    vectors = descriptor.encode([dark, bright, broken])
    assert vectors.shape == (3, descriptor.dim)
    assert np.isfinite(vectors[:2]).all() and np.isnan(vectors[2]).all()
    assert not np.allclose(vectors[0], vectors[1])


def test_unreadable_images_are_counted_and_scored_on_text(corpus, tmp_path):
    (corpus["figures"].parent / "images" / "f0.png").write_bytes(b"garbage")
    candidates, figures, preferences, _ = load(corpus)
    selector = Selector(SelectorConfig(**FAST), cache_dir=tmp_path / "cache")
    features = selector.features(candidates, figures)
    assert features.images_unreadable == 3 and features.images_missing == 27
    selector.fit(candidates, figures, preferences=preferences, features=features)
    assert np.isfinite(selector.predict(candidates, figures, features=features)).all()


def test_without_clinician_pairs_judge_pairs_of_held_out_figures_are_the_yardstick(corpus, tmp_path):
    candidates, figures, _, scores = load(corpus)
    selector = Selector(SelectorConfig(**FAST), cache_dir=tmp_path / "cache")
    selector.fit(candidates, figures, scores=scores)
    assert selector.metrics["held_out_source"] == "model"
    assert selector.metrics["judge_on_held_out"] is None
    assert selector.metrics["held_out"]["agreement"] >= 0.9


@pytest.mark.parametrize("kind", ["good", "hedge"])
def test_the_kind_clinicians_prefer_ranks_first_on_figures_it_never_saw(tmp_path, kind):
    paths = make_corpus(tmp_path / "corpus", clinicians_prefer=kind)
    candidates, figures, preferences, _ = load(paths)
    seen = {f"f{i}" for i in range(40)}
    train = [c for c in candidates if c.figure_id in seen]
    unseen = [c for c in candidates if c.figure_id not in seen]
    selector = Selector(SelectorConfig(**FAST), cache_dir=tmp_path / "cache")
    selector.fit(train, figures, preferences=preferences)
    values = selector.predict(unseen, figures)
    best: dict[str, tuple[float, str]] = {}
    for candidate, value in zip(unseen, values, strict=True):
        best[candidate.figure_id] = max(best.get(candidate.figure_id, (-np.inf, "")), (value, candidate.id))
    winners = [cid.rsplit("-", 1)[1] for _, cid in best.values()]
    assert len(winners) == 20 and winners.count(kind) >= 18, winners  # a selector that learnt nothing: ~7
    assert selector.score(unseen, figures, preferences=preferences) >= 0.9  # agreement, like scikit-learn's score


def test_training_is_deterministic_for_a_seed_and_leaves_the_global_rngs_alone(corpus, tmp_path):
    import torch

    candidates, figures, preferences, scores = load(corpus)
    config = SelectorConfig(**{**FAST, "epochs": 3, "dropout": 0.3})
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()

    def fit(seed: int) -> np.ndarray:
        selector = Selector(replace(config, seed=seed), cache_dir=tmp_path / "cache")
        return selector.fit(candidates, figures, preferences=preferences, scores=scores).predict(candidates, figures)

    first = fit(0)
    torch.manual_seed(123)  # a caller's own use of the global generators changes nothing
    np.random.seed(123)
    np.random.random(5)
    assert np.array_equal(first, fit(0))
    assert not np.allclose(first, fit(1))
    torch.random.set_rng_state(torch_state)
    np.random.set_state(numpy_state)
    fit(2)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])


def test_loss_curves_are_per_unit_weight_whatever_the_human_weight(corpus, tmp_path):
    candidates, figures, preferences, _ = load(corpus)
    curves = {}
    for weight in (1.0, 100.0):
        config = SelectorConfig(**{**FAST, "epochs": 3, "human_weight": weight})
        selector = Selector(config, cache_dir=tmp_path / "cache")
        curves[weight] = selector.fit(candidates, figures, preferences=preferences).curves
    for point in curves[100.0]:
        assert 0 <= point["held_out_loss"] < 1.5 and 0 <= point["train_loss"] < 1.5  # a hinge of margin 1
    first_epoch = [curves[w][0]["held_out_loss"] for w in (1.0, 100.0)]
    assert first_epoch[1] < 2 * first_epoch[0] + 0.1  # not 100 times the loss at weight 1


def test_sweep_without_clinician_pairs_says_the_weight_has_no_effect(corpus, tmp_path, caplog):
    from vital.selector import sweep_human_weight

    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.png").write_bytes(b"an earlier sweep's plot")
    config = SelectorConfig(**{**FAST, "epochs": 2})
    with caplog.at_level("WARNING", logger="vital"):
        result = sweep_human_weight(corpus["candidates"], corpus["figures"], out, config, weights=[1, 10, 100],
                                    scores=corpus["scores"], cache_dir=tmp_path / "cache")
    assert [r.getMessage() for r in caplog.records] == [result.note]
    assert "has no effect" in result.note and "trained one selector (w1)" in result.note
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["weight_has_effect"] is False and saved["clinician_pairs"] == 0 and saved["note"] == result.note
    assert [run["human_weight"] for run in saved["runs"]] == [1.0] and saved["runs"][0]["agreement"] > 0.5
    assert not (out / "sweep.png").exists() and not (out / "w10").exists()


def test_an_empty_scores_file_is_named_before_any_encoder_loads(corpus, tmp_path, monkeypatch):
    import vital.selector.model

    def no_encoder(spec):
        raise AssertionError("an encoder was loaded before the inputs were checked")

    monkeypatch.setattr(vital.selector.model, "load_text_encoder", no_encoder)
    monkeypatch.setattr(vital.selector.model, "load_image_encoder", no_encoder)
    empty = tmp_path / "scores.jsonl"
    empty.write_text("")
    selector = Selector(SelectorConfig(), cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="has no records") as error:
        selector.fit(corpus["candidates"], corpus["figures"], scores=empty, preferences=corpus["preferences"])
    assert error.value.path == str(empty)
    selector_scores = write_jsonl(tmp_path / "selector.jsonl", [{"candidate_id": "f1-good", "score": 1.0,
                                                                  "source": "selector"}])
    with pytest.raises(InputError, match="no judge scores") as error:
        selector.fit(corpus["candidates"], corpus["figures"], scores=selector_scores)
    assert error.value.path == str(selector_scores)


# -- open_clip towers, from a tiny random-weight model built from a config (no download) -----------------
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    open_clip = pytest.importorskip("open_clip")
    import torch

    folder = tmp_path_factory.mktemp("tiny-clip")
    config = {"model_cfg": TINY_CLIP, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}")  # no weights yet: random, for this test only
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def test_open_clip_towers_from_a_local_dir(corpus, tmp_path, tiny_clip_dir):
    candidates, figures, preferences, _ = load(corpus)
    spec = f"open_clip:local-dir:{tiny_clip_dir}"
    config = SelectorConfig(text_encoder=spec, image_encoder=spec, hidden_size=32, epochs=2)
    selector = Selector(config, cache_dir=tmp_path / "cache")
    features = selector.features(candidates, figures)
    assert [b.dim for b in features.blocks] == [32, 32, 32]
    image_vectors = features.block("image").vectors
    assert np.allclose(np.linalg.norm(image_vectors, axis=1), 1.0, atol=1e-4)
    selector.fit(candidates, figures, preferences=preferences, features=features)
    selector.save(tmp_path / "model")
    loaded = Selector.load(tmp_path / "model", cache_dir=tmp_path / "cache")
    assert np.allclose(
        loaded.predict(candidates, figures), selector.predict(candidates, figures, features=features)
    )


def test_open_clip_folder_without_weights_is_refused(tmp_path):
    pytest.importorskip("open_clip")
    from vital.selector.encoders import load_image_encoder

    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    with pytest.raises(InputError, match="pretrained"):
        load_image_encoder(f"open_clip:local-dir:{tmp_path}")


def test_finetune_encoder_trains_the_towers_and_saves_them(corpus, tmp_path, tiny_clip_dir):
    import torch

    candidates, figures, preferences, _ = load(corpus)
    candidates = [c for c in candidates if c.figure_id in {f"f{i}" for i in range(20)}]
    spec = f"open_clip:local-dir:{tiny_clip_dir}"
    config = SelectorConfig(
        text_encoder=spec,
        image_encoder=spec,
        hidden_size=32,
        epochs=2,
        finetune_encoder=True,
        encoder_lr=1e-3,
    )
    selector = Selector(config, cache_dir=tmp_path / "cache")
    tower = selector.featurizer.text_encoder
    before = {k: v.clone() for k, v in tower.module.state_dict().items()}
    selector.fit(candidates, figures, preferences=preferences)
    after = tower.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert "+tuned-" in tower.name
    selector.save(tmp_path / "model")
    assert (tmp_path / "model" / "encoder-text.pt").is_file()
    scores = selector.predict(candidates, figures)
    from vital.selector.encoders import load_open_clip

    load_open_clip.cache_clear()  # a fresh model object, so the saved weights must be loaded
    loaded = Selector.load(tmp_path / "model", cache_dir=tmp_path / "cache")
    assert np.allclose(loaded.predict(candidates, figures), scores, atol=1e-5)


def test_finetune_needs_an_encoder_with_weights(corpus, tmp_path):
    candidates, figures, preferences, _ = load(corpus)
    config = SelectorConfig(**{**FAST, "image_encoder": "descriptor", "finetune_encoder": True})
    with pytest.raises(InputError, match="finetune"):
        Selector(config).fit(candidates, figures, preferences=preferences)


# -- command line ----------------------------------------------------------------------------------------
def test_cli_train_score_sweep_end_to_end(corpus, tmp_path):
    from vital.cli import app

    runner = CliRunner()
    common = [
        "--candidates",
        str(corpus["candidates"]),
        "--figures",
        str(corpus["figures"]),
        "--text-encoder",
        "hashing",
        "--hidden-size",
        "64",
        "--max-model-pairs",
        "1500",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    train = runner.invoke(
        app,
        [
            "selector",
            "train",
            *common,
            "--scores",
            str(corpus["scores"]),
            "--preferences",
            str(corpus["preferences"]),
            "--human-weight",
            "10",
            "--out",
            str(tmp_path / "model"),
            "--json",
        ],
    )
    assert train.exit_code == 0, train.output
    metrics = json.loads(train.stdout)
    assert metrics["held_out"]["agreement"] >= 0.9 and metrics["judge_on_held_out"]["pairs"] > 0
    assert metrics["images_missing"] == 27
    score = runner.invoke(
        app,
        [
            "selector",
            "score",
            str(tmp_path / "model"),
            "--candidates",
            str(corpus["candidates"]),
            "--figures",
            str(corpus["figures"]),
            "--out",
            str(tmp_path / "scores.jsonl"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert score.exit_code == 0, score.output
    assert "27 without a usable image" in score.output
    records = list(read_records(tmp_path / "scores.jsonl", Score))
    assert len(records) == 180 and {r.source for r in records} == {"selector"}
    best = max(records, key=lambda r: r.score)
    assert best.candidate_id.endswith("-good")
    common.remove("--hidden-size")
    common.remove("64")
    sweep = runner.invoke(
        app,
        [
            "selector",
            "sweep",
            *common,
            "--scores",
            str(corpus["scores"]),
            "--preferences",
            str(corpus["preferences"]),
            "--human-weight",
            "1,100",
            "--hidden-size",
            "32",
            "--epochs",
            "3",
            "--out",
            str(tmp_path / "sweep"),
        ],
    )
    assert sweep.exit_code == 0, sweep.output
    sweep_json = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert sweep_json["weight_has_effect"] and sweep_json["clinician_pairs"] == 120
    assert [run["human_weight"] for run in sweep_json["runs"]] == [1.0, 100.0]
    assert (tmp_path / "sweep" / "sweep.png").is_file() and (
        tmp_path / "sweep" / "w100" / "head.pt"
    ).is_file()


def run_vital(*args: str):
    """``vital ARGS`` in a subprocess, as a user runs it (exit status, stderr)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "vital", *args], capture_output=True, text=True)


def test_cli_reports_bad_preferences_with_file_and_line(corpus, tmp_path):
    bad = tmp_path / "prefs.jsonl"
    bad.write_text('{"chosen": "f1-good", "rejected": "f1-hedge", "source": "human"}\n{"chosen": "x"}\n')
    result = run_vital(
        "selector", "train", "--candidates", str(corpus["candidates"]), "--figures", str(corpus["figures"]),
        "--preferences", str(bad), "--out", str(tmp_path / "m"), "--text-encoder", "hashing",
        "--cache-dir", str(tmp_path / "cache"),
    )
    assert result.returncode == 2
    assert f"{bad}:2: field '" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flag", "kind", "message"),
    [
        ("--candidates", "empty", "has no records"),
        ("--scores", "empty", "has no records"),
        ("--preferences", "empty", "has no records"),
        ("--candidates", "directory", "is a directory"),
        ("--scores", "directory", "is a directory"),
        ("--figures", "directory", "is a directory"),
    ],
)
def test_cli_train_refuses_empty_files_and_directories_naming_them(corpus, tmp_path, flag, kind, message):
    bad = tmp_path / "bad"
    if kind == "empty":
        bad.write_text("")
    else:
        bad.mkdir()
    inputs = {"--candidates": corpus["candidates"], "--figures": corpus["figures"], "--scores": corpus["scores"],
              flag: bad}
    args = [str(part) for pair in inputs.items() for part in pair]
    result = run_vital("selector", "train", *args, "--out", str(tmp_path / "m"), "--cache-dir",
                       str(tmp_path / "cache"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {bad}: {message}"), lines
    assert not (tmp_path / "m").exists()


def test_a_repeated_candidate_id_names_the_line(corpus, tmp_path):
    lines = corpus["candidates"].read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines[:3], lines[1]]) + "\n")
    with pytest.raises(InputError) as error:
        read_candidates(bad)
    assert error.value.line == 4 and error.value.field == "id"


def test_cli_end_to_end_on_real_format_data_whose_images_are_missing(shared_data, tmp_path):
    """BioMed-VITAL's released demonstrations (no images here): import, train, score, select, offline."""
    from vital.cli import app

    runner = CliRunner()
    source = shared_data / "biomed-vital" / "clinician_demonstrations.json"
    candidates, figures = tmp_path / "candidates.jsonl", tmp_path / "figures.jsonl"
    result = runner.invoke(
        app, ["candidates", "import", str(source), "--out", str(candidates), "--figures-out", str(figures)]
    )
    assert result.exit_code == 0, result.output
    ids = [obj["id"] for obj in map(json.loads, candidates.read_text().splitlines())]
    scores = write_jsonl(
        tmp_path / "scores.jsonl",
        [{"candidate_id": cid, "score": float(n % 5), "source": "model"} for n, cid in enumerate(ids)],
    )
    common = [
        "--candidates",
        str(candidates),
        "--figures",
        str(figures),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = runner.invoke(
        app,
        [
            "selector",
            "train",
            *common,
            "--scores",
            str(scores),
            "--text-encoder",
            "hashing",
            "--hidden-size",
            "32",
            "--out",
            str(tmp_path / "model"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images_missing"] == 58
    result = runner.invoke(
        app,
        ["selector", "score", str(tmp_path / "model"), *common, "--out", str(tmp_path / "selector.jsonl")],
    )
    assert result.exit_code == 0 and "58 without a usable image" in result.output
    out = tmp_path / "selected.json"
    result = runner.invoke(
        app,
        [
            "select",
            str(candidates),
            "--scores",
            str(tmp_path / "selector.jsonl"),
            "--figures",
            str(figures),
            "--top-k",
            "10",
            "--keep-missing-images",
            "--out",
            str(out),
        ],
    )
    # exit status 1: two released demonstrations (ids 34 and 49) have consecutive gpt turns, which LLaVA
    # cannot use; they are listed as failures and the rest is selected
    assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
    assert "by selector score" in result.output and len(json.loads(out.read_text())) == 10


def test_pairwise_verdicts_of_a_model_judge_are_judge_pairs(corpus, tmp_path):
    candidates, figures, preferences, _ = load(corpus)
    verdicts = [p.model_copy(update={"source": "model"}) for p in preferences]
    selector = Selector(SelectorConfig(**FAST), cache_dir=tmp_path / "cache")
    selector.fit(candidates, figures, preferences=verdicts)
    counts = selector.metrics["pairs"]
    assert counts["human_pairs"] == 0 and counts["model_verdict_pairs"] == 120
    assert selector.metrics["held_out_source"] == "model" and counts["held_out"] > 0
    assert selector.metrics["held_out"]["agreement"] >= 0.9


def test_interrupted_feature_extraction_resumes_without_re_encoding(tmp_path):
    from vital.conversation import conversation_text
    from vital.selector import Featurizer
    from vital.selector.features import context_text

    paths = make_corpus(tmp_path / "big", n_figures=150)
    candidates, figures, _, _ = load(paths)

    class Interrupted(CountingText):
        calls = 0

        def encode(self, items):
            self.calls += 1
            if self.calls == 3:  # captions, a first batch of 256 conversations, then Ctrl-C
                raise KeyboardInterrupt
            return super().encode(items)

    cache = tmp_path / "cache"
    first = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        Featurizer(first, None, "split", cache).transform(candidates, figures)
    contexts = {context_text(figures[c.figure_id]) for c in candidates}
    conversations = {conversation_text(c.conversations) for c in candidates}
    assert contexts < set(first.seen) and len(first.seen) == len(contexts) + 256
    again = CountingText()
    features = Featurizer(again, None, "split", cache).transform(candidates, figures)
    assert not set(first.seen) & set(again.seen)  # nothing encoded twice
    assert set(first.seen) | set(again.seen) == contexts | conversations
    assert features.encoded == {"context": 0, "conversation": len(conversations) - 256}


def test_vectors_encoded_elsewhere_and_added_to_the_cache_are_not_encoded_again(corpus, tmp_path):
    """The seam an executor (Ray) uses: list the inputs without a model, encode the misses anywhere, add them
    to the cache; then transform encodes nothing and gives the features a local run gives."""
    from vital.selector import Featurizer

    candidates, figures, _, _ = load(corpus)
    local = Featurizer(CountingText(), CountingImages(), "split", tmp_path / "local").transform(candidates, figures)

    text, images = CountingText(), CountingImages()
    featurizer = Featurizer(text, images, "split", tmp_path / "shared")
    for block in featurizer.inputs(candidates, figures):
        cache = featurizer.cache(block.encoder)
        missing = [j for j, key in enumerate(block.keys) if key not in cache]
        worker = CountingText() if block.name != "image" else CountingImages()  # another process's encoder
        cache.add([block.keys[j] for j in missing], worker.encode([block.payloads[j] for j in missing]))
    assert text.seen == [] and images.seen == []
    features = featurizer.transform(candidates, figures)
    assert text.seen == [] and images.seen == [] and set(features.encoded.values()) == {0}
    rows = np.arange(len(candidates))
    assert np.array_equal(features.matrix(rows).numpy(), local.matrix(rows).numpy())
    assert features.images_missing == local.images_missing == 27
