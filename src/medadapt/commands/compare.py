"""`medadapt compare`: tables of every evaluated method, with intervals and paired tests.

    dvc exp run --queue -S method=base,icl,sft,dpo && dvc queue start   # the sweep
    medadapt compare                                                      # print the tables
    medadapt compare reports/compare                                      # and write .md/.json/.png

Reads `metrics/eval.json` and `reports/eval_items.json` from the workspace, HEAD and every DVC
experiment (`refs/exps/*`, newest first). Runs are comparable only when they share a
comparison key (`reports.comparison_key`: model, data and eval items, prompt settings, seed), which
`evaluate` stores as `metrics["comparison"]`: compare prints one table per key, the
workspace's first, and says how each other table's runs differ; results without a key (older
runs) form a last table under a warning. Within a table, the newest result of each method is
shown and older ones are listed as left out.

Each headline metric shows its value and 95% interval; beside it, the paired test of the method
against `base` on exactly the items both were scored on, with that n: the exact McNemar test
for 0/1 scores, the paired sign-flip permutation test otherwise, and Holm's correction across
all tests of the table. Nothing is written unless an output path is given, so the tracked
`reports/compare.*` change only on purpose.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import write_json
from ..params import flatten
from ..paths import METHODS
from ..scoring.reports import HEADLINE, metric_at
from ..scoring.stats import holm, paired_test
from ._experiments import collect, group
from .costs import cost_markdown, method_costs

SIGNIFICANCE = 0.05  # family-wise, per table, after Holm's correction

NOT_A_RATE = {"RM reward mean"}  # not on a 0-1 scale: tabled, not charted


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
    if key is None:
        return ("WARNING: these results carry no comparison key (evaluated before `evaluate` recorded "
                "one): they may come from different models, data or settings. Re-run `evaluate` to "
                "compare them safely.")
    items = ", ".join(f"{name} {digest['n']}" for name, digest in key["data"]["eval_ids"].items())
    model, prompt = key["model"], key["prompt"]
    return (f"Model {model['base']} (quantization {model['quantization']}, dtype {model['dtype']}); "
            f"data {source_name(key['data']['source'])}, eval items {items}; seed {key['seed']}; "
            + ", ".join(f"{name} {value}" for name, value in prompt.items()) + ".")


# ---- collecting results -------------------------------------------------------------------------


# ---- the table ----------------------------------------------------------------------------------


def versus(mine: dict[str, float], theirs: dict[str, float], seed: int = 0) -> dict | None:
    """The paired test of two runs' per-item scores on exactly the items both have (None if none)."""
    common = sorted(set(mine) & set(theirs))
    if not common:
        return None
    return paired_test([mine[i] for i in common], [theirs[i] for i in common], seed=seed)


def table(results: dict[str, dict], seed: int = 0) -> list[dict]:
    """One row per method in METHODS order; paired tests against base, Holm-corrected together."""
    base = results.get("base")
    rows = []
    for method in [m for m in METHODS if m in results]:
        row = {"method": method, "source": results[method]["source"], "metrics": {}}
        for label, path, item_key, _ in HEADLINE:
            value = metric_at(results[method]["metrics"], path)
            if value is None:
                continue
            cell = {k: value[k] for k in ("value", "low", "high", "n")}
            if base and method != "base" and item_key:
                test = versus(results[method]["items"].get(item_key, {}), base["items"].get(item_key, {}), seed)
                if test:
                    cell["vs_base"] = test
            row["metrics"][label] = cell
        rows.append(row)
    _holm(rows)
    return rows


def _holm(rows: list[dict]) -> None:
    """Adds `p_holm` and `survives_holm` to every test of the table."""
    tests = [cell["vs_base"] for row in rows for cell in row["metrics"].values() if "vs_base" in cell]
    for test, adjusted in zip(tests, holm([t["p_value"] for t in tests])):
        test["p_holm"] = adjusted
        test["survives_holm"] = adjusted < SIGNIFICANCE


