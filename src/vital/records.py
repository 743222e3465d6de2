"""The records every stage reads and writes (see docs/architecture.md).

One JSON object per line, UTF-8.  Ids are stable strings.  Unknown keys are
kept (``extra="allow"``) so that a record passes through a stage unchanged
apart from what that stage owns.  The readers at the end are the one way
every stage turns its inputs (a path, or records in memory) into records.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from typing_extensions import TypeIs

from vital.errors import InputError
from vital.jsonl import iter_json_lines, read_records, validation_to_input_error

C = TypeVar("C", bound=Collection[Any])
DOMAINS = ("chest_xray", "ct_scan", "mri", "histology", "gross", "ultrasound", "other")


class Record(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Turn(BaseModel):
    """One turn of a conversation, in LLaVA's spelling (``from``: human | gpt)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    speaker: Literal["human", "gpt"] = Field(alias="from")
    value: str

    @field_validator("value")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("turn text is empty")
        return value


class Figure(Record):
    """An image with its caption, in-text mentions and domain labels.

    ``conversations`` is present only for demonstrations (figures with a
    clinician-chosen conversation).
    """

    id: str
    image: str | None = None
    caption: str
    mentions: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    label: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    conversations: list[Turn] | None = None

    @field_validator("id", "caption")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("domains")
    @classmethod
    def _known_domains(cls, value: list[str]) -> list[str]:
        unknown = [d for d in value if d not in DOMAINS]
        if unknown:
            raise ValueError(f"unknown domain {unknown[0]!r} (expected one of {', '.join(DOMAINS)})")
        return value


class Candidate(Record):
    """A generated conversation about one figure."""

    id: str
    figure_id: str
    image: str | None = None
    conversations: list[Turn]
    generator: dict[str, Any] = Field(default_factory=dict)
    usage: dict[str, Any] | None = None

    @field_validator("conversations")
    @classmethod
    def _has_turns(cls, value: list[Turn]) -> list[Turn]:
        if not value:
            raise ValueError("conversation has no turns")
        return value


class Score(Record):
    """A rating of one candidate: by a model judge (0-10) or by the selector."""

    candidate_id: str
    score: float = Field(allow_inf_nan=False)
    source: Literal["model", "selector"]
    judge: str | None = None
    rationale: str | None = None


class Tie(Record):
    """Two candidates a judge could not separate in pairwise mode: it said tie, or its verdict flipped
    when the order was swapped.  Kept (in ``<out>.ties.jsonl``) so that a rerun knows the pair is done."""

    figure_id: str | None = None
    a: str
    b: str
    verdicts: list[str]
    """What the judge said with ``a`` shown first, then with ``b`` shown first ("A", "B" or "tie")."""
    rationales: list[str] = Field(default_factory=list)
    judge: str | None = None


class Preference(Record):
    """``chosen`` is preferred over ``rejected`` (candidate ids)."""

    figure_id: str | None = None
    chosen: str
    rejected: str
    source: Literal["human", "model"]
    annotator: str | None = None
    weight: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _two_candidates(self) -> Preference:
        if self.chosen == self.rejected:
            raise ValueError("chosen and rejected are the same candidate")
        return self


# --- reading records -------------------------------------------------------------------------------------
# Every stage takes its inputs as a path (JSONL) or as records already in memory; these readers are the one
# way from either to what a stage needs.  Image paths are made absolute against the folder of the file that
# names them.

FigureSource = str | Path | Iterable[Figure] | Mapping[str, Figure]
CandidateSource = str | Path | Iterable[Candidate]
ScoreSource = str | Path | Iterable[Score] | Mapping[str, float]
PreferenceSource = str | Path | Iterable[Preference]


def resolve_image(image: str | None, base: str | Path) -> Path | None:
    """An image path from a record, made absolute against ``base`` (the folder of the file naming it).

    ``base`` has its symlinks resolved; the record's own part is joined lexically (``..`` removed, links left
    alone): resolving every image path costs a filesystem call per path component and record.  Whoever must
    know where a link really points (the annotation app, confining images to folders) resolves it there.
    """
    if not image:
        return None
    path = Path(image).expanduser()
    if path.is_absolute():
        return path
    return Path(os.path.normpath(os.path.join(_resolved(os.path.abspath(base)), path)))


