"""scoring/stats.py: rates with their intervals, paired tests, Holm's correction."""
from __future__ import annotations

import math

import numpy as np
import pytest

from medadapt.scoring.stats import (
    bootstrap_ci,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    paired_test,
    rate,
    sign_flip_test,
    wilson_ci,
)

# ---- rates and bootstrap ----------------------------------------------------------------------


def test_rate_known_values():
    result = rate([1, 0, 1, 1], samples=500, seed=1)
    assert result["value"] == 0.75 and result["n"] == 4
    assert 0.0 <= result["low"] <= 0.75 <= result["high"] <= 1.0
    assert result["low"] < result["high"]
    # None is left out, booleans count as 0/1
    assert rate([True, None, False, None], samples=200)["value"] == 0.5
    assert rate([True, None, False, None], samples=200)["n"] == 2
    assert rate([], samples=200) == {"value": None, "low": None, "high": None, "n": 0}
    assert rate([None, None]) == {"value": None, "low": None, "high": None, "n": 0}


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_rate_of_proportions_is_wilson():
    # 10 of 10 right: a percentile bootstrap says [1, 1]; Wilson says the rate may be ~0.72
    low, _ = wilson_by_hand(10, 10)
    assert rate([1.0] * 10, samples=200) == {"value": 1.0, "low": round(low, 4), "high": 1.0, "n": 10}
    assert rate([0] * 12) == {"value": 0.0, "low": 0.0, "high": round(wilson_by_hand(0, 12)[1], 4), "n": 12}
    low, high = wilson_by_hand(3, 4)
    assert rate([1, 0, 1, 1]) == {"value": 0.75, "low": round(low, 4), "high": round(high, 4), "n": 4}
    assert wilson_ci(3, 4) == pytest.approx((low, high))
    assert rate([True, False, None], binary=True)["low"] == round(wilson_by_hand(1, 2)[0], 4)


def test_rate_of_continuous_scores_is_bootstrap():
    scores = [0.2, 0.5, 1.0, 0.0, 0.75, 0.4]
    low, high = bootstrap_ci(scores, 300, seed=2)
    assert rate(scores, 300, seed=2) == {"value": round(float(np.mean(scores)), 4), "low": round(low, 4),
                                         "high": round(high, 4), "n": 6}
    # binary=False keeps the bootstrap for a continuous score that happens to be all 0/1 here
    low, high = bootstrap_ci([1.0] * 5 + [0.0], 300, seed=2)
    assert rate([1.0] * 5 + [0.0], 300, seed=2, binary=False)["low"] == round(low, 4)
    with pytest.raises(ValueError):
        rate([0.5, 1.0], binary=True)


def test_rate_is_seeded():
    values = [1, 0, 0, 1, 1, 0, 1, 0, 0, 0]
    assert rate(values, 300, seed=5) == rate(values, 300, seed=5)


def test_bootstrap_interval_width_shrinks_with_n():
    rng = np.random.default_rng(3)
    small = rng.binomial(1, 0.5, 50)
    large = rng.binomial(1, 0.5, 2000)
    low_s, high_s = bootstrap_ci(small, 1000, seed=0)
    low_l, high_l = bootstrap_ci(large, 1000, seed=0)
    assert (high_l - low_l) < (high_s - low_s)
    # +-1.96 * sqrt(p(1-p)/n) ~ 0.044 for n = 2000
    assert (high_l - low_l) == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 2000), rel=0.25)


def test_bootstrap_ci_covers_true_mean():
    rng = np.random.default_rng(1234)
    covered = 0
    for trial in range(200):
        sample = rng.binomial(1, 0.3, 100)
        result = rate(sample, samples=1000, seed=trial)
        covered += result["low"] <= 0.3 <= result["high"]
    assert covered >= 180, f"95% interval covered the true mean in only {covered}/200 samples"


def test_paired_bootstrap_identical_lists():
    scores = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
    result = paired_bootstrap(scores, list(scores), samples=500, seed=0)
    assert result["diff"] == 0.0
    assert result["p_value"] == 1.0
    assert result["low"] == 0.0 and result["high"] == 0.0
    assert result["n"] == 10


