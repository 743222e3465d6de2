"""Selection policies: which candidates are kept, walking from the best score down, and why the others are not.

A candidate is kept unless it is below ``min_score``, its figure already has
``per_figure`` kept candidates, its domain's quota is full, or it nearly
repeats a kept conversation about the same figure; the walk stops when the
budget (``top_k``, or ``top_fraction`` of the scored candidates) is reached.
With ``balance_domains`` every domain first gets an equal share of the
budget; shares a domain cannot fill go to the best remaining candidates of
any domain.  Candidates that cannot become LLaVA records are set aside
before the walk, so they never take a kept candidate's place.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vital.config import StageConfig, setting
from vital.conversation import ConversationError, strip_image_token
from vital.errors import InputError
from vital.records import DOMAINS, Candidate, Figure
from vital.selection.export import llava_record

_WORDS = re.compile(r"[a-z0-9]+")


@dataclass
class SelectConfig(StageConfig):
    """How ``vital select`` chooses candidates and writes them (the flags of ``vital select``)."""

    source: str = setting("auto", "Which scores: selector, model, or auto (selector if present).",
                          choices=("auto", "selector", "model"))
    top_fraction: float | None = setting(
        None, "Keep this share of the scored candidates (the reference keeps 0.1, 0.4, 0.8 or 0.9).")
    top_k: int | None = setting(None, "Keep this many.")
    per_figure: int | None = setting(None, "At most N per figure.")
    min_score: float | None = setting(None, "Drop scores below this.")
    domain_quota: list[str] = setting(
        help="DOMAIN=N (count) or DOMAIN=0.3 (share of the budget); repeatable.", factory=list)
    balance_domains: bool = setting(False, "Give every domain an equal share of the budget.")
    near_duplicate: float = setting(
        0.6, "Word-trigram overlap at which a conversation repeats a kept one of its figure (1 = exact only).")
    merge: list[Path] = setting(
        help="Another LLaVA-format dataset to add (deduplicated); repeatable.", factory=list)
    merge_images: Path | None = setting(
        None, "The folder the --merge datasets' image names are relative to; their paths are then rewritten "
        "like the selected ones (without it they are kept as written).")
    image_root: Path | None = setting(None, "Write image paths relative to this folder.")
    keep_missing_images: bool = setting(False, "Export candidates whose image file is missing.")

    def validate(self) -> None:
        if self.top_fraction is not None and self.top_k is not None:
            raise InputError("give --top-fraction or --top-k, not both", field="top_fraction")
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise InputError("must be in (0, 1]", field="top_fraction")
        if self.top_k is not None and self.top_k < 0:
            raise InputError("must not be negative", field="top_k")
        if self.per_figure is not None and self.per_figure < 1:
            raise InputError("must be at least 1", field="per_figure")
        if not 0 < self.near_duplicate <= 1:
            raise InputError("must be in (0, 1]", field="near_duplicate")
        parse_domain_quotas(self.domain_quota)

    @property
    def domain_quotas(self) -> dict[str, float]:
        """``domain_quota`` parsed: domain -> a count (>= 1) or a share of the budget (< 1)."""
        return parse_domain_quotas(self.domain_quota)


def parse_domain_quotas(values: Iterable[str]) -> dict[str, float]:
    """``["ct_scan=200", "mri=0.3"]`` -> ``{"ct_scan": 200.0, "mri": 0.3}``; errors name ``domain_quota``."""
    quotas = {}
    for value in values:
        domain, _, amount = value.partition("=")
        if domain not in DOMAINS:
            raise InputError(f"unknown domain {domain!r} (expected one of {', '.join(DOMAINS)})",
                             field="domain_quota")
        try:
            quota = float(amount)
        except ValueError:
            raise InputError(f"expected DOMAIN=NUMBER, got {value!r}", field="domain_quota") from None
        if not quota >= 0:  # also refuses nan
            raise InputError(f"quota of {domain!r} must not be negative", field="domain_quota")
        quotas[domain] = quota
    return quotas


@dataclass
class Decision:
    """What the walk decided about one candidate."""

    candidate: Candidate
    score: float | None
    domain: str
    kept: bool = False
    reason: str = ""
    """Why it was not kept ("per-figure cap", "below the cut", "not exportable: ...")."""
    record: dict[str, Any] | None = None
    """The LLaVA record; ``None`` when the candidate cannot be exported."""
    unexportable: str | None = None
    """Why the candidate cannot be a LLaVA record (the reason in the failures file), if it cannot."""

    def set_unexportable(self, problem: str) -> None:
        self.kept, self.record, self.unexportable = False, None, problem
        self.reason = f"not exportable: {problem}"


@dataclass
class Selection:
    """Every candidate's :class:`Decision`, in input order, with the policy and the budget it was walked with."""

    decisions: list[Decision]
    config: SelectConfig
    budget: int

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.kept]

    @property
    def unexportable(self) -> list[Decision]:
        return [d for d in self.decisions if d.unexportable is not None]

    @property
    def cut(self) -> float | None:
        """The lowest kept score."""
        scores = [d.score for d in self.kept if d.score is not None]
        return min(scores) if scores else None

    def per_domain(self) -> dict[str, Counter]:
        """domain -> ``Counter(kept=..., dropped=...)``."""
        counts: dict[str, Counter] = defaultdict(Counter)
        for decision in self.decisions:
            counts[decision.domain]["kept" if decision.kept else "dropped"] += 1
        return dict(sorted(counts.items()))


