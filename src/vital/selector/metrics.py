"""Agreement with held-out preference pairs, as the reference implementation measures it.

All functions take the scores of the preferred and the other candidate of
each pair (aligned arrays).  AUC, mean rank and MAP pool the two columns into
one ranked list (preferred = positive), exactly as the reference does:
mean rank is the mean 0-based position of the positives divided by the list
length (lower is better; 0.25 is perfect for a balanced list), and MAP averages,
over the positives, the share of positives at or above each one's position.
"""

from __future__ import annotations

import numpy as np


def agreement(preferred: np.ndarray, other: np.ndarray) -> float:
    """Share of pairs ordered like the annotator (a tie counts one half)."""
    if len(preferred) == 0:
        return float("nan")
    return float(np.mean((preferred > other) + 0.5 * (preferred == other)))


def _pooled(preferred: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([preferred, other]).astype(np.float64)
    labels = np.concatenate([np.ones(len(preferred)), np.zeros(len(other))])
    return scores, labels


def auc(preferred: np.ndarray, other: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(preferred) == 0:
        return float("nan")
    scores, labels = _pooled(preferred, other)
    return float(roc_auc_score(labels, scores))


def _positive_ranks(preferred: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, int]:
    scores, labels = _pooled(preferred, other)
    order = np.argsort(-scores, kind="stable")
    return np.flatnonzero(labels[order] == 1), len(scores)


def mean_rank(preferred: np.ndarray, other: np.ndarray) -> float:
    if len(preferred) == 0:
        return float("nan")
    ranks, total = _positive_ranks(preferred, other)
    return float(ranks.mean() / total)


def mean_average_precision(preferred: np.ndarray, other: np.ndarray) -> float:
    if len(preferred) == 0:
        return float("nan")
    ranks, _ = _positive_ranks(preferred, other)
    precisions = np.arange(1, len(ranks) + 1) / (ranks + 1)
    return float(precisions.mean())


def pair_metrics(preferred: np.ndarray, other: np.ndarray) -> dict[str, float]:
    return {
        "pairs": int(len(preferred)),
        "agreement": agreement(preferred, other),
        "auc": auc(preferred, other),
        "mean_rank": mean_rank(preferred, other),
        "map": mean_average_precision(preferred, other),
    }
