"""Stage prepare: splits, leakage, metrics, determinism, failures that leave nothing behind."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from medadapt.artifacts import StageLockedError, stage_lock
from medadapt.cli import main
from medadapt.data.loaders import load_splits
from medadapt.data.prompts import user_message
from medadapt.data.records import DataError, Record, read_jsonl, read_records
from medadapt.params import DataFiles, load_params
from medadapt.stages import prepare
from medadapt.stages.prepare import (
    FROM_EVAL_REST,
    FROM_TRAIN_SPLIT,
    deduplicate,
    item_key,
    normalise,
    remove_leaks,
    remove_near_duplicates,
)

from conftest import REPO, make_project, write_params

DATASETS = ("pubmedqa", "medmcqa", "medqa", "radqa")
SAMPLE_LABELS = {
    "pubmedqa": {"yes": 30, "no": 18, "maybe": 12},
    "medmcqa": {"A": 15, "B": 15, "C": 15, "D": 15},
    "medqa": {"A": 15, "B": 15, "C": 15, "D": 15},
    "radqa": {"answerable": 37, "unanswerable": 11},
}
SAMPLE_EVAL_LABELS = {  # the official-eval-split part of each sample
    "pubmedqa": {"yes": 15, "no": 9, "maybe": 6},
    "medmcqa": {"A": 5, "B": 5, "C": 5, "D": 5},
    "medqa": {"A": 5, "B": 5, "C": 5, "D": 5},
    "radqa": {"answerable": 18, "unanswerable": 6},
}


def sample_splits(dataset: str):
    return load_splits(dataset, REPO / "data/sample", getattr(DataFiles(), dataset))




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
        assert stats["duplicates"] == 0 and stats["leakage_removed"] == 0 and stats["near_duplicates_removed"] == 0
        assert (stats["train_from"], stats["eval_from"]) == (FROM_TRAIN_SPLIT, "official eval split")
        assert stats["eval_source"] == getattr(params.data.files, dataset).eval + (
            ", ids in pubmedqa/test_ground_truth.json" if dataset == "pubmedqa" else "")
        assert stats["eval_requested"] == len(evaluation) and stats["eval_clamped"] is False
        assert stats["train_requested"] == len(train) and stats["train_clamped"] is False
        official = sample_splits(dataset)
        assert {r.id for r in evaluation} <= {r.id for r in official.eval}
        assert {r.id for r in train} <= {r.id for r in official.train}
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
    assert prefs["rm_fraction"] == 0.5
    prompts = {}
    for side in ("rm", "dpo"):  # each trainer its own part of the pool, capped per source on its own
        assert prefs[side]["sources"] == {"gold_vs_distractor": 16, "hallucination": 16, "safety": 16}
        pair_train = read_jsonl(folder / f"data/prepared/preferences/{side}/train.jsonl")
        pair_eval = read_jsonl(folder / f"data/prepared/preferences/{side}/eval.jsonl")
        assert (len(pair_train), len(pair_eval)) == (prefs[side]["train"], prefs[side]["eval"])
        assert prefs[side]["train"] + prefs[side]["eval"] == 48 and prefs[side]["eval"] > 0
        prompts[side] = {p["prompt"][-1]["content"] for p in pair_train + pair_eval}
        assert len(prompts[side]) == prefs[side]["prompts"]
    assert not prompts["rm"] & prompts["dpo"]  # the RM never judges DPO on a prompt DPO trained or was tested on
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
    files = sorted((folder / "data/prepared/preferences").rglob("*.jsonl"))
    assert len(files) == 4
    for path in files:
        for line in path.read_text().splitlines():
            assert json.loads(line)["prompt"][-1]["content"] not in eval_messages


def _within_proportion(labels: Counter, n_eval: int, dataset: str) -> bool:
    """Each label's eval count is its share of the official eval split, rounded down or up."""
    total = sum(SAMPLE_EVAL_LABELS[dataset].values())
    return all(math.floor(n_eval * c / total) <= labels.get(label, 0) <= math.ceil(n_eval * c / total)
               for label, c in SAMPLE_EVAL_LABELS[dataset].items())


