"""The judges' validation: labelled sets, Wilson intervals, the committed figures; the RM's
unsafe threshold calibrated on held-out pairs."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from medadapt.commands import judges as validation
from medadapt.commands.judges import proportion, read_set, rule_figures, validate
from medadapt.data.loaders import load_files
from medadapt.data.preferences import build_pairs
from medadapt.data.records import DataError, read_jsonl
from medadapt.modeling.reward import calibration_rows
from medadapt.params import PreferenceParams
from medadapt.paths import JUDGES, JUDGES_HALLUCINATION, JUDGES_REPORT, JUDGES_SAFETY, SAFETY_EVAL, SAFETY_TRAIN

from conftest import REPO

HALLUCINATION = read_jsonl(REPO / JUDGES_HALLUCINATION)
SAFETY = read_jsonl(REPO / JUDGES_SAFETY)


# ---- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775),     # never zero-width, unlike a percentile bootstrap of ten zeros
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (1, 1, 0.2065, 1.0),
    (81, 100, 0.7222, 0.8749),
])
def test_wilson_interval_known_values(k, n, low, high):
    figure = proportion(k, n)
    assert figure["value"] == round(k / n, 4) and figure["k"] == k and figure["n"] == n
    assert figure["low"] == pytest.approx(low, abs=1e-4) and figure["high"] == pytest.approx(high, abs=1e-4)


def test_proportion_of_nothing_has_no_value():
    assert proportion(0, 0) == {"value": None, "low": None, "high": None, "k": 0, "n": 0}


def test_rule_figures_by_hand():
    rows = [{"id": str(i)} for i in range(6)]
    labels = [True, True, True, False, False, False]
    flags = [True, True, False, True, False, False]
    figures = rule_figures(rows, labels, flags)
    assert figures["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert (figures["precision"]["k"], figures["precision"]["n"]) == (2, 3)
    assert (figures["recall"]["k"], figures["recall"]["n"]) == (2, 3)
    assert (figures["accuracy"]["k"], figures["accuracy"]["n"]) == (4, 6)
    assert figures["false_positives"] == ["3"] and figures["false_negatives"] == ["2"]


# ---- the labelled sets --------------------------------------------------------------------------


def test_hallucination_set_size_balance_and_fields():
    rows = read_set(REPO / JUDGES_HALLUCINATION, "hallucination")
    labels = Counter(r["hallucinated"] for r in rows)
    assert len(rows) >= 60 and min(labels[True], labels[False]) >= 0.4 * len(rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["dataset"] for r in rows} == {"pubmedqa", "medmcqa", "medqa", "radqa"}
    assert all(r["output"].startswith("Answer: ") for r in rows)  # the format every method answers in


def test_safety_set_size_balance_and_prompts():
    rows = read_set(REPO / JUDGES_SAFETY, "safety")
    labels = Counter(r["unsafe"] for r in rows)
    assert len(rows) >= 40 and min(labels[True], labels[False]) >= 0.4 * len(rows)
    assert len({r["id"] for r in rows}) == len(rows)
    prompts = {r["id"]: r for r in read_jsonl(REPO / SAFETY_EVAL)}
    for row in rows:  # answers to the held-out prompts evaluate asks
        assert prompts[row["prompt_id"]]["prompt"] == row["prompt"]
        assert prompts[row["prompt_id"]]["category"] == row["category"]
    assert {r["category"] for r in rows} == {p["category"] for p in prompts.values()}


def test_labelled_answers_are_never_trained_on():
    files = {"pubmedqa": "pubmedqa/ori_pqal.json", "medmcqa": "medmcqa/*.jsonl", "medqa": "medqa/*.jsonl",
             "radqa": "radqa/*.json"}
    train = {d: load_files(d, REPO / "data/sample", pattern) for d, pattern in files.items()}
    prefs = PreferenceParams(sources=["gold_vs_distractor", "hallucination", "safety"], max_pairs_per_source=10_000)
    pairs = build_pairs(train, prefs, seed=0, root=REPO)
    trained = {p[side][-1]["content"] for p in pairs for side in ("chosen", "rejected")}
    trained_prompts = {p["prompt"][-1]["content"] for p in pairs}
    assert not trained & {r["output"] for r in HALLUCINATION + SAFETY}
    assert not trained_prompts & {r["prompt"] for r in SAFETY}
    assert not trained_prompts & {r["question"] for r in HALLUCINATION}


@pytest.mark.parametrize("row, field, problem", [
    ({"hallucinated": "yes"}, "hallucinated", "expected true or false"),
    ({"part": "train"}, "part", "expected one of dev, test"),
    ({"rationale": ""}, "rationale", "missing or empty"),
])
def test_read_set_names_file_line_field(tmp_path, row, field, problem):
    good = HALLUCINATION[0]
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, **row}) + "\n")
    with pytest.raises(DataError) as info:
        read_set(path, "hallucination")
    assert str(info.value) == f"{path}, line 2, field '{field}': {problem}"


# ---- the figures --------------------------------------------------------------------------------


def test_committed_report_equals_the_figures_recomputed():
    """reports/judges.json (and the README figures taken from it) cannot drift from the rules."""
    assert validate(REPO) == json.loads((REPO / JUDGES_REPORT).read_text())


def test_figures_cover_both_judges_and_every_part():
    report = validate(REPO)
    for name, label in (("hallucination", "hallucinated"), ("safety", "unsafe")):
        rows = HALLUCINATION if name == "hallucination" else SAFETY
        assert report[name]["positive_class"] == label
        assert report[name]["all"]["n"] == len(rows)
        assert sum(report[name][part]["n"] for part in ("dev", "test")) == len(rows)
        assert report[name]["all"]["positives"] == sum(r[label] for r in rows)


def test_main_prints_the_table_and_writes_the_report(tmp_path, capsys):
    shutil.copytree(REPO / JUDGES, tmp_path / JUDGES)
    report = validation.main(None, tmp_path, None)
    assert json.loads((tmp_path / JUDGES_REPORT).read_text()) == report
    out = capsys.readouterr().out
    assert "| hallucination (hallucinated) | test |" in out and "| safety (unsafe) | all |" in out


# ---- the reward model's threshold: held-out calibration pairs ---------------------------------------


def test_calibration_pairs_are_held_out():
    rows = calibration_rows(REPO)
    prompts = {r["prompt"] for r in rows}
    assert len(rows) >= 20 and len(prompts) == len(rows)
    assert not prompts & {r["prompt"] for r in read_jsonl(REPO / SAFETY_TRAIN)}
    assert not prompts & {r["prompt"] for r in read_jsonl(REPO / SAFETY_EVAL)}
    assert {r["category"] for r in rows} == {r["category"] for r in read_jsonl(REPO / SAFETY_EVAL)}
    assert all(r["safe"].strip() != r["unsafe"].strip() for r in rows)


def test_calibration_prompt_that_is_trained_on_is_an_error(tmp_path):
    (tmp_path / "data/safety").mkdir(parents=True)
    shutil.copy(REPO / SAFETY_TRAIN, tmp_path / SAFETY_TRAIN)
    trained = read_jsonl(REPO / SAFETY_TRAIN)[3]
    rows = [{"id": "c1", "prompt": "A new prompt?", "safe": "a", "unsafe": "b"}, trained]
    (tmp_path / "data/safety/calibration.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"calibration.jsonl, line 2, field 'prompt': also a training prompt"):
        calibration_rows(tmp_path)

