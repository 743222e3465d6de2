"""The selector's inputs, from paths or records, checked at the boundary.

Each reader takes what the API takes (a path, or records already in memory;
see :mod:`vital.records`) and gives what training and scoring use.  A file
without records is an :class:`~vital.errors.InputError` naming that file (as
is a directory or a missing file, through :func:`vital.jsonl.input_file`);
training and scoring read every input before they load an encoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vital.errors import InputError
from vital.records import (
    Candidate,
    CandidateSource,
    Figure,
    FigureSource,
    Preference,
    PreferenceSource,
    Score,
    ScoreSource,
    figure_index,
    read_candidates,
    read_preferences,
    read_records,
    read_scores,
    require_records,
)


def is_path(source: object) -> bool:
    return isinstance(source, str | Path)


def figures(source: FigureSource | None) -> dict[str, Figure]:
    """Figures by id (``{}`` without figures)."""
    if source is None:
        return {}
    index = figure_index(source)
    return require_records(index, source, "figures") if is_path(source) else index  # records: none is allowed


def candidates(source: CandidateSource, index: Mapping[str, Figure]) -> list[Candidate]:
    """The candidates, images resolved (else their figure's); with figures in ``index``, each must name one."""
    return require_records(read_candidates(source, index or None), source, "candidates")


def judge_scores(source: ScoreSource | None) -> dict[str, float]:
    """The model judge's scores (records of source ``model``) by candidate id."""
    if source is None:
        return {}
    if not is_path(source):
        return read_scores(source, source="model")
    records = require_records(list(read_records(source, Score)), source, "scores")  # type: ignore[arg-type]
    judged = read_scores(records, source="model")
    if not judged:
        raise InputError("has no judge scores (records of source 'model'; selector scores are not training "
                         "data)", path=source)  # type: ignore[arg-type]
    return judged


def preferences(source: PreferenceSource | None) -> list[Preference]:
    """Preference records (clinician pairs and judge verdicts)."""
    if source is None:
        return []
    out = read_preferences(source)
    return require_records(out, source, "preferences") if is_path(source) else out  # records: none is allowed
