"""Judging: score and verdict parsing, the heuristic's formula, model judging and pairwise order swaps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from openai_double import DoubleConfig, running_double, write_figures
from vital.errors import InputError
from vital.generation import GenerateConfig, generate
from vital.jsonl import failures_path
from vital.judging import JudgeConfig, heuristic_score, heuristic_turn_score, judge, parse_score, parse_verdict
from vital.llm import EngineConfig, ReplyError
from vital.records import Figure, Turn


@pytest.mark.parametrize("reply, score", [
    ("8", 8.0),
    ("**7**", 7.0),
    ("Score: 8/10", 8.0),
    ("Overall score - 6.5", 6.5),
    ("I would rate this 9 out of 10 because the answers are grounded.", 9.0),
    ('{"score": 7, "rationale": "Grounded but shallow."}', 7.0),
    ('```json\n{"rating": "4", "reason": "Two answers invent sizes."}\n```', 4.0),
    ("The conversation is accurate.\nScore: 10", 10.0),
])
def test_scores_are_read_from_many_reply_styles(reply, score):
    assert parse_score(reply)[0] == score


def test_score_rationale_comes_from_json():
    assert parse_score('{"score": 7, "rationale": "Grounded but shallow."}') == (7.0, "Grounded but shallow.")


@pytest.mark.parametrize("reply", ["", "The conversation is good.", "Score: 12/10", '{"score": "high"}'])
def test_replies_without_a_usable_score_are_errors(reply):
    with pytest.raises(ReplyError):
        parse_score(reply)


@pytest.mark.parametrize("reply, verdict", [
    ('{"winner": "A", "rationale": "More grounded."}', "A"),
    ('{"winner": "tie"}', "tie"),
    ("Winner: B", "B"),
    ("[[A]]", "A"),
    ("Conversation B is better because it asks about laterality.", "B"),
    ("B", "B"),
])
def test_verdicts_are_read(reply, verdict):
    assert parse_verdict(reply)[0] == verdict


def test_a_reply_without_a_verdict_is_an_error():
    with pytest.raises(ReplyError):
        parse_verdict("Both have merits.")


# --- the heuristic ------------------------------------------------------------------------------

FIGURE = Figure(id="f", caption="Axial CT of the chest showing a 3 cm nodule in the left upper lobe.",
                mentions=["The nodule abutted the pleura."], domains=["ct_scan"])


def conversation(*pairs: tuple[str, str]) -> list[Turn]:
    turns = []
    for question, answer in pairs:
        turns += [Turn(speaker="human", value=question), Turn(speaker="gpt", value=answer)]
    return turns


def test_grounded_diverse_answers_score_high():
    good = conversation(("What modality is this?", "Axial CT of the chest."),
                        ("Where is the nodule?", "In the left upper lobe, abutting the pleura."),
                        ("How large is it?", "The nodule measures 3 cm."))
    score, rationale = heuristic_score(FIGURE, good)
    assert score >= 8.5 and "contradictions 0" in rationale


def test_invented_numbers_wrong_side_and_hedges_cost_points():
    where = ("Where is the nodule?", "In the left upper lobe.")
    good = conversation(where, ("How large?", "It measures 3 cm."))
    invented = conversation(where, ("How large?", "It measures 5 cm."))
    size = ("How large?", "It is 3 cm.")
    wrong_side = conversation(("Where is the nodule?", "In the right upper lobe."), size)
    hedged = conversation(where, ("How large?", "It cannot be determined; consult a doctor."))
    base = heuristic_score(FIGURE, good)[0]
    for worse in (invented, wrong_side, hedged):
        assert heuristic_score(FIGURE, worse)[0] < base - 1
    assert "number 5" in heuristic_score(FIGURE, invented)[1]
    assert "says right" in heuristic_score(FIGURE, wrong_side)[1]


def test_repeated_questions_lower_diversity():
    where = ("Where is the nodule?", "Left upper lobe.")
    varied = conversation(("What modality is this?", "CT of the chest."), where)
    repeated = conversation(where, where)
    assert heuristic_score(FIGURE, repeated)[0] < heuristic_score(FIGURE, varied)[0]


def test_answers_that_teach_more_of_the_figure_score_higher():
    brief = conversation(("What is shown?", "A nodule."))
    detailed = conversation(("What is shown?", "Axial CT of the chest: a 3 cm nodule in the left upper lobe; "
                                                "the nodule abutted the pleura."))
    assert "coverage 0.90" in heuristic_score(FIGURE, detailed)[1]  # all but "showing"
    assert heuristic_score(FIGURE, detailed)[0] > heuristic_score(FIGURE, brief)[0] + 0.8  # 0.15 · 10 · 0.9


def test_turn_score_formula():
    assert heuristic_turn_score(FIGURE, "Where?", "Left upper lobe nodule.")[0] == 10.0
    assert heuristic_turn_score(FIGURE, "Where?", "Completely unrelated banana words.")[0] == 2.0  # 10·0.2


# --- runs ---------------------------------------------------------------------------------------

@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, Path]:
    figures = write_figures(tmp_path, 4)
    candidates = tmp_path / "candidates.jsonl"
    generate(figures, candidates, GenerateConfig(backend="caption", candidates=3))
    return figures, candidates


def _engine(double, **overrides) -> EngineConfig:
    values = dict(base_url=double.base_url, model="double-judge", concurrency=4, max_retries=2, timeout=5.0,
                  backoff_base=0.01, backoff_max=0.05)
    values.update(overrides)
    return EngineConfig(**values)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_heuristic_judge_scores_every_candidate_and_resumes(generated, tmp_path):
    figures, candidates = generated
    out = tmp_path / "scores.jsonl"
    report = judge(candidates, figures, out, JudgeConfig(backend="heuristic"))
    scores = _read(out)
    assert report.stats.done == 12 and len({s["candidate_id"] for s in scores}) == 12
    labels = {(s["source"], s["judge"], s["backend"]) for s in scores}
    assert labels == {("model", "heuristic-v1", "heuristic")}
    assert all(0 <= s["score"] <= 10 for s in scores)
    again = judge(candidates, figures, out, JudgeConfig(backend="heuristic"))
    assert again.stats.done == 0 and len(_read(out)) == 12

    turns = tmp_path / "turn-scores.jsonl"
    judge(candidates, figures, turns, JudgeConfig(backend="heuristic", unit="turn"))
    expected = sum(len(c["conversations"]) // 2 for c in _read(candidates))
    assert len({(s["candidate_id"], s["turn"]) for s in _read(turns)}) == expected


def test_model_judge_sees_image_caption_and_conversation(generated, tmp_path):
    figures, candidates = generated
    out = tmp_path / "scores.jsonl"
    with running_double(DoubleConfig(reply=lambda body: '{"score": 7, "rationale": "fine"}')) as double:
        report = judge(candidates, figures, out, JudgeConfig(), _engine(double))
    assert report.stats.done == 12
    scores = {(s["score"], s["judge"], s["rationale"]) for s in _read(out)}
    assert scores == {(7.0, "openai:double-judge", "fine")}
    body = double.state.requests[0].body
    assert "Medical accuracy" in body["messages"][0]["content"] and body["temperature"] == 0.0
    parts = body["messages"][1]["content"]
    assert parts[0]["type"] == "image_url"
    texts = " ".join(p.get("text", "") for p in parts)
    assert "Caption: Figure" in texts and "Conversation:\nUser:" in texts and "Assistant:" in texts


def test_replies_without_a_score_are_retried_then_failures(generated, tmp_path):
    figures, candidates = generated
    out = tmp_path / "scores.jsonl"
    with running_double(DoubleConfig(reply=lambda body: "A thoughtful conversation.")) as double:
        report = judge(candidates, figures, out, JudgeConfig(), _engine(double))
    assert report.stats.failed == 12 and len(double.state.requests) == 36  # 3 attempts each
    failure = _read(failures_path(out))[0]
    assert failure["raw"] == "A thoughtful conversation." and "no score" in failure["reason"]


def test_pairwise_swaps_order_and_ties_flipping_verdicts(generated, tmp_path):
    figures, candidates = generated

    def position_biased(body):
        return '{"winner": "A"}'

    out = tmp_path / "biased.jsonl"
    with running_double(DoubleConfig(reply=position_biased)) as double:
        report = judge(candidates, figures, out, JudgeConfig(pairwise=True), _engine(double))
    assert report.ties == 12 and not out.read_text()  # 3 pairs x 4 figures, every verdict flipped
    assert len(double.state.requests) == 24

    def prefers_c1(body):  # "A" when conversation A is candidate c1's (longer description)
        texts = [p.get("text", "") for p in body["messages"][1]["content"]]
        a, b = (next(t for t in texts if t.startswith(f"Conversation {x}:")) for x in "AB")
        return '{"winner": "A"}' if len(a) >= len(b) else '{"winner": "B"}'

    out = tmp_path / "preferences.jsonl"
    with running_double(DoubleConfig(reply=prefers_c1)) as double:
        report = judge(candidates, figures, out, JudgeConfig(pairwise=True), _engine(double))
    preferences = _read(out)
    assert preferences and all(p["source"] == "model" and p["annotator"] == "openai:double-judge"
                               for p in preferences)
    assert len(preferences) + report.ties == 12
    for preference in preferences:
        assert re.fullmatch(r"fig\d/c\d", preference["chosen"])
        assert preference["chosen"] != preference["rejected"]
    again = judge(candidates, figures, out, JudgeConfig(pairwise=True), _engine(double, base_url="http://x"))
    assert again.stats.done == 0 and again.stats.skipped == 12  # ties and preferences are both resumed


def test_candidates_of_unknown_figures_are_bad_input(generated, tmp_path):
    figures, candidates = generated
    with candidates.open("a") as handle:
        handle.write(json.dumps({"id": "ghost/c0", "figure_id": "ghost",
                                 "conversations": [{"from": "human", "value": "q"}]}) + "\n")
    with pytest.raises(InputError) as error:
        judge(candidates, figures, tmp_path / "scores.jsonl", JudgeConfig(backend="heuristic"))
    assert error.value.line == 13 and error.value.field == "figure_id"
    assert not (tmp_path / "scores.jsonl").exists()
    with pytest.raises(InputError, match="--unit"):
        JudgeConfig(unit="turn", pairwise=True)
