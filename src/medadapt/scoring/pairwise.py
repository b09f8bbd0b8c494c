"""Paired differences between methods on the items both were scored on, with intervals and p.

`stats.paired_test` says whether two methods differ; this module says by how much, with a 95%
interval, for every pair of methods (not only against `base`):

- 0/1 scores (accuracy, unsafe, hallucinated): the difference of the two paired proportions
  with Newcombe's hybrid score interval (Newcombe 1998, Stat Med 17:2635, method 10), built from
  the Wilson intervals of the two rates and their correlation; Fagerland, Lydersen & Laake
  (2014, Stat Med 33:2850) recommend it for paired proportions. It stays inside [-1, 1] and is
  not degenerate at 0 discordant items, where a bootstrap of 100 identical answers gives
  [0, 0]. The p-value is the exact McNemar test's (`stats.mcnemar_exact`).
- continuous scores (token F1, ROUGE-L, rewards): the percentile paired bootstrap interval
  (`stats.paired_bootstrap`) and the sign-flip permutation p (`stats.sign_flip_test`).

Scores come as `{item_id: score}` dicts, as `reports/eval_items.json` holds them; a pair is
compared on the intersection of its two dicts' ids, and says its n. A method trained under
several seeds has a list per item (one score per seed, in one seed order): a pair where either
side has more than one seed is compared by `seeds.two_level_test`, resampling items and seeds.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
from scipy.stats import binomtest

from .seeds import two_level_test
from .stats import is_binary, mcnemar_exact, paired_bootstrap, sign_flip_test


def matched(mine: dict[str, float], theirs: dict[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The ids both dicts score (sorted) and the two score arrays on them, None scores left out:
    one value per item, or (seeds, items) where an item holds one score per seed."""
    ids = sorted(i for i in set(mine) & set(theirs) if mine[i] is not None and theirs[i] is not None)
    return ids, _scores([mine[i] for i in ids]), _scores([theirs[i] for i in ids])


def _scores(values: list) -> np.ndarray:
    array = np.array(values, dtype=float)
    if array.ndim == 2:  # (items, seeds): one seed is the plain case
        return array[:, 0] if array.shape[1] == 1 else array.T
    return array


def _wilson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def newcombe_paired_ci(both: int, a_only: int, b_only: int, neither: int,
                       confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p_a - p_b of two paired 0/1 scores (method 10).

    The counts are the paired 2x2 table: items right (1) under both, under a only, under b only,
    under neither. The interval squares and adds the distances of each rate to its Wilson
    limits, less twice their estimated correlation phi; phi is shrunk by N/2 when positive
    (Newcombe's correction, as in his paper and R's contingencytables/biostatUZH) and set to 0
    when a margin is empty.
    """
    n = both + a_only + b_only + neither
    if n == 0:
        raise ValueError("a paired interval needs at least one item")
    p_a, p_b = (both + a_only) / n, (both + b_only) / n
    low_a, high_a = _wilson(both + a_only, n, confidence)
    low_b, high_b = _wilson(both + b_only, n, confidence)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    cross = both * neither - a_only * b_only
    if margins == 0 or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > n / 2 else cross) / math.sqrt(margins)
    diff = p_a - p_b
    low = diff - math.sqrt((p_a - low_a) ** 2 - 2 * phi * (p_a - low_a) * (high_b - p_b) + (high_b - p_b) ** 2)
    high = diff + math.sqrt((p_b - low_b) ** 2 - 2 * phi * (p_b - low_b) * (high_a - p_a) + (high_a - p_a) ** 2)
    return low, high


def paired_table(a, b) -> tuple[int, int, int, int]:
    """(both, a_only, b_only, neither) of two equal-length 0/1 score arrays."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return (int(np.sum((a == 1) & (b == 1))), int(np.sum((a == 1) & (b == 0))),
            int(np.sum((a == 0) & (b == 1))), int(np.sum((a == 0) & (b == 0))))


def compare_scores(a, b, binary: bool | None = None, samples: int = 1000, seed: int = 0) -> dict:
    """mean(a - b) on paired items, its 95% interval and the paired test's p.

    `binary=None` chooses by the data (both all 0/1: Newcombe + exact McNemar; else bootstrap +
    sign-flip); pass `binary=False` for a continuous score that happens to be all 0/1.
    Returns {diff, low, high, interval, test, p_value, p_bound, n, sd} where `sd` is the
    standard deviation of the per-item differences (ddof=1; what a sample-size plan needs) and,
    for 0/1 scores, `discordant` [a_only, b_only].
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim == 2 or b.ndim == 2:  # several training seeds: items and seeds resampled
        return two_level_test(np.atleast_2d(a), np.atleast_2d(b), seed=seed)
    if binary is None:
        binary = is_binary(a) and is_binary(b)
    sd = float(np.std(a - b, ddof=1)) if len(a) > 1 else float("nan")
    if binary:
        test = mcnemar_exact(a, b)
        low, high = newcombe_paired_ci(*paired_table(a, b))
        interval = "newcombe"
    else:
        test = sign_flip_test(a, b, seed=seed)
        boot = paired_bootstrap(a, b, samples, seed)
        low, high, interval = boot["low"], boot["high"], "paired_bootstrap"
    result = {"diff": round(float(np.mean(a - b)), 4), "low": round(low, 4), "high": round(high, 4),
              "interval": interval, "test": test["test"], "p_value": test["p_value"], "p_bound": test["p_bound"],
              "n": len(a), "sd": round(sd, 4)}
    if binary:
        result["discordant"] = test["discordant"]
    return result


def flip(result: dict) -> dict:
    """The same comparison read the other way round (b - a): the difference and its interval
    change sign, the p-value does not (both tests and both intervals are symmetric)."""
    # 0.0 - x, not -x: a zero difference stays +0.0 and prints as +0.00
    out = {**result, "diff": 0.0 - result["diff"], "low": 0.0 - result["high"], "high": 0.0 - result["low"]}
    if "discordant" in result:
        out["discordant"] = result["discordant"][::-1]
    if "a" in result:
        out["a"], out["b"] = result["b"], result["a"]
    return out


def all_pairs(scores: dict[str, dict[str, float]], binary: bool | None = None, samples: int = 1000,
              seed: int = 0) -> list[dict]:
    """Every unordered pair of methods, in the order of `scores` (a before b), compared on the
    items both scored: [{a, b, diff (a - b), low, high, p_value, n, ...}].

    A pair with no item in common is no comparison and is left out. `binary` is decided once
    for the whole metric (all methods' scores 0/1) unless given, so every pair of one metric
    uses the same interval and test.
    """
    if binary is None:
        binary = all(is_binary(np.ravel([v for v in s.values() if v is not None])) for s in scores.values())
    pairs = []
    for first, second in combinations(scores, 2):
        ids, a, b = matched(scores[first], scores[second])
        if ids:
            pairs.append({"a": first, "b": second, **compare_scores(a, b, binary, samples, seed)})
    return pairs
