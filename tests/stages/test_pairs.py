"""On-policy preference pairs: ranking and splitting (fast), then the `pairs` stage and DPO per
source on the tiny model (slow), and the DAG's honesty: the RM never reads the pairs it ranked."""

from __future__ import annotations

import json

import pytest
import yaml

from medadapt import paths
from medadapt.data.preferences import on_policy_pair, split_like
from medadapt.data.prompts import messages, render
from medadapt.data.records import Record, read_jsonl, read_records
from medadapt.modeling.inference import sample
from medadapt.modeling.models import base_path, load_tokenizer
from medadapt.params import load_params
from medadapt.paths import SFT_DATASETS
from medadapt.stages import dpo, pairs, prepare, rm, sft

from conftest import REPO, copy_prepared, make_project

RECORD = Record(id="q1", dataset="medqa", question="Which drug?", context="", options=["a", "b", "c", "d"],
                answer="B", rationale="")
PROMPT = messages(RECORD)


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def pair_on(text: str) -> dict:
    return {"prompt": chat(text), "chosen": [], "rejected": [], "source": "x", "dataset": "x"}


# ---- ranking and splitting ------------------------------------------------------------------


def test_correctness_ranks_before_the_reward_model():
    pair = on_policy_pair(RECORD, PROMPT, ["Answer: A", "Answer: B", "Answer: C"], [0.0, 1.0, 0.0], [5.0, -3.0, 1.0])
    assert pair["chosen"][-1]["content"] == "Answer: B"  # the only right one, despite the lowest reward
    assert pair["rejected"][-1]["content"] == "Answer: C"  # wrong and the lower-scored of the wrong ones
    assert pair["id"] == "onp-q1" and pair["source"] == "on_policy" and pair["dataset"] == "medqa"
    assert pair["prompt"] == PROMPT


def test_reward_model_breaks_ties_in_correctness():
    pair = on_policy_pair(RECORD, PROMPT, ["Answer: A", "Answer: C", "Answer: D"], [0.0, 0.0, 0.0], [0.1, 0.9, -2.0])
    assert (pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]) == ("Answer: C", "Answer: D")


def test_prompt_with_equal_answers_gives_no_pair():
    assert on_policy_pair(RECORD, PROMPT, ["Answer: B", "Answer: B"], [1.0, 1.0], [0.5, 0.5]) is None


def test_split_keeps_each_prompt_on_the_side_the_static_pairs_hold_it():
    static_train, static_eval = [pair_on("t")], [pair_on("e")]
    new = [pair_on(f"n{i}") for i in range(10)]
    train, held = split_like([pair_on("t"), pair_on("e"), *new], static_train, static_eval, 0.2, seed=1)
    train_prompts = {p["prompt"][-1]["content"] for p in train}
    held_prompts = {p["prompt"][-1]["content"] for p in held}
    assert "t" in train_prompts and "e" in held_prompts
    assert not train_prompts & held_prompts and len(train) + len(held) == 12
    assert len(held_prompts - {"e"}) == 2  # 20% of the ten new prompts


def test_rm_never_reads_the_pairs_it_ranked():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    on_policy = paths.ON_POLICY.as_posix()
    assert on_policy not in stages["rm"]["deps"] and on_policy in stages["dpo"]["deps"]
    assert "models/rm" in stages["pairs"]["deps"] and "models/sft_medqa" in stages["pairs"]["deps"]


