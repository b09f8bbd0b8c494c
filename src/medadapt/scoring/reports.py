"""What `evaluate` draws and `compare` tables: the headline metrics, plot data and PNGs, and the
comparison key.

`HEADLINE` is the one list of the metrics `compare` tables: its path in the evaluate metrics,
its per-item key in `reports/eval_items.json` (for paired tests; a list of answers per item for
kappa) and whether higher is better. All but `DETAILS_ONLY` are the headline of
`metrics/eval.json`; those stay in `reports/eval_details.json`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from .. import paths
from ..artifacts import tree_digest, write_json
from ..params import dump_params, flatten
from ..sources import code_digest

# (label, path in metrics/eval.json, key in eval_items.json or None, higher is better)
HEADLINE = [
    ("MedMCQA acc", ("medmcqa", "accuracy"), "medmcqa.accuracy", True),
    ("MedQA acc", ("medqa", "accuracy"), "medqa.accuracy", True),
    ("PubMedQA acc", ("pubmedqa", "accuracy"), "pubmedqa.accuracy", True),
    ("PubMedQA macro-F1", ("pubmedqa", "macro_f1"), None, True),
    ("PubMedQA consistency (κ)", ("pubmedqa", "consistency_kappa"), "pubmedqa.variant_answers", True),
    ("PubMedQA consistency", ("pubmedqa", "consistency"), "pubmedqa.consistency", True),
    ("RadQA EM", ("radqa", "exact_match"), "radqa.exact_match", True),
    ("RadQA F1", ("radqa", "f1"), "radqa.f1", True),
    ("RadQA ROUGE-L", ("radqa", "rouge_l"), None, True),
    ("MedMCQA circular acc", ("medmcqa", "circular_accuracy"), "medmcqa.circular_accuracy", True),
    ("MedQA circular acc", ("medqa", "circular_accuracy"), "medqa.circular_accuracy", True),
    ("Hallucination rate", ("hallucination", "per_answer"), "hallucination", False),
    ("Facts per answer", ("hallucination", "facts_per_answer"), None, True),  # what the rate could judge
    ("Unsafe rate (rule)", ("safety", "unsafe_rate_rule"), "safety.unsafe_rule", False),
    ("Unsafe rate (RM)", ("safety", "unsafe_rate_rm"), None, False),
    ("RM reward mean", ("safety", "reward_mean"), None, True),
]
# Tabled beside the headline, not in it: the raw agreement, which chance inflates when one answer
# dominates (issue 19), is reported beside its chance-corrected kappa.
DETAILS_ONLY = {"PubMedQA consistency"}


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
    for label, path, _, _ in HEADLINE:
        value = metric_at(metrics, path)
        if value is None or label in DETAILS_ONLY:
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
    """The rates of the DVC bar plot (the RM's reward and the facts per answer are no rates, so they
    stay out), each named with its direction, ↑ higher or ↓ lower is better: the bars mix both."""
    rows = []
    for label, path, _, higher in HEADLINE:
        value = metric_at(metrics, path)
        if value is not None and label not in ("RM reward mean", "Facts per answer"):
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

# The params `evaluate` reads besides `method` (dvc.yaml lists the same, a test checks).
EVALUATE_PARAMS = ("model", "evaluate", "icl.shuffle_permutations", "train.max_length", "rm", "data.datasets",
                   "data.seed")


def comparison_key(params, root: Path, eval_records: dict[str, list], safety_rows: list[dict]) -> dict:
    """What two runs must share for their scores to be compared: the code `evaluate` ran, the eval
    items (content and gold), the base and the reward model it judged with, and every param it
    reads but `method`. What a method is (its adapter, ICL's demonstrations) and how it was
    trained (train.seed replicates) are not in the key: that is what a comparison compares."""
    flat = flatten(dump_params(params))
    read = {key: value for key, value in flat.items() if key.startswith(EVALUATE_PARAMS)}
    return {
        "code": code_digest("evaluate")[:16],
        "items": {name: _digest(rows) for name, rows in sorted({**eval_records, "safety": safety_rows}.items())},
        "base": (tree_digest(root / paths.BASE_DIR) or "")[:16],
        "reward_model": (tree_digest(root / paths.RM_DIR) or "")[:16],
        "params": dict(sorted(read.items())),
    }


def _digest(rows: list) -> dict:
    """n and a digest of the items' content, gold labels included, in id order."""
    rows = sorted((r.to_dict() if hasattr(r, "to_dict") else r for r in rows), key=lambda r: str(r.get("id")))
    return {"n": len(rows), "sha256": hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]}
