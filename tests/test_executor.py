"""The executors: the same selector scores, sample and feature cache from Ray as from this process.

The Ray tests share the session's local Ray of 2 CPUs (``local_ray`` in conftest.py; its actors reserve
fractions of a CPU) and use the model-free encoders (hashing texts, the image descriptor), with MiniLM for
sampling's texts.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vital.embeddings import EncoderFactory
from vital.executor import ActorShape, ExecutorError, LocalExecutor, RayExecutor, actor_shape, torch_device
from vital.selector.encoders import HashingTextEncoder, ImageDescriptor


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path) -> dict[str, Path]:
    """24 figures (one image missing, one that is not an image), two candidates each, judge scores."""
    organs, findings = ["liver", "lung", "brain", "kidney"], ["cyst", "mass", "nodule"]
    (tmp_path / "images").mkdir()
    figures, candidates, scores = [], [], []
    for i in range(24):
        image = tmp_path / "images" / f"f{i}.png"
        if i == 5:
            image.write_bytes(b"not a png")
        elif i != 9:
            Image.fromarray((np.random.default_rng(i).random((20, 20, 3)) * (40 + 50 * (i % 4))).astype("uint8")
                            ).save(image)
        organ, finding = organs[i % 4], findings[i % 3]
        figures.append({"id": f"f{i}", "image": f"images/f{i}.png", "domains": [["ct_scan", "mri"][i % 2]],
                        "caption": f"Scan {i} of the {organ} with a {finding}.", "mentions": [f"A {finding}."]})
        for k, answer in enumerate([f"A {finding} of the {organ}.", "Hard to say from this image."]):
            cid = f"f{i}-c{k}"
            candidates.append({"id": cid, "figure_id": f"f{i}", "conversations": [
                {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": answer}]})
            scores.append({"candidate_id": cid, "score": 8 - 5 * k + i % 2, "source": "model"})
    return {"figures": write_jsonl(tmp_path / "figures.jsonl", figures),
            "candidates": write_jsonl(tmp_path / "candidates.jsonl", candidates),
            "scores": write_jsonl(tmp_path / "scores.jsonl", scores)}


def vital_cli(*args: str) -> dict:
    from vital.cli import app

    result = CliRunner().invoke(app, [*args, "--json"] if args[0] == "selector" else list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if args[0] == "selector" else {}


def refuse_to_encode(monkeypatch) -> None:
    """From here on, any encoding in this process fails the test."""
    import vital.embeddings

    def refuse(self, items):
        raise AssertionError(f"encoded {len(items)} items")

    for encoder in (HashingTextEncoder, ImageDescriptor, vital.embeddings.TextEncoder):
        monkeypatch.setattr(encoder, "encode", refuse)


# -- without Ray --------------------------------------------------------------


def test_import_vital_and_help_do_not_import_ray():
    code = ("import sys, vital\n"
            "from vital.cli import main\n"
            "for argv in (['vital', '--help'], ['vital', 'sample', '--help'], ['vital', 'selector', 'score', "
            "'--help'], ['vital', 'selector', 'train', '--help'], ['vital', 'selector', 'sweep', '--help'], "
            "['vital', 'eval', 'answer', '--help']):\n"
            "    sys.argv = argv\n"
            "    try:\n"
            "        main()\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('RAY' if 'ray' in sys.modules else 'NO RAY')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip().endswith("NO RAY")
    assert "--executor" in run.stdout  # the flag is there, from the configs


def test_actors_leave_a_cpu_to_ray_data_and_take_gpus_only_when_there_are_some():
    assert actor_shape(2, 0) == ActorShape(actors=2, cpus=0.5, gpus=0)
    assert actor_shape(2, 0, actors=1) == ActorShape(actors=1, cpus=1.0, gpus=0)
    assert actor_shape(1, 0) == ActorShape(actors=1, cpus=0.5, gpus=0)
    assert actor_shape(16, 0) == ActorShape(actors=16, cpus=0.93, gpus=0)
    # a stage whose workers each hold a whole checkpoint (answering) caps them on CPUs, not on GPUs
    assert actor_shape(16, 0, cpu_actors=1) == ActorShape(actors=1, cpus=1.0, gpus=0)
    assert actor_shape(16, 4, cpu_actors=1).actors == 4
    assert actor_shape(32, 4) == ActorShape(actors=4, cpus=1.0, gpus=1)
    assert actor_shape(32, 4, actors=8).actors == 4  # never more GPU actors than GPUs: they would wait for ever


class Model:
    """Stands for an encoder with weights: counts how often it is built."""

    built = 0

    def __init__(self, scale: float = 2.0):
        type(self).built += 1
        self.scale = scale
        self.weights = np.ones(1_000_000)

    def encode(self, items):
        return np.array([[len(item) * self.scale] for item in items], dtype=np.float32)


def test_an_encoder_reaches_a_worker_as_its_recipe_and_stays_itself_in_this_process():
    import functools

    model = Model()
    factory = EncoderFactory(model.encode, functools.partial(Model, 2.0))
    assert factory() == model.encode  # in this process: the encoder in hand, not a second copy
    shipped = pickle.dumps(factory)
    assert len(shipped) < 10_000  # the weights stay behind
    built = Model.built
    assert pickle.loads(shipped)()(["abc"]).tolist() == [[6.0]] and Model.built == built + 1
    plain = pickle.loads(pickle.dumps(EncoderFactory(HashingTextEncoder(dim=8).encode)))
    assert plain()(["a b"]).shape == (1, 8)  # a model-free encoder travels as it is


def test_workers_rebuild_the_selectors_model_encoders_for_the_gpu_they_were_given(monkeypatch):
    import torch

    from vital.selector import Selector, SelectorConfig

    featurizer = Selector(SelectorConfig(text_encoder="minilm")).featurizer  # MiniLM loads on first use only
    assert featurizer.text_encoder._encoder.device == "cpu"  # this process: the CPU, unless told
    rebuilt = featurizer.rebuild["text"]()
    assert rebuilt.name == featurizer.text_encoder.name and rebuilt._encoder.device == "auto"
    assert featurizer.rebuild["image"].keywords == {"device": "auto"}
    assert torch_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # an actor that Ray gave a GPU
    assert (torch_device("auto"), torch_device("cpu")) == ("cuda", "cpu")


def test_the_local_executor_gives_every_batch_in_order():
    batches = list(LocalExecutor().map_batches(lambda: lambda items: [x * 10 for x in items], list(range(7)),
                                               batch_size=3, stage="tens"))
    assert batches == [([0, 1, 2], [0, 10, 20]), ([3, 4, 5], [30, 40, 50]), ([6], [60])]


# -- on a local Ray -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_selector_trained_and_scoring_on_ray_is_the_local_one(local_ray, corpus, tmp_path, monkeypatch):
    paths = [str(corpus["candidates"]), "--figures", str(corpus["figures"])]
    model = tmp_path / "model"

    def train(executor: str, out: Path) -> dict:
        return vital_cli("selector", "train", "--candidates", *paths, "--scores", str(corpus["scores"]),
                         "--out", str(out), "--text-encoder", "hashing", "--hidden-size", "32", "--epochs", "3",
                         "--cache-dir", str(tmp_path / f"train-cache-{executor}"), "--executor", executor)

    local_metrics = train("local", model)

    def score(executor: str, cache: str, out: str) -> tuple[dict, dict[str, float]]:
        result = vital_cli("selector", "score", str(model), "--candidates", *paths, "--out", str(tmp_path / out),
                           "--cache-dir", str(tmp_path / cache), "--executor", executor)
        values = {r["candidate_id"]: r["score"] for r in map(json.loads, (tmp_path / out).read_text().splitlines())}
        return result, values

    local, local_scores = score("local", "local-cache", "local.jsonl")
    refuse_to_encode(monkeypatch)  # from here on every vector is computed on Ray, or read from the cache
    ray_metrics = train("ray", tmp_path / "model-ray")
    assert {k: v for k, v in ray_metrics.items() if k != "seconds"} == {
        k: v for k, v in local_metrics.items() if k != "seconds"}
    assert json.loads((tmp_path / "model-ray" / "curves.json").read_text()) == json.loads(
        (model / "curves.json").read_text())
    cold, cold_scores = score("ray", "ray-cache", "ray.jsonl")
    assert cold["encoded"] == local["encoded"] and local["encoded"]["image"] == 23
    assert (cold["images_missing"], cold["images_unreadable"]) == (local["images_missing"],
                                                                   local["images_unreadable"]) == (2, 2)
    assert cold_scores.keys() == local_scores.keys()
    assert max(abs(cold_scores[c] - local_scores[c]) for c in local_scores) < 1e-5
    assert len(set(local_scores.values())) > 2  # the scores tell candidates apart: the comparison means something

    warm, warm_scores = score("ray", "ray-cache", "ray-warm.jsonl")
    assert warm["encoded"] == {"image": 0, "context": 0, "conversation": 0} and warm_scores == cold_scores

    # the cache the Ray run filled serves a local run: no encoder call at all
    again, again_scores = score("local", "ray-cache", "local-after-ray.jsonl")
    assert set(again["encoded"].values()) == {0} and again_scores == cold_scores


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_sweep_on_ray_trains_the_local_selectors(local_ray, corpus, tmp_path, monkeypatch):
    def sweep(executor: str) -> dict:
        out = tmp_path / f"sweep-{executor}"
        result = vital_cli("selector", "sweep", "--candidates", str(corpus["candidates"]), "--figures",
                           str(corpus["figures"]), "--scores", str(corpus["scores"]), "--out", str(out),
                           "--text-encoder", "hashing", "--hidden-size", "16", "--epochs", "2", "--human-weight",
                           "1,10", "--cache-dir", str(tmp_path / f"cache-{executor}"), "--executor", executor)
        for run in result["runs"]:
            run["model_dir"] = Path(run["model_dir"]).relative_to(out).as_posix()
        return result

    local = sweep("local")
    refuse_to_encode(monkeypatch)  # the Ray sweep's features are computed on its actors
    assert sweep("ray") == local and local["runs"][0]["agreement"] > 0.5


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_sample_on_ray_is_the_local_sample(local_ray, corpus, tmp_path, monkeypatch):
    def sample(executor: str, cache: str, out: str) -> str:
        vital_cli("sample", str(corpus["figures"]), "--out", str(tmp_path / out), "--n", "8", "--clusters", "4",
                  "--image-encoder", "descriptor", "--cache-dir", str(tmp_path / cache), "--executor", executor)
        return (tmp_path / out).read_text()

    local = sample("local", "local-cache", "local.jsonl")
    refuse_to_encode(monkeypatch)  # the Ray run's vectors are computed on its actors
    assert sample("ray", "ray-cache", "ray.jsonl") == local
    assert sample("local", "ray-cache", "local-after-ray.jsonl") == local  # and cached here: nothing to encode


QUESTIONS = [{"prompt": "Is there a mass?", "image": "/a.png"},
             {"prompt": "Où est la masse ?\n<image>", "image": "/b.png", "extra": [1, 2]},
             {}, {"image": None}, {"prompt": "", "image": "/c.png"}]


def describe_questions():
    """A worker answering each dict with a string that says exactly what arrived (keys, values, types)."""
    return lambda items: [repr(sorted(item.items())) if item else "" for item in items]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dict_items_and_string_results_come_back_from_ray_as_they_were(local_ray):
    def results(executor) -> dict[int, str]:
        got = {}
        for positions, answers in executor.map_batches(describe_questions, QUESTIONS, batch_size=2, stage="dicts"):
            got.update(zip(positions, answers, strict=True))
        return got

    local = results(LocalExecutor())
    assert local[0] == "[('image', '/a.png'), ('prompt', 'Is there a mass?')]" and local[2] == ""
    with RayExecutor() as executor:
        on_ray = results(executor)
    assert on_ray == local  # no key added (Arrow would give every dict the union of the keys), None stays None
    assert all(type(answer) is str for answer in on_ray.values())


class DiesOnce(HashingTextEncoder):
    """The hashing encoder, except that the first batch it is given anywhere kills its process."""

    def __init__(self, marker: Path):
        super().__init__(dim=64)
        self.marker = marker

    def encode(self, items):
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().encode(items)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_worker_that_dies_is_replaced_and_the_features_are_unchanged(local_ray, corpus, tmp_path):
    from vital.records import figure_index, read_candidates
    from vital.selector import Featurizer

    figures = figure_index(corpus["figures"])
    candidates = read_candidates(corpus["candidates"], figures)
    local = Featurizer(HashingTextEncoder(dim=64), None, "split", tmp_path / "local").transform(candidates, figures)
    marker = tmp_path / "died"
    with RayExecutor() as executor:
        features = Featurizer(DiesOnce(marker), None, "split", tmp_path / "ray").transform(
            candidates, figures, executor=executor)
    assert marker.read_text() != str(os.getpid())  # a worker died, not this process
    rows = np.arange(len(candidates))
    assert np.array_equal(features.matrix(rows).numpy(), local.matrix(rows).numpy())


class WaitsForRelease:
    """An encoder that does not answer until a file appears."""

    name, dim = "waits", 1

    def __init__(self, release: Path):
        self.release = release

    def encode(self, items):
        while not self.release.exists():
            time.sleep(0.1)
        return np.zeros((len(items), 1), np.float32)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_stage_that_gets_no_batch_stops_with_one_error_naming_it(local_ray, tmp_path):
    from vital.embeddings import encode_cached

    release = tmp_path / "release"
    with RayExecutor(timeout=3) as executor, pytest.raises(ExecutorError) as caught:
        encode_cached(["a", "b"], ["x", "y"], WaitsForRelease(release).encode, 1, None,
                      description="encoding naps", executor=executor)
    message = str(caught.value)
    assert message.startswith("encoding naps: no batch came back from Ray for 3 s (0 of 2 items done)")
    assert "ray status" in message
    release.touch()  # the actor still working on the abandoned batch finishes it