def candidate_domain(candidate: Candidate, figures: Mapping[str, Figure] | None) -> str:
    """The figure's first domain (else the candidate's own ``domains``, as imports write them), else "other"."""
    figure = figures.get(candidate.figure_id) if figures else None
    domains = figure.domains if figure is not None else (getattr(candidate, "domains", None) or [])
    return domains[0] if domains else "other"


def _shingles(candidate: Candidate, size: int = 3) -> set[tuple[str, ...]]:
    text = " ".join(strip_image_token(turn.value) for turn in candidate.conversations)
    words = _WORDS.findall(text.lower())
    if len(words) < size:
        return {tuple(words)}
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _quota(value: float, budget: int) -> int:
    return int(value) if value >= 1 else math.floor(value * budget)


def _decide_exportable(decision: Decision, keep_missing_images: bool) -> None:
    candidate = decision.candidate
    if not keep_missing_images and not (candidate.image and Path(candidate.image).is_file()):
        decision.set_unexportable("image file not found" if candidate.image else "candidate has no image")
        return
    try:
        decision.record = llava_record(candidate)
    except ConversationError as exc:
        decision.set_unexportable(exc.problem)


def select_candidates(
    candidates: Iterable[Candidate],
    scores: Mapping[str, float],
    config: SelectConfig | None = None,
    figures: Mapping[str, Figure] | None = None,
) -> Selection:
    """Decide, for every candidate, whether it is kept and why not (see the module docstring)."""
    config = config or SelectConfig()
    decisions = []
    for candidate in candidates:
        score = scores.get(candidate.id)
        decision = Decision(candidate, score, candidate_domain(candidate, figures))
        _decide_exportable(decision, config.keep_missing_images)
        if decision.unexportable is None:
            if score is None or math.isnan(score):
                decision.reason = "no score"
            elif config.min_score is not None and score < config.min_score:
                decision.reason = "below the minimum score"
        decisions.append(decision)
    eligible = sorted((d for d in decisions if not d.reason), key=lambda d: (-(d.score or 0.0), d.candidate.id))
    scored = sum(1 for d in decisions if d.score is not None and not math.isnan(d.score))
    if config.top_k is not None:
        budget = min(config.top_k, len(eligible))
    elif config.top_fraction is not None:
        budget = min(round(config.top_fraction * scored), len(eligible))
    else:
        budget = len(eligible)
    explicit = {domain: _quota(value, budget) for domain, value in config.domain_quotas.items()}
    quotas = dict(explicit)
    if config.balance_domains:
        domains = sorted({d.domain for d in eligible})
        share = math.ceil(budget / max(len(domains), 1))
        quotas = {domain: min(explicit.get(domain, share), share) for domain in domains}
    per_figure: Counter = Counter()
    per_domain: Counter = Counter()
    kept_shingles: dict[str, list[set]] = defaultdict(list)
    kept = 0

    def walk(limits: Mapping[str, int]) -> None:
        nonlocal kept
        for decision in eligible:
            if kept >= budget:
                return
            if decision.kept or decision.reason == "near-duplicate":
                continue
            figure_id = decision.candidate.figure_id
            if config.per_figure is not None and per_figure[figure_id] >= config.per_figure:
                decision.reason = "per-figure cap"
                continue
            quota = limits.get(decision.domain)
            if quota is not None and per_domain[decision.domain] >= quota:
                decision.reason = "domain quota"
                continue
            shingles = _shingles(decision.candidate)
            twins = kept_shingles[figure_id]
            if any(_jaccard(shingles, other) >= config.near_duplicate for other in twins):
                decision.reason = "near-duplicate"
                continue
            twins.append(shingles)
            decision.kept, decision.reason = True, ""
            per_figure[figure_id] += 1
            per_domain[decision.domain] += 1
            kept += 1

    walk(quotas)
    if config.balance_domains:
        walk(explicit)  # shares that a small domain could not fill go to the best of the rest
    for decision in eligible:
        if not decision.kept and not decision.reason:
            decision.reason = "below the cut"
    return Selection(decisions, config, budget)
