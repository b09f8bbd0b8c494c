"""`medadapt compare`: one table of every evaluated method, with intervals and paired tests.

    dvc exp run --queue -S method=base,icl,sft,dpo && dvc queue start   # the sweep
    medadapt compare                                                      # the table

Reads `metrics/eval.json` and `reports/eval_items.json` from every DVC experiment
(`refs/exps/*`), from HEAD and from the workspace, keeps the newest result of each method, and
writes `reports/compare.md`,
`reports/compare.json` and `reports/compare.png`. Each headline metric shows its value and
bootstrap 95% interval; beside it, the paired bootstrap test of the method against `base` on
the items both were scored on (difference and p-value): on ~100 questions, only a small p says more than noise.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .artifacts import write_json
from .paths import EVAL_ITEMS, EVAL_METRICS, METHODS, REPORTS
from .reports import HEADLINE, metric_at
from .scoring.stats import paired_bootstrap

EVAL = EVAL_METRICS.as_posix()
ITEMS = EVAL_ITEMS.as_posix()
OUT_MD = REPORTS / "compare.md"
OUT_JSON = REPORTS / "compare.json"
OUT_PNG = REPORTS / "compare.png"

def _git(*args: str, root: Path) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def _read_at(rev: str | None, path: str, root: Path) -> dict | None:
    try:
        text = (root / path).read_text() if rev is None else _git("show", f"{rev}:{path}", root=root)
        return json.loads(text)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError):
        return None


def collect(root: Path = Path(".")) -> dict[str, dict]:
    """method -> {metrics, items, source}: the newest result per method (workspace first)."""
    refs = _git("for-each-ref", "--sort=-committerdate", "--format=%(objectname) %(refname)", "refs/exps",
                root=root).split("\n")
    # refs/exps/<xx>/<baseline sha>/<name> are finished experiments; celery/ and exec/ hold
    # DVC's queue bookkeeping, not results.
    finished = [line.split(" ", 1) for line in refs if line and not any(k in line for k in ("/celery/", "/exec/"))]
    revisions = [(None, "workspace"), ("HEAD", "HEAD")] + [(sha, name.rsplit("/", 1)[-1]) for sha, name in finished]
    results = {}
    for rev, name in revisions:
        metrics, items = _read_at(rev, EVAL, root), _read_at(rev, ITEMS, root)
        if metrics and items and metrics.get("method") not in results:
            results[metrics["method"]] = {"metrics": metrics, "items": items["items"], "source": name}
    return results


def table(results: dict[str, dict], samples: int = 1000, seed: int = 0) -> list[dict]:
    """One row per method in METHODS order; paired tests against base on common items."""
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
                mine, theirs = results[method]["items"].get(item_key, {}), base["items"].get(item_key, {})
                common = sorted(set(mine) & set(theirs))
                if common:
                    cell["vs_base"] = paired_bootstrap([mine[i] for i in common], [theirs[i] for i in common],
                                                       samples, seed)
            row["metrics"][label] = cell
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    labels = [label for label, *_ in HEADLINE if any(label in r["metrics"] for r in rows)]
    lines = ["| method | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for row in rows:
        cells = []
        for label in labels:
            cell = row["metrics"].get(label)
            if not cell:
                cells.append("")
                continue
            text = f"{cell['value']:.2f} [{cell['low']:.2f}, {cell['high']:.2f}]"
            if "vs_base" in cell:
                test = cell["vs_base"]
                text += f" ({test['diff']:+.2f}, p={test['p_value']:.2f})"
            cells.append(text)
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    n = {label: max((r["metrics"].get(label, {}).get("n", 0) for r in rows), default=0) for label in labels}
    lines.append("")
    lines.append("Value [bootstrap 95% interval]; (difference vs base, paired bootstrap p). n per metric: "
                 + ", ".join(f"{label} {count}" for label, count in n.items()) + ".")
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [label for label, *_ in HEADLINE if any(label in r["metrics"] for r in rows)
              and label != "RM reward mean"]
    width = 0.8 / max(len(rows), 1)
    figure, axis = plt.subplots(figsize=(max(8, len(labels) * 1.1), 4.5))
    for i, row in enumerate(rows):
        cells = [row["metrics"].get(label) for label in labels]
        values = [c["value"] if c else 0 for c in cells]
        errors = [[c["value"] - c["low"] if c else 0 for c in cells], [c["high"] - c["value"] if c else 0 for c in cells]]
        axis.bar(np.arange(len(labels)) + i * width, values, width, yerr=errors, capsize=2, label=row["method"])
    axis.set_xticks(np.arange(len(labels)) + width * (len(rows) - 1) / 2, labels, rotation=30, ha="right")
    axis.set_ylim(0, 1)
    axis.set_ylabel("rate (95% bootstrap interval)")
    axis.legend(fontsize=8)
    axis.set_title("medadapt: methods on the same eval items")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


def main(params, root: Path = Path("."), _unused: str | None = None) -> list[dict]:
    results = collect(root)
    if not results:
        print("no evaluated method found: run `dvc repro` (and the sweep in the README) first")
        return []
    rows = table(results, params.evaluate.bootstrap_samples, params.seed)
    text = markdown(rows)
    print(text)
    (root / OUT_MD).parent.mkdir(parents=True, exist_ok=True)
    (root / OUT_MD).write_text(text)
    write_json(root / OUT_JSON, {"rows": rows})
    chart(rows, root / OUT_PNG)
    return rows
