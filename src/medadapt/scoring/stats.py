"""Rates with 95% intervals, and the paired tests between two methods on the same items.

Every rate the project reports is `{value, low, high, n}`: on 100 questions a 95% interval is
about +-10 points wide, and a reader should see that before reading a difference into it.

- Intervals: a rate of 0/1 items (accuracy, exact match, unsafe, hallucinated) gets the Wilson
  score interval, which stays honest at small n and at 0 or 1 (a percentile bootstrap of 12
  items that are all right is [1, 1]); a mean of continuous scores (token F1, ROUGE-L, rewards,
  macro-F1) gets the percentile bootstrap.
- Paired tests: the exact McNemar test (binomial on the discordant items) for 0/1 scores, the
  paired sign-flip permutation test for continuous ones (exact when few items differ), and
  Holm's correction across the tests of one table.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest, permutation_test

# Up to this many non-zero paired differences the sign-flip test enumerates all 2**k sign
# patterns (65,536): exact, and still fast.
EXACT_MAX_PAIRS = 16


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def is_binary(values) -> bool:
    """True when every value is 0 or 1 (booleans included)."""
    return bool(np.isin(np.asarray(values, dtype=float), (0.0, 1.0)).all())


def bootstrap_ci(values, samples: int = 1000, seed: int = 0, statistic=np.mean,
                 by_rows: bool = False) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of `statistic` over `values`. With `by_rows`, `statistic`
    takes every resample at once (a [samples, n] array) and returns one value per resample."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    index = _rng(seed).integers(0, len(values), size=(samples, len(values)))
    if by_rows:
        stats = np.asarray(statistic(values[index]), dtype=float)
    elif statistic is np.mean:
        stats = values[index].mean(1)
    else:
        stats = np.array([statistic(values[row]) for row in index])
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def wilson_ci(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion (no continuity correction)."""
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def rate(values, samples: int = 1000, seed: int = 0, binary: bool | None = None) -> dict:
    """Mean of the values with its 95% interval and n; None values are left out.

    `binary=None` chooses by the data: all values 0/1 -> Wilson interval, else the percentile
    bootstrap (`samples` resamples, `seed`). Pass `binary=False` for a continuous score that may
    happen to be all 0/1 on a small sample (token F1), so its interval method does not depend on
    the sample; `binary=True` checks that the values are 0/1.
    """
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"value": None, "low": None, "high": None, "n": 0}
    if binary is None:
        binary = is_binary(values)
    elif binary and not is_binary(values):
        raise ValueError("rate(binary=True) needs values that are all 0 or 1")
    low, high = wilson_ci(sum(values), len(values)) if binary else bootstrap_ci(values, samples, seed)
    return {"value": round(float(np.mean(values)), 4), "low": round(low, 4), "high": round(high, 4), "n": len(values)}


def paired_bootstrap(a, b, samples: int = 1000, seed: int = 0) -> dict:
    """Difference of means a - b on the same items, its bootstrap interval, and a p-value.

    The p-value is the share of resampled differences on the other side of zero, doubled
    (Koehn 2004). It is too small when few items differ (a 6-0 split gives 0.008 where the exact
    test gives 0.031): for p-values use `paired_test`; this is kept for the interval.
    """
    a, b = _pair(a, b)
    diff = a - b
    index = _rng(seed).integers(0, len(diff), size=(samples, len(diff)))
    means = diff[index].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    observed = float(diff.mean())
    if observed == 0:
        p = 1.0
    else:
        p = min(1.0, 2 * float(np.mean(means <= 0) if observed > 0 else np.mean(means >= 0)))
    return {"diff": round(observed, 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "p_value": round(p, 4), "n": len(diff)}


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError("a paired test needs two equal-length, non-empty score lists")
    return a, b


def mcnemar_exact(a, b) -> dict:
    """Exact McNemar test of two 0/1 score lists on the same items (two-sided).

    Only the discordant items carry information: under the null each is equally likely to
    favour a or b, so the count favouring a is Binomial(discordant, 1/2).
    """
    a, b = _pair(a, b)
    if not (is_binary(a) and is_binary(b)):
        raise ValueError("McNemar's test needs 0/1 scores; use sign_flip_test for continuous ones")
    a_only, b_only = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    p = binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0
    return {"test": "mcnemar_exact", "diff": round(float(np.mean(a - b)), 4), "n": len(a),
            "discordant": [a_only, b_only], "p_value": float(p), "p_bound": False}


def sign_flip_test(a, b, permutations: int = 10_000, seed: int = 0) -> dict:
    """Paired sign-flip permutation test of mean(a - b) = 0 (two-sided), by scipy.

    Under the null each item's difference is as likely to have either sign. Items with no
    difference cannot flip and are left out of the null distribution (not of `n`). With at most
    EXACT_MAX_PAIRS non-zero differences every sign pattern is enumerated (exact p); beyond, a
    seeded Monte Carlo of B = `permutations` resamples gives p = 2 min over the tails of
    (b + 1) / (B + 1), b the resamples at least as extreme in that tail: never 0, and a valid
    p-value in its own right (under the null P(p <= alpha) <= alpha, resampling included), but an
    estimate of the exact permutation p, not a bound on it: the exact p may be larger or smaller.
    `p_bound` is True when no resample was as extreme as the data, so `p_value` is 2 / (B + 1),
    the smallest p these resamples can show. The exact p is then likely, not surely, smaller: at
    an exact two-sided p of 4 / B, no resample is as extreme with probability about e^-2 = 0.14;
    with 95% confidence the exact p is below about 6 / B (rule of three per tail).
    """
    a, b = _pair(a, b)
    diff = a - b
    nonzero = diff[diff != 0]
    result = {"diff": round(float(diff.mean()), 4), "n": len(diff), "p_value": 1.0, "p_bound": False}
    if len(nonzero) < 2:  # no difference, or one: its two signs are equally extreme, p = 1 (scipy needs two)
        return {"test": "sign_flip_exact", **result}
    exact = len(nonzero) <= EXACT_MAX_PAIRS
    test = permutation_test((nonzero,), np.mean, permutation_type="samples", vectorized=True,
                            n_resamples=np.inf if exact else permutations, rng=_rng(seed))
    floor = 2 / (permutations + 1)  # scipy's two-sided p when no resample is as extreme
    return {"test": "sign_flip_exact" if exact else "sign_flip_monte_carlo", **result,
            "p_value": float(test.pvalue), "p_bound": bool(not exact and test.pvalue <= floor * (1 + 1e-9))}


def paired_test(a, b, permutations: int = 10_000, seed: int = 0) -> dict:
    """The paired test that fits the scores: exact McNemar for 0/1 scores, sign-flip otherwise."""
    if is_binary(a) and is_binary(b):
        return mcnemar_exact(a, b)
    return sign_flip_test(a, b, permutations, seed)


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (family-wise error control).

    The k-th smallest p is multiplied by (m - k + 1), then made monotone; an adjusted p below
    alpha means the test survives at alpha across all m tests.
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (len(p) - np.arange(len(p))))
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()
