"""Power, minimum detectable difference and sample size for the paired tests `compare` runs.

At 100 items per dataset most differences between two methods cannot be detected; this module
says how large a difference could be, and how many items (and training seeds) a given one needs.

**The exact McNemar test (0/1 scores), computed exactly.** Two methods scored on the same n
items: each item is discordant (right under one method only) with probability `p_disc`, and a
discordant item favours method a with probability pi. The difference of the two accuracies is
delta = p_disc * (2 pi - 1), so pi = 1/2 + delta / (2 p_disc), and delta can be at most p_disc.
The number of discordant items is D ~ Binomial(n, p_disc) and, given D = d, the number
favouring a is K ~ Binomial(d, pi). The test rejects when the two-sided exact binomial p of
(K, d) is below alpha (strictly, as `compare` stars adjusted p < alpha); its rejection region
is both tails beyond a critical count c(d). Hence

    power = sum_d P(D = d) * [P(K <= c(d)) + P(K >= d - c(d))],

summed over every d with P(D = d) > 1e-16 (scipy's binom; the rest of the sum is below 1e-15).
Nothing is simulated. The first step of Holm's correction over m tests compares p with
alpha / m, so `family_size=m` gives the power and detectable difference of the family's most
significant test (Bonferroni; later Holm steps need less).

Power here holds `p_disc` fixed, as a pilot measures it (two methods' answers on the same
items), and varies the direction of the discordant items. Because D is discrete, power
saw-tooths in n: `items_needed` returns the first n that reaches the power asked for.

**Continuous scores, and several training seeds: normal approximation.** The sign-flip test's
power is not computed exactly here; a paired mean difference with per-item SD sigma_d on n
items has MDE = (z_{1 - alpha/2} + z_{power}) * sqrt(Var), with Var = sigma_d^2 / n.

With s training seeds per method, method M's score on item i at seed j is
    y_Mij = mu_M + u_Mj + b_Mi + e_Mij,
u_Mj ~ (0, sigma_seed_M^2) the seed's shift of the whole run, b_Mi the item's (difficulty and
method-by-item) part, the same for every seed, and e_Mij the item-by-seed residual. The
difference of the two methods' means over s seeds each (independent training runs) and the
same n items has

    Var = (sigma_seed_a^2 + sigma_seed_b^2) / s + (sigma_item^2 + (sigma_res_a^2 + sigma_res_b^2) / s) / n,

sigma_item^2 = Var_i(b_ai - b_bi). Items average out the item terms, seeds the seed and residual
terms; no number of items removes (sigma_seed_a^2 + sigma_seed_b^2) / s. From one seed per
method only sigma_d^2 = sigma_item^2 + sigma_res_a^2 + sigma_res_b^2 is seen: calling all of it
sigma_item^2 (residuals 0) is the conservative plan, as more seeds then shrink only the seed
term. A method that is not trained (base, icl) has sigma_seed = sigma_res = 0 (evaluation is
deterministic). `scoring.seeds.variance_components` estimates the components from a seed grid.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binom, norm

TAIL = 1e-16  # P(D = d) below this is left out of the power sum
BLOCK = 64  # sample sizes whose power `mcnemar_items_needed` computes in one array


# ---- the exact McNemar test -------------------------------------------------------------------


def mcnemar_critical(d, alpha: float):
    """The largest k whose exact two-sided McNemar p of (k, d) is below alpha, per d (-1: none).

    Under the null K ~ Binomial(d, 1/2) is symmetric, so p(k) = min(1, 2 P(K <= k)) for k <= d/2
    and the rejection region is {K <= c} and {K >= d - c}.
    """
    d = np.asarray(d, dtype=int)
    k = binom.ppf(alpha / 2, d, 0.5).astype(int)  # smallest k with P(K <= k) >= alpha/2
    return np.where(2 * binom.cdf(k, d, 0.5) < alpha, k, k - 1)


def rejection_probability(d, pi: float, alpha: float):
    """P(the exact McNemar test rejects | d discordant items, each favouring a with prob pi)."""
    d = np.asarray(d, dtype=int)
    c = mcnemar_critical(d, alpha)
    # c < d/2 always (alpha < 1), so the two tails never overlap
    return np.where(c >= 0, binom.cdf(c, d, pi) + binom.sf(d - c - 1, d, pi), 0.0)


def _alpha(alpha: float, family_size: int) -> float:
    if family_size < 1:
        raise ValueError("family_size counts tests: at least 1")
    return alpha / family_size


def _pi(p_disc: float, difference: float) -> float:
    if not 0 < p_disc <= 1:
        raise ValueError("p_disc, the share of discordant items, must be in (0, 1]")
    if abs(difference) > p_disc + 1e-12:
        raise ValueError(f"a difference of {difference} needs at least that share of discordant items, not {p_disc}")
    return min(1.0, max(0.0, 0.5 + difference / (2 * p_disc)))


def _window(n: int, p_disc: float) -> np.ndarray:
    """The discordant counts d with P(D = d) above TAIL (the rest of the sum is below 1e-15)."""
    low, high = int(binom.ppf(TAIL, n, p_disc)), int(binom.isf(TAIL, n, p_disc))
    return np.arange(max(low - 1, 0), min(high + 1, n) + 1)


def mcnemar_power(n: int, p_disc: float, difference: float, alpha: float = 0.05, family_size: int = 1) -> float:
    """Exact power of the exact McNemar test on n paired items (see the module docstring).

    `difference` is p_a - p_b (either sign), `p_disc` the share of items the two methods answer
    differently, `alpha / family_size` the level the p-value must be below.
    """
    pi, level = _pi(p_disc, difference), _alpha(alpha, family_size)
    d = _window(n, p_disc)
    return float(np.dot(binom.pmf(d, n, p_disc), rejection_probability(d, pi, level)))


def mcnemar_mde(n: int, p_disc: float, alpha: float = 0.05, family_size: int = 1, power: float = 0.8) -> float | None:
    """The smallest difference the exact McNemar test detects with `power` (None: not even a
    difference of p_disc, every discordant item one way, reaches it at this n and level).

    Power rises with the difference for a fixed p_disc (the rejection region is symmetric and
    each tail's probability is monotone in pi), so the root is unique.
    """
    if mcnemar_power(n, p_disc, p_disc, alpha, family_size) < power:
        return None
    return float(brentq(lambda x: mcnemar_power(n, p_disc, x, alpha, family_size) - power, 0.0, p_disc, xtol=1e-6))


def mcnemar_items_needed(difference: float, p_disc: float, alpha: float = 0.05, family_size: int = 1,
                         power: float = 0.8, max_items: int = 200_000) -> int | None:
    """The first n at which the exact McNemar test reaches `power` for `difference` at this
    discordance (None beyond `max_items`). Every n from 1 up is tried, BLOCK at a time: power
    saw-tooths in n, so a slightly larger n can fall a little short again."""
    pi, level = _pi(p_disc, difference), _alpha(alpha, family_size)
    reject = np.zeros(0)  # P(reject | d) for d = 0, 1, ...: the same for every n, computed once
    for first in range(1, max_items + 1, BLOCK):
        ns = np.arange(first, min(first + BLOCK, max_items + 1))
        if ns[-1] >= len(reject):
            reject = rejection_probability(np.arange(min(2 * ns[-1] + 64, max_items) + 1), pi, level)
        d = np.arange(_window(int(ns[0]), p_disc)[0], _window(int(ns[-1]), p_disc)[-1] + 1)
        powers = binom.pmf(d[None, :], ns[:, None], p_disc) @ reject[d]  # pmf is 0 where d > n
        reached = np.flatnonzero(powers >= power)
        if len(reached):
            return int(ns[reached[0]])
    return None


def discordance(a, b) -> float:
    """The share of paired items on which two 0/1 score lists differ."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or len(a) == 0:
        raise ValueError("discordance needs two equal-length, non-empty score lists")
    return float(np.mean(a != b))


# ---- normal approximation: continuous scores, seeds --------------------------------------------


def _z(alpha: float, family_size: int, power: float) -> float:
    return float(norm.isf(_alpha(alpha, family_size) / 2) + norm.ppf(power))


def normal_mde(sd: float, n: int, alpha: float = 0.05, family_size: int = 1, power: float = 0.8) -> float:
    """MDE of a paired mean difference with per-item SD `sd` on n items (normal approximation)."""
    return _z(alpha, family_size, power) * sd / math.sqrt(n)


def normal_items_needed(difference: float, sd: float, alpha: float = 0.05, family_size: int = 1,
                        power: float = 0.8) -> int:
    """Items for a paired mean difference with per-item SD `sd` (normal approximation)."""
    if difference <= 0:
        raise ValueError("the difference to detect must be positive")
    return max(1, math.ceil((_z(alpha, family_size, power) * sd / difference) ** 2))


class Components(NamedTuple):
    """Variance components of two methods' scores (see the module docstring); 0 for an untrained method."""

    item: float  # sigma_item^2: per-item variance of the difference that persists across seeds
    seed_a: float = 0.0  # sigma_seed^2 of method a's mean
    seed_b: float = 0.0
    residual_a: float = 0.0  # sigma_res^2: item-by-seed variance of method a's scores
    residual_b: float = 0.0


def difference_variance(n: int, seeds: int, c: Components) -> float:
    """Var of mean_a - mean_b over n shared items and `seeds` training seeds per method."""
    if n < 1 or seeds < 1:
        raise ValueError("n and seeds must be at least 1")
    return (c.seed_a + c.seed_b) / seeds + (c.item + (c.residual_a + c.residual_b) / seeds) / n


def seeds_mde(n: int, seeds: int, c: Components, alpha: float = 0.05, family_size: int = 1,
              power: float = 0.8) -> float:
    """MDE of the seed-averaged difference at n items and `seeds` seeds (normal approximation)."""
    return _z(alpha, family_size, power) * math.sqrt(difference_variance(n, seeds, c))


def seeds_needed(difference: float, n: int, c: Components, alpha: float = 0.05, family_size: int = 1,
                 power: float = 0.8, max_seeds: int = 1000) -> int | None:
    """The fewest seeds per method that detect `difference` at n items (None: more items are
    needed first, as the item term alone is too large, or beyond `max_seeds`)."""
    for seeds in range(1, max_seeds + 1):
        if seeds_mde(n, seeds, c, alpha, family_size, power) <= difference:
            return seeds
    return None
