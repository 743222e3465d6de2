"""Agreement between annotators, and between annotators and the model judge.

Answers are compared by their display-independent label (see
:class:`vital.annotate.db.Task`): for a comparison the preferred candidate,
``tie`` or ``both_bad``; for demonstrations the best candidate or ``none``.
All statistics treat labels as nominal categories.

* Cohen's kappa for each pair of annotators, on the items both answered.
* Krippendorff's alpha (nominal) per task kind, over every item with at least
  two answers; it allows any number of annotators per item.
* Judge agreement: for decisive comparisons (A or B), how often the candidate
  the clinician preferred has the higher judge score (pairs the judge scored
  equally are counted separately); for demonstrations, how often the
  clinician's best candidate is among the judge's top-scored ones (tasks whose
  candidates the judge scored all alike are counted separately).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select

from vital.annotate.db import KINDS, AnnotationDB, Database, Item, Task, User, opened
from vital.annotate.export import output_file
from vital.errors import InputError
from vital.records import ScoreSource, read_scores


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters' labels on the same items (scikit-learn's).

    ``nan`` when it is undefined: no items, or both raters gave every item the
    same one label (chance agreement is then total).
    """
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    labels = sorted(set(first) | set(second), key=str)
    if len(labels) < 2:
        return math.nan
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(list(first), list(second), labels=labels))


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float:
    """Krippendorff's alpha for nominal labels; each unit lists the labels it received.

    Units with fewer than two labels carry no information about agreement and
    are ignored.  ``nan`` when there is no pairable unit or only one category.
    """
    coincidence: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for labels in units:
        m = len(labels)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            coincidence[labels[i], labels[j]] += 1.0 / (m - 1)
    totals: dict[Hashable, float] = defaultdict(float)
    for (c, _k), value in coincidence.items():
        totals[c] += value
    n = sum(totals.values())
    if n <= 1:
        return math.nan
    disagreement_observed = sum(value for (c, k), value in coincidence.items() if c != k)
    disagreement_expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k) / (n - 1)
    if disagreement_expected == 0:
        return math.nan
    return 1.0 - disagreement_observed / disagreement_expected


@dataclass
class PairAgreement:
    kind: str
    first: str
    second: str
    items: int
    observed: float
    kappa: float


@dataclass
class KindAgreement:
    kind: str
    items_with_overlap: int
    alpha: float


@dataclass
class JudgeAgreement:
    kind: str
    annotator: str  # "all" for every annotator together
    compared: int
    agree: int
    judge_ties: int = 0

    @property
    def rate(self) -> float:
        return self.agree / self.compared if self.compared else math.nan


@dataclass
class AgreementReport:
    answers: dict[str, dict[str, int]]
    pairs: list[PairAgreement]
    overall: list[KindAgreement]
    judge: list[JudgeAgreement] = field(default_factory=list)
    labels: dict[str, Counter] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        def clean(value: float) -> float | None:
            return None if isinstance(value, float) and math.isnan(value) else value

        return {
            "answers": self.answers,
            "labels": {kind: dict(counter) for kind, counter in self.labels.items()},
            "pairs": [{k: clean(v) for k, v in asdict(pair).items()} for pair in self.pairs],
            "overall": [{k: clean(v) for k, v in asdict(kind).items()} for kind in self.overall],
            "judge": [{**asdict(j), "rate": clean(j.rate)} for j in self.judge],
        }


@dataclass
class _Answer:
    item_id: int
    kind: str
    annotator: str
    label: str
    candidate_ids: list[str]


def _answers(db: AnnotationDB) -> list[_Answer]:
    with db.read() as session:
        rows = session.execute(
            select(Task.item_id, Task.kind, User.name, Task.label, Item.candidate_ids)
            .join(User, User.id == Task.user_id)
            .join(Item, Item.id == Task.item_id)
            .where(Task.answered_at.is_not(None))
            .order_by(Task.id)
        ).all()
    # an answered task always has its label
    return [_Answer(item_id, kind, name, cast(str, label), ids) for item_id, kind, name, label, ids in rows]


def _judge_verdict(answer: _Answer, scores: dict[str, float]) -> bool | None:
    """Whether the judge agrees with this answer; ``None`` if the answer or the scores cannot tell."""
    if any(cid not in scores for cid in answer.candidate_ids):
        return None
    if answer.kind == "compare":
        if answer.label in ("tie", "both_bad"):
            return None
        other = next(cid for cid in answer.candidate_ids if cid != answer.label)
        if scores[answer.label] == scores[other]:
            return None
        return scores[answer.label] > scores[other]
    if answer.label == "none":
        return None
    values = [scores[cid] for cid in answer.candidate_ids]
    if min(values) == max(values):
        return None  # the judge does not tell these candidates apart
    return scores[answer.label] == max(values)