@functools.lru_cache(maxsize=64)
def _resolved(folder: str) -> str:
    """``folder`` (absolute, so that the cache does not depend on the working directory) with links resolved."""
    return str(Path(folder).resolve())


def portable_path(image: str | Path, out_dir: Path) -> str:
    """How an output names an image: relative to the output's folder when below it, else absolute."""
    image = Path(image)
    return image.relative_to(out_dir).as_posix() if image.is_relative_to(out_dir) else str(image)


def is_path(source: object) -> TypeIs[str | Path]:
    """Is this input a file (a path), rather than records in memory?"""
    return isinstance(source, str | Path)


def require_records(records: C, source: object, noun: str) -> C:
    """``records``, unless there are none: an input without records is bad input, named as the user gave it
    ("FILE: has no records" for a file, "no NOUN given" for records passed in; ``noun`` is the parameter)."""
    if not records:
        if isinstance(source, str | Path):
            raise InputError("has no records", path=source)
        raise InputError(f"no {noun} given", field=noun)
    return records


def read_figures(path: str | Path) -> Iterator[Figure]:
    """Stream the figures of a JSONL file with ``image`` made absolute."""
    path = Path(path)
    base = path.resolve().parent
    for figure in read_records(path, Figure):
        resolved = resolve_image(figure.image, base)
        figure.image = str(resolved) if resolved else None
        yield figure


def figure_index(figures: FigureSource) -> dict[str, Figure]:
    """Figures by id, from a figures file or from records."""
    if isinstance(figures, Mapping):
        return dict(figures)
    source = read_figures(figures) if is_path(figures) else figures
    return {figure.id: figure for figure in source}


def iter_candidates(
    path: str | Path, figures: Mapping[str, Figure] | None = None, *, unique_ids: bool = True
) -> Iterator[tuple[int, Candidate]]:
    """Stream ``(line, Candidate)`` with ``image`` made absolute (else, with ``figures``, the figure's image).

    With ``figures``, a candidate naming an unknown figure is an :class:`InputError`
    (file, line, field); with ``unique_ids``, so is an id seen before.
    """
    path = Path(path)
    base = path.resolve().parent
    seen: set[str] = set()
    for line, obj in iter_json_lines(path):
        try:
            candidate = Candidate.model_validate(obj)
        except ValidationError as exc:
            raise validation_to_input_error(exc, path, line) from None
        if unique_ids:
            if candidate.id in seen:
                raise InputError(f"candidate id {candidate.id!r} appears twice", path=path, line=line, field="id")
            seen.add(candidate.id)
        figure = None
        if figures is not None:
            figure = figures.get(candidate.figure_id)
            if figure is None:
                problem = f"figure {candidate.figure_id!r} is not in the figures file"
                raise InputError(problem, path=path, line=line, field="figure_id")
        image = resolve_image(candidate.image, base)
        candidate.image = str(image) if image else (figure.image if figure else None)
        yield line, candidate


def read_candidates(candidates: CandidateSource, figures: Mapping[str, Figure] | None = None) -> list[Candidate]:
    """All candidates, from a candidates file (see :func:`iter_candidates`) or from records."""
    if is_path(candidates):
        return [candidate for _, candidate in iter_candidates(candidates, figures)]
    out = list(candidates)
    if figures is not None:
        for candidate in out:
            if candidate.image is None and candidate.figure_id in figures:
                candidate.image = figures[candidate.figure_id].image
    return out


def read_scores(scores: ScoreSource, *, source: str | None = "model") -> dict[str, float]:
    """Candidate id -> score (the mean when a candidate has several), keeping only ``source`` (None: all).

    ``scores`` is a scores file, score records, or a mapping that is taken as it is.
    """
    if isinstance(scores, Mapping):
        return dict(scores)
    records = read_records(scores, Score) if is_path(scores) else scores
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for score in records:
        if source is not None and score.source != source:
            continue
        sums[score.candidate_id] += score.score
        counts[score.candidate_id] += 1
    return {cid: sums[cid] / counts[cid] for cid in sums}


def read_preferences(preferences: PreferenceSource) -> list[Preference]:
    """Preference records, from a preferences file or from records."""
    if is_path(preferences):
        return list(read_records(preferences, Preference))
    return list(preferences)
