"""Choose the generations of `data/judges/parse.jsonl` (the answer parser's labelled set).

    python3 scripts/parse_set_sample.py OUT.jsonl      # the chosen rows, without labels
    python3 scripts/parse_set_sample.py --check        # parse.jsonl holds exactly these rows

Reads the reference runs' `reports/eval_samples.jsonl.gz` (every method, PubMedQA, MedMCQA and
MedQA; the safety prompts are not parsed). Each generation gets a rough "kind" from `kind()` below,
a pre-sort by surface form only (echoed instruction, echoed option list, repeated `Answer:` tag,
letter with its own option's text, letter with another option's text...). It chooses nothing's
label: the labels in parse.jsonl were written by a person reading each row (data/judges/README.md).

Per method and dataset (18 cells), with `random.Random(f"{SEED}-{method}-{dataset}")`:
1. every kind present in the cell gives up to PER_KIND rows (a seeded shuffle, then the first);
2. the cell is filled up to PER_CELL rows with a seeded random sample of its other rows.
   So every kind of output is in the set, and the common kinds about as often as the runs
   produce them (a cell with more kinds than PER_CELL / PER_KIND keeps them all). These rows are
   the `dev` part: the parser was written looking at them.
3. PER_CELL_TEST of the cell's remaining rows, a seeded random sample with its own generator, are
   the `test` part: labelled with the rest, before the parser was written, and not used to write it.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sys
from pathlib import Path

RUNS = Path("reports/reference/runs")
METHODS = ("base", "icl", "sft_pubmedqa", "sft_medmcqa", "sft", "dpo")
DATASETS = ("pubmedqa", "medmcqa", "medqa")
SEED, PER_KIND, PER_CELL, PER_CELL_TEST = 0, 2, 20, 5
SET = Path("data/judges/parse.jsonl")
LETTERS = "ABCD"


def options_from_prompt(prompt: str) -> list[str]:
    """The option texts of the last user turn (the question asked; earlier turns are demonstrations)."""
    user = prompt.split("<|im_start|>user\n")[-1].split("<|im_end|>")[0]
    options = dict(re.findall(r"^([A-J])\. (.*)$", user, re.MULTILINE))
    return [options[letter] for letter in LETTERS[: len(options)]]


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def kind(output: str, options: list[str] | None) -> str:
    """A rough surface kind, for stratification only (never a label)."""
    text = output.strip()
    if not text:
        return "empty"
    tags = len(re.findall(r"answer\s*:", text, re.IGNORECASE))
    first = text.splitlines()[0]
    tagged = re.match(r"\s*answer\s*:\s*(.*)", first, re.IGNORECASE)
    body = tagged.group(1) if tagged else first
    prefix = ("tag-" if tagged else "") + ("repeated-tag-" if tags > 1 else "")
    if options is None:
        if re.search(r"yes[,;]? no[,;]? (or )?maybe", text, re.IGNORECASE):
            return prefix + "echoed-instruction"
        if re.match(r"\W*(yes|no|maybe)\b", body, re.IGNORECASE):
            return prefix + "word-first"
        if re.search(r"answer\b.{0,200}?\bis\b", text, re.IGNORECASE | re.DOTALL):
            return prefix + "answer-is-prose"
        return prefix + "prose"
    if len(re.findall(r"^\s*\(?[A-D][.)]", text, re.MULTILINE)) >= 2:
        return prefix + "option-lines"
    later = re.findall(r"answer is:?\s*\(?([A-D])\b", text, re.IGNORECASE)
    letter = re.match(r"\(?([A-D])\b\)?[.):]?\s*(.*)", body)
    if letter:
        own = options[LETTERS.index(letter.group(1))]
        said = _norm(letter.group(2))
        if not said:
            shape = "letter-only"
        elif said == _norm(own):
            shape = "letter-own-text"
        elif said in map(_norm, options):
            shape = "letter-other-option-text"
        else:
            shape = "letter-non-option-text"
        if any(x != letter.group(1) for x in later):
            shape += "-then-other-letter"
        return prefix + shape
    if re.search(r"answer is", text, re.IGNORECASE):
        return prefix + "answer-is-prose"
    return prefix + ("option-text" if _norm(body) in map(_norm, options) else "prose")


def generations(root: Path = Path(".")) -> list[dict]:
    rows = []
    for method in METHODS:
        with gzip.open(root / RUNS / method / "reports/eval_samples.jsonl.gz", "rt", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row["dataset"] not in DATASETS:
                    continue
                options = options_from_prompt(row["prompt"]) if row["dataset"] != "pubmedqa" else None
                rows.append({"id": row["id"], "method": method, "dataset": row["dataset"],
                             "output": row["output"], "options": options, "kind": kind(row["output"], options)})
    return rows


def select(rows: list[dict]) -> list[dict]:
    chosen, tests = [], []
    for method in METHODS:
        for dataset in DATASETS:
            cell = [r for r in rows if r["method"] == method and r["dataset"] == dataset]
            rng = random.Random(f"{SEED}-{method}-{dataset}")
            order = cell[:]
            rng.shuffle(order)
            picked, per_kind = [], {}
            for row in order:  # step 1: up to PER_KIND of each kind
                if per_kind.get(row["kind"], 0) < PER_KIND:
                    per_kind[row["kind"]] = per_kind.get(row["kind"], 0) + 1
                    picked.append(row)
            rest = [r for r in order if r not in picked]
            picked += rng.sample(rest, max(0, min(len(rest), PER_CELL - len(picked))))  # step 2
            chosen += [{**r, "part": "dev"} for r in sorted(picked, key=lambda r: r["id"])]
            # step 3: the held-out part, a seeded random sample of the cell's remaining rows
            test_rng = random.Random(f"{SEED}-test-{method}-{dataset}")
            left = [r for r in cell if r not in picked]
            held = test_rng.sample(left, min(len(left), PER_CELL_TEST))
            tests += [{**r, "part": "test"} for r in sorted(held, key=lambda r: r["id"])]
    return chosen + tests


def main(argv: list[str]) -> int:
    chosen = select(generations())
    if argv and argv[0] == "--check":
        labelled = [json.loads(line) for line in SET.read_text(encoding="utf-8").splitlines()]
        keys = lambda rows: [(r["id"], r["method"], r["dataset"], r["output"], r["options"], r["part"]) for r in rows]
        same = keys(labelled) == keys(chosen)
        print(f"{SET}: {len(labelled)} rows, {'the' if same else 'NOT the'} {len(chosen)} rows chosen")
        return 0 if same else 1
    with open(argv[0], "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in chosen)
    print(f"{len(chosen)} rows to {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
