"""scoring.pairwise and scoring.verdict: paired differences of every pair against a direct
computation, Newcombe's interval against a published example, the primary family and what
changes it, the best-method rule, the balance set, and the markdown block."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
from scipy.stats import binomtest

from medadapt.scoring import pairwise, power, verdict
from medadapt.scoring.reports import HEADLINE
from medadapt.scoring.stats import holm, paired_bootstrap, paired_test, sign_flip_test

from conftest import REPO

# ---- paired differences -------------------------------------------------------------------------


def test_newcombe_matches_the_published_example():
    """Cavo et al. 2012 as analysed by Fagerland, Lydersen & Laake (2014; R contingencytables):
    59 / 6 / 16 / 80, difference -0.0621, Newcombe 95% interval -0.1186 to -0.0046."""
    low, high = pairwise.newcombe_paired_ci(59, 6, 16, 80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    # no discordant item: an interval around 0 of non-zero width (a bootstrap would give [0, 0])
    low, high = pairwise.newcombe_paired_ci(30, 0, 0, 70)
    assert low < 0 < high and low == pytest.approx(-high)


def random_scores(methods, n=40, seed=0, binary=True, drop=()):
    rng = np.random.default_rng(seed)
    scores = {}
    for k, method in enumerate(methods):
        values = rng.integers(0, 2, n) if binary else rng.random(n)
        scores[method] = {f"q-{i}": float(v) for i, v in enumerate(values) if (method, i) not in drop}
    return scores


def test_all_pairs_equal_a_direct_computation_on_matched_items():
    drop = {("b", 3), ("b", 7), ("c", 0)}  # items some methods lack
    scores = random_scores("abcd", drop=drop)
    pairs = pairwise.all_pairs(scores)
    assert [(p["a"], p["b"]) for p in pairs] == list(combinations("abcd", 2))
    for pair in pairs:
        mine, theirs = scores[pair["a"]], scores[pair["b"]]
        common = sorted(set(mine) & set(theirs))
        a_only = sum(mine[i] == 1 and theirs[i] == 0 for i in common)
        b_only = sum(mine[i] == 0 and theirs[i] == 1 for i in common)
        both = sum(mine[i] == 1 and theirs[i] == 1 for i in common)
        assert pair["n"] == len(common)
        assert pair["diff"] == round((a_only - b_only) / len(common), 4)
        assert pair["p_value"] == pytest.approx(binomtest(a_only, a_only + b_only).pvalue)
        assert pair["discordant"] == [a_only, b_only]
        low, high = pairwise.newcombe_paired_ci(both, a_only, b_only, len(common) - both - a_only - b_only)
        assert (pair["low"], pair["high"]) == (round(low, 4), round(high, 4))
        assert pair["low"] <= pair["diff"] <= pair["high"]


def test_all_pairs_of_continuous_scores_use_the_bootstrap_and_sign_flip():
    scores = random_scores("abc", binary=False, seed=3)
    for pair in pairwise.all_pairs(scores, samples=500, seed=7):
        a = np.array([scores[pair["a"]][i] for i in sorted(scores[pair["a"]])])
        b = np.array([scores[pair["b"]][i] for i in sorted(scores[pair["b"]])])
        boot = paired_bootstrap(a, b, 500, 7)
        assert (pair["diff"], pair["low"], pair["high"]) == (round(float(np.mean(a - b)), 4), boot["low"], boot["high"])
        assert pair["p_value"] == sign_flip_test(a, b, seed=7)["p_value"] and pair["interval"] == "paired_bootstrap"


@pytest.mark.parametrize("binary", [True, False])
def test_flip_reads_a_pair_the_other_way(binary):
    scores = random_scores("ab", binary=binary, seed=4)
    a, b = (np.array(list(scores[m].values())) for m in "ab")
    forward, backward = pairwise.compare_scores(a, b), pairwise.compare_scores(b, a)
    flipped = pairwise.flip(forward)
    for key in ("diff", "low", "high", "p_value"):
        assert flipped[key] == pytest.approx(backward[key], abs=1e-9), key


def test_a_pair_without_common_items_is_no_test():
    scores = {"a": {"x": 1.0}, "b": {"y": 0.0}, "c": {"x": 0.0, "y": 1.0}}
    assert [(p["a"], p["b"]) for p in pairwise.all_pairs(scores)] == [("a", "c"), ("b", "c")]


# ---- the primary family -------------------------------------------------------------------------

ACC, HALL = verdict.Endpoint("MedQA acc", "medqa.accuracy", True), verdict.Endpoint("Hallucination rate",
                                                                                   "hallucination", False)


def items_of(methods, seed=0, n=40):
    acc, hall = random_scores(methods, n, seed), random_scores(methods, n, seed + 100)
    extra = random_scores(methods, n, seed + 200, binary=False)
    return {m: {"medqa.accuracy": acc[m], "hallucination": hall[m], "radqa.f1": extra[m]} for m in methods}


def test_family_is_every_pair_on_every_primary_metric_with_holm_over_all():
    items = items_of(["base", "icl", "sft"])
    tests = verdict.primary_family(items, [ACC, HALL])
    assert len(tests) == 3 * 2  # 3 pairs x 2 metrics; radqa.f1 is not primary
    assert [t["p_holm"] for t in tests] == pytest.approx(holm([t["p_value"] for t in tests]))
    assert all(t["survives"] == (t["p_holm"] < 0.05) for t in tests)
    for t in tests:  # each test is the plain paired test of the pair
        key = {"MedQA acc": "medqa.accuracy", "Hallucination rate": "hallucination"}[t["metric"]]
        a, b = items[t["a"]][key], items[t["b"]][key]
        ids = sorted(set(a) & set(b))
        assert t["p_value"] == paired_test([a[i] for i in ids], [b[i] for i in ids])["p_value"]


def test_only_added_pairs_change_a_primary_star():
    items = items_of(["base", "icl", "sft"], seed=1)
    before = verdict.primary_family(items, [ACC])
    # a secondary metric changes nothing
    assert verdict.primary_family(items, [ACC]) == before
    with_secondary = {m: {**v, "radqa.exact_match": {"r": 1.0}} for m, v in items.items()}
    assert verdict.primary_family(with_secondary, [ACC]) == before
    # a new run adds its k pairs per primary metric; no adjusted p falls
    more = {**items, "dpo": items_of(["dpo"], seed=9)["dpo"]}
    after = verdict.primary_family(more, [ACC])
    assert len(after) == len(before) + 3
    old = {(t["a"], t["b"]): t for t in after}
    for t in before:
        same = old[(t["a"], t["b"])]
        assert same["p_value"] == t["p_value"] and same["p_holm"] >= t["p_holm"]


def test_endpoints_come_from_the_headline_list():
    chosen = verdict.endpoints(HEADLINE, ["PubMedQA acc", "Hallucination rate"])
    assert chosen == [("PubMedQA acc", "pubmedqa.accuracy", True), ("Hallucination rate", "hallucination", False)]
    with pytest.raises(ValueError, match="cannot be primary"):
        verdict.endpoints(HEADLINE, ["PubMedQA macro-F1"])
    with pytest.raises(ValueError, match="unknown metric"):
        verdict.endpoints(HEADLINE, ["Accuracy"])


# ---- the verdict --------------------------------------------------------------------------------


def column(values) -> dict[str, float]:
    return {f"q-{i}": float(v) for i, v in enumerate(values)}


def test_a_clear_winner_is_named_with_its_difference_to_the_runner_up():
    n = 60
    items = {"base": {"medqa.accuracy": column([1] * 10 + [0] * 50)},
             "sft": {"medqa.accuracy": column([1] * 55 + [0] * 5)},
             "icl": {"medqa.accuracy": column([1] * 20 + [0] * 40)}}
    result = verdict.verdict(items, [ACC])
    (v,) = result["metrics"]
    assert v["decided"] and v["best"] == "sft" and v["runner_up"] == "icl"
    runner = v["versus_runner_up"]
    assert runner["a"] == "sft" and runner["diff"] == round(35 / n, 4) and runner["low"] > 0
    assert "plan" not in v
    text = verdict.verdict_markdown(result)
    assert "**sft** is best (0.92, n=60)" in text and "+0.58 [" in text


def test_best_needs_a_win_over_every_method_not_only_the_runner_up():
    """sft leads; it beats the runner-up icl clearly (10-0 discordant) but not dpo, lower by
    point estimate with many discordant items (36-24): nothing is named best."""
    sft = [1] * 70 + [0] * 30
    icl = [1] * 60 + [0] * 40  # right on a subset of sft's items: 10 discordant, all sft's way
    dpo = [1] * 34 + [0] * 36 + [1] * 24 + [0] * 6  # 0.58: 36 items sft's way, 24 dpo's
    items = {"sft": {"medqa.accuracy": column(sft)}, "icl": {"medqa.accuracy": column(icl)},
             "dpo": {"medqa.accuracy": column(dpo)}}
    result = verdict.verdict(items, [ACC])
    (v,) = result["metrics"]
    assert v["ranking"] == ["sft", "icl", "dpo"]
    by_pair = {(t["a"], t["b"]): t for t in result["family"]}
    assert by_pair[("sft", "icl")]["survives"]  # the runner-up alone would name sft best
    assert not v["decided"] and v["best"] is None
    assert v["beats"] == ["icl"] and v["contenders"] == ["sft", "dpo"]
    assert "cannot be told apart" in verdict.verdict_markdown(result)


def test_undecided_verdict_plans_from_the_pairs_discordance():
    a = [1] * 50 + [0] * 50
    b = [1] * 45 + [0] * 5 + [1] * 3 + [0] * 47  # 5 vs 3 discordant: 8% of 100 items
    items = {"base": {"medqa.accuracy": column(a)}, "sft": {"medqa.accuracy": column(b)}}
    result = verdict.verdict(items, [ACC], target_difference=0.05)
    (v,) = result["metrics"]
    assert not v["decided"] and v["top"] == "base"
    plan = v["plan"]
    assert plan["versus"] == "sft" and plan["discordance"] == 0.08 and result["family_size"] == 1
    assert plan["mde"] == pytest.approx(power.mcnemar_mde(100, 0.08))
    assert plan["items_needed"] == power.mcnemar_items_needed(0.05, 0.08)
    text = verdict.verdict_markdown(result)
    assert f"0.05 needs {plan['items_needed']:,} items" in text


def test_lower_is_better_picks_the_lowest_rate():
    items = {"base": {"hallucination": column([1] * 40 + [0] * 60)},
             "dpo": {"hallucination": column([0] * 100)}}
    (v,) = verdict.verdict(items, [HALL])["metrics"]
    assert v["top"] == "dpo" and v["decided"] and v["versus_runner_up"]["diff"] == -0.4


# ---- the balance --------------------------------------------------------------------------------


def test_balance_leaves_out_only_shown_domination():
    good, bad = [1] * 80 + [0] * 20, [1] * 20 + [0] * 80
    none, some = [0] * 100, [1] * 30 + [0] * 70
    items = {"sft": {"medqa.accuracy": column(good), "hallucination": column(none)},
             "base": {"medqa.accuracy": column(bad), "hallucination": column(none)},  # dominated by sft
             "icl": {"medqa.accuracy": column([1] * 81 + [0] * 19), "hallucination": column(some)}}  # trades
    result = verdict.verdict(items, [ACC, HALL])
    bal = result["balance"]
    assert bal["set"] == ["sft", "icl"] and bal["dominated_by"] == {"base": ["sft"]}
    icl = {row["metric"]: row for row in bal["trades"]["icl"]}
    assert icl["Hallucination rate"]["leader"] == "sft" and icl["Hallucination rate"]["gap_survives"]
    text = verdict.verdict_markdown(result)
    assert "left out: base, dominated by sft" in text
    # a cost condition: sft costs more than base, so it no longer dominates it
    costly = verdict.verdict(items, [ACC, HALL], cost={"sft": 100.0, "base": 0.0, "icl": 0.0})["balance"]
    assert "base" in costly["set"]


def test_point_estimates_alone_never_dominate():
    items = {"a": {"medqa.accuracy": column([1] * 52 + [0] * 48)},
             "b": {"medqa.accuracy": column([1] * 50 + [0] * 50)}}
    assert verdict.verdict(items, [ACC])["balance"]["set"] == ["a", "b"]


# ---- on the reference runs ----------------------------------------------------------------------


def test_reference_runs_cannot_be_told_apart_on_accuracy():
    runs = REPO / "reports/reference/runs"
    methods = ["base", "icl", "sft_pubmedqa", "sft_medmcqa", "sft", "dpo"]
    items = {m: json.loads((runs / m / "reports/eval_items.json").read_text())["items"] for m in methods}
    primary = verdict.endpoints(HEADLINE, ["PubMedQA acc", "Hallucination rate", "Unsafe rate (rule)"])
    result = verdict.verdict(items, primary, methods)
    assert result["family_size"] == 45
    acc = result["metrics"][0]
    assert acc["top"] == "sft_medmcqa" and not acc["decided"] and acc["values"]["sft_medmcqa"] == 0.56
    safety = result["metrics"][2]
    assert safety["n"] == 10 and not any(t["survives"] for t in result["family"] if t["metric"] == safety["metric"])
