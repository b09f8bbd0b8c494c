"""Rates with bootstrap 95% intervals, and the paired bootstrap test between two methods.

Every rate the project reports is `{value, low, high, n}`: on 100 questions a 95% interval is
about +-10 points wide, and a reader should see that before reading a difference into it.
"""

from __future__ import annotations

import numpy as np


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bootstrap_ci(values, samples: int = 1000, seed: int = 0, statistic=np.mean) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of `statistic` over `values`."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    index = _rng(seed).integers(0, len(values), size=(samples, len(values)))
    stats = np.array([statistic(values[row]) for row in index]) if statistic is not np.mean else values[index].mean(1)
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def rate(values, samples: int = 1000, seed: int = 0) -> dict:
    """Mean of 0/1 (or real) values with its interval and n; None values are left out."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"value": None, "low": None, "high": None, "n": 0}
    low, high = bootstrap_ci(values, samples, seed)
    return {"value": round(float(np.mean(values)), 4), "low": round(low, 4), "high": round(high, 4), "n": len(values)}


def paired_bootstrap(a, b, samples: int = 1000, seed: int = 0) -> dict:
    """Difference of means a - b on the same items, its interval, and a two-sided p-value.

    The p-value is the share of resampled differences on the other side of zero, doubled:
    the usual paired bootstrap test of NLP evaluation (Koehn 2004; Berg-Kirkpatrick 2012).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or len(a) == 0:
        raise ValueError("paired bootstrap needs two equal-length, non-empty score lists")
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
