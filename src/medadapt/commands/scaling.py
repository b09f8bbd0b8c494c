"""`medadapt scaling`: how each method's accuracy moves with its budget, from a DVC experiment grid.

    dvc exp run --queue -S method=sft -S 'data.train_size={pubmedqa:25,medmcqa:25,medqa:25},{...:50},...'
    dvc exp run --queue -S method=icl -S 'icl.k=0,1,3,5,8'
    dvc exp run --run-all -j 1 && medadapt scaling          # the README gives the exact grid

Reads `params.yaml`, `metrics/eval.json`, `metrics/prepare.json` and `metrics/icl.json` of the
workspace, HEAD and every finished experiment (`experiments.revisions`), and sorts each result by
the one budget it varies against HEAD's params (besides `method`):
- `train_size`: `data.train_size.*` (or nothing) with a trained method; its x is the number of
  train items `prepare` kept for the dataset (`metrics/prepare.json`), so "all" reads as the
  count there was;
- `icl.k`: `icl.k` (or nothing) with `method=icl`; x is k (the prompts may hold fewer when
  `model.max_length` cuts demonstrations: the table gives the mean k used, from `metrics/icl.json`);
- `base`: `method=base` with nothing varied, drawn as a reference band.
A result that varies anything else belongs to no curve and is left out. Writes
`reports/scaling.png` (one panel per budget and dataset: the metric with its 95%
interval), `reports/scaling.md` and `reports/scaling.json`.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import write_json
from ..paths import EVAL_METRICS, REPORTS, SFT_DATASETS, metrics_file
from ._experiments import json_at, revisions, varied, yaml_at

OUT_MD = REPORTS / "scaling.md"
OUT_JSON = REPORTS / "scaling.json"
OUT_PNG = REPORTS / "scaling.png"
# The metric a curve follows per dataset: accuracy, or token F1 for RadQA's open spans.
DATASET_METRIC = {"pubmedqa": "accuracy", "medmcqa": "accuracy", "medqa": "accuracy", "radqa": "f1"}
BUDGETS = {"train_size": "SFT train items per dataset", "icl.k": "ICL demonstrations (k)"}


def budget(method: str, changed: set[str]) -> str | None:
    """Which curve a result belongs to, or None when it varies something no curve scales."""
    if method == "base":
        return "base" if not changed else None
    if method == "icl":
        return "icl.k" if changed <= {"icl.k"} else None
    return "train_size" if all(k.startswith("data.train_size.") for k in changed) else None


def points_of(rev, name: str, baseline: dict, root: Path) -> list[dict]:
    """One point per dataset of one result: its budget, x and the metric with its interval."""
    params, metrics = yaml_at(rev, "params.yaml", root), json_at(rev, EVAL_METRICS.as_posix(), root)
    if not params or not metrics:
        return []
    method = metrics["method"]
    kind = budget(method, varied(params, baseline))
    if kind is None:
        return []
    prepared = json_at(rev, metrics_file("prepare").as_posix(), root) or {}
    icl = json_at(rev, metrics_file("icl").as_posix(), root) or {}
    points = []
    for dataset, metric in DATASET_METRIC.items():
        cell = (metrics.get(dataset) or {}).get(metric)
        if not cell or cell.get("value") is None or (kind == "train_size" and dataset not in SFT_DATASETS):
            continue
        point = {"budget": kind, "method": method, "dataset": dataset, "metric": metric, "source": name,
                 **{k: cell[k] for k in ("value", "low", "high", "n")}}
        if kind == "train_size":
            point["asked"] = params["data"]["train_size"][dataset]
            point["x"] = prepared.get("datasets", {}).get(dataset, {}).get("train", point["asked"])
        elif kind == "icl.k":
            point["asked"] = point["x"] = params["icl"]["k"]
            point["k_used"] = icl.get("datasets", {}).get(dataset, {}).get("k_mean")
        points.append(point)
    return points


def collect(root: Path = Path(".")) -> list[dict]:
    """Every result's points, the newest kept where two share budget, method, dataset and budget asked."""
    baseline = yaml_at("HEAD", "params.yaml", root) or {}
    kept = {}
    for rev, name in revisions(root):
        for point in points_of(rev, name, baseline, root):
            kept.setdefault((point["budget"], point["method"], point["dataset"], point.get("asked")), point)
    return sorted(kept.values(), key=lambda p: (p["budget"], p["method"], p["dataset"], p.get("asked") or 0))


