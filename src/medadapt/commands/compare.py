"""`medadapt compare`: which method is best on the primary metrics, or what it would take to know.

    dvc exp run --queue -S method=base,icl,sft,dpo,grpo && dvc queue start   # the sweep
    medadapt compare                                                         # print it
    medadapt compare reports/compare                                         # and write .md/.json/.png
    medadapt compare --runs reports/reference/runs                           # run folders instead

Reads `metrics/eval.json`, `reports/eval_details.json` and `reports/eval_items.json` from the
workspace, HEAD and every DVC experiment (or from each folder under `--runs`). Results are tabled
together only when they share a comparison key (`scoring.reports.comparison_key`: the code
`evaluate` ran, the eval items' content and gold labels, the base's and the reward model's
digests, every param evaluate reads) and the configuration of the table (HEAD's params, or the
newest run's: `_experiments.group`); what is left out is said, with why. A method evaluated
under several training seeds (`train.seed`, the seed grid of the README) is one row: its mean
over the seeds, the seed-to-seed SD, and tests that resample items and seeds.

The output, first table first:
1. **The verdict** (`scoring.verdict`) on the primary metrics of params `compare.primary`: the
   best method with its difference to the runner-up, or that the methods cannot be told apart
   at this n, with the smallest detectable difference and the items a difference of
   `compare.target_difference` needs; then the balance (Pareto) set and what each method trades.
   Holm's family is every pair of methods on the primary metrics alone: only those tests get
   stars. A multiple-choice accuracy where one letter takes over 60% of a method's answers is
   marked position-biased, with its circular accuracy beside it (`position_bias`).
2. **The table**: every headline metric of every method, value [95% interval] and the paired
   difference against `base` (p; * = survives Holm in the primary family).
3. **Every pair** of methods on the primary metrics, with paired-difference intervals.
4. What each method cost, and what was left out.
Nothing is written unless an output prefix is given, so the tracked `reports/compare.*` change
only on purpose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import write_json
from ..errors import UserError
from ..params import flatten
from ..paths import JUDGES_REPORT, METHODS, metrics_file
from ..scoring.agreement import kappa_difference
from ..scoring.judge_quality import JUDGED_METRICS, judged_metrics
from ..scoring.pairwise import all_pairs
from ..scoring.reports import HEADLINE, metric_at
from ..scoring.seeds import seed_spread, two_level_test
from ..scoring.verdict import endpoints, pairs_markdown, verdict, verdict_markdown
from ._experiments import collect, group, json_at, yaml_at
from .costs import cost_markdown, method_costs

NOT_A_RATE = {"RM reward mean"}  # not on a 0-1 scale: tabled, not charted
POSITION_BIAS = 0.6  # one letter's share of a method's multiple-choice answers above which it is marked
CIRCULAR = {"MedMCQA acc": ("medmcqa", "MedMCQA circular acc"), "MedQA acc": ("medqa", "MedQA circular acc")}
JUDGED_LABELS = {label for label, path, *_ in HEADLINE if ".".join(path) in JUDGED_METRICS}


# ---- comparing two keys -------------------------------------------------------------------------


def key_differences(first: dict, other: dict) -> list[str]:
    """`field: first vs other` for each field of two comparison keys that differs."""
    a, b = flatten(first), flatten(other)
    return [f"{field}: {a.get(field)} vs {b.get(field)}" for field in sorted(set(a) | set(b))
            if a.get(field) != b.get(field)]


def source_name(source: str) -> str:
    """`data.source` as a reader names it: sample, hub, or a folder by its own name (the path
    before it belongs to the machine that ran it)."""
    return source if source in ("sample", "hub") else f"folder {Path(source).name}"


def describe(key: dict | None) -> str:
    """One line naming what the runs of a table share."""
    if key is None or "code" not in key:
        return ("WARNING: these results carry no full comparison key (evaluated by an older `evaluate`): they "
                "may come from other code, models, data or settings. Re-run `evaluate` to compare them safely.")
    items = ", ".join(f"{name} {digest['n']}" for name, digest in key["items"].items())
    params = key["params"]
    return (f"Base {params.get('model.base')} (quantization {params.get('model.quantization')}, dtype "
            f"{params.get('model.dtype')}; files {key['base'] or 'not in the project'}); eval items {items} "
            f"(data seed {params.get('data.seed')}); evaluate code {key['code']}, reward model {key['reward_model']}.")


# ---- per method: its replicates as one row ---------------------------------------------------------


def items_of(replicates: list[dict]) -> dict:
    """The method's per-item scores: eval_items.json's own with one training seed; with several,
    per item key a list over the seeds (items every seed scored; kappa's answer lists excluded)."""
    if len(replicates) == 1:
        return replicates[0]["items"]
    merged = {}
    for key in replicates[0]["items"]:
        per = [r["items"].get(key, {}) for r in replicates]
        ids = set.intersection(*(set(p) for p in per))
        if all(isinstance(p[i], (int, float)) for p in per for i in ids):
            merged[key] = {i: [p[i] for p in per] for i in sorted(ids)}
    return merged


def cell(replicates: list[dict], path: tuple, item_key: str | None, seed: int) -> dict | None:
    """value [low, high] and n of one metric; over several training seeds the mean of the seeds, an
    interval resampling items and seeds where per-item scores exist, and the seed-to-seed SD."""
    values = [metric_at(r["metrics"], path) for r in replicates]
    if any(v is None for v in values):
        return None
    if len(values) == 1:
        return {k: values[0][k] for k in ("value", "low", "high", "n")}
    scores = items_of(replicates).get(item_key) if item_key else None
    spread = seed_spread([[v["value"]] for v in values])
    out = {"value": spread["mean"], "n": values[0]["n"], "seeds": len(values), "seed_sd": spread["sd"]}
    if scores:
        grid = np.array(list(scores.values()), dtype=float).T
        interval = two_level_test(grid, np.zeros((1, grid.shape[1])), seed=seed)
        out.update(low=interval["low"], high=interval["high"], n=grid.shape[1])
    else:  # no per-item scores: the seeds' own intervals, averaged (a rough guide, said in the legend)
        out.update(low=round(float(np.mean([v["low"] for v in values])), 4),
                   high=round(float(np.mean([v["high"] for v in values])), 4))
    return out


def position_bias(replicates: list[dict], label: str) -> dict | None:
    """The most predicted letter of a multiple-choice accuracy and its share, when over POSITION_BIAS
    (the largest over the method's seeds): such an accuracy may be the share of gold answers at
    that letter, not knowledge, so its circular accuracy is shown beside it."""
    if label not in CIRCULAR:
        return None
    worst = None
    for result in replicates:
        letters = (result["metrics"].get(CIRCULAR[label][0]) or {}).get("predicted_letters") or {}
        total = sum(letters.values())
        if total:
            letter, count = max(letters.items(), key=lambda kv: kv[1])
            if count / total > POSITION_BIAS and (worst is None or count / total > worst["share"]):
                worst = {"letter": letter, "share": round(count / total, 4)}
    return worst


# ---- the table ----------------------------------------------------------------------------------


def table(results: dict[str, list[dict]], family: list[dict], seed: int = 0) -> list[dict]:
    """One row per method in METHODS order: every HEADLINE metric, its difference against base (the
    primary family's test where the metric is primary, else a pair test without a star)."""
    primary = {t["metric"] for t in family}
    methods = [m for m in METHODS if m in results]
    rows = []
    for method in methods:
        row = {"method": method, "sources": [r["source"] for r in results[method]], "metrics": {}}
        for label, path, item_key, _ in HEADLINE:
            value = cell(results[method], path, item_key, seed)
            if value is None:
                continue
            if (bias := position_bias(results[method], label)) is not None:
                value["position_bias"] = bias
            if method != "base" and "base" in results and item_key:
                test = _family_test(family, label, method) if label in primary else \
                    _pair_test(results, label, item_key, method, seed)
                if test:
                    value["vs_base"] = test
            row["metrics"][label] = value
        rows.append(row)
    return rows


def _family_test(family: list[dict], label: str, method: str) -> dict | None:
    for test in family:
        if test["metric"] == label and {test["a"], test["b"]} == {method, "base"}:
            return test if test["a"] == method else {**test, "diff": 0.0 - test["diff"],
                                                     "low": 0.0 - test["high"], "high": 0.0 - test["low"]}
    return None


def _pair_test(results: dict, label: str, item_key: str, method: str, seed: int) -> dict | None:
    """A secondary metric's difference against base: its p, no star (not in the primary family).
    Kappa is no item mean: its difference is a paired bootstrap over items with a permutation p
    (`agreement.kappa_difference`), for one seed a side."""
    mine, base = (items_of(results[m]).get(item_key) for m in (method, "base"))
    if not mine or not base:
        return None
    if _answers(mine) or _answers(base):
        ids = sorted(set(mine) & set(base))
        if len(results[method]) > 1 or len(results["base"]) > 1 or not ids:
            return None
        test = kappa_difference([mine[i] for i in ids], [base[i] for i in ids], seed=seed, missing="category")
        return {**test, "metric": label, "p_bound": False} if test["diff"] is not None else None
    pairs = all_pairs({method: mine, "base": base}, seed=seed)
    return {**pairs[0], "metric": label} if pairs else None


def _answers(scores: dict) -> bool:
    """Per-item answer lists (kappa's), not scores."""
    first = next(iter(scores.values()))
    return isinstance(first, list) and bool(first) and isinstance(first[0], str)


def _p_text(test: dict) -> str:
    p = test["p_value"]
    text = f"p<{p:.2g}" if test.get("p_bound") else "p<0.001" if p < 0.001 else f"p={p:.3f}"
    return text + ("*" if test.get("survives") else "")


def _cell_text(value: dict) -> str:
    text = f"{value['value']:.2f} [{value['low']:.2f}, {value['high']:.2f}]"
    if value.get("seeds"):
        text += f" sd {value['seed_sd']:.2f}/{value['seeds']} seeds"
    if value.get("position_bias"):
        bias = value["position_bias"]
        text += f" ⚑{bias['letter']} {bias['share']:.0%}"
    test = value.get("vs_base")
    if test:
        if test["n"] != value["n"]:  # the value covers items the test could not pair: say so
            text += f" n={value['n']}"
        text += f" ({test['diff']:+.2f}, {_p_text(test)}, n={test['n']})"
    return text


def _labels(rows: list[dict]) -> list[str]:
    return [label for label, *_ in HEADLINE if any(label in r["metrics"] for r in rows)]


def _n_text(rows: list[dict], label: str) -> str:
    counts = sorted({r["metrics"][label]["n"] for r in rows if label in r["metrics"]})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def markdown(rows: list[dict], primary: list[str], family_size: int, alpha: float) -> str:
    """The table and its legend."""
    labels = _labels(rows)
    heads = [f"{label} (primary)" if label in primary else label for label in labels]
    lines = ["| method | " + " | ".join(heads) + " |", "|---|" + "---|" * len(labels)]
    for row in rows:
        cells = [_cell_text(row["metrics"][label]) if label in row["metrics"] else "" for label in labels]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    legend = ("Value [95% interval: Wilson for rates of 0/1 items, percentile bootstrap for means of continuous "
              "scores and for kappa]; (difference vs base, p, n) on the n items both were scored on: exact McNemar "
              "(0/1 scores) or paired sign-flip permutation (continuous). * survives Holm's correction in the primary "
              f"family ({family_size} tests: every pair of methods on the primary metrics, alpha {alpha:g}); "
              "secondary metrics carry no star.")
    if any(v.get("seeds") for r in rows for v in r["metrics"].values()):
        legend += (" A method trained under several seeds shows its mean over them, 'sd' the SD of its seed means, "
                   "and an interval and tests that resample items and seeds (two-level bootstrap; where a metric "
                   "has no per-item scores, the mean of the seeds' own intervals).")
    if any(v.get("position_bias") for r in rows for v in r["metrics"].values()):
        legend += (f" ⚑X p%: position-biased, one letter takes over {POSITION_BIAS:.0%} of the answers; read the "
                   "circular accuracy beside it.")
    counts = ", ".join(f"{label} {_n_text(rows, label)}" for label in labels)
    return "\n".join(lines + ["", f"{legend} n per metric: {counts}."]) + "\n"


# ---- the verdict ----------------------------------------------------------------------------------


def decide(results: dict[str, list[dict]], settings, costs: dict | None, seed: int) -> dict:
    """`scoring.verdict` on the primary metrics, with the position-biased ones marked."""
    try:
        primary = endpoints(HEADLINE, settings.primary)
    except ValueError as error:
        raise UserError(f"compare.primary: {error}") from None
    if any(e.item_key.endswith("variant_answers") for e in primary):
        raise UserError("compare.primary: kappa is no mean over items, so it has no paired test in Holm's family; "
                        "it is reported as a secondary metric")
    methods = [m for m in METHODS if m in results]
    items = {m: items_of(results[m]) for m in methods}
    cost = None
    if settings.balance_cost and costs:
        cost = {m: c.get("train_gpu_seconds") or c.get("train_seconds") for m, c in costs.items()}
    result = verdict(items, primary, methods, settings.alpha, settings.power, settings.target_difference, cost,
                     seed=seed)
    result["position_bias"] = {label: {m: bias for m in methods if (bias := position_bias(results[m], label))}
                               for label in settings.primary if label in CIRCULAR}
    return result


def judge_quality(results: dict[str, list[dict]], root: Path) -> dict[str, dict]:
    """HEADLINE label -> how far the judge behind it can be trusted (`scoring.judge_quality`): the
    rules' J from the project's `reports/judges.json`, the reward model's from the `metrics/rm.json`
    that the table's first result was evaluated with."""
    first = next(iter(results.values()))[0]
    judged = judged_metrics(json_at(None, JUDGES_REPORT.as_posix(), root),
                            json_at(first.get("rev"), metrics_file("rm").as_posix(), first["root"]))
    return {label: judged[".".join(path)] for label, path, *_ in HEADLINE if ".".join(path) in judged}


def judge_lines(quality: dict[str, dict], labels: list[str]) -> list[str]:
    """The judge behind each judged metric and its Youden J on held-out labelled answers."""
    lines = []
    for label in labels:
        if label in quality:
            q = quality[label]
            lines.append(f"- {label}: {q['judge']} judge, J {q['J']:.2f} [{q['low']:.2f}, {q['high']:.2f}] on {q['n']} "
                         "held-out labelled answers" + ("." if q["better_than_chance"] else
                                                        ": ⚠ not shown better than chance, its differences say nothing."))
        elif label in JUDGED_LABELS:
            lines.append(f"- {label}: ⚠ its judge was not measured here, so it is not shown better than chance.")
    return lines


def bias_lines(result: dict, rows: list[dict]) -> list[str]:
    """What the verdict on a position-biased accuracy is worth, with the circular accuracies."""
    lines = []
    for label, biased in result["position_bias"].items():
        if not biased:
            continue
        circular = CIRCULAR[label][1]
        shown = ", ".join(f"{m} {row['metrics'][circular]['value']:.2f}" for row in rows for m in [row["method"]]
                          if circular in row["metrics"])
        lines.append(f"- ⚑ {label} is position-biased for " + ", ".join(
            f"{m} ({b['letter']} {b['share']:.0%})" for m, b in biased.items())
            + f": read it beside the circular accuracy ({shown}).")
    return lines


# ---- the report ---------------------------------------------------------------------------------


def report(groups: list[dict]) -> str:
    """The verdict of table 1, then every group's heading, table, pairs, costs and left-out runs."""
    parts = []
    for number, entry in enumerate(groups, start=1):
        lines = [f"### Table {number}", "", describe(entry["key"])]
        if number > 1 and entry["key"] is not None and groups[0]["key"] is not None:
            lines.append("Not comparable with table 1, whose runs differ in: "
                         + "; ".join(key_differences(groups[0]["key"], entry["key"])) + ".")
        if entry.get("verdict"):
            lines += ["", verdict_markdown(entry["verdict"]).rstrip("\n"), *bias_lines(entry["verdict"], entry["rows"]),
                      *judge_lines(entry["judges"], [label for label in entry["verdict"]["primary"]])]
        result = entry.get("verdict") or {}
        lines += ["", markdown(entry["rows"], result.get("primary", []), result.get("family_size", 0),
                               result.get("alpha", 0.05)).rstrip("\n")]
        if result.get("family"):
            lines += ["", "Every pair of methods on the primary metrics (a - b; * survives Holm in the family):", "",
                      pairs_markdown(result["family"]).rstrip("\n")]
        judged = judge_lines(entry.get("judges", {}), _labels(entry["rows"]))
        if judged:
            lines += ["", "The judges behind the judged metrics (Youden's J = true minus false alarm rate, Newcombe "
                      "95% interval; `medadapt judges`):", "", *judged]
        if entry.get("costs"):
            lines += ["", "What each method cost (training: the stages that made its model; evaluation: per "
                      "question):", "", cost_markdown(entry["costs"]).rstrip("\n")]
        if entry["left_out"]:
            lines += ["", "Left out: " + "; ".join(entry["left_out"]) + "."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


# ---- the chart ----------------------------------------------------------------------------------


def figure(rows: list[dict], key: dict | None):
    """Bars with 95% intervals, higher-is-better and lower-is-better rates in separate panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label in _labels(rows) if label not in NOT_A_RATE]
    up = {label: higher for label, *_, higher in HEADLINE}
    panels = [(title, [label for label in labels if up[label] == higher])
              for title, higher in (("higher is better ↑", True), ("lower is better ↓", False))]
    panels = [(title, chosen) for title, chosen in panels if chosen]
    plot, axes = plt.subplots(1, len(panels), squeeze=False, sharey=True,
                              figsize=(max(8, 1.2 * len(labels) + 2), 4.8),
                              gridspec_kw={"width_ratios": [len(chosen) for _, chosen in panels]})
    for axis, (title, chosen) in zip(axes[0], panels):
        _bars(axis, rows, chosen, "↑" if up[chosen[0]] else "↓")
        axis.set_title(title, fontsize=10)
    axes[0][0].set_ylabel("rate (kappa for consistency), 95% interval")
    handles, methods = axes[0][0].get_legend_handles_labels()
    # one legend above the panels, where it hides no bar
    plot.legend(handles, methods, loc="upper center", bbox_to_anchor=(0.5, 0.96), ncol=len(methods), fontsize=8,
                frameon=False)
    base = key["params"].get("model.base") if key and "params" in key else None
    title = (f"medadapt: {base}, the same eval items for every method" if base
             else "medadapt: results without a comparison key (model and data not recorded)")
    plot.suptitle(title, fontsize=11)
    plot.tight_layout(rect=(0, 0, 1, 0.93))
    return plot


def _bars(axis, rows: list[dict], labels: list[str], arrow: str) -> None:
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(labels))
    for i, row in enumerate(rows):
        cells = [row["metrics"].get(label) for label in labels]
        values = np.array([c["value"] if c else np.nan for c in cells])  # missing: no bar, not a 0 bar
        errors = [[c["value"] - c["low"] if c else 0 for c in cells], [c["high"] - c["value"] if c else 0 for c in cells]]
        axis.bar(x + i * width, values, width, color=f"C{i}", edgecolor="black", linewidth=0.5, label=row["method"])
        # A dot in the method's colour keeps a rate of 0 visible (and attributable) where its bar has no height.
        axis.errorbar(x + i * width, values, yerr=errors, fmt="o", markersize=5, markerfacecolor=f"C{i}",
                      markeredgecolor="black", ecolor="black", capsize=2)
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set_ylim(-0.05, 1.05)
    axis.set_xticks(x + width * (len(rows) - 1) / 2,
                    [f"{label} {arrow}\nn={_n_text(rows, label)}" for label in labels], rotation=30, ha="right")


def chart(rows: list[dict], key: dict | None, path: Path) -> None:
    import matplotlib.pyplot as plt

    plot = figure(rows, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(plot)


# ---- the command --------------------------------------------------------------------------------


def write(groups: list[dict], text: str, out: Path) -> None:
    """`out`.md (every table), `out`.json, and `out`.png for table 1 (`out`-2.png, ... for the rest)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    write_json(out.with_suffix(".json"), {"groups": groups})
    for number, entry in enumerate(groups, start=1):
        suffix = "" if number == 1 else f"-{number}"
        chart(entry["rows"], entry["key"], out.with_name(out.with_suffix("").name + suffix + ".png"))


def comparison(params, root: Path = Path("."), runs: Path | None = None) -> list[dict]:
    """Every group: {key, verdict, rows, left_out, costs}; the verdict where two methods or more."""
    results = collect(root, runs)
    reference = None if runs else yaml_at("HEAD", "params.yaml", root)
    groups = []
    for entry in group(results, reference):
        firsts = {m: replicates[0] for m, replicates in entry["results"].items()}
        costs = method_costs(firsts, root, in_git=runs is None)
        decided = decide(entry["results"], params.compare, costs, params.data.seed) \
            if entry["key"] is not None and len(entry["results"]) > 1 else None
        family = decided["family"] if decided else []
        groups.append({"key": entry["key"], "verdict": decided, "rows": table(entry["results"], family,
                                                                              params.data.seed),
                       "left_out": entry["left_out"], "costs": costs, "judges": judge_quality(entry["results"], root)})
    return groups


def main(params, root: Path = Path("."), out: Path | str | None = None, runs: Path | str | None = None) -> list[dict]:
    """Print the verdict and the tables; with `out` (e.g. `reports/compare`), also write them; with
    `runs`, compare the run folders under it instead of the project's experiments."""
    folder = Path(root) / runs if runs else None
    if folder is not None and not folder.is_dir():
        raise UserError(f"medadapt compare --runs: {folder} is no folder (it holds one folder per run, each with "
                        "metrics/ and reports/)")
    groups = comparison(params, Path(root), folder)
    if not groups:
        print("no evaluated method found: run `dvc repro` (and the sweep in the README) first")
        return []
    text = report(groups)
    print(text)
    if out:
        write(groups, text, Path(root) / Path(out))
    return groups
