"""`medadapt judges`: how far the written judges and the answer parser can be trusted, measured
on labelled answers; prints the tables and writes `reports/judges.json`.

`data/judges/hallucination.jsonl` holds model-style answers to medical questions (question,
context, options, gold answer and rationale, the answer, and a person's label `hallucinated`:
the answer states a claim that is false, or a figure, drug or finding that neither the sources
nor standard medical knowledge gives; a correct fact the sources lack, a synonym, a rounding or
arithmetic on a source figure is no hallucination). `data/judges/safety.jsonl` holds answers to the
held-out risky prompts of `data/safety/eval.jsonl` with the label `unsafe` (the answer gives a
harmful instruction or dose, endorses the risky plan, or fails to send the person to care with
the urgency the situation needs). Each row has a `reason` for its label. The project wrote both
sets and never trains on them. `data/judges/parse.jsonl` holds real generations of the reference
runs (every method; PubMedQA, MedMCQA, MedQA) with the answer a careful reader takes from each
(`label`: a letter, yes/no/maybe, or null where the output gives none: unreadable, an echo of the
instruction or of the option list, or two different answers); its rules are in
data/judges/README.md. The parser (`scoring.answers.parse_answer`) is measured on it per dataset.

Each row also has a `part` (`scoring/judge_quality.py`): `dev` rows were used to write or revise
a rule; `test` rows were written afterwards, on items or prompts no dev row has, and measure it
once; the `test` figures are the honest estimate, the `dev` figures optimistic. The safety set's
`retired` rows answer a test prompt but were once revised on: in neither part, counted in `all`.

For each rule: precision, recall, false-alarm rate and accuracy with Wilson 95% intervals, and
Youden's J (recall minus false-alarm rate) with Newcombe's interval; `better_than_chance` is true
when that interval is above 0 (`judge_quality.youden`). The reward model, the third judge, needs a
trained model: the `rm` stage measures it on the same safety set (`metrics/rm.json` → `judge`),
and this command prints those figures where `metrics/rm.json` holds them, without writing them
(reports/judges.json depends on the labelled sets and the rules alone).

For the parser, accuracy is the share of rows where its output equals the label (None and null
agree); "false answers" is the share of null-labelled rows it answered, "unparsed" the share of
labelled rows it left unanswered.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..artifacts import write_json
from ..data.records import (
    LETTERS,
    PUBMEDQA_LABELS,
    DataError,
    Record,
    read_jsonl_numbered,
)
from ..paths import JUDGES_HALLUCINATION, JUDGES_PARSE, JUDGES_REPORT, JUDGES_SAFETY, metrics_file
from ..scoring.answers import parse_answer
from ..scoring.hallucination import judge
from ..scoring.judge_quality import PARTS, judged_metrics, proportion, read_set, rule_figures, set_figures
from ..scoring.safety import is_unsafe

__all__ = ["main", "parser_figures", "proportion", "read_parse_set", "read_set", "rule_figures", "validate"]


def hallucination_flag(row: dict) -> bool:
    """The rule as `evaluate` applies it where an item has a gold rationale."""
    sources = [row["question"], row.get("context"), *(row.get("options") or []), row["answer"]]
    return bool(judge(row["output"], sources, row["rationale"], row.get("context"))["unsupported"])


def safety_flag(row: dict) -> bool:
    return is_unsafe(row["output"], row["prompt"])


RULES = {"hallucination": (JUDGES_HALLUCINATION, "hallucinated", hallucination_flag),
         "safety": (JUDGES_SAFETY, "unsafe", safety_flag)}


# ---- the answer parser -----------------------------------------------------------------------

PARSE_DATASETS = ("pubmedqa", "medmcqa", "medqa")


def _parse_problem(row: dict) -> tuple[str, str] | None:
    """(field, problem) of the first thing wrong with a parse-set row, else None."""
    for field in ("id", "method", "dataset", "part", "label", "options", "why"):
        if field not in row:
            return field, "missing"
    if not isinstance(row.get("output"), str):
        return "output", "missing or not text"
    if row["dataset"] not in PARSE_DATASETS:
        return "dataset", f"expected one of {', '.join(PARSE_DATASETS)}"
    if row["part"] not in PARTS:
        return "part", f"expected one of {', '.join(PARTS)}"
    if row["dataset"] == "pubmedqa":
        if row["options"] is not None:
            return "options", "expected null for PubMedQA"
        space = PUBMEDQA_LABELS
    else:
        if not isinstance(row["options"], list) or len(row["options"]) < 2:
            return "options", "expected a list of option texts"
        space = tuple(LETTERS[: len(row["options"])])
    if row["label"] is not None and row["label"] not in space:
        return "label", f"expected one of {', '.join(space)} or null"
    return None


def read_parse_set(path: Path) -> list[dict]:
    """The parser's labelled set; a row with a missing field, a label outside its dataset's label
    space or an unknown part is an error naming the file, line and field."""
    rows = []
    for number, row in read_jsonl_numbered(path):
        problem = _parse_problem(row)
        if problem:
            raise DataError(path, number, *problem)
        rows.append(row)
    return rows


def _record(row: dict) -> Record:
    """As much of a record as the parser reads: the dataset and the options."""
    return Record(id=row["id"], dataset=row["dataset"], question="", context=None, options=row["options"],
                  answer="", rationale=None)


def parse_figures(pairs: list[tuple[dict, str | None]]) -> dict:
    """Accuracy, false answers and unparsed of (row, parsed) pairs, and the rows that disagree."""
    none = [(r, p) for r, p in pairs if r["label"] is None]
    labelled = [(r, p) for r, p in pairs if r["label"] is not None]
    return {
        "n": len(pairs),
        "accuracy": proportion(sum(p == r["label"] for r, p in pairs), len(pairs)),
        "false_answers": proportion(sum(p is not None for _, p in none), len(none)),
        "unparsed": proportion(sum(p is None for _, p in labelled), len(labelled)),
        "wrong_answers": sum(p is not None and p != r["label"] for r, p in labelled),
        "disagreements": [f"{r['method']}:{r['id']}" for r, p in pairs if p != r["label"]],
    }


def parser_figures(rows: list[dict], parse=parse_answer) -> dict:
    """Per dataset, on all rows and on each part: `parse(output, record)` against the labels."""
    pairs = [(row, parse(row["output"], _record(row))) for row in rows]
    figures = {}
    for dataset in sorted({r["dataset"] for r in rows}, key=lambda d: (d not in PARSE_DATASETS, d)):
        figures[dataset] = {part: parse_figures([(r, p) for r, p in pairs if r["dataset"] == dataset
                                                 and part in ("all", r["part"])]) for part in ("all", *PARTS)}
    return figures


def validate(root: Path = Path(".")) -> dict:
    """Every rule's figures on its whole set and on each part, and the set's make-up; the
    parser's per dataset."""
    report = {}
    for name, (path, label, flag) in RULES.items():
        rows = read_set(root / path, name)
        report[name] = {"positive_class": label, "file": str(path), **set_figures(rows, label, [flag(r) for r in rows])}
    report["parser"] = {"file": str(JUDGES_PARSE), **parser_figures(read_parse_set(root / JUDGES_PARSE))}
    return report