def _p_text(test: dict) -> str:
    p = test["p_value"]
    text = f"p<{p:.2g}" if test["p_bound"] else "p<0.001" if p < 0.001 else f"p={p:.3f}"
    return text + ("*" if test["survives_holm"] else "")


def _cell_text(cell: dict) -> str:
    text = f"{cell['value']:.2f} [{cell['low']:.2f}, {cell['high']:.2f}]"
    test = cell.get("vs_base")
    if test:
        if test["n"] != cell["n"]:  # the value covers items the test could not pair: say so
            text += f" n={cell['n']}"
        text += f" ({test['diff']:+.2f}, {_p_text(test)}, n={test['n']})"
    return text


def _labels(rows: list[dict]) -> list[str]:
    return [label for label, *_ in HEADLINE if any(label in r["metrics"] for r in rows)]


def _n_text(rows: list[dict], label: str) -> str:
    counts = sorted({r["metrics"][label]["n"] for r in rows if label in r["metrics"]})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def markdown(rows: list[dict]) -> str:
    """The table and its legend."""
    labels = _labels(rows)
    lines = ["| method | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for row in rows:
        cells = [_cell_text(row["metrics"][label]) if label in row["metrics"] else "" for label in labels]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    tests = sum("vs_base" in cell for row in rows for cell in row["metrics"].values())
    legend = "Value [95% interval: Wilson for rates of 0/1 items, percentile bootstrap for means of continuous scores]"
    if tests:
        legend += ("; (difference vs base, p, n): on the n items both were scored on, by the exact McNemar test "
                   "(0/1 scores) or the paired sign-flip permutation test (continuous scores); a value's own n is "
                   f"shown beside it where it differs; * survives Holm's correction across the {tests} tests of "
                   f"this table at {SIGNIFICANCE}")
    counts = ", ".join(f"{label} {_n_text(rows, label)}" for label in labels)
    lines += ["", f"{legend}. n per metric: {counts}."]
    return "\n".join(lines) + "\n"


def report(groups: list[dict]) -> str:
    """Every group's heading, table and left-out runs, as markdown."""
    parts = []
    for number, entry in enumerate(groups, start=1):
        lines = [f"### Table {number}", "", describe(entry["key"])]
        if number > 1 and entry["key"] is not None and groups[0]["key"] is not None:
            lines.append("Not comparable with table 1, whose runs differ in: "
                         + "; ".join(key_differences(groups[0]["key"], entry["key"])) + ".")
        lines += ["", markdown(entry["rows"]).rstrip("\n")]
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
    axes[0][0].set_ylabel("rate, 95% interval")
    handles, methods = axes[0][0].get_legend_handles_labels()
    # one legend above the panels, where it hides no bar
    plot.legend(handles, methods, loc="upper center", bbox_to_anchor=(0.5, 0.96), ncol=len(methods), fontsize=8,
                frameon=False)
    title = (f"medadapt: {key['model']['base']}, data {source_name(key['data']['source'])}, the same eval items for "
             "every method"
             if key else "medadapt: results without a comparison key (model and data not recorded)")
    plot.suptitle(title, fontsize=11)
    plot.tight_layout(rect=(0, 0, 1, 0.93))
    return plot


def _bars(axis, rows: list[dict], labels: list[str], arrow: str) -> None:
    import numpy as np

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


def main(params, root: Path = Path("."), out: Path | str | None = None, runs: Path | str | None = None) -> list[dict]:
    """Print the comparison tables; with `out` (e.g. `reports/compare`), also write them; with
    `runs`, compare the run folders under it instead of the project's experiments.

    Returns the groups: [{key, rows, left_out}].
    """
    results = collect(root, Path(runs) if runs else None)
    if not results:
        print("no evaluated method found: run `dvc repro` (and the sweep in the README) first")
        return []
    groups = [{"key": entry["key"], "rows": table(entry["results"], params.seed), "left_out": entry["left_out"],
               "costs": method_costs(entry["results"], root)} for entry in group(results)]
    text = report(groups)
    print(text)
    if out:
        write(groups, text, root / Path(out))
    return groups
