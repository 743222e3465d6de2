"""Judging: score and verdict parsing, the heuristic's formula, model judging and pairwise verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openai_double import DoubleConfig, running_double, write_figures
from vital.conversation import ConversationError, check_turns
from vital.errors import InputError
from vital.generation import GenerateConfig, caption_conversation, generate
from vital.jsonl import JsonlWriter, failures_path
from vital.judging import (
    HEURISTIC_NAME,
    JudgeConfig,
    heuristic_score,
    heuristic_turn_score,
    judge,
    parse_score,
    parse_verdict,
)
from vital.llm import EngineConfig, ReplyError
from vital.records import Candidate, Figure, Preference, Tie, Turn, read_candidates, read_figures


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


def test_answers_that_teach_more_of_the_figure_in_their_own_words_score_higher():
    brief = conversation(("What is shown?", "A nodule."))
    detailed = conversation(("What is shown?", "A CT slice through the chest: the nodule of 3 cm sits in the upper "
                                                "lobe on the left and touches the pleura."))
    # chest, nodule, 3, upper, lobe, left, pleura of the caption's and mention's 10 content words
    assert "coverage 0.70" in heuristic_score(FIGURE, detailed)[1]
    assert heuristic_score(FIGURE, detailed)[0] > heuristic_score(FIGURE, brief)[0] + 1


def test_copying_the_caption_earns_nothing_and_saying_it_in_own_words_does():
    copied = conversation(("Describe the image.", FIGURE.caption))
    own = conversation(("Describe the image.", "A CT slice through the chest: the nodule of 3 cm sits in the upper "
                                               "lobe on the left and touches the pleura."))
    copied_score, copied_parts = heuristic_score(FIGURE, copied)
    own_score, own_parts = heuristic_score(FIGURE, own)
    assert "specificity 0.00, copied 1.00" in copied_parts and "coverage 0.00" in copied_parts
    assert "specificity 1.00, copied 0.00" in own_parts
    # the same one-question conversation: apart from copying, only 0.4·P + 0.15·V differ
    assert own_score - copied_score == pytest.approx(10 * (0.4 * 1.0 + 0.15 * 0.7), abs=0.02)
    mixed = conversation(("Describe the image.", f"{FIGURE.caption} The nodule touches the pleura."))
    assert copied_score < heuristic_score(FIGURE, mixed)[0] < own_score


def test_turn_score_formula():
    assert heuristic_turn_score(FIGURE, "Where?", "Left upper lobe nodule.")[0] == 10.0
    assert heuristic_turn_score(FIGURE, "Where?", "Completely unrelated banana words.")[0] == 2.0  # 10·0.2
    assert heuristic_turn_score(FIGURE, "Describe it.", FIGURE.caption)[0] == 2.0  # a copy names nothing
    assert heuristic_turn_score(FIGURE, "Where?", "The left lung.")[0] == pytest.approx(10 * (0.8 / 3 + 0.2), abs=0.01)


def _demonstrations(folder: Path) -> tuple[list[Figure], list[int]]:
    """The released BioMed-VITAL demonstrations as figures with conversations; ids left out (turns that
    do not alternate) listed apart."""
    records = json.loads((folder / "biomed-vital" / "clinician_demonstrations.json").read_text())
    figures, left_out = [], []
    for record in records:
        turns = [Turn.model_validate(turn) for turn in record["conversations"]]
        try:
            check_turns(turns)
        except ConversationError:
            left_out.append(record["id"])
            continue
        mentions = [mention["tokens"] for mention in record.get("in_text_mention") or []]
        figures.append(Figure(id=record["pair_id"], caption=record["fig_caption"], mentions=mentions,
                              conversations=turns))
    return figures, left_out


def test_clinician_chosen_conversations_beat_caption_echoes_on_the_released_demonstrations(shared_data, tmp_path):
    """Issue 13: heuristic-v1 preferred the caption backend's echo in 116 of 116 such pairs."""
    figures, left_out = _demonstrations(shared_data)
    assert sorted(left_out) == [34, 49] and len(figures) == 56
    candidates = []
    for figure in figures:
        candidates.append(Candidate(id=f"{figure.id}/clinician", figure_id=figure.id,
                                    conversations=figure.conversations))
        candidates += [Candidate(id=f"{figure.id}/c{k}", figure_id=figure.id,
                                 conversations=caption_conversation(figure, k)) for k in range(2)]
    out = tmp_path / "preferences.jsonl"
    judge(candidates, figures, out, JudgeConfig(backend="heuristic", pairwise=True))
    preferences = [Preference.model_validate(p) for p in _read(out)]
    against_echo = [p for p in preferences if "/clinician" in p.chosen + p.rejected]
    wins = sum(p.chosen.endswith("/clinician") for p in against_echo)
    # heuristic-v2: 112 of the 112 pairs (56 figures x 2 caption candidates), none tied
    assert wins >= 0.9 * 112 and len(against_echo) >= 0.9 * 112


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
    result = judge(candidates, figures, out, JudgeConfig(backend="heuristic"))
    scores = _read(out)
    assert result.stats.done == result.written == 12 and len({s["candidate_id"] for s in scores}) == 12
    assert result.out == out and result.failed == 0 and result.failures is None
    labels = {(s["source"], s["judge"], s["backend"]) for s in scores}
    assert labels == {("model", HEURISTIC_NAME, "heuristic")}
    assert all(0 <= s["score"] <= 10 for s in scores)
    again = judge(candidates, figures, out, JudgeConfig(backend="heuristic"))
    assert again.stats.done == 0 and again.stats.skipped == 12 and len(_read(out)) == 12

    turns = tmp_path / "turn-scores.jsonl"
    judge(candidates, figures, turns, JudgeConfig(backend="heuristic", unit="turn"))
    expected = sum(len(c["conversations"]) // 2 for c in _read(candidates))
    assert len({(s["candidate_id"], s["turn"]) for s in _read(turns)}) == expected


def test_records_in_memory_are_judged_like_files(generated, tmp_path):
    figures, candidates = generated
    from_files = judge(candidates, figures, tmp_path / "a.jsonl", JudgeConfig(backend="heuristic"))
    records = judge(read_candidates(candidates), list(read_figures(figures)), tmp_path / "b.jsonl",
                    JudgeConfig(backend="heuristic"))
    assert from_files.written == records.written == 12
    assert _read(tmp_path / "a.jsonl") == _read(tmp_path / "b.jsonl")


def test_model_judge_sees_image_caption_and_conversation(generated, tmp_path):
    figures, candidates = generated
    out = tmp_path / "scores.jsonl"
    with running_double(DoubleConfig(reply=lambda body: '{"score": 7, "rationale": "fine"}')) as double:
        result = judge(candidates, figures, out, JudgeConfig(), _engine(double))
    assert result.stats.done == 12
    scores = {(s["score"], s["judge"], s["rationale"]) for s in _read(out)}
    assert scores == {(7.0, "openai:double-judge", "fine")}
    body = double.state.requests[0].body
    assert "Medical accuracy" in body["messages"][0]["content"] and body["temperature"] == 0.0
    parts = body["messages"][1]["content"]
    assert parts[0]["type"] == "image_url"
    texts = " ".join(p.get("text", "") for p in parts)
    assert "Caption: Figure" in texts and "Conversation:\nUser:" in texts and "Assistant:" in texts
    assert "<image>" not in texts


def test_replies_without_a_score_are_retried_then_failures(generated, tmp_path):
    figures, candidates = generated
    out = tmp_path / "scores.jsonl"
    with running_double(DoubleConfig(reply=lambda body: "A thoughtful conversation.")) as double:
        result = judge(candidates, figures, out, JudgeConfig(), _engine(double))
    assert result.failed == 12 and len(double.state.requests) == 36  # 3 attempts each
    assert result.failures == failures_path(out)
    failure = _read(failures_path(out))[0]
    assert failure["raw"] == "A thoughtful conversation." and "no score" in failure["reason"]


# --- pairwise: the verdict decides which candidate is chosen ---------------------------------------

MARK = "MARKED-CANDIDATE"


@pytest.fixture
def marked(tmp_path: Path) -> tuple[Path, Path]:
    """Three candidates for each of four figures; ``figN/c1`` (the middle one) carries :data:`MARK`."""
    figures = write_figures(tmp_path, 4)
    candidates = tmp_path / "candidates.jsonl"
    with candidates.open("w") as handle:
        for i in range(4):
            for k in range(3):
                answer = f"A nodule in the left lung, answer {k}" + (f" {MARK}" if k == 1 else "")
                turns = [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": answer}]
                handle.write(json.dumps({"id": f"fig{i}/c{k}", "figure_id": f"fig{i}", "conversations": turns})
                             + "\n")
    return figures, candidates


def _shown(body: dict) -> dict[str, str]:
    """The conversation texts of a pairwise request, by the letter they are shown under."""
    texts = [p.get("text", "") for p in body["messages"][1]["content"]]
    return {letter: next(t for t in texts if t.startswith(f"Conversation {letter}:")) for letter in "AB"}


def test_a_judge_preferring_one_candidate_in_both_orders_makes_it_chosen(marked, tmp_path):
    figures, candidates = marked

    def prefers_marked(body):
        shown = _shown(body)
        return '{"winner": "A"}' if MARK in shown["A"] else '{"winner": "B"}'

    out = tmp_path / "preferences.jsonl"
    with running_double(DoubleConfig(reply=prefers_marked)) as double:
        result = judge(candidates, figures, out, JudgeConfig(pairwise=True), _engine(double))
    preferences = [Preference.model_validate(p) for p in _read(out)]
    # 3 pairs per figure: the two with c1 are decided for c1; c0 vs c2 gets "B" in both orders, a flip
    assert sorted((p.chosen, p.rejected) for p in preferences) == sorted(
        (f"fig{i}/c1", f"fig{i}/c{k}") for i in range(4) for k in (0, 2))
    assert all(p.source == "model" and p.annotator == "openai:double-judge" for p in preferences)
    ties = [Tie.model_validate(t) for t in _read(tmp_path / "preferences.ties.jsonl")]
    assert sorted((t.a, t.b) for t in ties) == [(f"fig{i}/c0", f"fig{i}/c2") for i in range(4)]
    assert all(t.verdicts == ["B", "B"] and t.judge == "openai:double-judge" for t in ties)
    assert result.written == 8 and result.ties == 4 and len(double.state.requests) == 24

    again = judge(candidates, figures, out, JudgeConfig(pairwise=True), _engine(double, base_url="http://x"))
    assert again.stats.done == 0 and again.stats.skipped == 12  # ties and preferences are both resumed


def test_a_judge_that_always_prefers_position_a_gives_only_ties(marked, tmp_path):
    figures, candidates = marked
    out = tmp_path / "biased.jsonl"
    with running_double(DoubleConfig(reply=lambda body: '{"winner": "A", "rationale": "first"}')) as double:
        result = judge(candidates, figures, out, JudgeConfig(pairwise=True), _engine(double))
    assert result.written == 0 and result.ties == 12 and not out.read_text()
    ties = [Tie.model_validate(t) for t in _read(tmp_path / "biased.ties.jsonl")]
    assert {tuple(t.verdicts) for t in ties} == {("A", "A")} and ties[0].rationales == ["first", "first"]
    assert len(double.state.requests) == 24  # every pair asked in both orders


def test_the_heuristic_pairwise_judge_chooses_the_better_candidate(tmp_path):
    """Grounded beats invented in either input order: the heuristic's verdict decides ``chosen``."""
    good = conversation(("Where is the nodule?", "In the left upper lobe, abutting the pleura."),
                        ("How large is it?", "The nodule measures 3 cm."))
    invented = conversation(("Where is the nodule?", "In the right lower lobe."),
                            ("How large is it?", "The nodule measures 7 cm."))
    pair = [Candidate(id="f/c0", figure_id="f", conversations=invented),
            Candidate(id="f/c1", figure_id="f", conversations=good)]
    for name, candidates in (("given", pair), ("reversed", pair[::-1])):
        out = tmp_path / f"{name}.jsonl"
        result = judge(candidates, [FIGURE], out, JudgeConfig(backend="heuristic", pairwise=True))
        [preference] = [Preference.model_validate(p) for p in _read(out)]
        assert (preference.chosen, preference.rejected, result.ties) == ("f/c1", "f/c0", 0)


# --- bad input ----------------------------------------------------------------------------------

def test_candidates_of_unknown_figures_are_bad_input(generated, tmp_path):
    figures, candidates = generated
    with candidates.open("a") as handle:
        handle.write(json.dumps({"id": "ghost/c0", "figure_id": "ghost",
                                 "conversations": [{"from": "human", "value": "q"}]}) + "\n")
    with pytest.raises(InputError) as error:
        judge(candidates, figures, tmp_path / "scores.jsonl", JudgeConfig(backend="heuristic"))
    assert error.value.line == 13 and error.value.field == "figure_id"
    assert not (tmp_path / "scores.jsonl").exists()


def test_turns_that_do_not_alternate_are_bad_input(generated, tmp_path):
    figures, candidates = generated
    with candidates.open("a") as handle:
        turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}, {"from": "gpt", "value": "b"}]
        handle.write(json.dumps({"id": "fig0/c9", "figure_id": "fig0", "conversations": turns}) + "\n")
    with pytest.raises(InputError, match="turn 3 is from 'gpt'") as error:
        judge(candidates, figures, tmp_path / "scores.jsonl", JudgeConfig(backend="heuristic"))
    assert (error.value.path, error.value.line, error.value.field) == (str(candidates), 13, "conversations")