def test_paired_bootstrap_clearly_better():
    rng = np.random.default_rng(7)
    b = rng.binomial(1, 0.3, 100)
    a = np.maximum(b, rng.binomial(1, 0.6, 100))  # a is right wherever b is, and more often
    result = paired_bootstrap(a, b, samples=1000, seed=0)
    assert result["diff"] == pytest.approx(float(np.mean(a) - np.mean(b)), abs=1e-4)
    assert result["diff"] > 0.2
    assert result["p_value"] < 0.05
    assert result["low"] > 0
    reverse = paired_bootstrap(b, a, samples=1000, seed=0)
    assert reverse["diff"] == -result["diff"]
    assert reverse["p_value"] < 0.05 and reverse["high"] < 0


def test_paired_bootstrap_no_clear_difference():
    rng = np.random.default_rng(11)
    a = rng.binomial(1, 0.5, 60)
    b = a.copy()
    b[:2] = 1 - b[:2]  # two flipped items: a tiny difference either way
    result = paired_bootstrap(a, b, samples=1000, seed=0)
    assert result["p_value"] > 0.2
    assert result["low"] <= result["diff"] <= result["high"]


def test_paired_bootstrap_rejects_mismatched_lists():
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1, 0, 1])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])


def test_mcnemar_exact_six_to_zero():
    # 6 items right only under a, none only under b: the binomial 2 * (1/2)**6, not 0.008
    a = [1] * 6 + [1, 0, 1, 0]
    b = [0] * 6 + [1, 0, 1, 0]
    result = mcnemar_exact(a, b)
    assert result["p_value"] == pytest.approx(0.03125)
    assert result["discordant"] == [6, 0] and result["n"] == 10 and result["diff"] == 0.6
    assert paired_test(a, b)["p_value"] == pytest.approx(0.03125)
    assert mcnemar_exact(b, a)["p_value"] == pytest.approx(0.03125)


def test_mcnemar_by_hand_and_without_discordant_items():
    # 5 vs 1 discordant: P(X <= 1 or X >= 5), X ~ Bin(6, 1/2) = 2 * 7/64
    a = [1, 1, 1, 1, 1, 0, 1, 0]
    b = [0, 0, 0, 0, 0, 1, 1, 0]
    assert mcnemar_exact(a, b)["p_value"] == pytest.approx(14 / 64)
    assert mcnemar_exact(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact([0.5, 1], [0, 1])


def test_sign_flip_with_one_difference_is_p_one():
    """One item differs (a compare of RadQA F1 on 12 items met it): both signs are as extreme."""
    result = sign_flip_test([0.5, 0.2, 0.3], [0.5, 0.2, 0.1])
    assert result["p_value"] == 1.0 and result["n"] == 3 and result["diff"] == round(0.2 / 3, 4)


def test_sign_flip_exact_by_hand():
    # 3 non-zero differences all positive: 1 of the 8 sign patterns is as large, both tails 2/8;
    # the item with no difference cannot flip and changes nothing
    a = [0.9, 0.7, 0.6, 0.3]
    b = [0.4, 0.2, 0.1, 0.3]
    result = sign_flip_test(a, b)
    assert result["test"] == "sign_flip_exact"
    assert result["p_value"] == pytest.approx(0.25) and not result["p_bound"]
    assert result["n"] == 4 and result["diff"] == pytest.approx(0.375)
    # differences 0.5, -0.1, 0.2: patterns with sum >= 0.6: (+,+,+) 0.8 and (+,-,+) 0.6 ... of 8
    result = sign_flip_test([0.5, 0.0, 0.2], [0.0, 0.1, 0.0])
    assert result["p_value"] == pytest.approx(2 * 2 / 8)
    assert sign_flip_test([0.5, 0.2], [0.5, 0.2])["p_value"] == 1.0
    assert paired_test([0.5, 0.7], [0.1, 0.2])["test"] == "sign_flip_exact"


def test_sign_flip_monte_carlo_is_seeded_and_never_zero():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 0.5, 40)
    a = b + rng.uniform(0.1, 0.3, 40)  # every difference positive: no resample is as extreme
    result = sign_flip_test(a, b, permutations=999, seed=3)
    assert result["test"] == "sign_flip_monte_carlo"
    assert result["p_bound"] and result["p_value"] == pytest.approx(2 / 1000)
    assert sign_flip_test(a, b, permutations=999, seed=3) == result
    noisy = sign_flip_test(rng.uniform(0, 1, 40), rng.uniform(0, 1, 40), permutations=999, seed=3)
    assert not noisy["p_bound"] and noisy["p_value"] > 0.002


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
