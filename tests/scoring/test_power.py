"""scoring.power: the exact McNemar power against brute-force enumeration and the figures of issue
20; the normal-approximation plans; the seed variance formula against exact enumeration;
scoring.seeds (two-level bootstrap, spread, variance components); the `power` command."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binomtest, multinomial, norm

from medadapt.scoring import power, seeds

# ---- the exact McNemar test ---------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 0.05 / 40, 0.01])
def test_critical_region_is_where_the_exact_test_rejects(alpha):
    for d in range(41):
        c = int(power.mcnemar_critical(d, alpha))
        rejected = {k for k in range(d + 1) if d and binomtest(k, d).pvalue < alpha}
        assert rejected == {k for k in range(d + 1) if k <= c or k >= d - c}, (d, c)


def brute_force_power(n: int, p10: float, p01: float, level: float) -> float:
    """Every outcome (n10, n01, concordant) of n items, its multinomial probability, and whether
    scipy's exact binomial test on the discordant items rejects at `level`."""
    total = 0.0
    for n10 in range(n + 1):
        for n01 in range(n - n10 + 1):
            d = n10 + n01
            p = binomtest(n10, d).pvalue if d else 1.0
            if p < level:
                total += multinomial.pmf([n10, n01, n - d], n, [p10, p01, 1 - p10 - p01])
    return total


@pytest.mark.parametrize("n, p10, p01, family", [(12, 0.3, 0.05, 1), (12, 0.05, 0.3, 1), (15, 0.25, 0.15, 1),
                                                 (16, 0.4, 0.0, 3), (10, 0.1, 0.1, 1), (14, 0.5, 0.2, 2)])
def test_power_equals_brute_force_enumeration(n, p10, p01, family):
    expected = brute_force_power(n, p10, p01, 0.05 / family)
    got = power.mcnemar_power(n, p10 + p01, p10 - p01, 0.05, family)
    assert got == pytest.approx(expected, abs=1e-12)
    if p10 == p01:  # under the null the exact test keeps its level
        assert got <= 0.05


def test_issue_20_figures_at_n_100():
    """Issue 20: at n = 100 and 15-45% discordance, MDE 11-20 points at alpha 0.05, 22-28 at the
    first Holm step over 40 tests; power for +5 points 0.09-0.18; 10 safety prompts: min p 0.002."""
    low, high = power.mcnemar_mde(100, 0.15), power.mcnemar_mde(100, 0.45)
    assert round(low, 3) == 0.110 and round(high, 3) == 0.192  # "11-20 points"
    assert round(power.mcnemar_power(100, 0.15, 0.05), 2) == 0.18
    assert round(power.mcnemar_power(100, 0.45, 0.05), 2) == 0.09  # "0.09-0.18"
    # alpha / 40: the upper end matches (27.0 points at 45%, 28.2 at 49%) ...
    assert round(power.mcnemar_mde(100, 0.45, family_size=40), 3) == 0.270
    assert round(power.mcnemar_mde(100, 0.49, family_size=40), 3) == 0.282
    # ... the lower end cannot: at 15% discordance no difference exceeds 15 points; 22 points is
    # the MDE at about 30% discordance
    assert round(power.mcnemar_mde(100, 0.15, family_size=40), 3) == 0.144
    assert round(power.mcnemar_mde(100, 0.30, family_size=40), 3) == 0.218
    # 10 safety prompts: the smallest possible p, every item discordant one way, is 2 / 2**10
    smallest = binomtest(10, 10).pvalue
    assert smallest == pytest.approx(0.00195, abs=1e-5) and smallest > 0.05 / 40
    assert power.mcnemar_mde(10, 1.0, family_size=40) is None
    assert power.mcnemar_power(10, 1.0, 1.0, 0.05, 40) == 0.0


def test_mde_is_where_power_crosses_the_target():
    mde = power.mcnemar_mde(100, 0.3, family_size=5)
    assert power.mcnemar_power(100, 0.3, mde, 0.05, 5) == pytest.approx(0.8, abs=1e-4)
    assert power.mcnemar_power(100, 0.3, mde - 0.01, 0.05, 5) < 0.8
    assert power.mcnemar_mde(100, 0.3, power=0.5) < power.mcnemar_mde(100, 0.3)


def test_items_needed_is_the_first_n_that_reaches_the_power():
    n = power.mcnemar_items_needed(0.10, 0.25)
    assert power.mcnemar_power(n, 0.25, 0.10) >= 0.8
    assert all(power.mcnemar_power(k, 0.25, 0.10) < 0.8 for k in range(1, n))
    assert power.mcnemar_items_needed(0.10, 0.25, family_size=10) > n
    with pytest.raises(ValueError, match="share of discordant items"):
        power.mcnemar_items_needed(0.10, 0.05)  # 10 points need at least 10% discordant items


def test_discordance():
    assert power.discordance([1, 0, 1, 1], [1, 1, 0, 1]) == 0.5


# ---- normal approximation and seeds -------------------------------------------------------------


def test_normal_plans_are_the_textbook_formula():
    z = norm.isf(0.025) + norm.ppf(0.8)
    assert power.normal_mde(0.3, 100) == pytest.approx(z * 0.3 / 10)
    assert power.normal_items_needed(0.05, 0.3) == math.ceil((z * 0.3 / 0.05) ** 2)
    z5 = norm.isf(0.025 / 5) + norm.ppf(0.8)
    assert power.normal_mde(0.3, 100, family_size=5) == pytest.approx(z5 * 0.3 / 10)


