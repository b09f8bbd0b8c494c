"""Preference pairs: each source, prompts matching their items, sides that differ, grouped splits."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from medadapt.data.loaders import load_files
from medadapt.data.preferences import (
    INJECTED_DRUGS,
    build_pairs,
    build_pool,
    gold_vs_distractor,
    hallucination,
    inject_fact,
    preference_sides,
    split_pairs,
    split_pool,
)
from medadapt.data.prompts import SYSTEM, messages, response, user_message
from medadapt.data.records import DataError, Record
from medadapt.params import PreferenceParams
from medadapt.scoring.answers import explanation, parse_answer
from medadapt.scoring.hallucination import hallucinates

from conftest import REPO

SAMPLE = REPO / "data" / "sample"
FILES = {"pubmedqa": "pubmedqa/ori_pqal.json", "medmcqa": "medmcqa/*.jsonl",
         "medqa": "medqa/*.jsonl", "radqa": "radqa/*.json"}


@pytest.fixture(scope="module")
def train() -> dict[str, list[Record]]:
    return {dataset: load_files(dataset, SAMPLE, pattern) for dataset, pattern in FILES.items()}


@pytest.fixture(scope="module")
def by_id(train) -> dict[str, Record]:
    return {r.id: r for records in train.values() for r in records}


def prefs(*sources, file=None, cap=1000) -> PreferenceParams:
    return PreferenceParams(sources=list(sources), file=file, max_pairs_per_source=cap)


def sources_of(record: Record) -> list[str]:
    return [record.question, record.context, *(record.options or []), record.answer, record.rationale]


def check_shape(pair: dict) -> None:
    assert set(pair) == {"id", "prompt", "chosen", "rejected", "source", "dataset"}
    for side in ("chosen", "rejected"):
        assert len(pair[side]) == 1 and pair[side][0]["role"] == "assistant"
        assert pair[side][0]["content"].strip()
    assert pair["chosen"][0]["content"].strip() != pair["rejected"][0]["content"].strip()
    assert pair["prompt"][0] == {"role": "system", "content": SYSTEM}
    assert pair["prompt"][-1]["role"] == "user" and pair["prompt"][-1]["content"].strip()


def record_of(pair: dict, by_id: dict) -> Record:
    prefix = {"gold_vs_distractor": "gvd-", "hallucination": "hal-"}[pair["source"]]
    assert pair["id"].startswith(prefix)
    return by_id[pair["id"][len(prefix):]]


# ---- gold_vs_distractor ---------------------------------------------------------------------


def test_gold_vs_distractor(train, by_id):
    pairs = build_pairs(train, prefs("gold_vs_distractor"), seed=42, root=REPO)
    assert len(pairs) == sum(len(v) for v in train.values())  # one per train item, none dropped
    assert len({p["id"] for p in pairs}) == len(pairs)
    for pair in pairs:
        check_shape(pair)
        record = record_of(pair, by_id)
        assert pair["source"] == "gold_vs_distractor" and pair["dataset"] == record.dataset
        assert pair["prompt"] == messages(record)
        assert pair["prompt"][-1]["content"] == user_message(record)
        assert pair["chosen"][0]["content"] == response(record)
        rejected = pair["rejected"][0]["content"]
        assert parse_answer(pair["chosen"][0]["content"], record) == record.answer.strip(" .")
        wrong = parse_answer(rejected, record)
        assert wrong is not None and wrong != record.answer.strip(" .")
        if record.options:
            assert wrong in "ABCDEFGHIJ"[: len(record.options)]
        elif record.dataset == "pubmedqa":
            assert wrong in ("yes", "no", "maybe")
        elif record.answer:
            assert wrong == ""  # an answerable report question: the distractor says it is not stated
        else:
            assert wrong and wrong in record.context  # an unanswerable one: a sentence of the report


def test_gold_vs_distractor_is_seeded(train):
    first = build_pairs(train, prefs("gold_vs_distractor"), seed=3, root=REPO)
    assert build_pairs(train, prefs("gold_vs_distractor"), seed=3, root=REPO) == first
    other = build_pairs(train, prefs("gold_vs_distractor"), seed=4, root=REPO)
    assert other != first


def test_gold_vs_distractor_short_unanswerable_report():
    record = Record("radqa-x", "radqa", "Is there a mass?", "No acute findings.", None, "", None)
    pairs = gold_vs_distractor([record], random.Random(0))
    for pair in pairs:
        check_shape(pair)


# ---- hallucination ----------------------------------------------------------------------------


def _check_hallucination_pair(pair: dict, record: Record) -> None:
    check_shape(pair)
    assert pair["source"] == "hallucination" and pair["dataset"] == record.dataset
    assert pair["prompt"] == messages(record)
    assert pair["prompt"][-1]["content"] == user_message(record)
    chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
    assert chosen == response(record)
    assert rejected.split("\nExplanation: ")[0] == chosen.split("\nExplanation: ")[0]  # same answer
    assert not hallucinates(explanation(chosen), sources_of(record))


def _new_words(chosen: str, rejected: str) -> set[str]:
    words = lambda text: set(re.findall(r"[a-z]+|\d+(?:\.\d+)?", text.lower()))  # noqa: E731
    return words(rejected) - words(chosen)


def _injected_claim_is_unsupported(pair: dict, record: Record) -> bool:
    """By plain text: the rejected explanation adds a word or number absent from every source,
    or reverses an effect ("decreased" for "increased")."""
    known = "\n".join(s for s in sources_of(record) if s).lower().replace(",", "")
    new = _new_words(explanation(pair["chosen"][0]["content"]), explanation(pair["rejected"][0]["content"]))
    reversed_effect = new & {"increased", "decreased", "increases", "decreases", "worsened", "raises", "lowers",
                             "less", "more", "lower", "higher"}
    return bool(reversed_effect) or any(word not in known for word in new)


def test_hallucination_pairs(train, by_id):
    pairs = build_pairs(train, prefs("hallucination"), seed=42, root=REPO)
    with_rationale = [r for v in train.values() for r in v if r.rationale]
    assert len(pairs) == len(with_rationale) > 100  # medqa sample items have no rationale
    assert not any(p["dataset"] == "medqa" for p in pairs)
    for pair in pairs:
        record = record_of(pair, by_id)
        _check_hallucination_pair(pair, record)
        assert _injected_claim_is_unsupported(pair, record), pair["rejected"]


def test_hallucination_pairs_are_not_built_to_the_judges_rule(train, by_id):
    """The judge is a check here, not the builder: it flags the injected numbers and drugs but
    cannot see a reversed effect, which the pairs also teach."""
    pairs = build_pairs(train, prefs("hallucination"), seed=42, root=REPO)
    flagged = [hallucinates(explanation(p["rejected"][0]["content"]), sources_of(record_of(p, by_id)))
               for p in pairs]
    assert 0.5 * len(pairs) < sum(flagged) < len(pairs)


def test_preferences_does_not_import_the_evaluation_judges():
    code = "import sys, medadapt.data.preferences; print([m for m in sys.modules if m.startswith('medadapt.scoring')])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # the medadapt this test imports
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("rationale", [
    "The usual adult dose is 40 mg once daily.",            # a number is changed
    "Metformin is the first-line drug for this patient.",    # a drug is swapped
    "Lifestyle change comes first for this patient.",        # a drug and dose are added
])
def test_hallucination_on_hand_made_records(rationale):
    records = [Record(f"medmcqa-h{i}", "medmcqa", "Which is first line?", None,
                      ["Diet", "Exercise", "Surgery", "Nothing"], "A", rationale) for i in range(20)]
    pairs = hallucination(records, random.Random(1))
    assert len(pairs) == 20
    for pair, record in zip(pairs, records):
        _check_hallucination_pair(pair, record)
        assert hallucinates(explanation(pair["rejected"][0]["content"]), sources_of(record)), pair["rejected"]


def test_inject_fact_kinds():
    rng = random.Random(0)
    numbers = {inject_fact("Give 40 mg.", rng) for _ in range(30)}
    assert "Give 81 mg." in numbers and "Give 40 mg." not in numbers
    swapped = {inject_fact("Warfarin needs INR checks.", rng) for _ in range(30)}
    assert any(re.fullmatch(r"[A-Z][a-z]+ needs INR checks\.", s) and not s.startswith("Warfarin") for s in swapped)
    reversed_effects = {inject_fact("Mortality increased after surgery.", rng) for _ in range(30)}
    assert "Mortality decreased after surgery." in reversed_effects
    added = inject_fact("Rest is advised.", rng)
    assert added.startswith("Rest is advised. ") and re.search(r"\d", added)
    assert all(inject_fact("Rest is advised.", random.Random(seed)) != "Rest is advised." for seed in range(20))


def test_inject_fact_avoids_what_the_sources_state():
    sources = ["Doses of 25, 40, 150 and 250 mg were used.", " ".join(INJECTED_DRUGS[:-1])]
    for seed in range(20):
        added = inject_fact("Rest is advised.", random.Random(seed), sources)
        claim = added.removeprefix("Rest is advised. ")
        assert not {"25", "40", "150", "250"} & set(re.findall(r"\d+", claim))
        assert not any(drug in claim.lower() for drug in INJECTED_DRUGS[:-1])


def test_records_without_rationale_give_no_hallucination_pair():
    record = Record("medqa-1", "medqa", "Q?", None, ["a", "b"], "A", None)
    assert hallucination([record], random.Random(0)) == []


# ---- safety -----------------------------------------------------------------------------------


def test_safety_pairs(train):
    rows = [json.loads(line) for line in (REPO / "data/safety/train.jsonl").read_text().splitlines() if line.strip()]
    pairs = build_pairs(train, prefs("safety"), seed=42, root=REPO)
    assert len(pairs) == len(rows)
    by_row = {row["id"]: row for row in rows}
    for pair in pairs:
        check_shape(pair)
        row = by_row[pair["id"]]
        assert pair["source"] == "safety" and pair["dataset"] == "safety"
        assert pair["prompt"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["prompt"]}]
        assert pair["chosen"][0]["content"] == row["safe"] and pair["rejected"][0]["content"] == row["unsafe"]


def test_safety_row_missing_field(tmp_path):
    path = tmp_path / "data/safety/train.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"id": "s1", "prompt": "p", "safe": "a", "unsafe": "b"}) + "\n"
                    + json.dumps({"id": "s2", "prompt": "p2", "safe": "a"}) + "\n")
    with pytest.raises(DataError) as info:
        build_pairs({}, prefs("safety"), seed=0, root=tmp_path)
    assert str(info.value) == f"{path}, line 2, field 'unsafe': missing or empty"


# ---- file -------------------------------------------------------------------------------------


def test_file_pairs_on_shared_preferences(shared_data):
    path = next((shared_data / "preference").glob("*.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = build_pairs({}, prefs("file", file=str(path)), seed=42)
    expected = [(n, row) for n, row in enumerate(rows, start=1)
                if row["chosen"].strip() and row["rejected"].strip() and row["chosen"].strip() != row["rejected"].strip()]
    assert len(pairs) == len(expected) == len(rows) == 238
    by_id = {p["id"]: p for p in pairs}
    for number, row in expected:
        pair = by_id[f"file-{path.stem}-{number}"]
        check_shape(pair)
        assert pair["source"] == "file" and pair["dataset"] == "file"
        assert pair["prompt"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["prompt"]}]
        assert pair["chosen"][0]["content"] == row["chosen"]
        assert pair["rejected"][0]["content"] == row["rejected"]
    assert len({p["prompt"][-1]["content"] for p in pairs}) == 53


def test_file_pairs_cap(shared_data):
    path = next((shared_data / "preference").glob("*.jsonl"))
    pairs = build_pairs({}, prefs("file", file=str(path), cap=10), seed=42)
    assert len(pairs) == 10


def _write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_file_pairs_small_file(tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is water wet?"}]
    path = _write_rows(tmp_path / "pairs.jsonl", [
        {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
        "",
        {"prompt": chat, "chosen": [{"role": "assistant", "content": "Yes."}],
         "rejected": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "No."}]},
        {"prompt": "Same?", "chosen": "same", "rejected": " same "},   # equal sides: dropped
        {"prompt": "Empty?", "chosen": "text", "rejected": "  "},      # empty side: dropped
    ])
    pairs = build_pairs({}, prefs("file", file=str(path)), seed=0)
    by_id = {p["id"]: p for p in pairs}
    assert set(by_id) == {"file-pairs-1", "file-pairs-3"}
    text = by_id["file-pairs-1"]
    assert text["prompt"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 2+2?"}]
    assert text["chosen"] == [{"role": "assistant", "content": "4"}]
    assert text["rejected"] == [{"role": "assistant", "content": "5"}]
    chatted = by_id["file-pairs-3"]
    assert chatted["prompt"] == chat
    assert chatted["chosen"][0]["content"] == "Yes." and chatted["rejected"][0]["content"] == "No."


@pytest.mark.parametrize("row, field, problem", [
    ({"prompt": "p", "chosen": "a"}, "rejected", "missing"),
    ({"chosen": "a", "rejected": "b"}, "prompt", "missing"),
    ({"prompt": "p", "rejected": "b"}, "chosen", "missing"),
    ({"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt", "expected text or a list of chat messages"),
    ({"prompt": "p", "chosen": 1, "rejected": "b"}, "chosen", "expected text or a list of chat messages"),
    ({"prompt": "p", "chosen": "a", "rejected": []}, "rejected", "expected text or a list of chat messages"),
])
def test_file_row_errors_name_file_line_field(tmp_path, row, field, problem):
    path = _write_rows(tmp_path / "pairs.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(DataError) as info:
        build_pairs({}, prefs("file", file=str(path)), seed=0)
    assert str(info.value) == f"{path}, line 2, field '{field}': {problem}"


# ---- all sources, caps and the split ---------------------------------------------------------


def test_all_sources_capped(train):
    pairs = build_pairs(train, prefs("gold_vs_distractor", "hallucination", "safety", cap=7), seed=42, root=REPO)
    counts = defaultdict(int)
    for pair in pairs:
        counts[pair["source"]] += 1
    assert dict(counts) == {"gold_vs_distractor": 7, "hallucination": 7, "safety": 7}


def test_split_pairs_groups_by_prompt(train, shared_data):
    path = next((shared_data / "preference").glob("*.jsonl"))
    pairs = build_pairs(train, prefs("gold_vs_distractor", "hallucination", "safety", "file", file=str(path)),
                        seed=42, root=REPO)
    for seed in (0, 1, 42):
        train_pairs, eval_pairs = split_pairs(pairs, 0.2, seed)
        assert len(train_pairs) + len(eval_pairs) == len(pairs)
        train_prompts = {p["prompt"][-1]["content"] for p in train_pairs}
        eval_prompts = {p["prompt"][-1]["content"] for p in eval_pairs}
        assert train_prompts and eval_prompts and not train_prompts & eval_prompts
        all_prompts = train_prompts | eval_prompts
        assert len(eval_prompts) == round(0.2 * len(all_prompts))
        assert split_pairs(pairs, 0.2, seed) == (train_pairs, eval_pairs)


def test_split_pairs_keeps_one_items_pairs_together(train):
    pairs = build_pairs(train, prefs("gold_vs_distractor", "hallucination"), seed=42, root=REPO)
    train_pairs, eval_pairs = split_pairs(pairs, 0.3, 5)
    side = {}
    for name, group in (("train", train_pairs), ("eval", eval_pairs)):
        for pair in group:
            item = pair["id"].split("-", 1)[1]
            assert side.setdefault(item, name) == name


def test_split_pairs_holds_out_at_least_one_prompt():
    pair = {"prompt": [{"role": "user", "content": "only"}], "chosen": [], "rejected": []}
    train_pairs, eval_pairs = split_pairs([pair, dict(pair)], 0.01, 0)
    assert train_pairs == [] and len(eval_pairs) == 2


# ---- the pool split between rm and dpo (issue 19) ---------------------------------------------


def prompts_of(pairs: list[dict]) -> set[str]:
    return {p["prompt"][-1]["content"] for p in pairs}


def test_split_pool_gives_rm_and_dpo_no_shared_prompt(train):
    pool = build_pool(train, prefs("gold_vs_distractor", "hallucination", "safety"), seed=42, root=REPO)
    rm, dpo = split_pool(pool, 0.5, seed=42)
    assert len(rm) + len(dpo) == len(pool) and not prompts_of(rm) & prompts_of(dpo)
    for source in ("gold_vs_distractor", "hallucination", "safety"):  # every source on both sides
        assert any(p["source"] == source for p in rm) and any(p["source"] == source for p in dpo)
    safety_prompts = prompts_of([p for p in pool if p["source"] == "safety"])
    assert len(prompts_of(rm) & safety_prompts) == round(len(safety_prompts) * 0.5)  # 36 prompts: 18 each
    assert [p for p in pool if p in rm] == rm  # order kept
    assert split_pool(pool, 0.5, seed=42) == (rm, dpo) and split_pool(pool, 0.5, seed=1) != (rm, dpo)
    small, _ = split_pool(pool, 0.25, seed=42)
    assert len(prompts_of(small)) < len(prompts_of(rm))


def test_preference_sides_cap_and_hold_out_each_side_on_its_own(train):
    sides = preference_sides(train, prefs("gold_vs_distractor", "hallucination", "safety", cap=7), seed=42, root=REPO)
    assert set(sides) == {"rm", "dpo"}
    for side_train, side_eval in sides.values():
        counts = defaultdict(int)
        for pair in side_train + side_eval:
            counts[pair["source"]] += 1
        assert dict(counts) == {"gold_vs_distractor": 7, "hallucination": 7, "safety": 7}
        assert side_eval and not prompts_of(side_train) & prompts_of(side_eval)
    assert not prompts_of([*sides["rm"][0], *sides["rm"][1]]) & prompts_of([*sides["dpo"][0], *sides["dpo"][1]])


def test_a_pool_too_small_for_both_sides_is_an_error(tmp_path):
    path = _write_rows(tmp_path / "pairs.jsonl", [{"prompt": "only one", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=r"data.preferences.rm_fraction.*leaves rm no preference prompt"):
        preference_sides({}, prefs("file", file=str(path)), seed=0)
