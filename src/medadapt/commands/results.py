"""`medadapt results`: one row per experiment, its method and headline values, within 120 columns.

    dvc exp run --queue -S method=base,icl,sft,dpo && dvc queue start
    medadapt results          # the review table; intervals and paired tests: medadapt compare

`dvc exp show --md` holds every param and metric (hundreds of columns), and its column names are
the metrics' paths; this reads the same `metrics/eval.json` of the workspace, HEAD and every
experiment and prints a few headline rates under short names, each row with its experiment's
name and method. The workspace is shown only where it differs from HEAD. A row whose params differ
from HEAD's in more than `method` (a grid point) is marked and its keys listed under the table.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from ..paths import EVAL_METRICS
from ..scoring.reports import metric_at
from ._experiments import json_at, revisions, varied, yaml_at

WIDTH = 120  # a terminal's columns: the table and its notes fit
NAME_WIDTH = 22  # longer experiment names are cut (DVC's own are two short words)
# (header, path in metrics/eval.json): the headline rates a reviewer reads first, under names short
# enough that a row of the longest method and name fits WIDTH; the legend spells them out
COLUMNS = [
    ("MedMCQA↑", ("medmcqa", "accuracy")),
    ("MedQA↑", ("medqa", "accuracy")),
    ("PubMedQA↑", ("pubmedqa", "accuracy")),
    ("consist↑", ("pubmedqa", "consistency")),
    ("RadQA F1↑", ("radqa", "f1")),
    ("halluc↓", ("hallucination", "per_answer")),
    ("unsafe↓", ("safety", "unsafe_rate_rule")),
]
LEGEND = ("MedMCQA, MedQA, PubMedQA: accuracy; consist: PubMedQA consistency; RadQA F1: token F1; halluc: "
          "hallucination rate per answer; unsafe: unsafe rate by the rule (↑ higher is better, ↓ lower). Intervals "
          "and paired tests: `medadapt compare`; one experiment against HEAD: `dvc metrics diff HEAD <experiment>`.")


def rows(root: Path = Path(".")) -> list[dict]:
    """{name, method, values, varies} for the workspace (unless it is HEAD's), HEAD and every
    experiment, newest first; a revision with no evaluated method is skipped."""
    found = []
    for rev, name in revisions(root):
        metrics, params = json_at(rev, EVAL_METRICS.as_posix(), root), yaml_at(rev, "params.yaml", root)
        if metrics and metrics.get("method"):
            found.append((name, metrics, params))
    if [name for name, *_ in found[:2]] == ["workspace", "HEAD"] and found[0][1:] == found[1][1:]:
        found.pop(0)  # the workspace holds HEAD's results: one row
    head = next((params for name, _, params in found if name == "HEAD"), None)
    return [{"name": name, "method": metrics["method"],
             "values": [(metric_at(metrics, path) or {}).get("value") for _, path in COLUMNS],
             "varies": sorted(varied(params, head)) if params and head else []}
            for name, metrics, params in found]


def table(found: list[dict]) -> str:
    """The rows as an aligned markdown table, then the params each marked row changes."""
    header = ["experiment", "method", *(label for label, _ in COLUMNS)]
    cells = [[_name(row) + (" *" if row["varies"] else ""), row["method"],
              *("" if value is None else f"{value:.2f}" for value in row["values"])] for row in found]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    lines = [_line(header, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [_line(line, widths) for line in cells]
    notes = [f"* {_name(row)}: its params differ from HEAD's in {', '.join(row['varies'])}" for row in found
             if row["varies"]]
    text = [*lines, "", *(textwrap.fill(note, WIDTH, subsequent_indent="  ") for note in notes), textwrap.fill(LEGEND, WIDTH)]
    return "\n".join(text) + "\n"


def _name(row: dict) -> str:
    name = row["name"]
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def _line(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"


def main(params, root: Path = Path(".")) -> list[dict]:
    """Print the table; writes nothing."""
    found = rows(root)
    if not found:
        print("no evaluated method found: run `dvc repro` (and the method sweep in the README) first")
        return []
    print(table(found), end="")
    return found
