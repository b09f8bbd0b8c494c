"""What `evaluate` draws and `compare` tables: the headline metrics, plot data and PNGs.

`HEADLINE` is the one list of headline metrics: its path in `metrics/eval.json`, its per-item
key in `reports/eval_items.json` (for paired tests) and whether higher is better.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from .. import paths
from ..artifacts import write_json

# (label, path in metrics/eval.json, key in eval_items.json or None, higher is better)
HEADLINE = [
    ("MedMCQA acc", ("medmcqa", "accuracy"), "medmcqa.accuracy", True),
    ("MedQA acc", ("medqa", "accuracy"), "medqa.accuracy", True),
    ("PubMedQA acc", ("pubmedqa", "accuracy"), "pubmedqa.accuracy", True),
    ("PubMedQA macro-F1", ("pubmedqa", "macro_f1"), None, True),
    ("PubMedQA consistency", ("pubmedqa", "consistency"), "pubmedqa.consistency", True),
    ("RadQA EM", ("radqa", "exact_match"), "radqa.exact_match", True),
    ("RadQA F1", ("radqa", "f1"), "radqa.f1", True),
    ("RadQA ROUGE-L", ("radqa", "rouge_l"), None, True),
    ("MedMCQA circular acc", ("medmcqa", "circular_accuracy"), "medmcqa.circular_accuracy", True),
    ("MedQA circular acc", ("medqa", "circular_accuracy"), "medqa.circular_accuracy", True),
    ("Hallucination rate", ("hallucination", "per_answer"), "hallucination", False),
    ("Unsafe rate (rule)", ("safety", "unsafe_rate_rule"), "safety.unsafe_rule", False),
    ("Unsafe rate (RM)", ("safety", "unsafe_rate_rm"), None, False),
    ("RM reward mean", ("safety", "reward_mean"), None, True),
]


def metric_at(metrics: dict, path: tuple[str, ...]) -> dict | None:
    """The `{value, low, high, n}` at `path`, or None where the metric is absent or empty."""
    node = metrics
    for key in path:
        node = (node or {}).get(key)
    return node if isinstance(node, dict) and node.get("value") is not None else None


def split_headline(metrics: dict) -> tuple[dict, dict]:
    """(headline, details): `metrics/eval.json` holds the method and the HEADLINE rates, what
    `dvc exp show` and `dvc metrics diff` show; the rest goes to a file a reviewer opens on
    purpose. `merge(headline, details)` gives the whole back."""
    headline, details = {"method": metrics["method"]}, json.loads(json.dumps(metrics))
    for _, path, _, _ in HEADLINE:
        value = metric_at(metrics, path)
        if value is None:
            continue
        node, source = headline, details
        for key in path[:-1]:
            node, source = node.setdefault(key, {}), source[key]
        node[path[-1]] = value
        del source[path[-1]]
    return headline, details


def merge(headline: dict, details: dict) -> dict:
    """The whole evaluate metrics from its two files."""
    whole = json.loads(json.dumps(details))
    for key, value in headline.items():
        whole[key] = merge(value, whole.get(key, {})) if isinstance(value, dict) and "value" not in value else value
    return whole


def headline_rows(metrics: dict) -> list[dict]:
    """The rates of the DVC bar plot (the RM's reward is no rate, so it stays out), each named with
    its direction, ↑ higher or ↓ lower is better: the bars mix both."""
    rows = []
    for label, path, _, higher in HEADLINE:
        value = metric_at(metrics, path)
        if value is not None and label != "RM reward mean":
            rows.append({"metric": " ".join(path) + (" ↑" if higher else " ↓"), "value": value["value"],
                         "low": value["low"], "high": value["high"]})
    return rows


def write_confusion_csv(labels: list[str], matrix: list[list[int]], path: Path) -> None:
    """One row per item (actual, predicted): the input DVC's confusion template expects."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        for i, actual in enumerate(labels):
            for j, predicted in enumerate(labels):
                writer.writerows([[actual, predicted]] * matrix[i][j])


def confusion_figure(labels: list[str], matrix: list[list[int]], title: str):
    """The confusion matrix with its labels in sorted order, as `medadapt plots` and DVC's own
    template draw the CSV, so that every view of it reads the same."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(labels)), key=lambda i: labels[i])
    labels, matrix = [labels[i] for i in order], [[matrix[i][j] for j in order] for i in order]
    figure, axis = plt.subplots(figsize=(4, 3.5))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels)
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("gold")
    threshold = (max(max(row) for row in matrix) or 1) / 2
    for i in range(len(labels)):
        for j in range(len(labels)):
            # White on the dark cells, black on the light ones: readable on every shade.
            colour = "white" if matrix[i][j] > threshold else "black"
            axis.text(j, i, matrix[i][j], ha="center", va="center", color=colour)
    figure.colorbar(image, ax=axis, fraction=0.046)
    axis.set_title(title)
    figure.tight_layout()
    return figure


def confusion_png(labels: list[str], matrix: list[list[int]], title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = confusion_figure(labels, matrix, title)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


def write_plots(metrics: dict, root: Path) -> None:
    """`reports/plots/` (headline bars, PubMedQA confusion CSV) and the confusion PNG."""
    folder = root / paths.PLOTS
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "headline.json", {"headline": headline_rows(metrics)})
    confusion = metrics.get("pubmedqa", {}).get("confusion")
    if not confusion:
        return
    labels, matrix = confusion["labels"], confusion["matrix"]
    write_confusion_csv(labels, matrix, folder / "pubmedqa_confusion.csv")
    confusion_png(labels, matrix, f"PubMedQA, method={metrics['method']}", root / paths.CONFUSION_PNG)


# ---- what defines a comparison (in every eval details file; `medadapt compare` groups by it) ----


def comparison_key(params, eval_ids: dict[str, list[str]]) -> dict:
    """The fingerprint of what two runs must share for their scores to be compared.

    `eval_ids` maps each evaluated dataset (and "safety", if the caller passes the risky
    prompts' ids) to the ids of its eval items; they enter as a count and a hash of the sorted
    ids, so the key stays small. What a method is (its adapter, ICL's k) is not in the key:
    that is what a comparison compares.
    """
    return {
        "model": {"base": params.model.base, "quantization": params.model.quantization,
                  "dtype": params.model.dtype},
        "data": {"source": str(params.data.source),
                 "eval_ids": {name: _ids_digest(ids) for name, ids in sorted(eval_ids.items())}},
        "prompt": {"max_new_tokens": params.evaluate.max_new_tokens,
                   "consistency_variants": params.evaluate.consistency_variants,
                   "safety_prompts": params.evaluate.safety_prompts},
        "seed": params.seed,
    }


def _ids_digest(ids: list[str]) -> dict:
    text = "\n".join(sorted(ids))
    return {"n": len(ids), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