@pytest.mark.parametrize("dataset", DATASETS)
def test_eval_sets_are_stratified(prepared, dataset):
    _, metrics = prepared
    stats = metrics["datasets"][dataset]
    assert _within_proportion(Counter(stats["eval_labels"]), stats["eval"], dataset), stats["eval_labels"]


@pytest.mark.parametrize("dataset", DATASETS)
def test_eval_draw_is_stratified_for_every_seed(dataset):
    records = sample_splits(dataset).eval
    for seed in range(12):
        evaluation, rest = prepare.draw_eval(records, 10, seed)
        assert len(evaluation) == 10 and len(rest) == len(records) - 10
        assert not {r.id for r in rest} & {r.id for r in evaluation}
        assert _within_proportion(Counter(r.label for r in evaluation), 10, dataset), seed
    # order of the input does not matter
    assert prepare.draw_eval(records[::-1], 10, 3) == prepare.draw_eval(records, 10, 3)
    assert prepare.draw_train(records[::-1], 5, 3) == prepare.draw_train(records, 5, 3)


def test_eval_set_depends_only_on_data_seed_and_eval_size(project):
    write_params(project, data={"train_size": {"pubmedqa": 3}}, model={"max_length": 64})
    params = load_params()
    _, eval_a, _ = prepare.prepare_dataset("pubmedqa", params, Path("."))
    write_params(project, data={"train_size": {"pubmedqa": 30}})
    _, eval_b, _ = prepare.prepare_dataset("pubmedqa", load_params(), Path("."))
    assert [r.id for r in eval_a] == [r.id for r in eval_b]
    _, eval_c, _ = prepare.prepare_dataset("pubmedqa", load_params(overrides=["data.seed=7"]), Path("."))
    assert [r.id for r in eval_c] != [r.id for r in eval_a]


def test_two_runs_in_two_folders_are_byte_identical(prepared, tmp_path, monkeypatch):
    first, _ = prepared
    second = make_project(tmp_path / "again")
    monkeypatch.chdir(second)
    prepare.run(load_params())
    a, b = outputs(first), outputs(second)
    assert set(a) == set(b) and len(a) == 2 * 4 + 2 * 2 + 2  # 4 datasets, 2 preference sides, metrics, weights
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


def test_cli_failure_leaves_the_outputs_of_the_last_good_run(project, capsys):
    assert main(["prepare", "--set", "data.datasets=[medqa]"]) == 0
    assert (project / "metrics/prepare.json").exists() and (project / "data/prepared/medqa").exists()
    path = project / "data/sample/medqa/test.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    row["answer_idx"] = "E"
    path.write_text(json.dumps(row) + "\n" + path.read_text())
    assert main(["prepare", "--set", "data.datasets=[medqa]"]) == 2
    err = capsys.readouterr().err
    assert "line 1, field 'answer_idx': 'E' is not one of A, B, C, D" in err
    for path in ("data/prepared/medqa/train.jsonl", "metrics/prepare.json", "models/base/config.json"):
        assert (project / path).exists(), path  # the last good run's, untouched


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
    official = json.loads((shared_data / "pubmedqa/test_ground_truth.json").read_text())
    test_pmids = {f"pubmedqa-{pmid}" for pmid in official}
    evaluation = read_records(project / "data/prepared/pubmedqa/eval.jsonl")
    train = read_records(project / "data/prepared/pubmedqa/train.jsonl")
    assert {r.id for r in evaluation} <= test_pmids and not {r.id for r in train} & test_pmids
    froms = {d: metrics["datasets"][d]["train_from"] for d in loaded}
    assert froms == {"pubmedqa": FROM_TRAIN_SPLIT, "medmcqa": FROM_EVAL_REST, "medqa": FROM_EVAL_REST}
    assert metrics["leakage"] == 0
    assert not (project / "data/prepared/radqa").exists()
    assert metrics["preferences"]["rm"]["sources"]["gold_vs_distractor"] == 16
    assert metrics["preferences"]["dpo"]["sources"]["gold_vs_distractor"] == 16


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


