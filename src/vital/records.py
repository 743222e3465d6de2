"""The records every stage reads and writes (see docs/architecture.md).

One JSON object per line, UTF-8.  Ids are stable strings.  Unknown keys are
kept (``extra="allow"``) so that a record passes through a stage unchanged
apart from what that stage owns.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
