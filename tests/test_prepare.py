"""Stage prepare: splits, leakage, metrics, determinism, failures that leave nothing behind."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, make_project, write_params
from medadapt.cli import main
from medadapt.data.loaders import load_files
from medadapt.data.records import DataError, Record, read_records
from medadapt.params import load_params
from medadapt.prompts import user_message
from medadapt.stages import prepare
from medadapt.stages.prepare import deduplicate, item_key, normalise, remove_leaks

DATASETS = ("pubmedqa", "medmcqa", "medqa", "radqa")
SAMPLE_LABELS = {
    "pubmedqa": {"yes": 30, "no": 18, "maybe": 12},
    "medmcqa": {"A": 15, "B": 15, "C": 15, "D": 15},
    "medqa": {"A": 15, "B": 15, "C": 15, "D": 15},
    "radqa": {"answerable": 37, "unanswerable": 11},
}




def outputs(folder: Path) -> dict[str, bytes]:
    files = sorted((folder / "data" / "prepared").rglob("*.jsonl"))
    files += [folder / "metrics" / "prepare.json", folder / "models" / "base" / "model.safetensors"]
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One prepare run on a fresh project folder; the folder and the returned metrics."""
    folder = make_project(tmp_path_factory.mktemp("prepared"))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        metrics = prepare.run(load_params())
    finally:
        os.chdir(cwd)
    return folder, metrics


def test_prepare_writes_splits_and_metrics(prepared):
    folder, metrics = prepared
    params = load_params(folder / "params.yaml")
    on_disk = json.loads((folder / "metrics/prepare.json").read_text())
    assert on_disk == metrics
    assert set(metrics["datasets"]) == set(DATASETS)
    for dataset in DATASETS:
        train = read_records(folder / "data/prepared" / dataset / "train.jsonl")
        evaluation = read_records(folder / "data/prepared" / dataset / "eval.jsonl")
        stats = metrics["datasets"][dataset]
        assert len(train) == stats["train"] == params.data.train_size.get(dataset)
        assert len(evaluation) == stats["eval"] == params.data.eval_size.get(dataset)
        assert stats["loaded"] == sum(SAMPLE_LABELS[dataset].values())
        assert stats["duplicates"] == 0 and stats["leakage_removed"] == 0
        assert stats["train_labels"] == dict(sorted(Counter(r.label for r in train).items()))
        assert stats["eval_labels"] == dict(sorted(Counter(r.label for r in evaluation).items()))
        assert all(r.dataset == dataset for r in train + evaluation)
        assert not {r.id for r in train} & {r.id for r in evaluation}
        assert [r.id for r in evaluation] == sorted(r.id for r in evaluation)
        tokens = stats["tokens"]
        assert set(tokens) == {"p50", "p95", "max", "truncated"}
        assert 0 < tokens["p50"] <= tokens["p95"] <= tokens["max"]
        assert 0 <= tokens["truncated"] <= len(train) + len(evaluation)
        if tokens["max"] > params.model.max_length:
            assert tokens["truncated"] >= 1
    assert metrics["leakage"] == 0
    prefs = metrics["preferences"]
    assert prefs["sources"] == {"gold_vs_distractor": 16, "hallucination": 16, "safety": 16}
    pair_train = (folder / "data/prepared/preferences/train.jsonl").read_text().splitlines()
    pair_eval = (folder / "data/prepared/preferences/eval.jsonl").read_text().splitlines()
    assert (len(pair_train), len(pair_eval)) == (prefs["train"], prefs["eval"])
    assert prefs["train"] + prefs["eval"] == 48 and prefs["eval"] > 0
    assert (folder / "models/base/config.json").exists()


def test_no_leakage_between_train_and_eval(prepared):
    folder, _ = prepared
    for dataset in DATASETS:
        train = read_records(folder / "data/prepared" / dataset / "train.jsonl")
        evaluation = read_records(folder / "data/prepared" / dataset / "eval.jsonl")
        assert not {item_key(r) for r in train} & {item_key(r) for r in evaluation}
        if dataset in ("medmcqa", "medqa"):
            assert not {normalise(r.question) for r in train} & {normalise(r.question) for r in evaluation}


def test_preference_prompts_come_from_train_only(prepared):
    folder, _ = prepared
    eval_messages = set()
    for dataset in DATASETS:
        eval_messages |= {user_message(r) for r in read_records(folder / "data/prepared" / dataset / "eval.jsonl")}
    for name in ("train", "eval"):
        for line in (folder / "data/prepared/preferences" / f"{name}.jsonl").read_text().splitlines():
            assert json.loads(line)["prompt"][-1]["content"] not in eval_messages


