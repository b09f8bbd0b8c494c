"""Agreement of a model with itself across prompt variants, corrected for chance (Fleiss' kappa).

PubMedQA consistency is the share of items answered the same under every prompt variant. A
model that says "no" to most items agrees with itself often by chance alone: with the base's
78/22 split of no/yes, three independent answers agree on sum_j p_j^3 = 0.49 of items; with
sft's 58/42, on 0.27 (`chance_agreement`). Fleiss' kappa (Fleiss 1971) corrects the pairwise
agreement for the agreement the pooled answer shares would give by chance:

    P_i  = (sum_j n_ij^2 - R) / (R (R - 1))   the share of agreeing pairs of variants on item i
    p_j  = sum_i n_ij / (N R)                 the share of answers in category j
    kappa = (mean_i P_i - sum_j p_j^2) / (1 - sum_j p_j^2)

for N items, R variants (raters) per item and n_ij variants answering j on item i. Here the
"raters" are the prompt variants of one model. kappa is 1 for perfect agreement, 0 for the
agreement chance gives, and undefined (None) when every answer is the same category.

kappa is not a mean over items (its chance term pools all items), so its interval is a
percentile bootstrap over items, and two methods' kappas on the same items are compared by a
paired bootstrap over items (the same resampled items for both) and a paired permutation test
that swaps the two methods' answers item by item (`kappa_difference`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNREADABLE = "<unreadable>"  # the category of a None answer with missing="category"


def counts_table(ratings: Sequence[Sequence], missing: str = "error") -> tuple[np.ndarray, list]:
    """(N items x k categories) counts of an items x raters table of labels, and the categories.

    `missing` says what a None answer is: "error" (the default) refuses it, "category" counts it
    as a category of its own (an unreadable answer agrees with another unreadable one), "drop"
    leaves out every item with a None (kappa needs the same number of raters per item).
    """
    rows = [list(row) for row in ratings]
    if missing == "drop":
        rows = [row for row in rows if None not in row]
    elif missing == "category":
        rows = [[UNREADABLE if label is None else label for label in row] for row in rows]
    elif any(None in row for row in rows):
        raise ValueError("an answer is None: pass missing='category' or 'drop'")
    if not rows:
        raise ValueError("no item to rate")
    if len({len(row) for row in rows}) != 1 or len(rows[0]) < 2:
        raise ValueError("every item needs the same number of ratings, at least two")
    categories = sorted({label for row in rows for label in row}, key=str)
    index = {label: j for j, label in enumerate(categories)}
    table = np.zeros((len(rows), len(categories)), dtype=int)
    for i, row in enumerate(rows):
        for label in row:
            table[i, index[label]] += 1
    return table, categories


def item_agreement(counts) -> np.ndarray:
    """P_i: per item, the share of pairs of raters that agree (a mean over items is P-bar)."""
    counts = np.asarray(counts, dtype=float)
    raters = counts.sum(1)
    return ((counts ** 2).sum(1) - raters) / (raters * (raters - 1))


def fleiss_kappa_counts(counts) -> float | None:
    """Fleiss' kappa of an (items x categories) counts table with the same rater count per row."""
    counts = np.asarray(counts, dtype=float)
    raters = counts.sum(1)
    if counts.ndim != 2 or len(counts) == 0 or np.any(raters != raters[0]) or raters[0] < 2:
        raise ValueError("counts need one row per item, each summing to the same number of raters (>= 2)")
    shares = counts.sum(0) / counts.sum()
    chance = float((shares ** 2).sum())
    if chance >= 1 - 1e-12:  # one category only: agreement is perfect and chance explains all of it
        return None
    return float((item_agreement(counts).mean() - chance) / (1 - chance))


def fleiss_kappa(ratings: Sequence[Sequence], missing: str = "error") -> float | None:
    """Fleiss' kappa of an items x raters table of categorical answers (e.g. items x prompt
    variants; evaluate's `predictions[v][i]` is variants x items: pass `zip(*predictions)`)."""
    return fleiss_kappa_counts(counts_table(ratings, missing)[0])