def test_rm_and_dpo_read_their_own_part_of_the_pool():
    """Issue 19: the RM graded DPO on DPO's own training pairs; now each reads its own part."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    rm_part, dpo_part = (paths.preference_file(side, "train").parent.as_posix() for side in ("rm", "dpo"))
    assert rm_part in stages["rm"]["deps"] and dpo_part not in stages["rm"]["deps"]
    assert dpo_part in stages["dpo"]["deps"] and rm_part not in stages["dpo"]["deps"]
    assert paths.PAIRS.as_posix() not in stages["rm"]["deps"] + stages["dpo"]["deps"]


# ---- the stage on the tiny model -------------------------------------------------------------

SOURCES = ["gold_vs_distractor", "safety", "on_policy"]
CHANGES = {
    "data": {"train_size": {d: 8 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")},
             "eval_size": {d: 4 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")},
             "preferences": {"sources": SOURCES, "max_pairs_per_source": 6}},
    "on_policy": {"prompts_per_dataset": 3, "samples": 3, "max_new_tokens": 8},
    "sft": {d: {"learning_rate": 0.003} for d in SFT_DATASETS},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """prepare, the SFT curriculum, rm, pairs and dpo once, on the tiny model."""
    root = make_project(tmp_path_factory.mktemp("pairs"), CHANGES)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params()
        prepare.run(params)
        for dataset in SFT_DATASETS:
            sft.run(params, dataset)
        rm_metrics = rm.run(params)
        pair_metrics = pairs.run(params)
        dpo_metrics = dpo.run(params)
    return {"root": root, "params": params, "rm": rm_metrics, "pairs": pair_metrics, "dpo": dpo_metrics}


def on_policy_pairs(root) -> tuple[list[dict], list[dict]]:
    return read_jsonl(root / paths.on_policy_file("train")), read_jsonl(root / paths.on_policy_file("eval"))


@pytest.mark.slow
def test_pairs_come_from_train_prompts_and_differ(built):
    root, metrics = built["root"], built["pairs"]
    train, held = on_policy_pairs(root)
    records = {r.id: r for d in built["params"].data.datasets
               for r in read_records(root / paths.split_file(d, "train"))}
    assert metrics["enabled"] and metrics["prompts"] == 3 * len(built["params"].data.datasets)
    assert (len(train), len(held)) == (metrics["train_pairs"], metrics["eval_pairs"])
    assert len(train) + len(held) + metrics["skipped_equal"] == metrics["prompts"]
    assert train and held
    for pair in train + held:
        record = records[pair["id"].removeprefix("onp-")]
        assert pair["source"] == "on_policy" and pair["dataset"] == record.dataset
        assert pair["prompt"] == messages(record)
        assert pair["chosen"][-1]["content"] != pair["rejected"][-1]["content"]
    assert metrics["sample_accuracy"]["n"] == metrics["prompts"] * 3
    assert json.loads((root / "metrics/pairs.json").read_text()) == json.loads(json.dumps(metrics))


@pytest.mark.slow
def test_pairs_are_held_out_like_the_static_pairs(built):
    root = built["root"]
    train, held = on_policy_pairs(root)
    static_train = {p["prompt"][-1]["content"] for p in read_jsonl(root / paths.preference_file("dpo", "train"))}
    static_eval = {p["prompt"][-1]["content"] for p in read_jsonl(root / paths.preference_file("dpo", "eval"))}
    assert not {p["prompt"][-1]["content"] for p in train} & static_eval
    assert not {p["prompt"][-1]["content"] for p in held} & static_train


@pytest.mark.slow
def test_on_policy_prompts_are_no_rm_prompts(built):
    root = built["root"]
    train, held = on_policy_pairs(root)
    rm_prompts = {p["prompt"][-1]["content"] for split in ("train", "eval")
                  for p in read_jsonl(root / paths.preference_file("rm", split))}
    assert rm_prompts and train + held
    assert not {p["prompt"][-1]["content"] for p in train + held} & rm_prompts


@pytest.mark.slow
def test_sampling_is_seeded_per_prompt(built, monkeypatch):
    root, params = built["root"], built["params"]
    monkeypatch.chdir(root)
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    policy = pairs.load_policy(params, root)
    prompt = render(tokenizer, messages(read_records(root / paths.split_file("medqa", "train"))[0]))
    first = sample(policy, tokenizer, prompt, 3, 1.0, 8, seed=7)
    sample(policy, tokenizer, prompt, 3, 1.0, 8, seed=8)  # another draw in between changes nothing
    assert sample(policy, tokenizer, prompt, 3, 1.0, 8, seed=7) == first


@pytest.mark.slow
def test_rerun_writes_the_same_pairs(built, tmp_path, monkeypatch):
    root = built["root"]
    before = [(root / paths.on_policy_file(s)).read_bytes() for s in ("train", "eval")]
    monkeypatch.chdir(root)
    pairs.run(built["params"], root)
    assert [(root / paths.on_policy_file(s)).read_bytes() for s in ("train", "eval")] == before


@pytest.mark.slow
def test_without_the_source_the_stage_samples_nothing(built, tmp_path, monkeypatch):
    root = copy_prepared(built["root"], tmp_path / "off")  # no SFT adapter, no RM: nothing may load them
    monkeypatch.chdir(root)
    params = load_params(overrides=["data.preferences.sources=[gold_vs_distractor]"])
    metrics = pairs.run(params, root)
    assert metrics["enabled"] is False and metrics["train_pairs"] == metrics["eval_pairs"] == 0
    assert [(root / paths.on_policy_file(s)).stat().st_size for s in ("train", "eval")] == [0, 0]


@pytest.mark.slow
def test_rm_trains_on_static_pairs_only(built):
    static = read_jsonl(built["root"] / paths.preference_file("rm", "train"))
    assert built["rm"]["train_pairs"] == len(static)
    assert {p["source"] for p in static} == {"gold_vs_distractor", "safety"}


@pytest.mark.slow
def test_dpo_trains_on_both_and_reports_each_source(built):
    root, metrics = built["root"], built["dpo"]
    train, held = on_policy_pairs(root)
    static_train = read_jsonl(root / paths.preference_file("dpo", "train"))
    static_eval = read_jsonl(root / paths.preference_file("dpo", "eval"))
    assert metrics["train_pairs"]["on_policy"] == len(train)
    assert sum(metrics["train_pairs"].values()) == len(train) + len(static_train)
    sources = {p["source"] for p in static_eval + held}
    assert set(metrics["per_source"]) == sources and "on_policy" in sources
    assert sum(s["n"] for s in metrics["per_source"].values()) == len(static_eval) + len(held)
    for scores in metrics["per_source"].values():
        assert 0 <= scores["reward_accuracy"] <= 1 and isinstance(scores["reward_margin"], float)
