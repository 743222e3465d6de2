"""Model preference: a judge rates candidates 0-10 against a clinical rubric, or picks the better of two.

>>> from vital.judging import JudgeConfig, judge
>>> from vital.llm import EngineConfig
>>> judge("candidates.jsonl", "figures.jsonl", "scores.jsonl", JudgeConfig(unit="conversation"),
...       EngineConfig(model="gpt-4o"))
>>> judge("candidates.jsonl", "figures.jsonl", "preferences.jsonl", JudgeConfig(backend="heuristic", pairwise=True))

Two judges share one interface (``score`` and ``prefer``): :class:`ModelJudge`
asks a vision-language model (:mod:`vital.judging.model`, with the rubric and
messages in :mod:`vital.judging.prompts` and reply parsing in
:mod:`vital.judging.parse`); :class:`HeuristicJudge` works offline by a
documented formula (:mod:`vital.judging.heuristic`).  The runner
(:mod:`vital.judging.run`) writes :class:`~vital.records.Score` records, or, in
pairwise mode, :class:`~vital.records.Preference` records for pairs whose
verdict holds in both orders and :class:`~vital.records.Tie` records for the
rest.
"""

from vital.judging.heuristic import HEURISTIC_NAME, HeuristicJudge, heuristic_score, heuristic_turn_score
from vital.judging.model import ModelJudge
from vital.judging.parse import parse_score, parse_verdict
from vital.judging.prompts import RUBRIC, judge_messages
from vital.judging.run import JudgeConfig, JudgeResult, judge, pair_key

__all__ = [
    "HEURISTIC_NAME",
    "RUBRIC",
    "HeuristicJudge",
    "JudgeConfig",
    "JudgeResult",
    "ModelJudge",
    "heuristic_score",
    "heuristic_turn_score",
    "judge",
    "judge_messages",
    "pair_key",
    "parse_score",
    "parse_verdict",
]
