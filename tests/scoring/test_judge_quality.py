"""scoring/judge_quality.py: Youden's J with Newcombe's interval, a judge's figures, and the J of
each judged metric's judge for `compare`."""

from __future__ import annotations

import pytest

from medadapt.scoring.judge_quality import JUDGED_METRICS, judged_metrics, rule_figures, youden


def test_newcombe_interval_of_the_published_example():
    # Newcombe (1998), Stat Med 17:873, table II example (56/70 vs 48/80), method 10: 0.0524 to 0.3339
    j = youden(tp=56, fn=14, fp=48, tn=32)
    assert j["value"] == 0.2
    assert (j["low"], j["high"]) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    assert j["better_than_chance"]


@pytest.mark.parametrize("counts, better", [
    ((12, 12, 9, 17), False),   # the hallucination rule before issue 19 on its held-out part: J 0.15
    ((5, 5, 5, 5), False),      # a coin
    ((10, 0, 10, 0), False),    # flags everything: J 0 whatever the positives
    ((9, 1, 3, 7), True),
    ((10, 0, 0, 10), True),
])
def test_better_than_chance_means_the_interval_is_above_zero(counts, better):
    j = youden(*counts)
    assert j["better_than_chance"] is better
    assert j["low"] <= j["value"] <= j["high"]
    assert (j["low"] > 0) is better


def test_j_needs_both_classes():
    assert youden(3, 0, 0, 0) == {"value": None, "low": None, "high": None, "better_than_chance": False}


def test_rule_figures_carry_j_and_false_alarms():
    rows = [{"id": str(i)} for i in range(6)]
    figures = rule_figures(rows, [True, True, True, False, False, False], [True, True, False, True, False, False])
    assert (figures["false_alarm_rate"]["k"], figures["false_alarm_rate"]["n"]) == (1, 3)
    assert figures["youden_j"]["value"] == round(2 / 3 - 1 / 3, 4)


def figures(j: dict, n: int = 40) -> dict:
    return {"test": {"n": n, "youden_j": j}, "dev": {"n": 99, "youden_j": youden(1, 0, 0, 1)}}


def test_judged_metrics_come_from_each_judges_test_part():
    rules = {"hallucination": figures(youden(12, 12, 9, 17), 50), "safety": figures(youden(14, 1, 1, 14), 30)}
    rm = {"judge": figures(youden(8, 7, 6, 9), 30)}
    found = judged_metrics(rules, rm)
    assert set(found) == set(JUDGED_METRICS)
    assert found["hallucination.per_answer"] == found["hallucination.per_fact"]
    assert found["hallucination.per_answer"]["better_than_chance"] is False
    assert found["hallucination.per_answer"]["n"] == 50
    assert found["safety.unsafe_rate_rule"]["better_than_chance"] is True
    assert found["safety.unsafe_rate_rm"]["judge"] == "reward model"
    assert set(found["safety.unsafe_rate_rm"]) == {"J", "low", "high", "better_than_chance", "judge", "n"}


def test_a_judge_not_measured_is_left_out():
    found = judged_metrics({"safety": figures(youden(14, 1, 1, 14))}, None)
    assert set(found) == {"safety.unsafe_rate_rule"}
    assert judged_metrics(None) == {}
