"""Which method wins, or that at this n none can be told apart; and the balance between them.

Inputs are what `reports/eval_items.json` holds per method: `items[method][item_key][item_id]`
is a score (0/1 or continuous), plus the primary endpoints (`Endpoint`: a HEADLINE label, its
per-item key and its direction). Everything here is a pure function of those; `verdict_markdown`
renders the result.

**Primary endpoints and Holm's family.** The user declares the primary metrics (params
`compare.primary`, HEADLINE labels that have per-item scores). The family that Holm's correction
runs over is every unordered pair of methods, on every primary metric, that has at least one
item scored by both: m = sum over primary metrics of the number of such pairs (6 methods and 3
primary metrics: 15 x 3 = 45). Only these tests get stars; every other metric's differences
are reported with their p but no star. Hence:
- a secondary metric, or a metric's scores on a secondary dataset, never changes a primary star;
- a run added to the table adds its pairs (k - 1 per primary metric when k methods become k + 1)
  and so raises m; Holm's adjusted p-values never fall when tests are added, so an added run can
  take a star away, never give one. Nothing else changes a primary star.
All pairs, not method-vs-best: which method is best is read from the same data, and a family
chosen by the data is no fixed family for Holm's guarantee; all pairs are also what the rule
below needs. Method-vs-base alone would never compare two adapted methods.

**Best method.** On a primary metric the method with the best point estimate (mean over the
items every method has; ties go to the earlier method) is named best only if its paired test
against EVERY other method survives Holm in the primary family, in its favour. Against the
runner-up alone would not do: the runner-up by point estimate need not be the method closest to
the top in evidence (a pair with more discordant items has a larger p at the same difference).
Otherwise the methods cannot be told apart at this n: the verdict names the top method by point
estimate and those it is not shown to beat (the contenders), the difference to the runner-up
with its 95% interval, and a plan: the minimum difference detectable with 80% power at the
family's first Holm step (alpha / m), and the items needed for `target_difference`, both for
the top and the first contender (in ranking order) whose answers differ from the top's at all
(exact McNemar at that pair's discordance for 0/1 scores; normal approximation with that pair's
per-item SD for continuous ones). A pair that answered every item alike says nothing about how
often two methods disagree, so it cannot plan anything. Holm's correction with two-sided tests and directional conclusions is
the usual practice; its directional error control is proven for some dependence structures
(Shaffer 1980), not in general.

**Balance.** A method is dominated when another is at least as good by point estimate on every
primary metric (and, if a cost is given, no more costly) and better, surviving Holm, on at least
one: a domination has to be shown, not read from point estimates that differ by noise. The
methods no other dominates form the balance (Pareto) set; for each, the renderer says where it
is best among them and what it gives up (its gap to the best of the set, and whether that gap
survives Holm). Cost is measured, not sampled: it enters by value, as a condition, and alone
never dominates.

Intervals are 95% per comparison (`pairwise.compare_scores`: Newcombe for 0/1 scores, paired
bootstrap for continuous ones), not adjusted for the family; the stars are.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .pairwise import all_pairs, flip
from .power import mcnemar_items_needed, mcnemar_mde, normal_items_needed, normal_mde
from .stats import holm


class Endpoint(NamedTuple):
    label: str  # the HEADLINE label, e.g. "PubMedQA acc"
    item_key: str  # its key in eval_items.json, e.g. "pubmedqa.accuracy"
    higher_is_better: bool


def endpoints(headline, labels) -> list[Endpoint]:
    """The endpoints of `labels` from HEADLINE-style rows (label, path, item key, higher is better).

    A metric without per-item scores (macro-F1, ROUGE-L, the RM's rates) has no paired test, so it
    cannot be primary.
    """
    rows = {label: (key, higher) for label, _, key, higher in headline}
    chosen = []
    for label in labels:
        if label not in rows:
            raise ValueError(f"unknown metric {label!r}; valid: {', '.join(rows)}")
        key, higher = rows[label]
        if key is None:
            raise ValueError(f"{label!r} has no per-item scores, so no paired test: it cannot be primary")
        chosen.append(Endpoint(label, key, higher))
    return chosen


def metric_scores(items: dict, endpoint: Endpoint, methods=None) -> dict[str, dict[str, float]]:
    """method -> {item id: score} on one endpoint, for the methods (in order) that have any."""
    methods = list(items) if methods is None else methods
    return {m: items[m][endpoint.item_key] for m in methods if items.get(m, {}).get(endpoint.item_key)}


def pairwise_tests(items: dict, chosen: list[Endpoint], methods=None, samples: int = 1000, seed: int = 0) -> list[dict]:
    """Every pair of methods on every endpoint: [{metric, a, b, diff (a - b), low, high, p_value, n, ...}]."""
    return [{"metric": e.label, **pair} for e in chosen
            for pair in all_pairs(metric_scores(items, e, methods), samples=samples, seed=seed)]


def primary_family(items: dict, primary: list[Endpoint], methods=None, alpha: float = 0.05, samples: int = 1000,
                   seed: int = 0) -> list[dict]:
    """The primary family's tests, each with `p_holm` (Holm over the whole family) and `survives`
    (p_holm < alpha, as `compare` stars)."""
    tests = pairwise_tests(items, primary, methods, samples, seed)
    for test, adjusted in zip(tests, holm([t["p_value"] for t in tests])):
        test["p_holm"], test["survives"] = adjusted, adjusted < alpha
    return tests


# ---- one metric -----------------------------------------------------------------------------------


def _between(tests: list[dict], metric: str, first: str, second: str) -> dict | None:
    """The family's test of first vs second on `metric`, oriented first - second."""
    for test in tests:
        if test["metric"] == metric and {test["a"], test["b"]} == {first, second}:
            return test if test["a"] == first else flip(test)
    return None


def _values(scores: dict[str, dict[str, float]]) -> tuple[dict[str, float], int]:
    """Each method's mean over the items every method scored, and their number."""
    common = set.intersection(*(set(s) for s in scores.values()))
    common = sorted(i for i in common if all(s[i] is not None for s in scores.values()))
    return {m: float(np.mean([s[i] for i in common])) for m, s in scores.items()} if common else {}, len(common)


def _shown_better(test: dict | None, sign: int) -> bool:
    return bool(test and test["survives"] and sign * test["diff"] > 0)


def _plan(test: dict, m: int, alpha: float, power: float, target: float) -> dict:
    """MDE at the pair's n and the items for `target`, at alpha / m, from one pair's discordance (0/1
    scores, exact) or per-item SD (continuous, normal approximation)."""
    n = test["n"]
    plan = {"n": n, "level": alpha / m, "power": power, "target_difference": target}
    if "discordant" in test:
        p_disc = sum(test["discordant"]) / n
        plan.update(method="exact McNemar", discordance=round(p_disc, 4))
        if p_disc == 0:
            plan.update(mde=None, items_needed=None, why="the two answered every item alike")
            return plan
        plan["mde"] = mcnemar_mde(n, p_disc, alpha, m, power)
        if target > p_disc:
            plan.update(items_needed=None, why=f"a difference of {target:g} needs at least that share of items "
                                               f"answered differently; this pair differs on {p_disc:.0%}")
        else:
            plan["items_needed"] = mcnemar_items_needed(target, p_disc, alpha, m, power)
        return plan
    sd = test["sd"]
    plan.update(method="normal approximation", sd=sd)
    if not sd or np.isnan(sd):
        plan.update(mde=None, items_needed=None, why="the per-item differences do not vary")
        return plan
    plan.update(mde=normal_mde(sd, n, alpha, m, power), items_needed=normal_items_needed(target, sd, alpha, m, power))
    return plan


def metric_verdict(scores: dict[str, dict[str, float]], endpoint: Endpoint, tests: list[dict], family_size: int,
                   alpha: float = 0.05, power: float = 0.8, target_difference: float = 0.05) -> dict:
    """The verdict on one primary metric (module docstring): best or cannot be told apart."""
    values, n = _values(scores) if len(scores) > 1 else ({}, 0)
    out = {"metric": endpoint.label, "higher_is_better": endpoint.higher_is_better,
           "values": {m: round(v, 4) for m, v in values.items()}, "n": n}
    if len(values) < 2:
        return {**out, "best": None, "decided": False, "why": "fewer than two methods scored the same items"}
    sign = 1 if endpoint.higher_is_better else -1
    ranking = sorted(values, key=lambda m: -sign * values[m])  # stable: ties keep the method order
    top, others = ranking[0], ranking[1:]
    versus = {other: _between(tests, endpoint.label, top, other) for other in others}
    beaten = [o for o in others if _shown_better(versus[o], sign)]
    decided = len(beaten) == len(others)
    runner_up = versus[others[0]]
    out.update(ranking=ranking, top=top, runner_up=others[0], versus_runner_up=runner_up, beats=beaten,
               contenders=[top] + [o for o in others if o not in beaten], decided=decided,
               best=top if decided else None)
    if not decided:
        # plan from the closest contender whose answers differ from the top's at all: a tie on
        # every item (common at n = 100) says nothing about how often two methods disagree
        informative = [versus[o] for o in out["contenders"][1:] if versus[o] and _varies(versus[o])]
        pair = informative[0] if informative else runner_up
        if pair:
            out["plan"] = {"versus": pair["b"], **_plan(pair, family_size, alpha, power, target_difference)}
    return out


def _varies(test: dict) -> bool:
    """Whether the two methods' per-item scores differ anywhere."""
    return sum(test["discordant"]) > 0 if "discordant" in test else bool(test["sd"] and not np.isnan(test["sd"]))


# ---- the balance ----------------------------------------------------------------------------------


def _dominates(first: str, second: str, chosen: list[Endpoint], tests: list[dict], cost: dict | None) -> bool:
    shown = False
    for e in chosen:
        test, sign = _between(tests, e.label, first, second), 1 if e.higher_is_better else -1
        if test is None or sign * test["diff"] < 0:
            return False
        shown = shown or _shown_better(test, sign)
    if cost and first in cost and second in cost and cost[first] > cost[second]:
        return False
    return shown


def balance(methods: list[str], chosen: list[Endpoint], tests: list[dict], values: dict[str, dict[str, float]],
            cost: dict[str, float] | None = None) -> dict:
    """The Pareto set over the primary metrics (and cost), who dominates whom, and what each
    member of the set trades: per metric its gap to the best member and whether it survives Holm."""
    dominated = {b: [a for a in methods if a != b and _dominates(a, b, chosen, tests, cost)] for b in methods}
    front = [m for m in methods if not dominated[m]]
    trades = {}
    for method in front:
        rows = []
        for e in chosen:
            here = {m: v for m, v in values.get(e.label, {}).items() if m in front}
            if method not in here:
                continue
            sign = 1 if e.higher_is_better else -1
            leader = max(here, key=lambda m: sign * here[m])  # first of the best, in method order
            gap = _between(tests, e.label, method, leader) if leader != method else None
            rows.append({"metric": e.label, "value": here[method], "leader": leader,
                         "gap": None if gap is None else gap["diff"],
                         "gap_survives": bool(gap and gap["survives"])})
        trades[method] = rows
    return {"set": front, "dominated_by": {m: d for m, d in dominated.items() if d}, "trades": trades,
            "cost": cost}


# ---- all of it ------------------------------------------------------------------------------------


def verdict(items: dict, primary: list[Endpoint], methods=None, alpha: float = 0.05, power: float = 0.8,
            target_difference: float = 0.05, cost: dict[str, float] | None = None, samples: int = 1000,
            seed: int = 0) -> dict:
    """The primary family, each primary metric's verdict and the balance set.

    `items`: method -> eval_items.json's "items"; `methods`: their order (default: `items`' order);
    `cost`: method -> a cost (lower is better, e.g. train GPU-seconds), optional.
    """
    methods = list(items) if methods is None else list(methods)
    if not primary:
        raise ValueError("declare at least one primary metric (params compare.primary)")
    tests = primary_family(items, primary, methods, alpha, samples, seed)
    size = max(len(tests), 1)
    metrics = [metric_verdict(metric_scores(items, e, methods), e, tests, size, alpha, power, target_difference)
               for e in primary]
    values = {v["metric"]: v["values"] for v in metrics}
    present = [m for m in methods if any(m in v for v in values.values())]
    return {"primary": [e.label for e in primary], "alpha": alpha, "power": power,
            "target_difference": target_difference, "family_size": len(tests), "family": tests,
            "metrics": metrics, "balance": balance(present, primary, tests, values, cost)}


# ---- markdown -------------------------------------------------------------------------------------


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _difference(test: dict) -> str:
    return (f"{test['diff']:+.2f} [{test['low']:+.2f}, {test['high']:+.2f}], {_p(test['p_value'])}, "
            f"Holm {_p(test['p_holm'])}{'*' if test['survives'] else ''}, n={test['n']}")


def _metric_lines(v: dict, result: dict) -> list[str]:
    arrow = "↑" if v["higher_is_better"] else "↓"
    head = f"- **{v['metric']}** {arrow}: "
    if "top" not in v:
        return [head + v["why"] + "."]
    vals = v["values"]
    if v["decided"]:
        return [head + f"**{v['best']}** is best ({vals[v['best']]:.2f}, n={v['n']}), ahead of every other "
                f"method after Holm; vs the runner-up {v['runner_up']} ({vals[v['runner_up']]:.2f}): "
                f"{_difference(v['versus_runner_up'])}."]
    contenders = ", ".join(f"{m} {vals[m]:.2f}" for m in v["contenders"])
    line = head + f"cannot be told apart at n={v['n']}: {contenders}."
    if v["versus_runner_up"]:
        line += f" Top vs runner-up ({v['top']} - {v['runner_up']}): {_difference(v['versus_runner_up'])}."
    if v["beats"]:
        line += f" {v['top']} is ahead of {', '.join(v['beats'])} after Holm."
    plan = v.get("plan")
    if plan:
        level = f"alpha/m = {result['alpha']:g}/{result['family_size']}"
        line += f" Plan from {v['top']} vs {plan['versus']}:"
        if plan.get("mde") is None:
            line += f" nothing can be planned, {plan.get('why', 'too few items')}."
        else:
            basis = (f"the pair's {plan['discordance']:.0%} discordant items, exact McNemar"
                     if plan["method"] == "exact McNemar" else f"per-item SD {plan['sd']:.2f}, normal approximation")
            line += (f" at {level} and {plan['power']:.0%} power, n={plan['n']} detects a difference of "
                     f"{plan['mde']:.2f} ({basis});")
            needed = plan.get("items_needed")
            line += (f" {plan['target_difference']:g} needs {needed:,} items." if needed else
                     f" {plan['target_difference']:g} cannot be planned: {plan.get('why', 'beyond the search')}.")
    return [line]


def verdict_markdown(result: dict) -> str:
    """The verdict block: one line per primary metric, then the balance set and what each trades."""
    lines = [(f"**Verdict** on the primary metrics ({', '.join(result['primary'])}): Holm's correction over the "
              f"{result['family_size']} paired tests of every pair of methods on them, alpha = {result['alpha']:g}; "
              "differences with 95% intervals (Newcombe for 0/1 scores, paired bootstrap otherwise)."), ""]
    for v in result["metrics"]:
        lines += _metric_lines(v, result)
    bal = result["balance"]
    criteria = ", ".join(result["primary"]) + (" and cost" if bal["cost"] else "")
    lines += ["", (f"**Balance** over {criteria}: a method is left out only when another is at least as good on "
                   "every one and better after Holm on one.")]
    for method in bal["set"]:
        parts = []
        for row in bal["trades"][method]:
            if row["leader"] == method or row["gap"] == 0:
                parts.append(f"best of these on {row['metric']} ({row['value']:.2f})")
            else:
                sig = "after Holm" if row["gap_survives"] else "not significant"
                parts.append(f"{row['metric']} {row['value']:.2f} ({row['gap']:+.2f} vs {row['leader']}, {sig})")
        if bal["cost"] and method in bal["cost"]:
            parts.append(f"cost {bal['cost'][method]:g}")
        lines.append(f"- {method}: " + "; ".join(parts) + ".")
    for method, by in bal["dominated_by"].items():
        lines.append(f"- left out: {method}, dominated by {', '.join(by)}.")
    return "\n".join(lines) + "\n"


def pairs_markdown(tests: list[dict]) -> str:
    """A table of paired differences; stars only where the tests carry `survives` (the primary family)."""
    lines = ["| metric | a - b | difference [95% interval] | p | Holm p | n |", "|---|---|---|---|---|---|"]
    for t in tests:
        holm_text = (f"{t['p_holm']:.3f}{'*' if t['survives'] else ''}") if "p_holm" in t else ""
        lines.append(f"| {t['metric']} | {t['a']} - {t['b']} | {t['diff']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}] | "
                     f"{t['p_value']:.3f} | {holm_text} | {t['n']} |")
    return "\n".join(lines) + "\n"
