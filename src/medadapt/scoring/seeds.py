"""Two methods trained with several seeds: the difference with an interval that counts both the
items and the seeds, the seed-to-seed spread, and the variance components a plan needs.

Scores come as arrays of shape (seeds, items): row j is one training seed's per-item scores,
column i the same eval item for every seed and both methods. Seeds of two methods are separate
training runs, so they are not paired (seed 3 of sft and seed 3 of dpo share nothing that
makes them alike); items are. An untrained method (base, icl) is one row: its evaluation is
deterministic.
"""

from __future__ import annotations

import numpy as np

from .power import Components


def _grid(scores) -> np.ndarray:
    grid = np.asarray(scores, dtype=float)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError("seed scores are a non-empty (seeds, items) array")
    return grid


def seed_spread(scores) -> dict:
    """A method's mean over the items at each seed, their mean and their SD (ddof=1; None for one seed)."""
    means = _grid(scores).mean(axis=1)
    sd = float(np.std(means, ddof=1)) if len(means) > 1 else None
    return {"means": [round(float(m), 4) for m in means], "mean": round(float(means.mean()), 4),
            "sd": None if sd is None else round(sd, 4), "seeds": len(means)}


def two_level_bootstrap(a, b, samples: int = 2000, seed: int = 0) -> dict:
    """mean(a) - mean(b) with a percentile 95% interval resampling items and seeds.

    Each resample draws n items with replacement (the same items for both methods: they are
    paired) and, independently for each method, its seeds with replacement, and takes the
    difference of the two means over the drawn seeds x items. With one seed per method this is
    the paired item bootstrap. Resampling both levels counts the item-by-seed residual twice,
    so the interval errs wide (Davison & Hinkley 1997, sec. 3.8), never narrow.
    Returns {diff, low, high, se, items, seeds: [s_a, s_b], spread: {a, b}}.
    """
    a, b = _grid(a), _grid(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError("both methods need scores on the same items (columns)")
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    draws = np.empty(samples)
    for k in range(samples):
        items = rng.integers(0, n, n)
        rows_a, rows_b = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
        draws[k] = a[np.ix_(rows_a, items)].mean() - b[np.ix_(rows_b, items)].mean()
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"diff": round(float(a.mean() - b.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "se": round(float(draws.std(ddof=1)), 4), "items": n, "seeds": [len(a), len(b)],
            "spread": {"a": seed_spread(a), "b": seed_spread(b)}}


def two_level_test(a, b, samples: int = 10_000, seed: int = 0) -> dict:
    """`two_level_bootstrap` as a paired test: the difference, its 95% interval and a two-sided
    bootstrap p, 2 min(P(draw <= 0), P(draw >= 0)) with a +1 correction, so never 0.

    Vectorised (all resamples at once), so that a table of every pair of methods on every primary
    metric takes seconds. The p is the percentile bootstrap's, an approximation: it is too small
    when few items differ (stats.paired_bootstrap says the same), so exact tests are used where
    every method has one seed (pairwise.compare_scores)."""
    a, b = _grid(a), _grid(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError("both methods need scores on the same items (columns)")
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    items = rng.integers(0, n, (samples, n))
    draws = np.zeros(samples)
    for grid, sign in ((a, 1.0), (b, -1.0)):
        rows = rng.integers(0, len(grid), (samples, len(grid)))
        # mean over drawn seeds x drawn items of one method, for every resample at once
        draws += sign * grid[rows[:, :, None], items[:, None, :]].mean(axis=(1, 2))
    low, high = np.percentile(draws, [2.5, 97.5])
    tail = min(np.sum(draws <= 0), np.sum(draws >= 0))
    p = float(min(1.0, 2 * (tail + 1) / (samples + 1)))
    item_differences = a.mean(0) - b.mean(0)
    return {"diff": round(float(a.mean() - b.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "interval": "two_level_bootstrap", "test": "two_level_bootstrap", "p_value": p, "p_bound": False,
            "n": n, "sd": round(float(np.std(item_differences, ddof=1)), 4) if n > 1 else float("nan"),
            "seeds": [len(a), len(b)]}


def method_components(scores) -> dict:
    """sigma_seed^2 and sigma_res^2 of one method from its (seeds, items) grid (`power` module docstring).

    Two-way random-effects ANOVA without replication: the residual mean square of the
    seeds x items table estimates sigma_res^2; the variance of the seed means is
    sigma_seed^2 + sigma_res^2 / n, so sigma_seed^2 is that less sigma_res^2 / n (floored at 0).
    One seed: both are unknown and returned as 0 (what an untrained method has).
    """
    grid = _grid(scores)
    seeds, n = grid.shape
    if seeds < 2:
        return {"seed": 0.0, "residual": 0.0}
    residual = grid - grid.mean(1, keepdims=True) - grid.mean(0, keepdims=True) + grid.mean()
    res = float((residual ** 2).sum() / ((seeds - 1) * (n - 1))) if n > 1 else 0.0
    seed_var = float(np.var(grid.mean(1), ddof=1)) - res / n
    return {"seed": max(seed_var, 0.0), "residual": res}


def variance_components(a, b) -> Components:
    """The `power.Components` of two methods' seed grids (same items in the same columns).

    sigma_item^2 is the variance over items of the seed-averaged difference, less the residual
    variance that averaging s seeds leaves in it ((res_a / s_a + res_b / s_b), floored at 0).
    """
    a, b = _grid(a), _grid(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError("both methods need scores on the same items (columns)")
    ca, cb = method_components(a), method_components(b)
    per_item = a.mean(0) - b.mean(0)
    item = float(np.var(per_item, ddof=1)) - ca["residual"] / len(a) - cb["residual"] / len(b)
    return Components(item=max(item, 0.0), seed_a=ca["seed"], seed_b=cb["seed"],
                      residual_a=ca["residual"], residual_b=cb["residual"])
