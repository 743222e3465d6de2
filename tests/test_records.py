import pytest
from pydantic import ValidationError

from vital.records import Candidate, Figure, Preference, Score


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
