"""Training pairs: clinician preferences and pairs derived from a model judge's scores or verdicts.

A pair is ``(preferred index, other index, weight)`` over the candidates of
one :class:`~vital.selector.features.FeatureSet`.  :func:`training_pairs`
builds everything a training run needs from the records: the training pairs,
the held-out pairs (split by figure) and the counts reported in metrics.json.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vital.records import Preference
from vital.selector.config import MODEL_PAIR_MODES, SelectorConfig


@dataclass
class Pairs:
    preferred: np.ndarray
    other: np.ndarray
    weight: np.ndarray

    @classmethod
    def empty(cls) -> Pairs:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @classmethod
    def from_lists(cls, preferred: list[int], other: list[int], weight: float) -> Pairs:
        return cls(
            np.asarray(preferred, np.int64),
            np.asarray(other, np.int64),
            np.full(len(preferred), weight, np.float32),
        )

    def __len__(self) -> int:
        return len(self.preferred)

    def __add__(self, other: Pairs) -> Pairs:
        return Pairs(
            np.concatenate([self.preferred, other.preferred]),
            np.concatenate([self.other, other.other]),
            np.concatenate([self.weight, other.weight]),
        )

    def subset(self, mask: np.ndarray) -> Pairs:
        return Pairs(self.preferred[mask], self.other[mask], self.weight[mask])


@dataclass
class PreferencePairs:
    pairs: Pairs
    unknown: int = 0
    """Preferences naming a candidate that is not among the candidates (skipped, counted)."""


def preference_pairs(
    preferences: Iterable[Preference], index: Mapping[str, int], weight: float, *, source: str = "human"
) -> PreferencePairs:
    """Pairs from preference records of ``source``; each record's own ``weight`` multiplies ``weight``."""
    preferred: list[int] = []
    other: list[int] = []
    weights: list[float] = []
    unknown = 0
    for preference in preferences:
        if preference.source != source:
            continue
        if preference.chosen not in index or preference.rejected not in index:
            unknown += 1
            continue
        preferred.append(index[preference.chosen])
        other.append(index[preference.rejected])
        weights.append(weight * (preference.weight if preference.weight is not None else 1.0))
    pairs = Pairs(
        np.asarray(preferred, np.int64), np.asarray(other, np.int64), np.asarray(weights, np.float32)
    )
    return PreferencePairs(pairs, unknown)