def test_difference_variance_equals_exact_enumeration():
    """y_Mij = u_Mj + b_Mi + e_Mij with every term an independent +-value: enumerate all 2**14
    outcomes of 2 seeds x 2 items for both methods and compare Var(mean_a - mean_b)."""
    sa, sb, item, ra, rb = 0.3, 0.1, 0.4, 0.2, 0.5  # the SDs of the terms
    s, n = 2, 2
    diffs = []
    for signs in itertools.product((-1, 1), repeat=2 * s + n + 2 * s * n):
        signs = np.array(signs, dtype=float)
        ua, ub, b = signs[:s] * sa, signs[s:2 * s] * sb, signs[2 * s:2 * s + n] * item
        ea = signs[2 * s + n:2 * s + n + s * n].reshape(s, n) * ra
        eb = signs[2 * s + n + s * n:].reshape(s, n) * rb
        ya, yb = ua[:, None] + b[None, :] + ea, ub[:, None] + eb  # b: the item part of the difference
        diffs.append(ya.mean() - yb.mean())
    exact = float(np.var(diffs))
    c = power.Components(item=item ** 2, seed_a=sa ** 2, seed_b=sb ** 2, residual_a=ra ** 2, residual_b=rb ** 2)
    assert power.difference_variance(n, s, c) == pytest.approx(exact)


def test_seeds_mde_and_what_neither_items_nor_seeds_can_buy():
    c = power.Components(item=0.3, seed_a=0.02 ** 2, seed_b=0.02 ** 2)
    z = norm.isf(0.025) + norm.ppf(0.8)
    assert power.seeds_mde(100, 3, c) == pytest.approx(z * math.sqrt(0.3 / 100 + 2 * 0.0004 / 3))
    assert power.seeds_mde(100, 5, c) < power.seeds_mde(100, 3, c) < power.seeds_mde(100, 1, c)
    # items without end leave the seed term: 2 sigma_seed^2 / s
    assert power.seeds_mde(10 ** 12, 3, c) == pytest.approx(z * math.sqrt(2 * 0.0004 / 3), rel=1e-4)
    # seeds without end leave the item term, which persists across seeds
    floor = z * math.sqrt(0.3 / 100)
    assert power.seeds_needed(floor * 0.99, 100, c) is None
    needed = power.seeds_needed(0.16, 100, c)
    assert power.seeds_mde(100, needed, c) <= 0.16 < power.seeds_mde(100, needed - 1, c)


def test_two_level_bootstrap_resamples_seeds():
    """No item varies: the difference of means is the mean of 2 seed means drawn from {0, 1}:
    0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4 (SD 0.354)."""
    a = np.array([[0.0] * 5, [1.0] * 5])
    result = seeds.two_level_bootstrap(a, np.zeros((1, 5)), samples=4000, seed=1)
    assert result["diff"] == 0.5 and (result["low"], result["high"]) == (0.0, 1.0)
    assert result["se"] == pytest.approx(math.sqrt(0.125), abs=0.01)
    assert result["spread"]["a"]["sd"] == pytest.approx(0.7071, abs=1e-4)
    assert result["seeds"] == [2, 1] and result["items"] == 5


def test_two_level_bootstrap_adds_item_and_seed_variance():
    """a_ij = u_j + e_i, b = 0: a resample's difference is a seed mean plus an item mean, drawn
    independently, so its variance is var(u)/S + var(e)/n (population variances)."""
    u, e = np.array([0.0, 0.1, 0.3]), np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    result = seeds.two_level_bootstrap(u[:, None] + e[None, :], np.zeros((1, len(e))), samples=8000, seed=2)
    expected = math.sqrt(np.var(u) / len(u) + np.var(e) / len(e))
    assert result["se"] == pytest.approx(expected, rel=0.05)
    one_level = seeds.two_level_bootstrap(np.tile(e, (3, 1)), np.zeros((1, len(e))), samples=8000, seed=2)
    assert one_level["se"] == pytest.approx(math.sqrt(np.var(e) / len(e)), rel=0.05)


def test_seed_spread_and_variance_components():
    assert seeds.seed_spread([[0.5, 0.5], [0.7, 0.7], [0.6, 0.6]])["sd"] == pytest.approx(0.1)
    assert seeds.seed_spread([[1, 0]])["sd"] is None
    # additive seed + item effects, no residual: the seed variance is that of u, the residual 0
    u, item = np.array([0.0, 0.2, 0.1, 0.5]), np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    comp = seeds.method_components(u[:, None] + item[None, :])
    assert comp["residual"] == pytest.approx(0.0, abs=1e-12)
    assert comp["seed"] == pytest.approx(np.var(u, ddof=1))
    # a seed x item interaction that averages to 0 per seed: residual, no seed variance
    wobble = np.array([[0.1, -0.1], [-0.1, 0.1]])
    comp = seeds.method_components(wobble)
    assert comp["seed"] == 0.0 and comp["residual"] == pytest.approx(0.04)
    c = seeds.variance_components(u[:, None] + item[None, :], item[None, :] * 0)
    assert c.item == pytest.approx(np.var(item, ddof=1)) and c.seed_b == 0.0


# ---- the command --------------------------------------------------------------------------------