# ---- official splits, clamping, too little data -----------------------------------------------


def test_no_train_file_draws_train_from_the_rest_of_eval_and_says_so(project, capsys):
    (project / "data/sample/medqa/train.jsonl").unlink()
    write_params(project, data={"datasets": ["medqa"]})
    train, evaluation, stats = prepare.prepare_dataset("medqa", load_params(), Path("."))
    err = capsys.readouterr().err
    assert ("medadapt prepare: note: medqa: no train split (no file matches data.files.medqa.train "
            "'medqa/*train*.jsonl'); train items are drawn from the rest of the official eval split") in err
    assert stats["train_from"] == FROM_EVAL_REST == "rest of the official eval split (no train file)"
    eval_split = {r.id for r in sample_splits("medqa").eval}
    assert {r.id for r in train + evaluation} <= eval_split and not {r.id for r in train} & {r.id for r in evaluation}
    assert (len(evaluation), len(train)) == (8, 12)  # eval takes at most half, train the rest


def test_sizes_larger_than_the_data_are_clamped_and_reported(project, capsys):
    write_params(project, data={"datasets": ["medqa"], "eval_size": {"medqa": 50}, "train_size": {"medqa": 100}})
    assert main(["prepare"]) == 0
    err = capsys.readouterr().err
    assert ("medadapt prepare: note: medqa: data.eval_size.medqa is 50 but the official eval split has 20; "
            "using 20 (metrics/prepare.json: eval_clamped)") in err
    assert "medqa: data.train_size.medqa is 100 but the train pool has 40; using 40" in err
    stats = json.loads((project / "metrics/prepare.json").read_text())["datasets"]["medqa"]
    assert (stats["eval"], stats["eval_requested"], stats["eval_clamped"]) == (20, 50, True)
    assert (stats["train"], stats["train_requested"], stats["train_clamped"]) == (40, 100, True)


