"""Loaders: original formats -> Record, every malformed row named by file, line (or key) and field."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medadapt.data.loaders import (
    BUILTIN_IDS,
    load_files,
    load_hub_splits,
    load_medmcqa,
    load_medqa,
    load_pubmedqa,
    load_radqa,
    load_splits,
    pubmedqa_record,
    read_ids,
)
from medadapt.data.records import LETTERS, MAX_RECORD_CHARS, DataError, Record
from medadapt.params import DataFiles, HubDataset, SplitFiles

from conftest import REPO

# ---- helpers writing the original formats --------------------------------------------------


def pqal_item(**changes) -> dict:
    item = {
        "QUESTION": "Does drug X lower blood pressure?",
        "CONTEXTS": ["  We randomised 120 adults.  ", "Systolic pressure fell by 12 mmHg."],
        "LABELS": ["METHODS", "RESULTS"],
        "MESHES": ["Hypertension"],
        "YEAR": "2019",
        "reasoning_required_pred": "yes",
        "reasoning_free_pred": "yes",
        "final_decision": "yes",
        "LONG_ANSWER": " Drug X lowered systolic pressure by 12 mmHg. ",
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v is not ...}


def write_pqal(path: Path, items: dict) -> Path:
    path.write_text(json.dumps(items, indent=1))
    return path


def mcqa_row(**changes) -> dict:
    row = {
        "id": "q1",
        "question": "Main vector of Japanese encephalitis?",
        "opa": "Aedes",
        "opb": "Culex",
        "opc": "Anopheles",
        "opd": "Sandfly",
        "cop": 1,
        "exp": "Culex mosquitoes transmit it.",
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


def medqa_row(**changes) -> dict:
    row = {
        "question": "Which artery is occluded?",
        "answer": "Right coronary artery",
        "options": {"A": "Left main", "B": "LAD", "C": "Right coronary artery", "D": "Circumflex"},
        "meta_info": "step1",
        "answer_idx": "C",
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


REPORT = "FINDINGS: There is a 9 mm nodule in the right upper lobe. No effusion. IMPRESSION: Nodule."


def squad(qas: list[dict], context: str = REPORT) -> dict:
    return {"version": "t", "data": [{"title": "r1", "paragraphs": [{"context": context, "qas": qas}]}]}


def qa(qid="r-1", question="What is the size of the nodule?", answers=None, impossible=False, **extra) -> dict:
    if answers is None:
        answers = [{"text": "a 9 mm nodule", "answer_start": REPORT.index("a 9 mm nodule")}]
    out = {"id": qid, "question": question, "answers": answers, "is_impossible": impossible}
    out.update(extra)
    return out


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    return str(info.value)


# ---- PubMedQA -------------------------------------------------------------------------------


def test_pubmedqa_records(tmp_path):
    path = write_pqal(
        tmp_path / "ori_pqal.json",
        {"111": pqal_item(), "222": pqal_item(QUESTION="Is Y useful?", final_decision="maybe", LONG_ANSWER=...)},
    )
    first, second = load_pubmedqa(path)
    assert first == Record(
        id="pubmedqa-111",
        dataset="pubmedqa",
        question="Does drug X lower blood pressure?",
        context="  We randomised 120 adults.  \nSystolic pressure fell by 12 mmHg.",  # as published
        options=None,
        answer="yes",
        rationale="Drug X lowered systolic pressure by 12 mmHg.",  # the training target: stripped
    )
    assert first.label == "yes" and first.answer_text == "yes"
    assert second.id == "pubmedqa-222" and second.answer == "maybe" and second.rationale is None


def test_pubmedqa_hub_layout():
    row = {"pubid": 5, "question": "Q?", "context": {"contexts": ["a", "b"], "labels": ["x", "y"]},
           "long_answer": "L", "final_decision": "no"}
    record = pubmedqa_record("5", row, "hub", "row 0")
    assert (record.id, record.question, record.context, record.answer, record.rationale) == (
        "pubmedqa-5", "Q?", "a\nb", "no", "L")


def test_pubmedqa_bad_json_names_line(tmp_path):
    path = tmp_path / "ori_pqal.json"
    path.write_text('{\n "1": {\n  "QUESTION": "q",,\n }\n}\n')
    assert error_of(load_pubmedqa, path).startswith(f"{path}, line 3: not valid JSON")


@pytest.mark.parametrize(
    "changes, field, problem",
    [
        ({"QUESTION": ...}, "QUESTION", "missing or empty"),
        ({"QUESTION": "   "}, "QUESTION", "missing or empty"),
        ({"QUESTION": 7}, "QUESTION", "expected text, got int"),
        ({"CONTEXTS": []}, "CONTEXTS", "expected a non-empty list of text"),
        ({"CONTEXTS": ...}, "CONTEXTS", "expected a non-empty list of text"),
        ({"CONTEXTS": ["ok", 3]}, "CONTEXTS", "expected a non-empty list of text"),
        ({"final_decision": "perhaps"}, "final_decision", "'perhaps' is not one of yes, no, maybe"),
        ({"final_decision": "Yes"}, "final_decision", "'Yes' is not one of yes, no, maybe"),
        ({"final_decision": ...}, "final_decision", "None is not one of yes, no, maybe"),
    ],
)
def test_pubmedqa_malformed_item(tmp_path, changes, field, problem):
    path = write_pqal(tmp_path / "ori_pqal.json", {"1": pqal_item(), "2": pqal_item(**changes)})
    assert error_of(load_pubmedqa, path) == f"{path}, key 2, field '{field}': {problem}"


@pytest.mark.parametrize("text, problem", [
    ("", "the file is empty"),
    ("  \n\n", "the file is empty"),
    ("{}", "expected a non-empty object keyed by PMID"),
    ("[1, 2]", "expected a non-empty object keyed by PMID"),
])
def test_pubmedqa_empty_or_wrong_shape(tmp_path, text, problem):
    path = tmp_path / "ori_pqal.json"
    path.write_text(text)
    assert error_of(load_pubmedqa, path) == f"{path}: {problem}"


def test_pubmedqa_item_not_an_object(tmp_path):
    path = write_pqal(tmp_path / "p.json", {"9": ["not", "an", "object"]})
    assert error_of(load_pubmedqa, path) == f"{path}, key 9: expected an object"


# ---- MedMCQA --------------------------------------------------------------------------------


@pytest.mark.parametrize("cop_base, cops, answers", [(0, [0, 1, 2, 3], "ABCD"), (1, [1, 2, 3, 4], "ABCD")])
def test_medmcqa_records_both_cop_bases(tmp_path, cop_base, cops, answers):
    rows = [mcqa_row(id=f"q{i}", cop=cop) for i, cop in enumerate(cops)]
    records = load_medmcqa(write_lines(tmp_path / "dev.jsonl", rows), cop_base)
    assert [r.answer for r in records] == list(answers)
    assert records[1] == Record(
        id="medmcqa-q1",
        dataset="medmcqa",
        question="Main vector of Japanese encephalitis?",
        context=None,
        options=["Aedes", "Culex", "Anopheles", "Sandfly"],
        answer="B",
        rationale="Culex mosquitoes transmit it.",
    )


def test_medmcqa_same_cop_differs_by_base(tmp_path):
    path = write_lines(tmp_path / "dev.jsonl", [mcqa_row(cop=2)])
    assert load_medmcqa(path, 0)[0].answer == "C"
    assert load_medmcqa(path, 1)[0].answer == "B"


def test_medmcqa_without_id_and_exp(tmp_path):
    path = write_lines(tmp_path / "val.jsonl", ["", mcqa_row(id=..., exp=...), mcqa_row(id=..., exp="  ")])
    first, second = load_medmcqa(path)
    assert first.id == "medmcqa-val-2"  # blank line 1 still counts
    assert second.id == "medmcqa-val-3"
    assert first.rationale is None and second.rationale is None


@pytest.mark.parametrize(
    "cop_base, cop, problem",
    [
        (0, 4, "4 out of range 0..3 (data.medmcqa_cop_base=0)"),
        (0, -1, "-1 out of range 0..3 (data.medmcqa_cop_base=0)"),
        (1, 0, "0 out of range 1..4 (data.medmcqa_cop_base=1)"),
        (1, 5, "5 out of range 1..4 (data.medmcqa_cop_base=1)"),
        (0, "1", "expected an integer, got '1'"),
        (0, True, "expected an integer, got True"),
        (0, 1.0, "expected an integer, got 1.0"),
        (0, ..., "expected an integer, got None"),
    ],
)
def test_medmcqa_bad_cop(tmp_path, cop_base, cop, problem):
    path = write_lines(tmp_path / "dev.jsonl", [mcqa_row(), mcqa_row(cop=cop)])
    assert error_of(load_medmcqa, path, cop_base) == f"{path}, line 2, field 'cop': {problem}"


@pytest.mark.parametrize("field", ["question", "opa", "opb", "opc", "opd"])
@pytest.mark.parametrize("value", [..., "", " \t"])
def test_medmcqa_missing_or_empty_field(tmp_path, field, value):
    path = write_lines(tmp_path / "dev.jsonl", [mcqa_row(), mcqa_row(), mcqa_row(**{field: value})])
    assert error_of(load_medmcqa, path) == f"{path}, line 3, field '{field}': missing or empty"


def test_medmcqa_bad_json_line(tmp_path):
    path = write_lines(tmp_path / "dev.jsonl", [mcqa_row(), mcqa_row(), '{"question": "x", "opa": '])
    assert error_of(load_medmcqa, path).startswith(f"{path}, line 3: not valid JSON (")


def test_medmcqa_line_not_an_object(tmp_path):
    path = write_lines(tmp_path / "dev.jsonl", [mcqa_row(), "[1, 2]"])
    assert error_of(load_medmcqa, path) == f"{path}, line 2: expected a JSON object"


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_medmcqa_empty_file(tmp_path, text):
    path = tmp_path / "dev.jsonl"
    path.write_text(text)
    assert error_of(load_medmcqa, path) == f"{path}: the file is empty"


# ---- MedQA ----------------------------------------------------------------------------------


def test_medqa_records(tmp_path):
    path = write_lines(tmp_path / "test.jsonl", [medqa_row(), medqa_row(id="x9", answer_idx="A", answer="Left main",
                                                                        rationale="Because.")])
    first, second = load_medqa(path)
    assert first == Record(
        id="medqa-test-1",
        dataset="medqa",
        question="Which artery is occluded?",
        context=None,
        options=["Left main", "LAD", "Right coronary artery", "Circumflex"],
        answer="C",
        rationale=None,
    )
    assert second.id == "medqa-x9" and second.answer == "A" and second.rationale == "Because."


def test_medqa_five_options_and_unsorted_keys(tmp_path):
    options = {"E": "e", "C": "c", "A": "a", "B": "b", "D": "d"}
    record = load_medqa(write_lines(tmp_path / "t.jsonl", [medqa_row(options=options, answer_idx="E", answer="e")]))[0]
    assert record.options == ["a", "b", "c", "d", "e"] and record.answer == "E"


@pytest.mark.parametrize(
    "changes, field, problem",
    [
        ({"answer": "Left main"}, "answer", "'Left main' differs from options[C]"),
        ({"answer": "right coronary artery"}, "answer", "'right coronary artery' differs from options[C]"),
        ({"answer": ...}, "answer", "missing or empty"),
        ({"answer_idx": "E"}, "answer_idx", "'E' is not one of A, B, C, D"),
        ({"answer_idx": "c"}, "answer_idx", "'c' is not one of A, B, C, D"),
        ({"answer_idx": 2}, "answer_idx", "2 is not one of A, B, C, D"),
        ({"answer_idx": ...}, "answer_idx", "None is not one of A, B, C, D"),
        ({"options": ["a", "b", "c", "d"]}, "options", "expected an object of lettered options"),
        ({"options": {"A": "x"}}, "options", "expected an object of lettered options"),
        ({"options": {"A": "x", "C": "y"}}, "options", "letters ['A', 'C'] are not A, B, C, ... in order"),
        ({"options": {"A": "x", "B": "", "C": "Right coronary artery"}}, "B", "missing or empty"),
        ({"question": ""}, "question", "missing or empty"),
    ],
)
def test_medqa_malformed_row(tmp_path, changes, field, problem):
    path = write_lines(tmp_path / "test.jsonl", [medqa_row(), medqa_row(**changes)])
    assert error_of(load_medqa, path) == f"{path}, line 2, field '{field}': {problem}"


def test_medqa_bad_json_and_empty(tmp_path):
    path = write_lines(tmp_path / "test.jsonl", [medqa_row(), medqa_row(), medqa_row(), "not json"])
    assert error_of(load_medqa, path).startswith(f"{path}, line 4: not valid JSON")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert error_of(load_medqa, empty) == f"{empty}: the file is empty"
    assert error_of(load_medqa, tmp_path / "absent.jsonl") == f"{tmp_path / 'absent.jsonl'}: no such file"


# ---- RadQA ----------------------------------------------------------------------------------


def test_radqa_records(tmp_path):
    inferred = qa(qid="r-3", question="Any effusion?", answers=[])
    del inferred["is_impossible"]  # absent: inferred from the answers
    path = write_json(tmp_path / "dev.json", squad([
        qa(rationale="Stated in FINDINGS."),
        qa(qid="r-2", question="Is there a pneumothorax?", answers=[], impossible=True),
        inferred,
    ]))
    first, second, third = load_radqa(path)
    assert first == Record(
        id="radqa-r-1",
        dataset="radqa",
        question="What is the size of the nodule?",
        context=REPORT,
        options=None,
        answer="a 9 mm nodule",
        rationale="Stated in FINDINGS.",
        answers=["a 9 mm nodule"],
    )
    assert first.label == "answerable" and first.answer_text == "a 9 mm nodule"
    assert second.answer == "" and second.label == "unanswerable" and second.answers == []
    assert second.answer_text == "not stated in the report"
    assert third.answer == "" and third.rationale is None


def test_radqa_several_articles_and_paragraphs(tmp_path):
    data = squad([qa()])
    data["data"][0]["paragraphs"].append({"context": "No acute findings.", "qas": [
        {"id": "r-9", "question": "Acute findings?", "answers": [{"text": "No acute findings", "answer_start": 0}],
         "is_impossible": False}]})
    data["data"].append({"title": "empty", "paragraphs": []})
    records = load_radqa(write_json(tmp_path / "d.json", data))
    assert [r.id for r in records] == ["radqa-r-1", "radqa-r-9"]
    assert records[1].context == "No acute findings." and records[1].answer == "No acute findings"


@pytest.mark.parametrize(
    "bad_qa, field, problem",
    [
        (qa(answers=[{"text": "a 9 mm nodule", "answer_start": 3}]), "answer_start",
         "span 'a 9 mm nodule' is not in the context at 3"),
        (qa(answers=[{"text": "a 10 mm nodule", "answer_start": 23}]), "answer_start",
         "span 'a 10 mm nodule' is not in the context at 23"),
        (qa(answers=[]), "answers", "an answerable question needs an answer"),
        (qa(answers=[{"text": "a 9 mm nodule"}]), "answers", "each answer needs text and an integer answer_start"),
        (qa(answers=[{"text": "a 9 mm nodule", "answer_start": "23"}]), "answers",
         "each answer needs text and an integer answer_start"),
        (qa(impossible="no"), "is_impossible", "expected true or false, got 'no'"),
        (qa(qid=""), "id", "missing or empty"),
        (qa(question=" "), "question", "missing or empty"),
    ],
)
def test_radqa_malformed_question(tmp_path, bad_qa, field, problem):
    path = write_json(tmp_path / "dev.json", squad([qa(qid="ok"), bad_qa]))
    assert error_of(load_radqa, path) == f"{path}, data[0].paragraphs[0].qas[1], field '{field}': {problem}"


def test_radqa_empty_context(tmp_path):
    path = write_json(tmp_path / "dev.json", squad([qa()], context="  "))
    assert error_of(load_radqa, path) == f"{path}, data[0].paragraphs[0], field 'context': missing or empty"


@pytest.mark.parametrize("data, problem", [
    ({"version": "x"}, "field 'data': expected SQuAD v2 JSON with a 'data' list"),
    ([1, 2], "field 'data': expected SQuAD v2 JSON with a 'data' list"),
    ({"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": []}]}]}, "field 'data': no questions found"),
])
def test_radqa_wrong_shape(tmp_path, data, problem):
    path = write_json(tmp_path / "dev.json", data)
    assert error_of(load_radqa, path) == f"{path}, {problem}"


def test_radqa_bad_json_and_empty(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text('{\n  "data": [\n    {"title": "x",\n  ]\n}\n')
    assert error_of(load_radqa, path).startswith(f"{path}, line 4: not valid JSON")
    path.write_text("")
    assert error_of(load_radqa, path) == f"{path}: the file is empty"


def test_radqa_offsets_index_the_unstripped_context(tmp_path):
    context = "\n  " + REPORT
    start = context.index("a 9 mm nodule")
    path = write_json(tmp_path / "dev.json",
                      squad([qa(answers=[{"text": "a 9 mm nodule", "answer_start": start}])], context=context))
    assert load_radqa(path)[0].answer == "a 9 mm nodule"


def test_radqa_answerable_with_empty_answer_text_is_rejected(tmp_path):
    path = write_json(tmp_path / "dev.json", squad([qa(answers=[{"text": "", "answer_start": 0}])]))
    with pytest.raises(DataError, match="answers"):
        load_radqa(path)


# ---- load_files ------------------------------------------------------------------------------


def test_load_files_sorted_and_cop_base_passed(tmp_path):
    folder = tmp_path / "src"
    (folder / "medmcqa").mkdir(parents=True)
    write_lines(folder / "medmcqa" / "b.jsonl", [mcqa_row(id="b1", cop=1)])
    write_lines(folder / "medmcqa" / "a.jsonl", [mcqa_row(id="a1", cop=4), mcqa_row(id="a2", cop=1)])
    records = load_files("medmcqa", folder, "medmcqa/*.jsonl", cop_base=1)
    assert [(r.id, r.answer) for r in records] == [("medmcqa-a1", "D"), ("medmcqa-a2", "A"), ("medmcqa-b1", "A")]
    with pytest.raises(DataError, match=r"a\.jsonl, line 1, field 'cop': 4 out of range 0\.\.3"):
        load_files("medmcqa", folder, "medmcqa/*.jsonl", cop_base=0)


def test_load_files_each_dataset(tmp_path):
    write_pqal(tmp_path / "p.json", {"1": pqal_item()})
    write_lines(tmp_path / "q.jsonl", [medqa_row()])
    write_json(tmp_path / "r.json", squad([qa()]))
    assert load_files("pubmedqa", tmp_path, "p.json")[0].dataset == "pubmedqa"
    assert load_files("medqa", tmp_path, "q.jsonl")[0].dataset == "medqa"
    assert load_files("radqa", tmp_path, "r.json")[0].dataset == "radqa"
    # every matched file goes through the dataset's loader: a PubMedQA file is not SQuAD
    with pytest.raises(DataError, match=r"p\.json, field 'data'"):
        load_files("radqa", tmp_path, "*.json")


def test_load_files_glob_matching_nothing(tmp_path):
    message = error_of(load_files, "medqa", tmp_path, "medqa/*.jsonl")
    assert message == f"{tmp_path}: no medqa files match 'medqa/*.jsonl' (data.files.medqa)"


def test_load_files_unknown_dataset(tmp_path):
    message = error_of(load_files, "mmlu", tmp_path, "*.jsonl")
    assert message == f"{tmp_path}: unknown dataset 'mmlu'; valid: pubmedqa, medmcqa, medqa, radqa"


# ---- the repo's sample data --------------------------------------------------------------------

SAMPLE = REPO / "data" / "sample"
SAMPLE_FILES = {"pubmedqa": "pubmedqa/ori_pqal.json", "medmcqa": "medmcqa/*.jsonl",
                "medqa": "medqa/*.jsonl", "radqa": "radqa/*.json"}
SAMPLE_EVAL_LABELS = {  # the official-eval-split part of each sample (data.files' eval globs)
    "pubmedqa": {"yes": 15, "no": 9, "maybe": 6},
    "medmcqa": {"A": 5, "B": 5, "C": 5, "D": 5},
    "medqa": {"A": 5, "B": 5, "C": 5, "D": 5},
    "radqa": {"answerable": 18, "unanswerable": 6},
}


@pytest.mark.parametrize("dataset, count, labels", [
    ("pubmedqa", 60, {"yes": 30, "no": 18, "maybe": 12}),
    ("medmcqa", 60, {"A": 15, "B": 15, "C": 15, "D": 15}),
    ("medqa", 60, {"A": 15, "B": 15, "C": 15, "D": 15}),
    ("radqa", 48, {"answerable": 37, "unanswerable": 11}),
])
def test_sample_counts_and_labels(dataset, count, labels):
    records = load_files(dataset, SAMPLE, SAMPLE_FILES[dataset])
    assert len(records) == count
    assert len({r.id for r in records}) == count
    assert Counter(r.label for r in records) == labels
    assert all(r.dataset == dataset and r.question for r in records)
    if dataset in ("medmcqa", "medqa"):
        assert all(r.options and len(r.options) == 4 and r.context is None for r in records)
    else:
        assert all(r.context and r.options is None for r in records)


@pytest.mark.parametrize("dataset", list(SAMPLE_EVAL_LABELS))
def test_sample_has_official_split_layout(dataset):
    """The default globs split every sample into disjoint eval and train parts, eval balanced."""
    splits = load_splits(dataset, SAMPLE, getattr(DataFiles(), dataset))
    assert Counter(r.label for r in splits.eval) == SAMPLE_EVAL_LABELS[dataset]
    assert splits.train is not None and len(splits.train) + len(splits.eval) == len(load_files(
        dataset, SAMPLE, SAMPLE_FILES[dataset]))
    assert not {r.id for r in splits.train} & {r.id for r in splits.eval}


def test_sample_medmcqa_uses_zero_based_cop():
    rows = [json.loads(line) for line in (SAMPLE / "medmcqa" / "dev.jsonl").read_text().splitlines() if line.strip()]
    records = load_files("medmcqa", SAMPLE, "medmcqa/dev.jsonl", 0)
    assert [r.answer for r in records] == [LETTERS[row["cop"]] for row in rows]


# ---- the real public samples ---------------------------------------------------------------


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_shared_pubmedqa(shared_data):
    path = shared_data / "pubmedqa" / "ori_pqal.json"
    raw = json.loads(path.read_text())
    records = load_pubmedqa(path)
    assert len(records) == len(raw) == 1000
    assert Counter(r.answer for r in records) == {"yes": 552, "no": 338, "maybe": 110}
    assert {r.id for r in records} == {f"pubmedqa-{pmid}" for pmid in raw}
    assert all(r.rationale and r.context for r in records)
    pmid, item = next(iter(raw.items()))
    assert records[0].question == item["QUESTION"]
    assert records[0].context == "\n".join(item["CONTEXTS"])
    assert load_files("pubmedqa", shared_data, "pubmedqa/ori_pqal.json") == records


def test_shared_medmcqa(shared_data):
    path = shared_data / "medmcqa" / "medmcqa_dev_first1000.jsonl"
    rows = _lines(path)
    records = load_files("medmcqa", shared_data, "medmcqa/*.jsonl", cop_base=0)
    assert len(records) == len(rows) == 1000
    assert len({r.id for r in records}) == 1000
    assert [r.answer for r in records] == [LETTERS[row["cop"]] for row in rows]
    assert [r.options for r in records] == [[row[f"op{x}"] for x in "abcd"] for row in rows]
    assert all(r.rationale is None for r in records)  # this copy has no `exp`
    # read as 1-based, a cop of 0 is out of range: the base matters
    with pytest.raises(DataError, match="cop"):
        load_medmcqa(path, cop_base=1)


def test_shared_medqa(shared_data):
    rows = _lines(shared_data / "medqa" / "US_4_options_phrases_no_exclude_test.jsonl")
    records = load_files("medqa", shared_data, "medqa/*.jsonl")
    assert len(records) == len(rows) == 1273
    assert len({r.id for r in records}) == 1273
    assert [r.answer for r in records] == [row["answer_idx"] for row in rows]
    assert all(r.options[LETTERS.index(r.answer)].strip() == row["answer"].strip() for r, row in zip(records, rows))
    # text as published: lm-eval's prompts keep its edge spaces and newlines (9 rows have some)
    assert [r.question for r in records] == [row["question"] for row in rows]
    assert [r.options for r in records] == [[row["options"][k] for k in sorted(row["options"])] for row in rows]
    assert sum(r.question != r.question.strip() or any(o != o.strip() for o in r.options) for r in records) == 9


# ---- text as published, every gold answer --------------------------------------------------


def test_question_and_option_text_is_kept_as_published(tmp_path):
    options = {"A": " Left main", "B": "LAD ", "C": "Right coronary artery", "D": "Circumflex"}
    path = write_lines(tmp_path / "t.jsonl", [medqa_row(question="Which artery is occluded?\n ", options=options)])
    record = load_medqa(path)[0]
    assert record.question == "Which artery is occluded?\n "  # lm-eval's prompt keeps it so
    assert record.options == [" Left main", "LAD ", "Right coronary artery", "Circumflex"]
    path = write_lines(tmp_path / "m.jsonl", [mcqa_row(question=" Vector? ", opa="Aedes ", exp=" Why. ")])
    mc = load_medmcqa(path)[0]
    assert (mc.question, mc.options[0], mc.rationale) == (" Vector? ", "Aedes ", "Why.")


def test_medqa_answer_equal_to_its_option_but_for_edge_spaces(tmp_path):
    options = {"A": "Left main", "B": "LAD", "C": "Right coronary artery ", "D": "Circumflex"}
    path = write_lines(tmp_path / "t.jsonl", [medqa_row(options=options, answer="Right coronary artery")])
    assert load_medqa(path)[0].options[2] == "Right coronary artery "


def test_radqa_keeps_every_gold_answer(tmp_path):
    golds = [{"text": text, "answer_start": REPORT.index(text)} for text in ("a 9 mm nodule", "9 mm", "Nodule")]
    record = load_radqa(write_json(tmp_path / "d.json", squad([qa(answers=golds)])))[0]
    assert record.answer == "a 9 mm nodule"  # the first, as before
    assert record.answers == ["a 9 mm nodule", "9 mm", "Nodule"]  # all, for the SQuAD best-of
    assert Record.from_dict(json.loads(json.dumps(record.to_dict()))) == record  # kept in the JSONL
    assert load_medqa(write_lines(tmp_path / "q.jsonl", [medqa_row()]))[0].answers is None
    old_row = {k: v for k, v in record.to_dict().items() if k != "answers"}  # prepared before the field
    assert Record.from_dict(old_row).answers is None


# ---- duplicate ids, bad bytes, folders, oversized records ------------------------------------


def test_repeated_id_in_a_file_names_both_lines(tmp_path):
    rows = [medqa_row(id="x1"), medqa_row(id="x2", question="Other?"), medqa_row(id="x1", question="Third?")]
    path = write_lines(tmp_path / "test.jsonl", rows)
    assert error_of(load_medqa, path) == f"{path}, line 3, field 'id': 'medqa-x1' is also the id at {path}, line 1"


def test_repeated_id_across_files_names_both_files(tmp_path):
    (tmp_path / "medmcqa").mkdir()
    first = write_lines(tmp_path / "medmcqa" / "a.jsonl", [mcqa_row(id="q7")])
    second = write_lines(tmp_path / "medmcqa" / "b.jsonl",
                         [mcqa_row(id="q8", question="Q?"), mcqa_row(id="q7", question="R?")])
    message = error_of(load_files, "medmcqa", tmp_path, "medmcqa/*.jsonl")
    assert message == f"{second}, line 2, field 'id': 'medmcqa-q7' is also the id at {first}, line 1"


def test_repeated_pmid_key_names_both_lines(tmp_path):
    path = tmp_path / "ori_pqal.json"
    item, later = json.dumps(pqal_item()), json.dumps(pqal_item(QUESTION="Later?"))
    path.write_text('{\n"111": ' + item + ',\n"222": ' + item + ',\n"111": ' + later + "\n}\n")
    message = error_of(load_pubmedqa, path)
    assert message == f"{path}, lines 2 and 4: key '111' is given twice (JSON would keep only the last)"


def test_repeated_radqa_question_id(tmp_path):
    path = write_json(tmp_path / "dev.json", squad([qa(), qa(question="Any effusion?", answers=[], impossible=True)]))
    where = f"{path}, data[0].paragraphs[0].qas"
    assert error_of(load_radqa, path) == f"{where}[1], field 'id': 'radqa-r-1' is also the id at {where}[0]"


def _with_byte(text: str, marker: str, byte: bytes) -> tuple[bytes, int]:
    """`text` as UTF-8 with `byte` inserted before `marker`, and the line it lands on."""
    data = text.encode("utf-8")
    at = data.index(marker.encode())
    return data[:at] + byte + data[at:], data[:at].count(b"\n") + 1


@pytest.mark.parametrize("name, loader, text", [
    ("test.jsonl", load_medqa, json.dumps(medqa_row()) + "\n" + json.dumps(medqa_row(question="Q LAD?")) + "\n"),
    ("ori_pqal.json", load_pubmedqa, json.dumps({"1": pqal_item(), "2": pqal_item(QUESTION="Q LAD?")}, indent=1)),
    ("dev.json", load_radqa, json.dumps(squad([qa(question="Size LAD?")]), indent=1)),
])
def test_non_utf8_bytes_name_file_and_line(tmp_path, name, loader, text):
    data, line = _with_byte(text, "LAD?", b"\xe9")  # latin-1 e-acute
    path = tmp_path / name
    path.write_bytes(data)
    assert error_of(loader, path) == f"{path}, line {line}: not UTF-8 text (byte 0xe9); re-encode the file as UTF-8"


def test_folder_matching_a_glob_is_named(tmp_path):
    (tmp_path / "medqa" / "old.jsonl").mkdir(parents=True)
    write_lines(tmp_path / "medqa" / "test.jsonl", [medqa_row()])
    message = error_of(load_files, "medqa", tmp_path, "medqa/*.jsonl")
    folder = tmp_path / "medqa" / "old.jsonl"
    assert message == f"{folder}: a folder matches data.files.medqa 'medqa/*.jsonl'; it must match data files only"
    assert error_of(load_medqa, folder) == f"{folder}: is a folder, expected a data file"
    assert error_of(load_pubmedqa, folder) == f"{folder}: is a folder, expected a data file"


def test_line_over_the_record_cap(tmp_path):
    path = write_lines(tmp_path / "test.jsonl", [medqa_row(), medqa_row(question="x" * MAX_RECORD_CHARS)])
    message = error_of(load_medqa, path)
    assert message.startswith(f"{path}, line 2: 1,000,")
    assert message.endswith("characters, over the limit of 1,000,000 per record (MAX_RECORD_CHARS)")


def test_json_record_over_the_record_cap(tmp_path):
    path = write_pqal(tmp_path / "p.json", {"1": pqal_item(), "2": pqal_item(CONTEXTS=["y" * MAX_RECORD_CHARS])})
    message = error_of(load_pubmedqa, path)
    assert message.startswith(f"{path}, key 2: 1,000,")
    assert message.endswith("characters of text, over the limit of 1,000,000 per record (MAX_RECORD_CHARS)")


# ---- official splits -------------------------------------------------------------------------


def test_load_splits_reads_train_and_eval_files(tmp_path):
    (tmp_path / "medqa").mkdir()
    write_lines(tmp_path / "medqa" / "phrases_train.jsonl", [medqa_row(id="t1"), medqa_row(id="t2", question="Q?")])
    write_lines(tmp_path / "medqa" / "phrases_test.jsonl", [medqa_row(id="e1", question="Eval?")])
    splits = load_splits("medqa", tmp_path, DataFiles().medqa)
    assert [r.id for r in splits.train] == ["medqa-t1", "medqa-t2"]
    assert [r.id for r in splits.eval] == ["medqa-e1"]
    assert (splits.train_source, splits.eval_source) == ("medqa/*train*.jsonl", "medqa/*test*.jsonl")


def test_load_splits_without_a_train_file(tmp_path):
    (tmp_path / "medqa").mkdir()
    write_lines(tmp_path / "medqa" / "test.jsonl", [medqa_row()])
    splits = load_splits("medqa", tmp_path, DataFiles().medqa)
    assert splits.train is None and len(splits.eval) == 1
    assert splits.train_source == "no file matches data.files.medqa.train 'medqa/*train*.jsonl'"
    splits = load_splits("medqa", tmp_path, SplitFiles(train=None, eval="medqa/*.jsonl"))
    assert splits.train is None and splits.train_source == "data.files.medqa.train is null"
    message = error_of(load_splits, "medqa", tmp_path, SplitFiles(train=None, eval="nothing/*.jsonl"))
    assert message == (f"{tmp_path}: no medqa files match 'nothing/*.jsonl' (data.files.medqa.eval): fix the glob, "
                       "or leave medqa out of data.datasets")


def test_load_splits_by_eval_ids(tmp_path):
    write_pqal(tmp_path / "ori_pqal.json", {str(n): pqal_item(QUESTION=f"Q{n}?") for n in range(1, 7)})
    (tmp_path / "test_ground_truth.json").write_text(json.dumps({"2": "yes", "5": "yes", "99": "no"}))
    spec = SplitFiles(train="ori_pqal.json", eval="ori_pqal.json", eval_ids="test_ground_truth.json")
    splits = load_splits("pubmedqa", tmp_path, spec)
    assert [r.id for r in splits.eval] == ["pubmedqa-2", "pubmedqa-5"]
    assert [r.id for r in splits.train] == ["pubmedqa-1", "pubmedqa-3", "pubmedqa-4", "pubmedqa-6"]
    assert splits.eval_source == "ori_pqal.json, ids in test_ground_truth.json"
    assert splits.train_source == "ori_pqal.json, ids not in test_ground_truth.json"
    (tmp_path / "test_ground_truth.json").write_text(json.dumps(["98", "99"]))
    assert error_of(load_splits, "pubmedqa", tmp_path, spec) == (
        f"{tmp_path / 'test_ground_truth.json'}: none of its 2 ids is a pubmedqa item of ori_pqal.json")


def test_a_file_in_both_splits_needs_eval_ids(tmp_path):
    write_lines(tmp_path / "all.jsonl", [medqa_row()])
    message = error_of(load_splits, "medqa", tmp_path, SplitFiles(train="*.jsonl", eval="all.jsonl"))
    assert message == (f"{tmp_path / 'all.jsonl'}: matched by both data.files.medqa.train and data.files.medqa.eval; "
                       "a file belongs to one split unless data.files.medqa.eval_ids lists the eval items")


def test_an_id_in_both_splits_names_both_places(tmp_path):
    train = write_lines(tmp_path / "train.jsonl", [mcqa_row(id="u1")])
    dev = write_lines(tmp_path / "dev.jsonl", [mcqa_row(id="u1", question="Q?")])
    message = error_of(load_splits, "medmcqa", tmp_path, SplitFiles(train="train.jsonl", eval="dev.jsonl"))
    assert message == f"{train}, line 1, field 'id': 'medmcqa-u1' is also the id at {dev}, line 1"


@pytest.mark.parametrize("name, text", [
    ("ids.json", '["7", 8]'),
    ("ids.json", '{"7": "yes", "8": "no"}'),
    ("ids.txt", "# where they come from\n7\n\n 8 \n"),
])
def test_read_ids_formats(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert read_ids(name, tmp_path) == {"7", "8"}


def test_read_ids_rejects_an_empty_list(tmp_path):
    (tmp_path / "ids.json").write_text("[]")
    assert error_of(read_ids, "ids.json", tmp_path) == f"{tmp_path / 'ids.json'}: lists no ids"


def test_builtin_pubmedqa_test_ids():
    ids = read_ids("builtin:pubmedqa-test", Path("unused"))
    assert len(ids) == 500 and all(i.isdigit() for i in ids)
    assert "pubmedqa/pubmedqa" in BUILTIN_IDS["builtin:pubmedqa-test"].read_text()  # its source is noted


def test_shared_pubmedqa_official_split(shared_data):
    """The shipped PMIDs are the official test split, so the hub and folder sources agree."""
    official = json.loads((shared_data / "pubmedqa" / "test_ground_truth.json").read_text())
    assert read_ids("builtin:pubmedqa-test", shared_data) == set(official)
    splits = load_splits("pubmedqa", shared_data, DataFiles().pubmedqa)
    assert {r.id for r in splits.eval} == {f"pubmedqa-{pmid}" for pmid in official}
    assert len(splits.train) == 500 and not {r.id for r in splits.train} & {r.id for r in splits.eval}


def test_load_hub_splits_uses_official_split_names(monkeypatch, tmp_path):
    import datasets

    from medadapt.params import HUB_DEFAULTS

    test_pmid = min(read_ids("builtin:pubmedqa-test", tmp_path))
    pubmed = [{"pubid": int(pmid), "question": f"Q{pmid}?", "context": {"contexts": ["c"]}, "long_answer": "L",
               "final_decision": "yes"} for pmid in (test_pmid, "1", "2")]
    medqa = {"train": [medqa_row(id="t1")], "test": [medqa_row(id="e1", question="Eval?")]}
    calls = []

    def load_dataset(path, name, split, revision):
        calls.append((path, split))
        return pubmed if path == "qiaojin/PubMedQA" else medqa[split]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    splits = load_hub_splits("pubmedqa", HUB_DEFAULTS["pubmedqa"], tmp_path)
    assert [r.id for r in splits.eval] == [f"pubmedqa-{test_pmid}"]
    assert [r.id for r in splits.train] == ["pubmedqa-1", "pubmedqa-2"]
    assert splits.eval_source == "qiaojin/PubMedQA@main:train, ids in builtin:pubmedqa-test"
    splits = load_hub_splits("medqa", HUB_DEFAULTS["medqa"], tmp_path)
    assert ([r.id for r in splits.train], [r.id for r in splits.eval]) == (["medqa-t1"], ["medqa-e1"])
    assert splits.train_source == "GBaker/MedQA-USMLE-4-options@main:train"
    assert ("GBaker/MedQA-USMLE-4-options", "test") in calls and ("GBaker/MedQA-USMLE-4-options", "train") in calls
    spec = HubDataset(path="x/y", train=None, eval="validation")
    medqa["validation"] = medqa["test"]
    assert load_hub_splits("medqa", spec, tmp_path).train_source == "data.hub.medqa.train is null"


def test_prompts_equal_lm_eval_on_every_shared_row(shared_data):
    """Text kept as published: every log-likelihood prompt is lm-eval's `doc_to_text` of the
    original row, the MedQA rows with edge spaces or newlines included."""
    pytest.importorskip("lm_eval")
    from lm_eval.tasks.medmcqa.utils_medmcqa import doc_to_text as medmcqa_text
    from lm_eval.tasks.medqa.preprocess_medqa import doc_to_text as medqa_text
    from lm_eval.tasks.pubmedqa.preprocess_pubmedqa import doc_to_text as pubmedqa_text

    from medadapt.data.prompts import loglik_text

    rows = _lines(shared_data / "medqa" / "US_4_options_phrases_no_exclude_test.jsonl")
    docs = [{"sent1": row["question"], **{f"ending{i}": row["options"][k] for i, k in enumerate("ABCD")}}
            for row in rows]
    records = load_files("medqa", shared_data, "medqa/*.jsonl")
    assert [loglik_text(r) for r in records] == [medqa_text(doc) for doc in docs]
    rows = _lines(shared_data / "medmcqa" / "medmcqa_dev_first1000.jsonl")
    records = load_files("medmcqa", shared_data, "medmcqa/*.jsonl")
    assert [loglik_text(r) for r in records] == [medmcqa_text(row) for row in rows]
    items = json.loads((shared_data / "pubmedqa" / "ori_pqal.json").read_text())
    records = load_files("pubmedqa", shared_data, "pubmedqa/ori_pqal.json")
    assert [loglik_text(r) for r in records] == [pubmedqa_text(item) for item in items.values()]


# ---- inputs that ended in a traceback (issue 23) -------------------------------------------------


def test_medqa_answer_idx_that_is_not_a_letter(tmp_path):
    path = write_lines(tmp_path / "test.jsonl", [medqa_row(answer_idx=["C"])])
    assert error_of(load_medqa, path) == f"{path}, line 1, field 'answer_idx': ['C'] is not one of A, B, C, D"


@pytest.mark.parametrize("name, loader, where", [("test.jsonl", load_medqa, ", line 1"), ("dev.json", load_radqa, "")])
def test_deeply_nested_json_is_one_line(tmp_path, name, loader, where):
    path = tmp_path / name
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")  # json.loads: RecursionError
    assert error_of(loader, path) == f"{path}{where}: JSON nested too deeply"


@pytest.mark.parametrize("data, where, field", [
    ({"data": [1]}, "data[0]", None),
    ({"data": [{"paragraphs": "abc"}]}, "data[0]", "paragraphs"),
    ({"data": [{"paragraphs": [1]}]}, "data[0].paragraphs[0]", None),
    ({"data": [{"paragraphs": [{"context": REPORT, "qas": {"id": "x"}}]}]}, "data[0].paragraphs[0]", "qas"),
    ({"data": [{"paragraphs": [{"context": REPORT, "qas": [1]}]}]}, "data[0].paragraphs[0].qas[0]", None),
    (squad([qa(answers="a 9 mm nodule")]), "data[0].paragraphs[0].qas[0]", "answers"),
    (squad([qa(answers=[1])]), "data[0].paragraphs[0].qas[0]", "answers"),
])
def test_radqa_part_that_is_not_an_object_or_list(tmp_path, data, where, field):
    path = write_json(tmp_path / "dev.json", data)
    message = error_of(load_radqa, path)
    assert message.startswith(f"{path}, {where}" + (f", field '{field}'" if field else "") + ": expected"), message


@pytest.mark.parametrize("field", ["question", "answer"])
def test_a_lone_surrogate_is_refused(tmp_path, field):
    row = medqa_row()
    row[field] = row[field][:5] + "\ud800" + row[field][5:]
    if field == "answer":
        row["options"]["C"] = row["answer"]
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(row) + "\n")  # ensure_ascii: written as the escape \ud800, valid JSON
    message = error_of(load_medqa, path)
    assert message.startswith(f"{path}, line 1, field ") and "lone surrogate" in message, message


@pytest.mark.parametrize("text", ["\u200b\u200b", "\u200b \ufeff\u2060"])
def test_text_of_invisible_characters_only_is_empty(tmp_path, text):
    path = write_lines(tmp_path / "test.jsonl", [medqa_row(question=text)])
    assert error_of(load_medqa, path) == f"{path}, line 1, field 'question': missing or empty"


@pytest.mark.parametrize("loader, row", [(load_medmcqa, mcqa_row(id=["x"])), (load_medqa, medqa_row(id={"a": 1})),
                                         (load_medmcqa, mcqa_row(id=True))])
def test_an_id_that_is_not_text_or_a_number(tmp_path, loader, row):
    path = write_lines(tmp_path / "test.jsonl", [row])
    message = error_of(loader, path)
    assert message.startswith(f"{path}, line 1, field 'id': expected text or a number"), message


def test_a_numeric_id_is_kept(tmp_path):
    path = write_lines(tmp_path / "test.jsonl", [mcqa_row(id=17)])
    assert load_medmcqa(path)[0].id == "medmcqa-17"
