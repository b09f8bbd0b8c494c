"""How far a judge can be trusted: its figures on labelled answers, and whether it beats chance.

A judge flags answers (hallucinated, unsafe); a labelled set says which answers deserve the flag.
The positive class is what the judge flags: precision is the share of flagged answers that deserve
the flag, recall (TPR) the share of deserving answers flagged, the false-alarm rate (FPR) the share
of the others flagged. Every proportion carries its Wilson 95% interval (`stats.wilson_ci`: exact
enough at these sizes, and never zero-width).

**Youden's J** = TPR - FPR: 0 for a judge that flags at random (or flags everything, or nothing),
1 for a perfect one, whatever the share of positives. Its 95% interval is Newcombe's hybrid score
interval for the difference of two independent proportions (Newcombe 1998, Stat Med 17:873, method
10), built from the Wilson intervals of TPR and FPR. A judge is **better than chance** when that
interval's low end is above 0 on its held-out (`test`) part; otherwise the metric it produces
cannot be told from a coin's.

`judged_metrics` gives `medadapt compare` (and any reader of the metrics), per judged metric of
`metrics/eval.json`, the J of the judge behind it: the rules' from `reports/judges.json` (`medadapt
judges`), the reward model's from `metrics/rm.json` (the `rm` stage measures the RM it trained).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..data.records import DataError, read_jsonl_numbered
from .stats import wilson_ci

# A labelled set's parts: `dev` rows were used to write or revise a judge; `test` rows were
# written afterwards, on questions or prompts no dev row has, and measure it honestly; `retired`
# rows were once dev rows but answer a prompt that is now a test prompt, so they are in neither
# part (counted in `all` only).
PARTS = ("dev", "test")
RETIRED = "retired"
FIELDS = {
    "hallucination": ("id", "part", "dataset", "question", "answer", "rationale", "output", "hallucinated", "reason"),
    "safety": ("id", "part", "prompt_id", "category", "prompt", "output", "unsafe", "reason"),
}
LABELS = {"hallucination": "hallucinated", "safety": "unsafe"}

# A judged metric of metrics/eval.json -> (the report that measures its judge, the judge's name there).
JUDGED_METRICS = {
    "hallucination.per_answer": ("judges", "hallucination"),
    "hallucination.per_fact": ("judges", "hallucination"),
    "safety.unsafe_rate_rule": ("judges", "safety"),
    "safety.unsafe_rate_rm": ("rm", "judge"),
}


def read_set(path: Path, judge_name: str) -> list[dict]:
    """A labelled set (`data/judges/<judge>.jsonl`); a row without a field, with a non-boolean
    label or an unknown part is an error naming the file, line and field."""
    rows, label, parts = [], LABELS[judge_name], (*PARTS, RETIRED)
    for number, row in read_jsonl_numbered(path):
        for field in FIELDS[judge_name]:
            if field not in row or row[field] in (None, ""):
                raise DataError(path, number, field, "missing or empty")
        if not isinstance(row[label], bool):
            raise DataError(path, number, label, "expected true or false")
        if row["part"] not in parts:
            raise DataError(path, number, "part", f"expected one of {', '.join(parts)}")
        rows.append(row)
    return rows


def proportion(successes: int, n: int) -> dict:
    """`{value, low, high, k, n}`; all None but n when n is 0 (a rule that flags nothing has no precision)."""
    if n == 0:
        return {"value": None, "low": None, "high": None, "k": 0, "n": 0}
    low, high = wilson_ci(successes, n)
    return {"value": round(successes / n, 4), "low": round(low, 4), "high": round(high, 4), "k": successes,
            "n": n}


def youden(tp: int, fn: int, fp: int, tn: int) -> dict:
    """Youden's J = TPR - FPR with Newcombe's hybrid score 95% interval, and whether the interval
    lies above 0. None values where a class is missing (J needs positives and negatives)."""
    if not (tp + fn and fp + tn):
        return {"value": None, "low": None, "high": None, "better_than_chance": False}
    tpr, fpr = tp / (tp + fn), fp / (fp + tn)
    (tpr_low, tpr_high), (fpr_low, fpr_high) = wilson_ci(tp, tp + fn), wilson_ci(fp, fp + tn)
    j = tpr - fpr
    low = j - math.sqrt((tpr - tpr_low) ** 2 + (fpr_high - fpr) ** 2)
    high = j + math.sqrt((tpr_high - tpr) ** 2 + (fpr - fpr_low) ** 2)
    return {"value": round(j, 4), "low": round(low, 4), "high": round(high, 4), "better_than_chance": low > 0}


def rule_figures(rows: list[dict], labels: list[bool], flags: list[bool]) -> dict:
    """Precision, recall, false-alarm rate, accuracy and Youden's J of `flags` against `labels`,
    the confusion counts, and the ids the judge got wrong (to read them, not to tune on them)."""
    pairs = list(zip(labels, flags))
    tp = sum(label and flag for label, flag in pairs)
    fp = sum(flag and not label for label, flag in pairs)
    fn = sum(label and not flag for label, flag in pairs)
    tn = len(pairs) - tp - fp - fn
    return {
        "precision": proportion(tp, tp + fp),
        "recall": proportion(tp, tp + fn),
        "false_alarm_rate": proportion(fp, fp + tn),
        "accuracy": proportion(tp + tn, len(pairs)),
        "youden_j": youden(tp, fn, fp, tn),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "false_positives": [r["id"] for r, (label, flag) in zip(rows, pairs) if flag and not label],
        "false_negatives": [r["id"] for r, (label, flag) in zip(rows, pairs) if label and not flag],
    }


def set_figures(rows: list[dict], label: str, flags: list[bool]) -> dict:
    """A judge's `rule_figures` on a whole labelled set (`all`) and on each part, with each one's
    n and positives, and how many rows are `retired`."""
    figures = {}
    for part in ("all", *PARTS):
        chosen = [(r, f) for r, f in zip(rows, flags) if part == "all" or r["part"] == part]
        figures[part] = rule_figures([r for r, _ in chosen], [r[label] for r, _ in chosen], [f for _, f in chosen])
        figures[part].update(n=len(chosen), positives=sum(r[label] for r, _ in chosen))
    figures["retired"] = sum(r["part"] == RETIRED for r in rows)
    return figures


def judged_metrics(judges_report: dict | None, rm_metrics: dict | None = None) -> dict[str, dict]:
    """Per judged metric of `metrics/eval.json` that has a measured judge: `{J, low, high,
    better_than_chance, judge, n}`, from the judge's held-out (`test`) figures. `judges_report` is
    `reports/judges.json`, `rm_metrics` the `rm` stage's `metrics/rm.json` (its `judge` figures);
    a metric whose judge was not measured is left out (say so beside it: not shown better than chance)."""
    sources = {"judges": judges_report or {}, "rm": rm_metrics or {}}
    found = {}
    for metric, (report, name) in JUDGED_METRICS.items():
        figures = sources[report].get(name, {}).get("test")
        if not figures or figures["youden_j"]["value"] is None:
            continue
        j = figures["youden_j"]
        found[metric] = {"J": j["value"], "low": j["low"], "high": j["high"],
                         "better_than_chance": j["better_than_chance"], "judge": name if report == "judges" else
                         "reward model", "n": figures["n"]}
    return found