def model_pairs(
    scores: Mapping[str, float],
    index: Mapping[str, int],
    figure_ids: Sequence[str],
    *,
    mode: str = "both",
    cap: int = 30_000,
    seed: int = 0,
    exclude_figures: set[str] | None = None,
) -> Pairs:
    """Pairs of candidates the judge scored differently, the higher-scored one preferred (weight 1).

    ``within``: both candidates describe the same figure (the judge's view of
    which conversation about this image is better); ``across``: candidates of
    different figures, drawn from different score levels as the reference
    does; ``both``: half of the cap each, the unused share going to the other.
    At most ``cap`` pairs, drawn at random with ``seed``; candidates of
    ``exclude_figures`` (the held-out figures) are never used.
    """
    if mode not in MODEL_PAIR_MODES:
        raise ValueError(f"model pair mode must be one of {', '.join(MODEL_PAIR_MODES)}")
    if mode == "none" or cap <= 0:
        return Pairs.empty()
    rng = np.random.default_rng(seed)
    exclude = exclude_figures or set()
    scored = [
        (index[cid], value)
        for cid, value in scores.items()
        if cid in index and figure_ids[index[cid]] not in exclude
    ]
    within: list[tuple[int, int]] = []
    if mode in ("within", "both"):
        by_figure: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for row, value in scored:
            by_figure[figure_ids[row]].append((row, value))
        for members in by_figure.values():
            for i, (row_a, score_a) in enumerate(members):
                for row_b, score_b in members[i + 1 :]:
                    if score_a != score_b:
                        within.append((row_a, row_b) if score_a > score_b else (row_b, row_a))
    across: list[tuple[int, int]] = []
    if mode in ("across", "both"):
        share = cap - min(len(within), cap // 2) if mode == "both" else cap
        across = _across_figures(scored, figure_ids, share, rng)
    room = cap - len(across)
    if len(within) > room:
        within = [within[i] for i in sorted(rng.choice(len(within), room, replace=False))]
    chosen = within + across
    if not chosen:
        return Pairs.empty()
    preferred, other = zip(*chosen, strict=True)
    return Pairs.from_lists(list(preferred), list(other), 1.0)


def _across_figures(
    scored: list[tuple[int, float]], figure_ids: Sequence[str], wanted: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Up to ``wanted`` distinct pairs of candidates with different scores and different figures.

    Pairs are drawn uniformly among all such pairs, in vectorised rounds.
    """
    if wanted <= 0 or len(scored) < 2:
        return []
    rows = np.array([row for row, _ in scored], dtype=np.int64)
    values = np.array([value for _, value in scored], dtype=np.float64)
    _, figure_codes = np.unique(np.array([figure_ids[row] for row in rows]), return_inverse=True)
    _, level_sizes = np.unique(values, return_counts=True)
    wanted = int(min(wanted, (len(values) ** 2 - (level_sizes.astype(np.float64) ** 2).sum()) / 2))
    seen: set[tuple[int, int]] = set()
    for _ in range(20):
        need = wanted - len(seen)
        if need <= 0:
            break
        a = rng.integers(len(rows), size=2 * need + 64)
        b = rng.integers(len(rows), size=2 * need + 64)
        usable = (values[a] != values[b]) & (figure_codes[a] != figure_codes[b])
        a, b = a[usable], b[usable]
        high = np.where(values[a] > values[b], a, b)
        low = np.where(values[a] > values[b], b, a)
        for pair in zip(rows[high].tolist(), rows[low].tolist(), strict=True):
            if len(seen) >= wanted:
                break
            seen.add(pair)
    return sorted(seen)


def split_by_figure(
    pairs: Pairs, figure_ids: Sequence[str], fraction: float, seed: int
) -> tuple[Pairs, Pairs, set[str], int]:
    """``(train, held_out, held_out_figures, dropped)``: no figure has pairs on both sides.

    Figures are drawn at random until about ``fraction`` of the pairs are held
    out; a pair linking a held-out and a training figure is dropped (counted).
    """
    if len(pairs) == 0 or fraction <= 0:
        return pairs, Pairs.empty(), set(), 0
    figures_a = np.array([figure_ids[i] for i in pairs.preferred])
    figures_b = np.array([figure_ids[i] for i in pairs.other])
    figures = sorted(set(figures_a) | set(figures_b))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(figures))
    counts: defaultdict[str, int] = defaultdict(int)
    for a, b in zip(figures_a, figures_b, strict=True):
        counts[a] += 1
        if b != a:
            counts[b] += 1
    held: set[str] = set()
    target = fraction * len(pairs)
    total = 0
    for position in order:
        if total >= target or len(held) >= len(figures) - 1:
            break
        held.add(figures[position])
        total += counts[figures[position]]
    in_a = np.isin(figures_a, list(held))
    in_b = np.isin(figures_b, list(held))
    held_mask = in_a & in_b
    train_mask = ~in_a & ~in_b
    return pairs.subset(train_mask), pairs.subset(held_mask), held, int((~held_mask & ~train_mask).sum())


@dataclass
class PairCounts:
    """How many pairs of each kind a training run had (``metrics.json`` → ``pairs``)."""

    human_pairs: int
    """Clinician pairs naming two known candidates."""
    human_pairs_unknown_candidates: int
    """Clinician pairs naming a candidate that is not among the candidates (skipped)."""
    human_train: int
    human_held_out: int
    model_pairs: int
    """Judge pairs in training: from scores, and pairwise verdicts (preference records of source ``model``)."""
    model_verdict_pairs: int
    """Of the judge pairs, those from pairwise verdicts (before the split)."""
    held_out: int
    held_out_figures: int
    dropped_crossing_split: int
    """Pairs linking a held-out and a training figure (in neither part)."""


@dataclass
class TrainingPairs:
    """The pairs of one training run, over the rows of one feature set."""

    train: Pairs
    held_out: Pairs
    held_out_source: str | None
    """``"human"`` (clinician pairs), ``"model"`` (judge pairs, when there are no clinician pairs), or
    ``None`` when nothing is held out."""
    counts: PairCounts


def training_pairs(
    candidate_ids: Sequence[str],
    figure_ids: Sequence[str],
    config: SelectorConfig,
    *,
    preferences: Iterable[Preference] = (),
    scores: Mapping[str, float] | None = None,
) -> TrainingPairs:
    """Training and held-out pairs for candidates ``candidate_ids`` (of figures ``figure_ids``).

    Preference records of source ``human`` are clinician pairs (each x
    ``config.human_weight``), split by figure (``config.held_out``).  Judge
    pairs come from ``scores`` (:func:`model_pairs`) and from preference
    records of source ``model`` (a judge's pairwise verdicts, weight 1); none
    of them touches a held-out figure.  Without clinician pairs to hold out,
    judge pairs are split by figure instead and the held-out part is theirs.
    """
    preferences = list(preferences)
    index = {cid: row for row, cid in enumerate(candidate_ids)}
    human = preference_pairs(preferences, index, config.human_weight)
    train_human, held_human, held_figures, crossing = split_by_figure(
        human.pairs, figure_ids, config.held_out, config.seed
    )
    from_scores = model_pairs(
        scores or {}, index, figure_ids, mode=config.model_pairs, cap=config.max_model_pairs,
        seed=config.seed, exclude_figures=held_figures,
    )
    verdicts = preference_pairs(preferences, index, 1.0, source="model").pairs
    touches_held = np.isin([figure_ids[i] for i in verdicts.preferred], list(held_figures)) | np.isin(
        [figure_ids[i] for i in verdicts.other], list(held_figures)
    )
    judge = from_scores + verdicts.subset(~touches_held)
    held, held_source, train_judge = held_human, "human", judge
    if len(held_human) == 0 and len(judge) > 0 and config.held_out > 0:
        train_judge, held, held_figures, crossing = split_by_figure(
            judge, figure_ids, config.held_out, config.seed
        )
        held_source = "model"
    counts = PairCounts(
        human_pairs=len(human.pairs),
        human_pairs_unknown_candidates=human.unknown,
        human_train=len(train_human),
        human_held_out=len(held_human),
        model_pairs=len(train_judge),
        model_verdict_pairs=len(verdicts),
        held_out=len(held),
        held_out_figures=len(held_figures),
        dropped_crossing_split=crossing,
    )
    return TrainingPairs(train_human + train_judge, held, held_source if len(held) else None, counts)