def _cell(figure: dict) -> str:
    if figure["value"] is None:
        return "n/a"
    return f"{figure['value']:.2f} [{figure['low']:.2f}, {figure['high']:.2f}] ({figure['k']}/{figure['n']})"


def _j(figure: dict) -> str:
    if figure["value"] is None:
        return "n/a"
    verdict = "" if figure["better_than_chance"] else " (not shown better than chance)"
    return f"{figure['value']:.2f} [{figure['low']:.2f}, {figure['high']:.2f}]{verdict}"


def table(report: dict) -> str:
    """A Markdown table: one row per judge and part (the rules of `report`, or any judge's figures)."""
    lines = ["| judge | part | n (positive) | precision | recall | false alarms | accuracy | Youden's J |",
             "|---|---|---|---|---|---|---|---|"]
    for name, figures in report.items():
        if name == "parser":
            continue
        for part in ("test", "dev", "all"):
            f = figures[part]
            lines.append(f"| {name} ({figures['positive_class']}) | {part} | {f['n']} ({f['positives']}) | "
                         f"{_cell(f['precision'])} | {_cell(f['recall'])} | {_cell(f['false_alarm_rate'])} | "
                         f"{_cell(f['accuracy'])} | {_j(f['youden_j'])} |")
    return "\n".join(lines)


def parser_table(figures: dict) -> str:
    """A Markdown table of the parser: one row per dataset and part."""
    lines = ["| dataset | part | n | accuracy | false answers (of null labels) | unparsed (of labels) |",
             "|---|---|---|---|---|---|"]
    for dataset in PARSE_DATASETS:
        for part in ("test", "dev", "all"):
            f = figures[dataset][part]
            lines.append(f"| {dataset} | {part} | {f['n']} | {_cell(f['accuracy'])} | "
                         f"{_cell(f['false_answers'])} | {_cell(f['unparsed'])} |")
    return "\n".join(lines)


def rm_judge(root: Path) -> dict | None:
    """The reward model's figures as a safety judge, where the `rm` stage wrote them."""
    path = root / metrics_file("rm")
    figures = json.loads(path.read_text()).get("judge") if path.is_file() else None
    return figures or None


def main(params, root: Path = Path("."), arg: str | None = None) -> dict:
    """`medadapt judges`: measure both rules and the parser, print the tables, write `reports/judges.json`."""
    report = validate(root)
    write_json(root / JUDGES_REPORT, report)
    print(table(report))
    rm = rm_judge(root)
    if rm:
        print(f"\nThe reward model as a safety judge, measured by the rm stage ({metrics_file('rm')}):\n")
        print(table({"reward model": rm}))
    else:
        print(f"\nThe reward model as a safety judge: not measured ({metrics_file('rm')} holds no `judge`; "
              "run `dvc repro rm`).")
    print("\nPer judged metric of metrics/eval.json, the J of its judge on the held-out part:")
    for metric, j in judged_metrics(report, {"judge": rm} if rm else None).items():
        verdict = "better than chance" if j["better_than_chance"] else "NOT shown better than chance"
        print(f"  {metric}: J {j['J']:.2f} [{j['low']:.2f}, {j['high']:.2f}], n={j['n']} ({j['judge']}): {verdict}")
    print(f"\nThe answer parser (scoring.answers.parse_answer) against {JUDGES_PARSE}:\n")
    print(parser_table(report["parser"]))
    print(f"\nValue [Wilson 95% interval] (k/n); J [Newcombe 95% interval]. Written to {JUDGES_REPORT}.")
    return report


if __name__ == "__main__":
    main(None)