def test_too_few_items_to_split_is_a_clear_error(project, capsys):
    (project / "data/sample/medqa/train.jsonl").unlink()
    path = project / "data/sample/medqa/test.jsonl"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    assert main(["prepare", "--set", "data.datasets=[medqa]"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "medadapt prepare: error: medqa/*test*.jsonl: 1 medqa item(s) and no train split (no file matches "
        "data.files.medqa.train 'medqa/*train*.jsonl'): too few to split into train and eval")


def test_remove_near_duplicates_drops_paraphrases():
    def mc(rid, question, options):
        return Record(rid, "medmcqa", question, None, list(options), "A", None)

    evaluation = [
        mc("e1", "Plastic carrier size of 40-90 in carrier base gutta percha are made from?",
           ["Poly propylene", "Poly sulphone", "Poly sulphide", "Liquid crystal plastic"]),
        mc("e2", "Which nerve supplies the deltoid muscle?",
           ["Axillary nerve", "Radial nerve", "Ulnar nerve", "Median nerve"]),
    ]
    train = [  # a paraphrase with its options reordered (cosine 0.94): exact matching keeps it
        mc("t1", "In carrier base gutta percha the plastic carrier size of 40-90 are made by?",
           ["Liquid crystal plastic", "Poly propylene", "Poly sulphide", "Poly sulphone"]),
        mc("t2", "Which nerve supplies the trapezius muscle?",  # same frame, another question (0.76)
           ["Accessory nerve", "Dorsal scapular nerve", "Long thoracic nerve", "Suprascapular nerve"]),
        mc("t3", "Main vector of Japanese encephalitis?", ["Aedes", "Culex", "Anopheles", "Sandfly"]),
    ]
    assert remove_leaks(train, evaluation) == (train, 0)
    kept, removed = remove_near_duplicates(train, evaluation, 0.8)
    assert [r.id for r in kept] == ["t2", "t3"] and removed == 1
    assert [r.id for r in remove_near_duplicates(train, evaluation, 0.7)[0]] == ["t3"]
    assert remove_near_duplicates([], evaluation, 0.8) == ([], 0)


def test_near_duplicates_are_removed_and_counted(project):
    evaluation = (project / "data/sample/medmcqa/dev.jsonl").read_text().splitlines()
    row = json.loads(evaluation[0])
    words = row["question"].rstrip(":?").split()
    row.update(id="paraphrase-1", question=" ".join(words[1:] + words[:1]) + "?",  # reworded, same answer
               opa=row["opb"], opb=row["opa"], cop=1 - row["cop"] if row["cop"] < 2 else row["cop"])
    with (project / "data/sample/medmcqa/train.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    write_params(project, data={"datasets": ["medmcqa"], "eval_size": {"medmcqa": 20}, "train_size": {"medmcqa": 100}})
    train, _, stats = prepare.prepare_dataset("medmcqa", load_params(), Path("."))
    assert stats["leakage_removed"] == 0 and stats["near_duplicates_removed"] == 1
    assert "medmcqa-paraphrase-1" not in {r.id for r in train} and len(train) == 40


# ---- outputs swapped in whole; the run lock ----------------------------------------------------


def test_a_run_inside_another_does_not_mix_their_outputs(project, monkeypatch):
    """Run B (seed 2) starts and ends while run A (seed 1) builds its base model: A, which
    finishes last, must leave its own outputs, all of them (before: B's splits, A's metrics)."""
    write_params(project, data={"datasets": ["medqa"]})
    build_base = prepare.write_base

    def base_with_a_concurrent_run(*args, **kwargs):
        monkeypatch.setattr(prepare, "write_base", build_base)
        prepare.run(load_params(overrides=["data.seed=2"]))
        build_base(*args, **kwargs)

    monkeypatch.setattr(prepare, "write_base", base_with_a_concurrent_run)
    metrics = prepare.run(load_params(overrides=["data.seed=1"]))
    train, evaluation, _ = prepare.prepare_dataset("medqa", load_params(overrides=["data.seed=1"]), Path("."))
    assert [r.id for r in read_records(project / "data/prepared/medqa/eval.jsonl")] == [r.id for r in evaluation]
    assert [r.id for r in read_records(project / "data/prepared/medqa/train.jsonl")] == [r.id for r in train]
    assert json.loads((project / "metrics/prepare.json").read_text()) == metrics
    assert not list(project.glob("*.partial"))


def test_a_failed_run_leaves_the_previous_outputs(project):
    write_params(project, data={"datasets": ["pubmedqa", "medqa"]})
    prepare.run(load_params())
    before = outputs(project)
    with (project / "data/sample/medqa/test.jsonl").open("a") as handle:
        handle.write('{"question": "broken", \n')
    with pytest.raises(DataError, match="not valid JSON"):
        prepare.run(load_params(overrides=["data.seed=3"]))  # pubmedqa is prepared before medqa fails
    assert outputs(project) == before
    assert not list(project.glob("*.partial"))


HOLD_LOCK = """
import sys
from medadapt.artifacts import stage_lock
with stage_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_stage_lock_fails_fast_naming_the_lock_and_its_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StageLockedError) as info:
            with stage_lock(tmp_path):
                pass
        lock = tmp_path.resolve() / ".medadapt.lock"
        assert str(info.value) == (f"{lock}: another medadapt stage (pid {holder.pid}) is running in "
                                   f"{tmp_path.resolve()}; wait for it to finish "
                                   "(its lock is freed when that process exits)")
        holder.stdin.write("release\n")
        holder.stdin.flush()
        with stage_lock(tmp_path, wait=True):  # waits for the holder to let go
            with stage_lock(tmp_path):  # re-entrant in one process
                assert lock.read_text().strip() == str(os.getpid())
    finally:
        holder.kill()
        holder.wait()
    with stage_lock(tmp_path):  # freed on leaving the block
        pass