def chance_agreement(ratings: Sequence[Sequence], missing: str = "error") -> dict:
    """Agreement that independent raters with the pooled category shares p_j would reach:
    `pairwise` = sum p_j^2 (Fleiss' chance term), `all` = sum p_j^R (every one of R raters the
    same: the chance level of the consistency rate)."""
    counts, _ = counts_table(ratings, missing)
    shares, raters = counts.sum(0) / counts.sum(), int(counts[0].sum())
    return {"pairwise": round(float((shares ** 2).sum()), 4), "all": round(float((shares ** raters).sum()), 4)}


def _kappa_stack(stack: np.ndarray) -> np.ndarray:
    """kappa of each (N, k) counts table of a (samples, N, k) stack, NaN where one category only."""
    raters = stack[0, 0].sum()
    shares = stack.sum(1) / (stack.shape[1] * raters)
    chance = (shares ** 2).sum(1)
    observed = (((stack ** 2).sum(2) - raters) / (raters * (raters - 1))).mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance < 1 - 1e-12, (observed - chance) / (1 - chance), np.nan)


def fleiss_kappa_rate(ratings: Sequence[Sequence], samples: int = 1000, seed: int = 0, missing: str = "error") -> dict:
    """Fleiss' kappa with a seeded percentile bootstrap 95% interval over items: {value, low, high, n}
    like `stats.rate` (value None when undefined; resamples of one category are left out)."""
    counts, _ = counts_table(ratings, missing)
    value = fleiss_kappa_counts(counts)
    if value is None:
        return {"value": None, "low": None, "high": None, "n": len(counts)}
    index = np.random.default_rng(seed).integers(0, len(counts), size=(samples, len(counts)))
    low, high = np.nanpercentile(_kappa_stack(counts[index]), [2.5, 97.5])
    return {"value": round(value, 4), "low": round(float(low), 4), "high": round(float(high), 4), "n": len(counts)}


def kappa_difference(ratings_a: Sequence[Sequence], ratings_b: Sequence[Sequence], samples: int = 2000,
                     seed: int = 0, missing: str = "error") -> dict:
    """kappa_a - kappa_b of two methods on the same items (row i of both is the same item).

    Interval: paired percentile bootstrap (each resample draws the same items for both).
    p: paired permutation test, Monte Carlo, (b + 1) / (B + 1) two-sided: each resample swaps
    the two methods' answers on a random half of the items. Its null is that the two methods'
    answers to an item are exchangeable, which implies equal kappas (and is stronger). Both
    tables must have the same number of raters; categories are pooled over both.
    """
    if missing == "drop":
        raise ValueError("missing='drop' would unpair the items: use 'category'")
    table_a, table_b = [list(row) for row in ratings_a], [list(row) for row in ratings_b]
    if len(table_a) != len(table_b):
        raise ValueError("both methods need ratings of the same items")
    joined, _ = counts_table(table_a + table_b, missing)  # one category index for both
    n = len(table_a)
    a, b = joined[:n], joined[n:]
    ka, kb = fleiss_kappa_counts(a), fleiss_kappa_counts(b)
    if ka is None or kb is None:
        return {"diff": None, "low": None, "high": None, "p_value": None, "n": n}
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(samples, n))
    low, high = np.nanpercentile(_kappa_stack(a[index]) - _kappa_stack(b[index]), [2.5, 97.5])
    swap = (rng.random((samples, n)) < 0.5)[..., None]
    null = _kappa_stack(np.where(swap, b, a)) - _kappa_stack(np.where(swap, a, b))
    null = null[~np.isnan(null)]
    # the swap of every item negates the statistic: the null is symmetric, so compare sizes
    extreme = int(np.sum(np.abs(null) >= abs(ka - kb) - 1e-12))
    return {"diff": round(ka - kb, 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "p_value": min(1.0, (extreme + 1) / (len(null) + 1)), "n": n}
