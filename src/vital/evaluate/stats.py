"""Uncertainty for evaluation numbers: bootstrap intervals, paired tests.

Every headline number of ``vital eval`` is a mean over questions of a
per-question score (1/0 for a closed question, the question's recall for an
open one, model/reference for a chat answer, 1/½/0 for a win/tie/loss), so
three tools cover all of them:

* :func:`bootstrap_interval` — the 95 % percentile bootstrap interval of a
  mean, resampling the questions with replacement;
* :func:`mcnemar_exact` — McNemar's exact test for two 0/1 scores of the same
  questions (only the questions where they disagree matter);
* :func:`sign_flip_p_value` — a paired permutation test for any other score:
  under the null hypothesis the two systems are exchangeable on every
  question, so each per-question difference is as likely negated.

Resampling is vectorised.  A sample of *m* scores with only *d* distinct
values is resampled exactly as multinomial counts of those values (cost
``resamples × d``: a 0/1 score costs two numbers per resample, whatever *m*);
scores with many distinct values are resampled by drawing indices in blocks
(cost ``resamples × m``).  Each call takes its own seed, so adding a metric
never changes another metric's interval.
"""

from __future__ import annotations

import math

import numpy as np

# Resample through distinct values when they are fewer than this share of the sample (each distinct value
# costs a binomial draw, about 15 times an index draw).
_DISTINCT_SHARE = 1 / 16
_BLOCK_CELLS = 4_000_000  # indices drawn at once when resampling by index


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(distinct values, counts)`` when resampling through them is the cheaper way, else ``None``."""
    distinct, counts = np.unique(values, return_counts=True)
    return (distinct, counts) if len(distinct) <= max(2, len(values) * _DISTINCT_SHARE) else None


def bootstrap_means(values: np.ndarray, resamples: int, seed: int | list[int]) -> np.ndarray:
    """The means of ``resamples`` bootstrap resamples of ``values`` (same size, with replacement)."""
    values = np.asarray(values, dtype=float)
    m = len(values)
    rng = np.random.default_rng(seed)
    grouped = _distinct(values)
    if grouped is not None:
        distinct, counts = grouped
        draws = rng.multinomial(m, counts / m, size=resamples)
        return draws @ distinct / m
    means = np.empty(resamples)
    block = max(1, _BLOCK_CELLS // m)
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        means[start : start + size] = values[rng.integers(0, m, (size, m))].mean(axis=1)
    return means


def bootstrap_interval(
    values: np.ndarray, resamples: int, seed: int | list[int], *, scale: float = 100.0
) -> list[float] | None:
    """``[low, high]``: the 95 % percentile bootstrap interval of ``scale × mean(values)``.

    ``None`` without values or with ``resamples == 0``.
    """
    if resamples <= 0 or len(values) == 0:
        return None
    low, high = np.percentile(bootstrap_means(values, resamples, seed), [2.5, 97.5])
    return [float(scale * low), float(scale * high)]


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    ``only_a`` questions are right for A and wrong for B, ``only_b`` the other
    way round.  Under the null each discordant question is a fair coin, so
    p = min(1, 2 × P(Binomial(only_a + only_b, ½) ≤ min(only_a, only_b))).
    """
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    # in log space: the binomial coefficients of a large n overflow floats
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
    top = max(terms)
    tail = math.exp(top - n * math.log(2)) * math.fsum(math.exp(t - top) for t in terms)
    return min(1.0, 2 * tail)


def sign_flip_p_value(differences: np.ndarray, resamples: int, seed: int | list[int]) -> float | None:
    """Two-sided paired permutation p-value of ``mean(differences) != 0``.

    Each resample negates every difference with probability ½; p is the
    share of resamples whose mean is at least as far from 0 as the observed
    one, counting the observed arrangement (so p ≥ 1 / (resamples + 1), and
    p = 1 when every difference is 0).
    """
    differences = np.asarray(differences, dtype=float)
    m = len(differences)
    if resamples <= 0 or m == 0:
        return None
    observed = abs(differences.sum())
    rng = np.random.default_rng(seed)
    grouped = _distinct(differences)
    if grouped is not None:
        distinct, counts = grouped
        # the negated items among the c copies of a value are Binomial(c, ½): the sum changes by -2 v per item
        negated = rng.binomial(counts, 0.5, size=(resamples, len(counts)))
        sums = (counts - 2 * negated) @ distinct
    else:
        sums = np.empty(resamples)
        block = max(1, _BLOCK_CELLS // m)
        for start in range(0, resamples, block):
            size = min(block, resamples - start)
            signs = np.where(rng.random((size, m)) < 0.5, -1.0, 1.0)
            sums[start : start + size] = signs @ differences
    tolerance = 1e-9 * max(1.0, observed)  # float sums of the same terms in another order
    extreme = int(np.count_nonzero(np.abs(sums) >= observed - tolerance))
    return (extreme + 1) / (resamples + 1)
