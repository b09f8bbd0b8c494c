"""Stage `icl`: demonstrations from train only, seeded, knn/balanced selectors, the context budget,
and the choice-shuffle ensemble helpers."""

from __future__ import annotations

import json
import random
from collections import Counter
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest
import yaml

from medadapt import paths
from medadapt.data import prompts
from medadapt.data.records import LETTERS, Record, read_jsonl
from medadapt.modeling.models import load_tokenizer
from medadapt.params import load_params, parse_params
from medadapt.stages import icl, prepare

from conftest import make_project

# A large max_length: no prompt of the sample data is cut, so every row has k demonstrations.
CHANGES = {"model": {"max_length": 4096}, "icl": {"k": 3, "selector": "knn"}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A prepared tiny project (module-wide) and the result of one `icl` run in it."""
    root = make_project(tmp_path_factory.mktemp("icl"), CHANGES)
    tree = yaml.safe_load((root / "params.yaml").read_text())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params()
        prepare.run(params)
        metrics = icl.run(params)
    return {"root": root, "tree": tree, "params": params, "metrics": metrics}


@pytest.fixture(scope="module")
def tokenizer(built):
    return load_tokenizer(str(built["root"] / "models/base"))


def params_with(built, *overrides):
    return parse_params(built["tree"], overrides=list(overrides))


def ids(path: Path) -> set[str]:
    return {row["id"] for row in read_jsonl(path)}


def rec(rid, question, dataset="medqa", options=None, answer="A", context=None, rationale=None) -> Record:
    if dataset in ("medqa", "medmcqa") and options is None:
        options = ["first option", "second option", "third option", "fourth option"]
    return Record(rid, dataset, question, context, options, answer, rationale)


# ---- the stage on the prepared project -------------------------------------------------------


def test_icl_writes_demos_and_metrics(built):
    root, params, metrics = built["root"], built["params"], built["metrics"]
    rows = read_jsonl(root / paths.ICL_DEMOS)
    saved = json.loads((root / paths.metrics_file("icl")).read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["k"] == 3 and saved["selector"] == "knn"
    assert set(saved["datasets"]) == set(params.data.datasets)
    for dataset in params.data.datasets:
        eval_ids = [r["id"] for r in read_jsonl(root / "data/prepared" / dataset / "eval.jsonl")]
        dataset_rows = [r for r in rows if r["dataset"] == dataset]
        assert [r["id"] for r in dataset_rows] == eval_ids  # one row per eval item, in eval order
        stats = saved["datasets"][dataset]
        assert stats["eval_items"] == len(eval_ids)
        assert stats["prompts_cut"] == 0 and stats["k_mean"] == 3.0
        assert stats["prompt_tokens_p50"] <= stats["prompt_tokens_p95"] <= 4096 - params.evaluate.max_new_tokens
        for row in dataset_rows:
            assert len(row["demos"]) == 3 == len(row["similarity"])
            assert len(set(row["demos"])) == 3
            assert row["similarity"] == sorted(row["similarity"])  # closest last
        sims = [s for r in dataset_rows for s in r["similarity"]]
        assert stats["similarity_mean"] == pytest.approx(np.mean(sims), abs=1e-3)
    assert len(rows) == sum(len(read_jsonl(root / "data/prepared" / d / "eval.jsonl")) for d in params.data.datasets)


def test_no_eval_item_is_a_demonstration(built):
    root, params = built["root"], built["params"]
    rows = read_jsonl(root / paths.ICL_DEMOS)
    all_eval = set().union(*(ids(root / "data/prepared" / d / "eval.jsonl") for d in params.data.datasets))
    for row in rows:
        train_ids = ids(root / "data/prepared" / row["dataset"] / "train.jsonl")
        assert row["id"] not in row["demos"]
        for demo in row["demos"]:
            assert demo in train_ids, f"{demo} (demo of {row['id']}) is not in {row['dataset']} train"
            assert demo not in all_eval, f"{demo} is an eval item"


def test_same_seed_same_demos(built):
    root, params = built["root"], built["params"]
    first = (root / paths.ICL_DEMOS).read_bytes()
    icl.run(params, root)
    assert (root / paths.ICL_DEMOS).read_bytes() == first


def test_random_selector_seeded(built, tokenizer):
    root = built["root"]
    train = icl.read_records(root / "data/prepared/medqa/train.jsonl")
    evaluation = icl.read_records(root / "data/prepared/medqa/eval.jsonl")
    runs = {}
    for seed in (1, 1, 2):
        params = params_with(built, "icl.selector=random", f"data.seed={seed}")
        rows, _ = icl.choose("medqa", train, evaluation, params, tokenizer)
        runs.setdefault(seed, []).append([r["demos"] for r in rows])
    assert runs[1][0] == runs[1][1]
    assert runs[1][0] != runs[2][0]
    train_ids = {r.id for r in train}
    assert all(set(d) <= train_ids and len(set(d)) == 3 for d in runs[2][0])


def test_balanced_selector_on_prepared_data(built, tokenizer):
    root = built["root"]
    params = params_with(built, "icl.selector=balanced")
    for dataset in params.data.datasets:
        train = icl.read_records(root / "data/prepared" / dataset / "train.jsonl")
        evaluation = icl.read_records(root / "data/prepared" / dataset / "eval.jsonl")
        labels = {r.id: r.label for r in train}
        rows, _ = icl.choose(dataset, train, evaluation, params, tokenizer)
        for row in rows:
            sequence = [labels[d] for d in row["demos"]]
            assert len(sequence) == 3
            assert all(a != b for a, b in zip(sequence, sequence[1:])), (dataset, sequence)


# ---- knn on a hand-built case ------------------------------------------------------------------

WARFARIN_TRAIN = [
    rec("t-scurvy", "Deficiency of which vitamin causes scurvy with gum disease?",
        options=["vitamin C", "vitamin D", "thiamine", "niacin"]),
    rec("t-warf-inr", "A man taking warfarin has gum bleeding and an INR of 9. What is the next step?",
        options=["hold warfarin, give vitamin K", "increase warfarin", "add aspirin", "no change"]),
    rec("t-malaria", "Which mosquito transmits malaria in Africa?",
        options=["Anopheles", "Aedes", "Culex", "Mansonia"]),
    rec("t-warf-diet", "Which food interacts with warfarin therapy?",
        options=["spinach", "rice", "bread", "apples"]),
    rec("t-dka", "First fluid in diabetic ketoacidosis?",
        options=["normal saline", "dextrose", "albumin", "plasma"]),
]
WARFARIN_EVAL = rec("e-warf", "Patient on warfarin presents with bleeding; INR is high. Management?",
                    options=["stop warfarin", "continue", "heparin", "discharge"])


def test_similarities_rank_warfarin_items_first():
    sims = icl.similarities(WARFARIN_TRAIN, [WARFARIN_EVAL])
    assert sims.shape == (1, len(WARFARIN_TRAIN))
    row = sims[0]
    order = list(np.argsort(-row))
    assert [WARFARIN_TRAIN[j].id for j in order[:2]] == ["t-warf-inr", "t-warf-diet"]
    assert row[1] > row[3] > row[2]
    assert row[2] == 0.0 and row[4] == 0.0  # nothing in common with malaria or DKA


def test_select_knn_picks_most_similar_closest_last():
    sims = icl.similarities(WARFARIN_TRAIN, [WARFARIN_EVAL])[0]
    picked = icl.select_knn(sims, 2, random.Random(0), WARFARIN_TRAIN)
    assert [WARFARIN_TRAIN[j].id for j in picked] == ["t-warf-diet", "t-warf-inr"]


def test_select_knn_ties_by_train_order():
    row = np.array([0.5, 0.9, 0.5, 0.1])
    assert icl.select_knn(row, 3, random.Random(0), [None] * 4) == [2, 0, 1]
    assert icl.select_knn(row, 10, random.Random(0), [None] * 4) == [3, 2, 0, 1]
    assert icl.select_knn(row, 0, random.Random(0), [None] * 4) == []


def test_choose_knn_hand_built(built, tokenizer):
    params = params_with(built, "icl.k=2", "icl.selector=knn")
    rows, stats = icl.choose("medqa", WARFARIN_TRAIN, [WARFARIN_EVAL], params, tokenizer)
    assert rows[0]["id"] == "e-warf" and rows[0]["dataset"] == "medqa"
    assert rows[0]["demos"] == ["t-warf-diet", "t-warf-inr"]
    assert rows[0]["similarity"][0] < rows[0]["similarity"][1]
    assert stats["prompts_cut"] == 0 and stats["k_mean"] == 2.0


# ---- the context budget --------------------------------------------------------------------------


def long_pubmedqa(rid: str, topic: str, words: int, answer: str = "yes") -> Record:
    context = " ".join(f"{topic} study finding number {i} was recorded in the cohort." for i in range(words // 9))
    return Record(rid, "pubmedqa", f"Does {topic} improve outcomes?", context, None, answer,
                  f"The {topic} trial supports this.")


@pytest.fixture(scope="module")
def budget_case():
    train = [long_pubmedqa(f"t{i}", topic, 120, "yes" if i % 2 else "no")
             for i, topic in enumerate(["statin", "statin therapy", "statin dose", "aspirin"])]
    short = Record("e-short", "pubmedqa", "Does statin therapy improve outcomes?", "statin therapy trial.", None,
                   "yes", None)
    huge = long_pubmedqa("e-huge", "statin", 900)
    return train, short, huge


def test_fit_budget_drops_farthest_first(tokenizer, budget_case):
    train, short, _ = budget_case
    demos = train[:3]
    alone = icl.prompt_tokens(tokenizer, short, [])
    full = icl.prompt_tokens(tokenizer, short, demos)
    assert full > alone
    kept, length = icl.fit_budget(tokenizer, short, demos, full)
    assert kept == demos and length == full  # fits exactly: nothing dropped
    budget = icl.prompt_tokens(tokenizer, short, demos[1:]) + 1
    kept, length = icl.fit_budget(tokenizer, short, demos, budget)
    assert kept == demos[1:]  # the first (farthest) one went
    assert length == icl.prompt_tokens(tokenizer, short, kept) <= budget
    kept, length = icl.fit_budget(tokenizer, short, demos, alone)
    assert kept == [] and length == alone
    kept, length = icl.fit_budget(tokenizer, short, demos, alone - 1)  # not even the record fits
    assert kept == [] and length == alone > alone - 1


def test_choose_respects_budget_and_counts_cuts(built, tokenizer, budget_case):
    train, short, huge = budget_case
    k, new_tokens = 3, 12
    wide = params_with(built, f"icl.k={k}", "icl.selector=knn", "model.max_length=100000",
                       f"evaluate.max_new_tokens={new_tokens}")
    full_rows, _ = icl.choose("pubmedqa", train, [short], wide, tokenizer)
    ranked = full_rows[0]["demos"]  # the knn choice, closest last
    assert len(ranked) == k
    by_id = {r.id: r for r in train}
    # room for the record and its one closest demonstration, not two
    budget = icl.prompt_tokens(tokenizer, short, [by_id[ranked[-1]]])
    assert icl.prompt_tokens(tokenizer, short, [by_id[i] for i in ranked[-2:]]) > budget
    assert icl.prompt_tokens(tokenizer, huge, []) > budget
    params = params_with(built, f"icl.k={k}", "icl.selector=knn", f"model.max_length={budget + new_tokens}",
                         f"evaluate.max_new_tokens={new_tokens}")
    rows, stats = icl.choose("pubmedqa", train, [short, huge], params, tokenizer)
    assert rows[0]["demos"] == ranked[-1:]  # the closest one kept
    assert rows[0]["similarity"] == full_rows[0]["similarity"][-1:]
    assert rows[1]["demos"] == []  # the record alone is already over: no demonstrations
    assert stats["prompts_cut"] == 2
    assert stats["k_mean"] == 0.5
    for row, record in zip(rows, [short, huge]):
        length = icl.prompt_tokens(tokenizer, record, [by_id[i] for i in row["demos"]])
        if icl.prompt_tokens(tokenizer, record, []) <= budget:
            assert length <= budget


@pytest.mark.parametrize("dataset", ["pubmedqa", "medqa"])
def test_choose_budget_on_prepared_data(built, tokenizer, dataset):
    root = built["root"]
    train = icl.read_records(root / "data/prepared" / dataset / "train.jsonl")
    evaluation = icl.read_records(root / "data/prepared" / dataset / "eval.jsonl")
    by_id = {r.id: r for r in train}
    wide_rows, _ = icl.choose(dataset, train, evaluation, params_with(built, "model.max_length=100000"), tokenizer)
    # room for about two demonstrations on top of the longest record
    alone = max(icl.prompt_tokens(tokenizer, r, []) for r in evaluation)
    one_demo = max(icl.prompt_tokens(tokenizer, r, [by_id[row["demos"][-1]]]) - icl.prompt_tokens(tokenizer, r, [])
                   for r, row in zip(evaluation, wide_rows))
    budget = alone + 2 * one_demo - 1
    params = params_with(built, f"model.max_length={budget + 12}", "evaluate.max_new_tokens=12")
    rows, stats = icl.choose(dataset, train, evaluation, params, tokenizer)
    cut = 0
    for record, row, wide in zip(evaluation, rows, wide_rows):
        n = len(row["demos"])
        assert row["demos"] == wide["demos"][len(wide["demos"]) - n:]  # the closest ones kept
        length = icl.prompt_tokens(tokenizer, record, [by_id[i] for i in row["demos"]])
        assert length <= budget
        if n < len(wide["demos"]):
            cut += 1  # and one more demonstration would not have fitted
            extra = wide["demos"][len(wide["demos"]) - n - 1:]
            assert icl.prompt_tokens(tokenizer, record, [by_id[i] for i in extra]) > budget
    assert cut > 0
    assert stats["prompts_cut"] == cut
    assert stats["prompt_tokens_p95"] <= budget
    assert stats["k_mean"] == pytest.approx(np.mean([len(r["demos"]) for r in rows]), abs=1e-3)


def test_prompt_tokens_counts_the_longer_prompt(tokenizer):
    record = rec("q", "Which drug reverses heparin?", options=["protamine", "vitamin K", "naloxone", "flumazenil"])
    from medadapt.data.prompts import loglik_request, messages, render

    chat = len(tokenizer(render(tokenizer, messages(record)), add_special_tokens=False)["input_ids"])
    request = loglik_request(record)
    loglik = len(tokenizer(request.context + " A", add_special_tokens=False)["input_ids"])
    assert icl.prompt_tokens(tokenizer, record, []) == max(chat, loglik)


# ---- balanced selector ----------------------------------------------------------------------------


def pubmed_items(counts: dict[str, int]) -> list[Record]:
    items = []
    for label, n in counts.items():
        items += [Record(f"{label}-{i}", "pubmedqa", f"q {label} {i}", "ctx", None, label, None) for i in range(n)]
    return items


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_balanced_selector_alternates_labels(seed):
    train = pubmed_items({"yes": 4, "no": 4, "maybe": 4})
    picked = icl.select_balanced(np.zeros(len(train)), 6, random.Random(seed), train)
    labels = [train[j].label for j in picked]
    assert len(set(picked)) == 6
    assert len(set(labels[:3])) == 3  # one of each label per round
    assert labels[3:] == labels[:3]  # the same turn order in the next round
    assert Counter(labels) == {"yes": 2, "no": 2, "maybe": 2}


def test_balanced_selector_when_a_label_runs_out():
    train = pubmed_items({"yes": 5, "no": 1})
    picked = icl.select_balanced(np.zeros(len(train)), 4, random.Random(0), train)
    labels = [train[j].label for j in picked]
    assert len(set(picked)) == 4
    assert Counter(labels) == {"yes": 3, "no": 1}
    assert labels[0] != labels[1]
    everything = icl.select_balanced(np.zeros(len(train)), 10, random.Random(0), train)
    assert sorted(everything) == list(range(6))  # k above the train size: each item once


def test_balanced_selector_seeded():
    train = pubmed_items({"yes": 6, "no": 6, "maybe": 6})
    a = icl.select_balanced(np.zeros(len(train)), 5, random.Random(9), train)
    b = icl.select_balanced(np.zeros(len(train)), 5, random.Random(9), train)
    assert a == b


# ---- choice shuffling ------------------------------------------------------------------------------

MCQ = Record("mcq-1", "medqa", "Which drug reverses heparin?", None,
             ["vitamin K", "protamine sulfate", "naloxone", "flumazenil"], "B", None)


def test_option_permutations_identity_first_distinct_seeded():
    orders = prompts.option_permutations(4, 5, 42, "item-1")
    assert len(orders) == 5
    assert orders[0] == (0, 1, 2, 3)
    assert len(set(orders)) == 5
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert prompts.option_permutations(4, 5, 42, "item-1") == orders
    others = [prompts.option_permutations(4, 5, 42, f"item-{i}") for i in range(2, 8)]
    assert any(o != orders for o in others)  # seeded per item
    everything = prompts.option_permutations(4, 100, 42, "item-1")
    assert len(everything) == 24 and set(everything) == set(permutations(range(4)))
    assert prompts.option_permutations(4, 1, 42, "item-1") == [(0, 1, 2, 3)]


def test_shuffled_moves_the_gold_answer():
    moved = prompts.shuffled(MCQ, (2, 0, 3, 1))
    assert moved.options == ["naloxone", "vitamin K", "flumazenil", "protamine sulfate"]
    assert moved.answer == "D"
    assert moved.id == MCQ.id and moved.question == MCQ.question
    assert MCQ.options == ["vitamin K", "protamine sulfate", "naloxone", "flumazenil"]  # original untouched
    assert prompts.shuffled(MCQ, (0, 1, 2, 3)) == MCQ
    swapped = prompts.shuffled(MCQ, (1, 0, 2, 3))
    assert swapped.answer == "A" and swapped.options[0] == "protamine sulfate"


def test_original_letter_maps_back():
    order = (2, 0, 3, 1)
    assert prompts.original_letter("A", order) == "C"
    assert prompts.original_letter("B", order) == "A"
    assert prompts.original_letter("C", order) == "D"
    assert prompts.original_letter("D", order) == "B"


@pytest.mark.parametrize("answer", ["A", "B", "C", "D"])
def test_shuffle_round_trip_every_permutation(answer):
    record = Record(**{**MCQ.to_dict(), "answer": answer})
    gold_text = record.options[LETTERS.index(answer)]
    for order in permutations(range(4)):
        moved = prompts.shuffled(record, order)
        assert moved.options[LETTERS.index(moved.answer)] == gold_text
        assert prompts.original_letter(moved.answer, order) == answer
        # every shown letter maps back to the option text it showed
        for letter in "ABCD":
            assert record.options[LETTERS.index(prompts.original_letter(letter, order))] == \
                moved.options[LETTERS.index(letter)]


def test_vote_majority_and_ties():
    assert prompts.vote(["A", "B", "A"]) == "A"
    assert prompts.vote(["B", "C", "C"]) == "C"
    assert prompts.vote(["B", "A"]) == "B"  # tie: the earliest vote (the unshuffled order)
    assert prompts.vote(["C", "A", "A", "C"]) == "C"
    assert prompts.vote(["D", "A", "B", "A", "B"]) == "A"
    assert prompts.vote(["D"]) == "D"
