"""Loaders: original formats -> Record, every malformed row named by file, line (or key) and field."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO
from medadapt.data.loaders import (
    load_files,
    load_medmcqa,
    load_medqa,
    load_pubmedqa,
    load_radqa,
    pubmedqa_record,
)
from medadapt.data.records import LETTERS, DataError, Record

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
        context="We randomised 120 adults.\nSystolic pressure fell by 12 mmHg.",
        options=None,
        answer="yes",
        rationale="Drug X lowered systolic pressure by 12 mmHg.",
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
    )
    assert first.label == "answerable" and first.answer_text == "a 9 mm nodule"
    assert second.answer == "" and second.label == "unanswerable"
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


def test_sample_medmcqa_uses_zero_based_cop():
    rows = [json.loads(line) for line in (SAMPLE / "medmcqa" / "dev.jsonl").read_text().splitlines() if line.strip()]
    records = load_files("medmcqa", SAMPLE, "medmcqa/*.jsonl", 0)
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
    assert records[0].question == item["QUESTION"].strip()
    assert records[0].context == "\n".join(c.strip() for c in item["CONTEXTS"])
    assert load_files("pubmedqa", shared_data, "pubmedqa/ori_pqal.json") == records


def test_shared_medmcqa(shared_data):
    path = shared_data / "medmcqa" / "medmcqa_dev_first1000.jsonl"
    rows = _lines(path)
    records = load_files("medmcqa", shared_data, "medmcqa/*.jsonl", cop_base=0)
    assert len(records) == len(rows) == 1000
    assert len({r.id for r in records}) == 1000
    assert [r.answer for r in records] == [LETTERS[row["cop"]] for row in rows]
    assert [r.options for r in records] == [[row[f"op{x}"].strip() for x in "abcd"] for row in rows]
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
    assert all(r.options[LETTERS.index(r.answer)] == row["answer"].strip() for r, row in zip(records, rows))
