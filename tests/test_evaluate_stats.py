"""Bootstrap intervals and paired tests, against closed forms and hand-computed values (vital.evaluate.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vital.evaluate.stats import bootstrap_interval, bootstrap_means, mcnemar_exact, sign_flip_p_value


@pytest.mark.parametrize(
    ("only_a", "only_b", "expected"),
    [
        (1, 6, 2 * (1 + 7) / 2**7),  # P(X <= 1) for Binomial(7, 1/2), doubled
        (8, 2, 2 * (1 + 10 + 45) / 2**10),
        (0, 5, 2 / 2**5),
        (3, 3, 1.0),  # doubled tail above 1 is capped
        (0, 0, 1.0),
    ],
)
def test_mcnemar_exact_against_hand_computed_values(only_a: int, only_b: int, expected: float) -> None:
    assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_exact_for_large_counts_stays_finite() -> None:
    p = mcnemar_exact(20_000, 21_000)
    # normal approximation with continuity correction: z = (|b - c| - 1) / sqrt(b + c)
    z = (1000 - 1) / math.sqrt(41_000)
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.05)


@pytest.mark.parametrize("distinct", [2, 5000])
def test_bootstrap_means_by_counts_and_by_indices_agree(distinct: int) -> None:
    """Few distinct values are resampled as multinomial counts, many as indices: the same distribution."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, distinct, 20_000) / distinct
    means = bootstrap_means(values, 2000, 1)
    assert means.mean() == pytest.approx(values.mean(), abs=0.002)
    assert means.std() == pytest.approx(values.std() / math.sqrt(len(values)), rel=0.1)


def test_bootstrap_interval_of_a_proportion_is_the_binomial_interval() -> None:
    values = np.array([1.0] * 300 + [0.0] * 200)
    low, high = bootstrap_interval(values, 5000, 0)
    half = 100 * 1.96 * math.sqrt(0.6 * 0.4 / 500)
    assert (low, high) == (pytest.approx(60 - half, abs=0.5), pytest.approx(60 + half, abs=0.5))
    assert bootstrap_interval(values, 0, 0) is None and bootstrap_interval(np.array([]), 100, 0) is None
    assert bootstrap_interval(values, 500, 7) == bootstrap_interval(values, 500, 7)


def test_sign_flip_p_value() -> None:
    assert sign_flip_p_value(np.zeros(50), 999, 0) == 1.0  # no difference at all
    assert sign_flip_p_value(np.full(30, 0.2), 999, 0) == pytest.approx(1 / 1000)  # every question better
    # one question differs: any sign arrangement is as extreme
    assert sign_flip_p_value(np.array([0.0] * 20 + [0.7]), 999, 0) == 1.0
    # many distinct differences (the index path) centred on 0: not significant
    noise = np.random.default_rng(3).normal(0, 1, 5000)
    assert sign_flip_p_value(noise - noise.mean(), 999, 0) > 0.5