def _within_proportion(labels: Counter, n_eval: int, dataset: str) -> bool:
    total = sum(SAMPLE_LABELS[dataset].values())
    return all(math.floor(n_eval * c / total) <= labels.get(label, 0) <= math.ceil(n_eval * c / total)
               for label, c in SAMPLE_LABELS[dataset].items())


@pytest.mark.parametrize("dataset", DATASETS)
def test_eval_sets_are_stratified(prepared, dataset):
    _, metrics = prepared
    stats = metrics["datasets"][dataset]
    assert _within_proportion(Counter(stats["eval_labels"]), stats["eval"], dataset), stats["eval_labels"]


SAMPLE_FILES = {"pubmedqa": "pubmedqa/ori_pqal.json", "medmcqa": "medmcqa/*.jsonl",
                "medqa": "medqa/*.jsonl", "radqa": "radqa/*.json"}


@pytest.mark.parametrize("dataset", DATASETS)
def test_split_is_stratified_for_every_seed(dataset):
    records = load_files(dataset, REPO / "data/sample", SAMPLE_FILES[dataset])
    for seed in range(12):
        train, evaluation = prepare.split(records, 10, 20, seed)
        assert len(evaluation) == 10 and len(train) == 20
        assert not {r.id for r in train} & {r.id for r in evaluation}
        assert _within_proportion(Counter(r.label for r in evaluation), 10, dataset), seed
    # order of the input does not matter
    assert prepare.split(records[::-1], 10, 20, 3) == prepare.split(records, 10, 20, 3)


def test_split_caps_eval_at_half():
    records = [Record(f"m{i}", "medqa", f"Q{i}?", None, ["a", "b"], "AB"[i % 2], None) for i in range(6)]
    train, evaluation = prepare.split(records, 50, 50, 0)
    assert len(evaluation) == 3 and len(train) == 3


def test_eval_set_depends_only_on_data_seed_and_eval_size(project):
    write_params(project, data={"train_size": {"pubmedqa": 3}}, model={"max_length": 64})
    params = load_params()
    _, eval_a, _ = prepare.prepare_dataset("pubmedqa", params, Path("."))
    write_params(project, data={"train_size": {"pubmedqa": 30}})
    _, eval_b, _ = prepare.prepare_dataset("pubmedqa", load_params(), Path("."))
    assert [r.id for r in eval_a] == [r.id for r in eval_b]
    _, eval_c, _ = prepare.prepare_dataset("pubmedqa", load_params(overrides=["seed=7"]), Path("."))
    assert [r.id for r in eval_c] != [r.id for r in eval_a]


def test_two_runs_in_two_folders_are_byte_identical(prepared, tmp_path, monkeypatch):
    first, _ = prepared
    second = make_project(tmp_path / "again")
    monkeypatch.chdir(second)
    prepare.run(load_params())
    a, b = outputs(first), outputs(second)
    assert set(a) == set(b) and len(a) == 2 * 5 + 2
    for name in a:
        assert a[name] == b[name], name


def test_remove_leaks_by_normalised_question():
    def mc(rid, question, options=("a", "b", "c", "d")):
        return Record(rid, "medqa", question, None, list(options), "A", None)

    evaluation = [mc("e1", "Which nerve supplies the deltoid?")]
    train = [
        mc("t1", "  which NERVE supplies the deltoid ", options=("w", "x", "y", "z")),  # same question
        mc("t2", "Which nerve supplies the trapezius?"),
        mc("t3", "Which nerve, supplies: the deltoid"),                                # punctuation only
    ]
    kept, removed = remove_leaks(train, evaluation)
    assert [r.id for r in kept] == ["t2"] and removed == 2


def test_remove_leaks_with_context():
    def pq(rid, question, context):
        return Record(rid, "pubmedqa", question, context, None, "yes", None)

    evaluation = [pq("e1", "Does X work?", "Trial of X.")]
    train = [pq("t1", "does x work", "TRIAL of x!"), pq("t2", "Does X work?", "A different abstract.")]
    kept, removed = remove_leaks(train, evaluation)
    assert [r.id for r in kept] == ["t2"] and removed == 1


def test_deduplicate():
    records = [
        Record("a", "medmcqa", "Q one?", None, ["x", "y"], "A", None),
        Record("b", "medmcqa", "q ONE", None, ["X.", "y"], "B", "r"),      # same after normalising
        Record("c", "medmcqa", "Q one?", None, ["x", "z"], "A", None),     # other options: kept
        Record("d", "radqa", "Size?", "Report one.", None, "1 cm", None),
        Record("e", "radqa", "Size?", "Report two.", None, "", None),      # other report: kept
        Record("f", "radqa", "size", "report one", None, "2 cm", None),
    ]
    unique, dropped = deduplicate(records)
    assert [r.id for r in unique] == ["a", "c", "d", "e"] and dropped == 2


