"""scoring.agreement: Fleiss' kappa against the worked example of Fleiss (1971) as Wikipedia gives
it, the chance agreement of issue 19, the bootstrap interval and the paired comparison."""

from __future__ import annotations

import numpy as np
import pytest

from medadapt.scoring import agreement

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories.
WIKIPEDIA = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def ratings_from_counts(counts) -> list[list[str]]:
    return [[f"c{j}" for j, k in enumerate(row) for _ in range(k)] for row in counts]


def test_fleiss_kappa_matches_the_worked_example():
    # its published intermediate values: P_i per subject, P-bar 0.378, P_e 0.213, kappa 0.210
    p_i = agreement.item_agreement(WIKIPEDIA)
    assert np.round(p_i, 3).tolist() == [1.0, 0.253, 0.308, 0.44, 0.33, 0.462, 0.242, 0.176, 0.286, 0.286]
    assert round(float(p_i.mean()), 3) == 0.378
    assert round(agreement.fleiss_kappa_counts(WIKIPEDIA), 3) == 0.210
    assert agreement.fleiss_kappa(ratings_from_counts(WIKIPEDIA)) == pytest.approx(
        agreement.fleiss_kappa_counts(WIKIPEDIA))
    assert agreement.chance_agreement(ratings_from_counts(WIKIPEDIA))["pairwise"] == 0.2128


def test_kappa_is_one_zero_or_undefined_where_it_should_be():
    assert agreement.fleiss_kappa([["yes"] * 3, ["no"] * 3]) == 1.0
    assert agreement.fleiss_kappa([["no"] * 3] * 5) is None  # one category: chance explains everything
    # two raters agree on half the items; the shares are 1/2 each, so chance agreement is 1/2 too
    table = [["yes", "no"], ["no", "yes"], ["yes", "yes"], ["no", "no"]]
    assert agreement.fleiss_kappa(table) == pytest.approx(0.0)
    assert agreement.fleiss_kappa([["yes", "no"], ["no", "yes"]]) == pytest.approx(-1.0)


def test_chance_agreement_of_issue_19():
    """Base answers "no" on 78 of 100 items: three independent variants agree by chance on 0.49;
    sft's 58/42 on 0.27."""
    base = [["no"] * 3] * 78 + [["yes"] * 3] * 22
    sft = [["no"] * 3] * 58 + [["yes"] * 3] * 42
    assert round(agreement.chance_agreement(base)["all"], 2) == 0.49
    assert round(agreement.chance_agreement(sft)["all"], 2) == 0.27
    assert agreement.chance_agreement(base)["pairwise"] == pytest.approx(0.78 ** 2 + 0.22 ** 2, abs=1e-4)


def test_unreadable_answers_must_be_handled_on_purpose():
    table = [["yes", "yes", None], ["no", "no", "no"], ["yes", "no", "yes"]]
    with pytest.raises(ValueError, match="None"):
        agreement.fleiss_kappa(table)
    counts, categories = agreement.counts_table(table, missing="category")
    assert agreement.UNREADABLE in categories and counts.sum() == 9
    counts, _ = agreement.counts_table(table, missing="drop")
    assert len(counts) == 2
    with pytest.raises(ValueError, match="same number"):
        agreement.fleiss_kappa([["yes", "no"], ["yes"]])


def test_bootstrap_interval_is_the_percentile_of_resampled_kappas():
    rng = np.random.default_rng(5)
    table = [list(rng.choice(["yes", "no", "maybe"], 3, p=[0.5, 0.4, 0.1])) for _ in range(60)]
    table += [["no"] * 3] * 40
    result = agreement.fleiss_kappa_rate(table, samples=500, seed=3)
    assert result["value"] == round(agreement.fleiss_kappa(table), 4) and result["n"] == 100
    # the same resamples, kappa computed one by one from the ratings
    index = np.random.default_rng(3).integers(0, 100, size=(500, 100))
    draws = [agreement.fleiss_kappa([table[i] for i in row]) for row in index]
    low, high = np.percentile(draws, [2.5, 97.5])
    assert (result["low"], result["high"]) == (round(low, 4), round(high, 4))
    assert result["low"] < result["value"] < result["high"]
    assert agreement.fleiss_kappa_rate([["no"] * 3] * 4)["value"] is None


def test_kappa_difference_between_two_methods():
    rng = np.random.default_rng(0)
    steady = [[label] * 3 for label in rng.choice(["yes", "no"], 80)]  # kappa 1
    flaky = [list(rng.choice(["yes", "no"], 3)) for _ in range(80)]  # kappa near 0
    result = agreement.kappa_difference(steady, flaky, samples=1000, seed=1)
    assert result["diff"] == pytest.approx(1 - agreement.fleiss_kappa(flaky), abs=1e-4)
    assert result["low"] > 0 and result["p_value"] < 0.01
    back = agreement.kappa_difference(flaky, steady, samples=1000, seed=1)
    assert back["diff"] == -result["diff"] and back["p_value"] == result["p_value"]
    same = agreement.kappa_difference(flaky, flaky, samples=200, seed=1)
    assert same["diff"] == 0 and same["p_value"] == 1.0