def agreement_report(db: Database, *, judge_scores: ScoreSource | None = None) -> AgreementReport:
    """Answers per annotator, kappa per annotator pair, alpha per kind; with ``judge_scores`` (a scores file,
    score records or candidate id -> score; only the model judge's records count), agreement with the judge."""
    if judge_scores is not None:
        judge_scores = _judge_scores(judge_scores)
    with opened(db, create=False) as database:
        answers = _answers(database)
    per_annotator: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
    labels: dict[str, Counter] = {kind: Counter() for kind in KINDS}
    by_item: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    for answer in answers:
        per_annotator[answer.annotator][answer.kind] += 1
        by_item[answer.kind, answer.item_id][answer.annotator] = answer.label
        labels[answer.kind][_label_class(answer)] += 1

    pairs = []
    names = sorted(per_annotator)
    for kind in KINDS:
        for first, second in itertools.combinations(names, 2):
            shared = [
                (votes[first], votes[second])
                for (k, _), votes in by_item.items()
                if k == kind and first in votes and second in votes
            ]
            if not shared:
                continue
            a, b = zip(*shared, strict=True)
            observed = sum(x == y for x, y in shared) / len(shared)
            pairs.append(PairAgreement(kind, first, second, len(shared), observed, cohen_kappa(a, b)))

    overall = []
    for kind in KINDS:
        units = [list(votes.values()) for (k, _), votes in by_item.items() if k == kind]
        overlapping = sum(len(unit) >= 2 for unit in units)
        overall.append(KindAgreement(kind, overlapping, krippendorff_alpha_nominal(units)))

    judge = []
    if judge_scores is not None:
        tallies: dict[tuple[str, str], JudgeAgreement] = {}
        for answer in answers:
            verdict = _judge_verdict(answer, judge_scores)
            decisive = answer.label not in ("tie", "both_bad", "none")
            for who in ("all", answer.annotator):
                tally = tallies.setdefault((answer.kind, who), JudgeAgreement(answer.kind, who, 0, 0))
                if verdict is None:
                    scored = all(cid in judge_scores for cid in answer.candidate_ids)
                    tally.judge_ties += int(decisive and scored)
                    continue
                tally.compared += 1
                tally.agree += int(verdict)
        judge = sorted(tallies.values(), key=lambda j: (j.kind, j.annotator != "all", j.annotator))
    return AgreementReport(dict(per_annotator), pairs, overall, judge, labels)


def _judge_scores(scores: ScoreSource) -> dict[str, float]:
    by_candidate = read_scores(scores, source="model")
    if not by_candidate and isinstance(scores, str | Path):
        raise InputError("has no judge scores (records with source \"model\")", path=scores)
    return by_candidate


def _label_class(answer: _Answer) -> str:
    """A label's class for the summary: a candidate id counts as 'preferred'/'best'."""
    if answer.label in ("tie", "both_bad", "none"):
        return answer.label
    return "preferred one" if answer.kind == "compare" else "picked best"


def plot_agreement(report: AgreementReport, path: str | Path) -> Path:
    """A PNG: answers per annotator and label, and Cohen's kappa per annotator pair (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = output_file(path)
    figure, (answers_axis, kappa_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = sorted(report.answers)
    for offset, kind in enumerate(KINDS):
        counts = [report.answers[name][kind] for name in names]
        answers_axis.bar([i + (offset - 0.5) * 0.4 for i in range(len(names))], counts, width=0.4, label=kind)
    answers_axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
    answers_axis.set(ylabel="answers", title="answers per annotator")
    answers_axis.legend()
    labels = [f"{p.kind}: {p.first} · {p.second}" for p in report.pairs]
    kappas = [0.0 if math.isnan(p.kappa) else p.kappa for p in report.pairs]
    kappa_axis.barh(range(len(labels)), kappas, color=["#0b63b6" if k >= 0 else "#b42318" for k in kappas])
    kappa_axis.set_yticks(range(len(labels)), labels)
    kappa_axis.axvline(0, color="grey", linewidth=0.8)
    kappa_axis.set(xlim=(-1, 1), xlabel="Cohen's kappa", title="agreement per annotator pair")
    alphas = ", ".join(f"{k.kind} {k.alpha:.2f}" for k in report.overall if not math.isnan(k.alpha))
    if alphas:
        kappa_axis.text(0.02, -0.3, f"Krippendorff's alpha: {alphas}", transform=kappa_axis.transAxes)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)
    return path
