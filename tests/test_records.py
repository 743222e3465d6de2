from pathlib import Path

import pytest
from pydantic import ValidationError

from vital.records import Candidate, Figure, Preference, Score, resolve_image


def test_turns_use_llava_spelling():
    turns = [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}]
    candidate = Candidate.model_validate({"id": "f/c0", "figure_id": "f", "conversations": turns})
    assert candidate.to_json_dict()["conversations"][0] == {"from": "human", "value": "Q?"}


def test_unknown_keys_pass_through():
    figure = Figure.model_validate({"id": "f", "caption": "x", "cluster": 3})
    assert figure.to_json_dict()["cluster"] == 3


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_score_must_be_finite(score):
    with pytest.raises(ValidationError):
        Score(candidate_id="a", score=score, source="model")


def test_preference_needs_two_candidates_and_a_non_negative_weight():
    with pytest.raises(ValidationError, match="same candidate"):
        Preference(chosen="a", rejected="a", source="human")
    with pytest.raises(ValidationError):
        Preference(chosen="a", rejected="b", source="human", weight=-1)
    assert Preference(chosen="a", rejected="b", source="model", weight=2).weight == 2


def test_unknown_domain_and_empty_caption_are_refused():
    with pytest.raises(ValidationError, match="unknown domain"):
        Figure(id="f", caption="x", domains=["dermoscopy"])
    with pytest.raises(ValidationError):
        Figure(id="f", caption="  ")


def test_image_paths_are_made_absolute_against_the_base_at_call_time(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    (tmp_path / "one" / "data").mkdir(parents=True)
    (tmp_path / "two" / "data").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "one")
    assert resolve_image("images/../a.png", tmp_path / "link" / "data") == tmp_path / "one" / "data" / "a.png"
    assert resolve_image("/abs/b.png", tmp_path) == Path("/abs/b.png")  # absolute paths are kept as they are
    for folder in ("one", "two"):  # the same relative base from another working directory is another folder
        monkeypatch.chdir(tmp_path / folder)
        assert resolve_image("a.png", "data") == tmp_path / folder / "data" / "a.png"
    assert resolve_image(None, tmp_path) is None and resolve_image("", tmp_path) is None