def cell(point: dict) -> str:
    return f"{point['value']:.2f} [{point['low']:.2f}, {point['high']:.2f}]"


def markdown(points: list[dict]) -> str:
    """One table per budget and method: a row per budget asked, a column per dataset."""
    lines = []
    for kind, label in BUDGETS.items():
        for method in sorted({p["method"] for p in points if p["budget"] == kind}):
            mine = [p for p in points if p["budget"] == kind and p["method"] == method]
            datasets = [d for d in DATASET_METRIC if any(p["dataset"] == d for p in mine)]
            lines += [f"### {method}: {label}", "",
                      f"| {kind} | " + " | ".join(f"{d} {DATASET_METRIC[d]}" for d in datasets) + " |",
                      "|---|" + "---|" * len(datasets)]
            for asked in sorted({p["asked"] for p in mine}):
                row = {p["dataset"]: p for p in mine if p["asked"] == asked}
                cells = [row_cell(row.get(d), kind) for d in datasets]
                lines.append(f"| {asked} | " + " | ".join(cells) + " |")
            lines.append("")
    base = [p for p in points if p["budget"] == "base"]
    if base:
        lines.append("base: " + ", ".join(f"{p['dataset']} {cell(p)}" for p in base) + ".")
    lines.append("Value [95% interval: Wilson for accuracy, percentile bootstrap for F1]. train_size rows: train "
                 "items asked per dataset (kept by `prepare` in parentheses); icl.k rows: k asked (mean k used in "
                 "parentheses).")
    return "\n".join(lines) + "\n"


def row_cell(point: dict | None, kind: str) -> str:
    if point is None:
        return ""
    extra = point["x"] if kind == "train_size" else point.get("k_used")
    return cell(point) + ("" if extra is None else f" ({extra})")


def chart(points: list[dict], path: Path) -> None:
    """A row of panels per budget, one panel per dataset; base as a horizontal band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [k for k in BUDGETS if any(p["budget"] == k for p in points)]
    datasets = {k: [d for d in DATASET_METRIC if any(p["budget"] == k and p["dataset"] == d for p in points)]
                for k in rows}
    columns = max((len(v) for v in datasets.values()), default=1)
    figure, axes = plt.subplots(max(len(rows), 1), columns, figsize=(3.6 * columns, 3.4 * max(len(rows), 1)),
                                squeeze=False)
    for axis in axes.flat:
        axis.set_visible(False)
    for r, kind in enumerate(rows):
        for c, dataset in enumerate(datasets[kind]):
            panel(axes[r][c], [p for p in points if p["dataset"] == dataset], kind, dataset)
    figure.suptitle("medadapt: accuracy against budget (95% intervals: Wilson for accuracy, bootstrap for F1)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


def panel(axis, points: list[dict], kind: str, dataset: str) -> None:
    axis.set_visible(True)
    for method in sorted({p["method"] for p in points if p["budget"] == kind}):
        line = sorted((p for p in points if p["budget"] == kind and p["method"] == method), key=lambda p: p["x"])
        xs = [p["x"] for p in line]
        axis.plot(xs, [p["value"] for p in line], marker="o", label=method)
        axis.fill_between(xs, [p["low"] for p in line], [p["high"] for p in line], alpha=0.2)
    for base in (p for p in points if p["budget"] == "base"):
        axis.axhline(base["value"], color="grey", linestyle="--", label="base")
        axis.axhspan(base["low"], base["high"], color="grey", alpha=0.1)
    if kind == "train_size":  # sizes double from step to step: a log axis, labelled at the sizes run
        sizes = sorted({p["x"] for p in points if p["budget"] == kind})
        axis.set_xscale("log")
        axis.minorticks_off()
        axis.set_xticks(sizes, [str(x) for x in sizes])
    axis.set_ylim(0, 1)
    axis.set_xlabel(BUDGETS[kind])
    axis.set_ylabel(f"{dataset} {DATASET_METRIC[dataset]}")
    axis.legend(fontsize=7)


def main(params, root: Path = Path("."), _unused: str | None = None) -> list[dict]:
    points = collect(root)
    if not any(p["budget"] != "base" for p in points):
        print('no scaling result found: queue the grid in the README ("How results scale with data") and run it first')
        return points
    text = markdown(points)
    print(text)
    (root / OUT_MD).parent.mkdir(parents=True, exist_ok=True)
    (root / OUT_MD).write_text(text)
    write_json(root / OUT_JSON, {"points": points})
    chart(points, root / OUT_PNG)
    return points