def test_duplicates_are_counted_in_metrics(project):
    path = project / "data/sample/medqa/test.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + lines[:3]) + "\n")
    write_params(project, data={"datasets": ["medqa"]})
    _, _, stats = prepare.prepare_dataset("medqa", load_params(), Path("."))
    assert stats["loaded"] == 63 and stats["duplicates"] == 3


def test_cli_corrupt_sample_exits_2_and_leaves_nothing(project, capsys):
    path = project / "data/sample/medqa/test.jsonl"
    n_lines = len(path.read_text().splitlines())
    with path.open("a") as handle:
        handle.write('{"question": "broken", \n')
    code = main(["prepare"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("medadapt prepare: error: ")
    assert f"medqa/test.jsonl, line {n_lines + 1}: not valid JSON" in err
    assert not (project / "data/prepared").exists()
    assert not (project / "metrics/prepare.json").exists()
    assert not (project / "models/base").exists()


def test_cli_failure_removes_outputs_of_an_earlier_run(project, capsys):
    assert main(["prepare", "--set", "data.datasets=[medqa]"]) == 0
    assert (project / "metrics/prepare.json").exists() and (project / "data/prepared/medqa").exists()
    path = project / "data/sample/medqa/test.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    row["answer_idx"] = "E"
    path.write_text(json.dumps(row) + "\n" + path.read_text())
    assert main(["prepare", "--set", "data.datasets=[medqa]"]) == 2
    err = capsys.readouterr().err
    assert "line 1, field 'answer_idx': 'E' is not one of A, B, C, D" in err
    assert not (project / "data/prepared").exists()
    assert not (project / "metrics/prepare.json").exists()
    assert not (project / "models/base").exists()


def test_cli_bad_param_exits_2(project, capsys):
    assert main(["prepare", "--set", "model.quantization=16bit"]) == 2
    err = capsys.readouterr().err
    assert "model.quantization" in err and "'4bit'" in err
    assert not (project / "data/prepared").exists()


def test_prepare_on_shared_data(project, shared_data):
    write_params(project, data={"source": str(shared_data), "datasets": ["pubmedqa", "medmcqa", "medqa"]})
    metrics = prepare.run(load_params())
    loaded = {d: metrics["datasets"][d]["loaded"] for d in ("pubmedqa", "medmcqa", "medqa")}
    assert loaded == {"pubmedqa": 1000, "medmcqa": 1000, "medqa": 1273}
    for dataset in loaded:
        stats = metrics["datasets"][dataset]
        assert (stats["train"], stats["eval"]) == (16, 8)
        train = read_records(project / "data/prepared" / dataset / "train.jsonl")
        evaluation = read_records(project / "data/prepared" / dataset / "eval.jsonl")
        assert len(train) == 16 and len(evaluation) == 8
        assert not {item_key(r) for r in train} & {item_key(r) for r in evaluation}
    assert metrics["datasets"]["pubmedqa"]["eval_labels"] == {"maybe": 1, "no": 3, "yes": 4}
    assert metrics["leakage"] == 0
    assert not (project / "data/prepared/radqa").exists()
    assert metrics["preferences"]["sources"]["gold_vs_distractor"] == 16


def test_hub_offline_fails_fast(project, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_params(project, data={"source": "hub"})
    with pytest.raises(DataError) as info:
        prepare.run(load_params())
    message = str(info.value)
    assert "HF_HUB_OFFLINE=1" in message
    assert "data.source=sample" in message and "a folder of files in the original formats" in message
    assert main(["prepare"]) == 2
    assert "hub is unreachable" in capsys.readouterr().err
    assert not (project / "data/prepared").exists()


def test_hub_without_spec_names_the_dataset(project, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_params(project, data={"source": "hub", "datasets": ["radqa"]})
    with pytest.raises(DataError, match=r"field 'data\.hub\.radqa': no hub dataset configured; use data.source=sample"):
        prepare.run(load_params())


def test_source_folder_missing(project):
    write_params(project, data={"source": str(project / "nowhere")})
    with pytest.raises(DataError, match="data.source is not a folder; valid: sample, hub, or a folder path"):
        prepare.run(load_params())


def test_eval_size_zero_is_handled_cleanly(project, capsys):
    code = main(["prepare", "--set", "data.datasets=[medqa]", "--set", "data.eval_size.medqa=0"])
    if code == 2:  # rejected as a parameter error: acceptable if it names the key
        assert "data.eval_size.medqa" in capsys.readouterr().err
    else:
        assert code == 0
        assert (project / "data/prepared/medqa/eval.jsonl").read_text() == ""
