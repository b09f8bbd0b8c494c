"""The judges' validation: labelled sets, Wilson intervals, the committed figures; the RM's
unsafe threshold calibrated on held-out pairs."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections import Counter

import pytest

from medadapt.commands import judges as validation
from medadapt.commands.judges import (
    parser_figures,
    proportion,
    read_parse_set,
    read_set,
    rule_figures,
    validate,
)
from medadapt.data.loaders import load_files
from medadapt.data.preferences import build_pairs
from medadapt.data.records import DataError, read_jsonl
from medadapt.modeling.reward import calibration_rows
from medadapt.params import PreferenceParams
from medadapt.paths import (
    JUDGES,
    JUDGES_HALLUCINATION,
    JUDGES_PARSE,
    JUDGES_REPORT,
    JUDGES_SAFETY,
    SAFETY_EVAL,
    SAFETY_TRAIN,
)
from medadapt.scoring.answers import parse_answer

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


def test_hallucination_test_items_are_no_dev_items():
    """Issue 19: the test part (written before the rule's last revision) asks questions no dev row asks."""
    questions = {part: {r["question"] for r in HALLUCINATION if r["part"] == part} for part in ("dev", "test")}
    assert len(questions["test"]) >= 20 and not questions["test"] & questions["dev"]
    test = [r for r in HALLUCINATION if r["part"] == "test"]
    assert len(test) >= 80 and sum(r["hallucinated"] for r in test) == len(test) // 2
    assert {r["dataset"] for r in test} == {"pubmedqa", "medmcqa", "medqa", "radqa"}


def test_safety_test_prompts_are_no_dev_prompts():
    """Issue 19: the safety set's parts are split by prompt; an answer to a test prompt that the rule
    was once revised on is `retired`, in neither part."""
    prompts = {part: {r["prompt_id"] for r in SAFETY if r["part"] == part} for part in ("dev", "test", "retired")}
    assert len(prompts["test"]) == 15 and len(prompts["dev"]) == 15
    assert not prompts["test"] & prompts["dev"]
    assert prompts["retired"] <= prompts["test"]
    categories = {part: {r["category"] for r in SAFETY if r["part"] == part} for part in ("dev", "test")}
    assert categories["test"] == categories["dev"] == {r["category"] for r in read_jsonl(REPO / SAFETY_EVAL)}


@pytest.mark.parametrize("row, field, problem", [
    ({"hallucinated": "yes"}, "hallucinated", "expected true or false"),
    ({"part": "train"}, "part", "expected one of dev, test, retired"),
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
    """reports/judges.json (and the figures docs/metrics.md takes from it) cannot drift from the rules."""
    assert validate(REPO) == json.loads((REPO / JUDGES_REPORT).read_text())


def test_figures_cover_both_judges_and_every_part():
    report = validate(REPO)
    for name, label in (("hallucination", "hallucinated"), ("safety", "unsafe")):
        rows = HALLUCINATION if name == "hallucination" else SAFETY
        assert report[name]["positive_class"] == label
        assert report[name]["all"]["n"] == len(rows)
        assert sum(report[name][part]["n"] for part in ("dev", "test")) + report[name]["retired"] == len(rows)
        for part in ("all", "dev", "test"):
            assert set(report[name][part]["youden_j"]) == {"value", "low", "high", "better_than_chance"}
        assert report[name]["all"]["positives"] == sum(r[label] for r in rows)


def test_main_prints_the_table_and_writes_the_report(tmp_path, capsys):
    shutil.copytree(REPO / JUDGES, tmp_path / JUDGES)
    report = validation.main(None, tmp_path, None)
    assert json.loads((tmp_path / JUDGES_REPORT).read_text()) == report
    out = capsys.readouterr().out
    assert "| hallucination (hallucinated) | test |" in out and "| safety (unsafe) | all |" in out
    assert "The reward model as a safety judge: not measured" in out
    assert "safety.unsafe_rate_rule: J " in out
    for dataset in ("pubmedqa", "medmcqa", "medqa"):
        figures = report["parser"][dataset]["test"]
        assert f"| {dataset} | test | {figures['n']} | {validation._cell(figures['accuracy'])} |" in out


# ---- the answer parser's labelled set (issue 19) ----------------------------------------------


PARSE_DATASETS = ("pubmedqa", "medmcqa", "medqa")
METHODS = ("base", "icl", "sft_pubmedqa", "sft_medmcqa", "sft", "dpo")


def _sampler():
    spec = importlib.util.spec_from_file_location("parse_set_sample", REPO / "scripts/parse_set_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_set_covers_every_method_and_dataset():
    rows = read_parse_set(REPO / JUDGES_PARSE)
    cells = Counter((r["method"], r["dataset"]) for r in rows)
    assert len(rows) >= 300 and set(cells) == {(m, d) for m in METHODS for d in PARSE_DATASETS}
    assert min(cells.values()) >= 20
    assert len({(r["method"], r["id"]) for r in rows}) == len(rows)
    for dataset in PARSE_DATASETS:  # answers and "none" both present, in both parts
        for part in ("dev", "test"):
            labels = [r["label"] for r in rows if r["dataset"] == dataset and r["part"] == part]
            assert None in labels and len(set(labels)) >= 3, (dataset, part)


def test_parse_set_rows_are_the_seeded_choice_verbatim():
    """The rows are the ones scripts/parse_set_sample.py chooses from the reference runs, with the
    outputs and the options of the prompts unchanged."""
    sampler = _sampler()
    chosen = sampler.select(sampler.generations(REPO))
    rows = read_parse_set(REPO / JUDGES_PARSE)
    keys = ("id", "method", "dataset", "part", "output", "options")
    assert [tuple(r[k] for k in keys) for r in rows] == [tuple(r[k] for k in keys) for r in chosen]


@pytest.mark.parametrize("row, field, problem", [
    ({"label": "E"}, "label", "expected one of A, B, C, D or null"),
    ({"label": "Yes"}, "label", "expected one of A, B, C, D or null"),
    ({"options": None}, "options", "expected a list of option texts"),
    ({"part": "train"}, "part", "expected one of dev, test"),
    ({"output": None}, "output", "missing or not text"),
])
def test_read_parse_set_names_file_line_field(tmp_path, row, field, problem):
    good = next(r for r in read_jsonl(REPO / JUDGES_PARSE) if r["dataset"] == "medqa")
    path = tmp_path / "parse.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, **row}) + "\n")
    with pytest.raises(DataError) as info:
        read_parse_set(path)
    assert str(info.value) == f"{path}, line 2, field '{field}': {problem}"


def test_parser_figures_by_hand():
    rows = [{"id": str(i), "method": "m", "dataset": "pubmedqa", "part": "dev", "output": o, "options": None,
             "label": label} for i, (o, label) in enumerate([
                 ("yes", "yes"), ("no", "no"), ("none", None), ("none", None), ("no", None), ("none", "yes"),
                 ("maybe", "no")])]
    fake = lambda output, record: None if output == "none" else output
    figures = parser_figures(rows, fake)["pubmedqa"]["dev"]
    assert (figures["accuracy"]["k"], figures["accuracy"]["n"]) == (4, 7)
    assert (figures["false_answers"]["k"], figures["false_answers"]["n"]) == (1, 3)
    assert (figures["unparsed"]["k"], figures["unparsed"]["n"]) == (1, 4)
    assert figures["wrong_answers"] == 1
    assert figures["disagreements"] == ["m:4", "m:5", "m:6"]


# What the parser agrees with on parse.jsonl (of 150 rows per dataset: 120 dev, 30 test), at
# least; the parser before issue 19 agreed on 91 (PubMedQA), 120 (MedMCQA) and 115 (MedQA).
PARSER_AGREES = {"pubmedqa": 146, "medmcqa": 150, "medqa": 149}


@pytest.mark.parametrize("dataset", PARSE_DATASETS)
def test_parser_accuracy_on_the_labelled_set(dataset):
    figures = parser_figures(read_parse_set(REPO / JUDGES_PARSE), parse_answer)[dataset]["all"]
    assert figures["n"] == 150
    assert figures["accuracy"]["k"] >= PARSER_AGREES[dataset], figures["disagreements"]


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



def test_main_prints_the_reward_models_figures_where_the_rm_stage_wrote_them(tmp_path, capsys):
    shutil.copytree(REPO / JUDGES, tmp_path / JUDGES)
    rm_figures = {"positive_class": "unsafe", "file": str(JUDGES_SAFETY)}
    rows = [{"id": str(i)} for i in range(4)]
    for part in ("all", "dev", "test"):
        rm_figures[part] = {**rule_figures(rows, [True, True, False, False], [True, False, True, False]), "n": 4,
                            "positives": 2}
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/rm.json").write_text(json.dumps({"judge": rm_figures}))
    report = validation.main(None, tmp_path, None)
    out = capsys.readouterr().out
    assert "| reward model (unsafe) | test | 4 (2) |" in out
    assert "safety.unsafe_rate_rm: J 0.00" in out and "NOT shown better than chance" in out
    assert "reward model" not in json.dumps(report)  # the report depends on the rules alone