def test_settings_are_checked_by_field_name():
    with pytest.raises(InputError) as error:
        JudgeConfig(unit="turn", pairwise=True)
    assert error.value.field == "unit"
    with pytest.raises(InputError, match="not one of openai, heuristic") as error:
        JudgeConfig(backend="anthropic")
    assert error.value.field == "backend"


def test_empty_inputs_and_directories_name_the_file(generated, tmp_path):
    figures, candidates = generated
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "scores.jsonl"
    config = JudgeConfig(backend="heuristic")
    for args, problem, path in [
        ((empty, figures, out), "has no records", empty),
        ((candidates, empty, out), "has no records", empty),
        ((tmp_path, figures, out), "is a directory", tmp_path),
        ((candidates, tmp_path, out), "is a directory", tmp_path),
        ((candidates, figures, tmp_path), "is a directory", tmp_path),
    ]:
        with pytest.raises(InputError, match=problem) as error:
            judge(*args, config)
        assert error.value.path == str(path)
    with pytest.raises(InputError, match="no candidates given"):
        judge([], figures, out, config)
    assert not out.exists()


def test_a_run_refused_because_another_holds_the_output_touches_nothing(generated, tmp_path):
    figures, candidates = generated
    out = tmp_path / "scores.jsonl"
    failures, ties = failures_path(out), tmp_path / "scores.ties.jsonl"
    failures.write_text('{"id": "fig0/c0", "reason": "from the other run"}\n')
    with JsonlWriter(out):  # the other run
        with pytest.raises(InputError, match="another run is writing"):
            judge(candidates, figures, out, JudgeConfig(backend="heuristic"))
    assert failures.read_text() == '{"id": "fig0/c0", "reason": "from the other run"}\n'
    assert out.read_text() == "" and not ties.exists()


