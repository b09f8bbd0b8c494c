"""`medadapt power`: what a pilot's per-item results can detect, and the items and seeds more would take.

    medadapt power                                   # the project's results (as compare reads them)
    medadapt power --runs reports/reference/runs     # run folders instead
    medadapt power reports/power --seed-sd 0.03      # also write .md/.json; a seed SD to plan seeds with

Reads the per-item results of the first table `medadapt compare` would print (the workspace,
HEAD and every experiment sharing its comparison key), or `<runs>/<run>/reports/eval_items.json`
for every run folder under `--runs`. For every primary metric with 0/1 scores and
every pair of methods it takes the pair's discordance (share of items answered differently)
and gives, by exact computation (`scoring.power`):
- the minimum detectable difference (80% power) at alpha and at the primary family's first Holm
  step, alpha / m, with m the number of primary tests these runs make (`scoring.verdict`);
- the power to detect each target difference at both levels;
- the items per dataset each target needs, at the lowest, median and highest discordance seen;
- with a seed SD (the SD of a trained method's mean over training seeds: measured where the
  results hold a seed grid, or given with `--seed-sd`), the MDE over items and seeds per method
  (normal approximation, `power.seeds_mde`).

Settings come from params `compare` (`primary`, `target_difference`, `alpha`, `power`). Writes
nothing unless given `out`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..artifacts import write_json
from ..errors import UserError
from ..paths import EVAL_ITEMS
from ..scoring.pairwise import matched
from ..scoring.power import Components, mcnemar_items_needed, mcnemar_mde, mcnemar_power, seeds_mde
from ..scoring.reports import HEADLINE
from ..scoring.stats import is_binary
from ..scoring.verdict import endpoints, metric_scores, pairwise_tests

TARGETS = (0.05, 0.10)  # always planned beside the params' target_difference
ITEMS = (100, 200, 500, 1000)  # the seed table's item counts
SEEDS = (1, 3, 5, 10)


def settings(params, seed_sd: float | None = None) -> dict:
    """params `compare.*` (primary, alpha, power, target_difference) and the seed SD to plan with."""
    section = params.compare
    return {"primary": list(section.primary), "alpha": section.alpha, "power": section.power,
            "target_difference": section.target_difference, "seed_sd": seed_sd}


def project_items(root: Path) -> tuple[dict, float | None]:
    """method -> per-item results of the first comparable table of the project (a method's first
    training seed), and the seed SD measured where methods were trained under several seeds."""
    from ._experiments import collect, group
    from .compare import items_of

    groups = [g for g in group(collect(root)) if g["key"] is not None]
    if not groups:
        return {}, None
    results = groups[0]["results"]
    spreads = []
    for replicates in results.values():
        if len(replicates) > 1:
            grid = items_of(replicates)
            for scores in grid.values():
                means = np.array(list(scores.values()), dtype=float).mean(axis=0)  # per seed
                spreads.append(float(np.std(means, ddof=1)))
    return {m: reps[0]["items"] for m, reps in results.items()}, (float(np.median(spreads)) if spreads else None)


def load_runs(runs: Path) -> dict[str, dict]:
    """method -> its eval_items.json "items", for each run folder under `runs` (name order)."""
    items = {}
    for folder in sorted(p for p in Path(runs).iterdir() if p.is_dir()):
        path = folder / EVAL_ITEMS
        if path.is_file():
            data = json.loads(path.read_text())
            items[data.get("method") or folder.name] = data["items"]
    return items


def pair_rows(scores: dict, alpha: float, m: int, power: float, targets) -> list[dict]:
    """Per pair of methods on one 0/1 metric: n, discordance, MDE at alpha and alpha/m, power per target."""
    rows = []
    methods = list(scores)
    for i, first in enumerate(methods):
        for second in methods[i + 1:]:
            ids, a, b = matched(scores[first], scores[second])
            if not ids:
                continue
            p_disc, n = float(np.mean(a != b)), len(ids)
            row = {"a": first, "b": second, "n": n, "discordance": round(p_disc, 4),
                   "mde": mcnemar_mde(n, p_disc, alpha, 1, power) if p_disc else None,
                   "mde_family": mcnemar_mde(n, p_disc, alpha, m, power) if p_disc else None, "power": {}}
            for t in targets:
                row["power"][str(t)] = ([round(mcnemar_power(n, p_disc, t, alpha, k), 4) for k in (1, m)]
                                        if p_disc >= t else None)
            rows.append(row)
    return rows


def needed(p_discs: list[float], alpha: float, m: int, power: float, targets) -> list[dict]:
    """Items for each target at the lowest, median and highest discordance, at alpha and alpha/m."""
    out = []
    for label, p_disc in zip(("lowest", "median", "highest"),
                             (min(p_discs), float(np.median(p_discs)), max(p_discs))):
        row = {"discordance": round(p_disc, 4), "at": label, "items": {}}
        for t in targets:
            row["items"][str(t)] = ([mcnemar_items_needed(t, p_disc, alpha, k, power) for k in (1, m)]
                                    if p_disc >= t else None)
        out.append(row)
    return out


def seed_rows(p_disc: float, seed_sd: float, alpha: float, m: int, power: float) -> list[dict]:
    """MDE (normal approximation) over items and seeds of two trained methods, item variance p_disc."""
    c = Components(item=p_disc, seed_a=seed_sd ** 2, seed_b=seed_sd ** 2)
    return [{"items": n, "seeds": s, "mde": round(seeds_mde(n, s, c, alpha, 1, power), 4),
             "mde_family": round(seeds_mde(n, s, c, alpha, m, power), 4)} for n in ITEMS for s in SEEDS]


def plan(items: dict, config: dict) -> dict:
    """The whole plan as a dict (see the module docstring)."""
    chosen = endpoints(HEADLINE, config["primary"])
    m = max(1, len(pairwise_tests(items, chosen, samples=10)))  # the primary family's size
    alpha, power = config["alpha"], config["power"]
    targets = sorted({*TARGETS, config["target_difference"]})
    metrics = []
    for e in chosen:
        scores = metric_scores(items, e)
        if not scores or not all(is_binary(list(s.values())) for s in scores.values()):
            metrics.append({"metric": e.label, "skipped": "not 0/1 scores (the exact McNemar plan needs them)"})
            continue
        rows = pair_rows(scores, alpha, m, power, targets)
        p_discs = [r["discordance"] for r in rows if r["discordance"] > 0]
        entry = {"metric": e.label, "pairs": rows, "needed": needed(p_discs, alpha, m, power, targets) if p_discs else []}
        if config.get("seed_sd") is not None and p_discs:
            entry["seeds"] = seed_rows(float(np.median(p_discs)), config["seed_sd"], alpha, m, power)
        metrics.append(entry)
    return {"alpha": alpha, "power": power, "family_size": m, "targets": targets, "methods": list(items),
            "metrics": metrics, "seed_sd": config.get("seed_sd")}


def _range(values, form: str = ".2f") -> str:
    """min-max of the values that are not None, as text ("none" if there are none)."""
    values = [v for v in values if v is not None]
    if not values:
        return "none"
    low, high = format(min(values), form), format(max(values), form)
    return low if low == high else f"{low}-{high}"


def markdown(result: dict) -> str:
    alpha, m = result["alpha"], result["family_size"]
    lines = [(f"**Power of the exact McNemar test** ({result['power']:.0%} power; alpha = {alpha:g}, and "
              f"alpha/m = {alpha:g}/{m} at the first Holm step of the {m} primary tests of "
              f"{len(result['methods'])} methods), from the pilot's own discordance per pair."), ""]
    for entry in result["metrics"]:
        if "skipped" in entry:
            lines += [f"- {entry['metric']}: skipped, {entry['skipped']}."]
            continue
        rows = [r for r in entry["pairs"] if r["discordance"] > 0]
        same = len(entry["pairs"]) - len(rows)
        n = _range([r["n"] for r in entry["pairs"]], "d")
        unreachable = sum(r["mde_family"] is None for r in rows)
        lines.append(f"- **{entry['metric']}** (n={n}): {len(rows)} pairs with discordance "
                     f"{_range([r['discordance'] for r in rows])}" + (f", {same} answering every item alike" if same else "")
                     + f". MDE {_range([r['mde'] for r in rows])} at alpha, {_range([r['mde_family'] for r in rows])} "
                     "at alpha/m" + (f" ({unreachable} pairs: no difference reaches the power at alpha/m, not even "
                                     "every discordant item one way)" if unreachable else "") + ".")
        for t in result["targets"]:
            powers = [r["power"][str(t)] for r in rows if r["power"][str(t)]]
            if powers:
                lines.append(f"  - power to detect {t:+.2f} (the {len(powers)} pairs with discordance >= {t:g}): "
                             f"{_range([p[0] for p in powers])} at alpha, {_range([p[1] for p in powers])} at alpha/m.")
        for row in entry["needed"]:
            parts = [f"{t:g}: " + ("needs more discordance" if row["items"][str(t)] is None else
                                   " / ".join(f"{k:,}" if k else "over the search" for k in row["items"][str(t)]))
                     for t in result["targets"]]
            lines.append(f"  - items needed at the {row['at']} discordance ({row['discordance']:.2f}), "
                         f"at alpha / alpha/m: " + "; ".join(parts) + ".")
        if entry.get("seeds"):
            lines += ["", (f"  MDE by items x seeds per method (normal approximation; between-seed SD "
                           f"{result['seed_sd']:g} of each trained method's mean, item variance = median "
                           "discordance), at alpha / alpha/m:"), "",
                      "  | items | " + " | ".join(f"{s} seeds" for s in SEEDS) + " |", "  |---|" + "---|" * len(SEEDS)]
            for n_items in ITEMS:
                cells = [f"{r['mde']:.3f} / {r['mde_family']:.3f}" for r in entry["seeds"] if r["items"] == n_items]
                lines.append(f"  | {n_items} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(params, root: Path = Path("."), out: Path | str | None = None, runs: Path | str | None = None,
         seed_sd: float | None = None) -> dict:
    """Print the plan for the project's results, or for the run folders under `runs`; with `out`
    (e.g. `reports/power`), also write `out`.md and `out`.json."""
    root = Path(root)
    measured = None
    if runs:
        folder = root / Path(runs)
        items = load_runs(folder) if folder.is_dir() else {}
        where = str(folder)
    else:
        items, measured = project_items(root)
        where = "the project's results (`medadapt compare`'s first table)"
    if len(items) < 2:
        print(f"power needs the per-item results of at least two methods in {where}")
        return {}
    try:
        result = plan(items, settings(params, seed_sd if seed_sd is not None else measured))
    except ValueError as error:
        raise UserError(f"compare.primary: {error}") from None
    text = markdown(result)
    print(text)
    if out:
        target = root / Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.with_suffix(".md").write_text(text)
        write_json(target.with_suffix(".json"), result)
    return result