def vital(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vital", *map(str, args)], capture_output=True, text=True)


def test_cli_bad_input_is_one_line_and_exit_2(generated, tmp_path):
    figures, candidates = generated
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "scores.jsonl"
    cases = [
        ((candidates, "--figures", empty, "--out", out), f"{empty}: has no records"),
        ((tmp_path, "--figures", figures, "--out", out), f"{tmp_path}: is a directory"),
        ((candidates, "--figures", figures, "--out", out, "--unit", "turn", "--pairwise"), "field '--unit'"),
    ]
    for args, message in cases:
        result = vital("judge", *args, "--backend", "heuristic")
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr
    assert not out.exists()


def test_cli_pairwise_prints_ties_and_failures_exit_1(generated, tmp_path, monkeypatch):
    figures, candidates = generated
    out = tmp_path / "preferences.jsonl"
    result = vital("judge", candidates, "--figures", figures, "--out", out, "--pairwise", "--backend", "heuristic",
                   "--cache-file", tmp_path / "unused.sqlite")
    assert result.returncode == 0, result.stderr
    assert "ties (verdict flipped with order)" in result.stderr
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    result = vital("judge", candidates, "--figures", figures, "--out", tmp_path / "scores.jsonl",
                   "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0")
    assert result.returncode == 1 and "retry them" in result.stderr
    assert (tmp_path / "scores.failures.jsonl").is_file()
