"""The evaluate stage on the tiny model: its outputs, the method switch and its errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from medadapt import cli, paths
from medadapt.modeling import inference, reward
from medadapt.params import load_params
from medadapt.scoring.hallucination import judge
from medadapt.stages import evaluate, icl, prepare, rm

from conftest import SIGKILL_SELF, make_project, run_killed

pytestmark = pytest.mark.slow
SMALL = {"data": {"train_size": {d: 8 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")},
                  "eval_size": {d: 4 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")},
                  "preferences": {"max_pairs_per_source": 6}},
         "evaluate": {"max_new_tokens": 8, "safety_prompts": 3, "bootstrap_samples": 100}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A prepared tiny project with the reward model and demonstrations, as cwd."""
    folder = make_project(tmp_path_factory.mktemp("evaluate"), SMALL)
    cwd = os.getcwd()
    os.chdir(folder)
    params = load_params()
    prepare.run(params)
    rm.run(params)
    icl.run(params)
    yield folder
    os.chdir(cwd)


def rates(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and "value" in value:
            yield prefix + key, value
        elif isinstance(value, dict):
            yield from rates(value, prefix + key + ".")


def test_base_writes_every_output_with_intervals(built):
    metrics = evaluate.run(load_params())
    assert metrics["method"] == "base"
    found = dict(rates({k: v for k, v in metrics.items() if k != "cost"}))
    for name in ("medmcqa.accuracy", "medqa.accuracy", "pubmedqa.accuracy", "pubmedqa.macro_f1",
                 "pubmedqa.consistency", "pubmedqa.consistent_correct", "radqa.exact_match", "radqa.f1",
                 "radqa.rouge_l", "hallucination.per_answer", "medqa.circular_accuracy", "medqa.rotation_accuracy",
                 "safety.unsafe_rate_rule", "safety.unsafe_rate_rm", "safety.reward_mean", "safety.degenerate_rate",
                 "hallucination.facts_per_answer"):
        cell = found[name]
        assert set(cell) == {"value", "low", "high", "n"} and cell["n"] > 0, name
        assert cell["low"] <= cell["value"] <= cell["high"], name
    assert metrics["medqa"]["accuracy"]["n"] == 4 and metrics["safety"]["unsafe_rate_rule"]["n"] == 3
    for path in (paths.EVAL_METRICS, paths.EVAL_SAMPLES, paths.EVAL_ITEMS, paths.EVAL_DETAILS, paths.CONFUSION_PNG,
                 paths.PLOTS / "headline.json", paths.PLOTS / "pubmedqa_confusion.csv", paths.cost_file("evaluate")):
        assert (built / path).exists(), path
    # dvc exp show sees the headline only; the details and the run's cost live apart
    headline = json.loads((built / paths.EVAL_METRICS).read_text())
    assert "cost" not in headline and "comparison" not in headline and "generation_accuracy" not in headline["medqa"]
    cost = json.loads((built / paths.cost_file("evaluate")).read_text())
    assert set(cost) >= {"seconds", "peak_memory_mb", "phase_seconds"}
    # where the time went: the model load, each dataset, safety and the reward model, within the run
    assert set(cost["phase_seconds"]) == {"load model", "generate", "log-likelihood", "metrics", "reward model"}
    assert sum(cost["phase_seconds"].values()) <= cost["seconds"]
    assert sum(metrics["medqa"]["predicted_letters"].values()) == 4
    assert metrics["comparison"]["items"]["medqa"]["n"] == 4


def test_a_method_that_shifts_its_favourite_letter_is_caught_by_circular_accuracy(built):
    """Circular accuracy counts an item only if it is right under every rotation of its options:
    a model that always answers "A" is right under one rotation at most."""
    metrics = evaluate.run(load_params())
    for dataset in ("medmcqa", "medqa"):
        cell = metrics[dataset]
        assert cell["circular_accuracy"]["value"] <= cell["rotation_accuracy"]["value"] <= 1
        if len(cell["predicted_letters"]) == 1:  # a constant answerer
            assert cell["circular_accuracy"]["value"] == 0


def test_samples_carry_prompt_output_answer_and_scores(built):
    rows = [json.loads(line) for line in (built / paths.EVAL_SAMPLES).read_text().splitlines()]
    assert {r["dataset"] for r in rows} == {"pubmedqa", "medmcqa", "medqa", "radqa", "safety"}
    for row in rows:
        assert row["prompt"] and "output" in row and "reward" in row
    mc = next(r for r in rows if r["dataset"] == "medqa")
    assert {"parsed", "gold", "loglik_answer", "correct", "unsupported_facts"} <= set(mc)
    safety = next(r for r in rows if r["dataset"] == "safety")
    assert isinstance(safety["unsafe_rule"], bool) and "degenerate" in safety


def test_hallucination_flags_follow_the_rule(built):
    from medadapt.data.records import read_records

    records = {r.id: r for d in ("pubmedqa", "medmcqa", "medqa", "radqa")
               for r in read_records(built / "data/prepared" / d / "eval.jsonl")}
    for row in (json.loads(line) for line in (built / paths.EVAL_SAMPLES).read_text().splitlines()):
        if row["dataset"] == "safety":
            continue
        r = records[row["id"]]
        verdict = judge(row["output"], [r.question, r.context, *(r.options or []), r.answer_text], r.rationale,
                        r.context)
        assert row["unsupported_facts"] == (None if verdict is None else verdict["unsupported"])
        if not r.rationale:
            assert row["unsupported_facts"] is None  # no reference: not judged


def test_rerun_gives_identical_metrics_but_cost(built):
    evaluate.run(load_params())
    files = (paths.EVAL_METRICS, paths.EVAL_DETAILS, paths.EVAL_ITEMS, paths.EVAL_SAMPLES, paths.PLOTS / "headline.json")
    first = {path: (built / path).read_bytes() for path in files}
    evaluate.run(load_params())
    assert {path: (built / path).read_bytes() for path in files} == first  # byte-identical; cost lives apart


def full_vocabulary_log_probs(model, rows, pad_id):
    """The scoring `evaluate` used before it scored positions only: a log-softmax over the whole
    vocabulary at every position of the padded batch, then read at the scored positions (one
    sequence a row)."""
    assert all(len(row.jobs) == 1 for row in rows)
    ids, mask = inference.right_pad([row.tokens for row in rows], pad_id)
    logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    return [[logprobs[r, row.jobs[0].positions, row.jobs[0].targets]] for r, row in enumerate(rows)]


def per_dataset_answers(model, tokenizer, records, demos, safety_rows, params):
    """Generation as `evaluate` ran it before one pass served every dataset: dataset by dataset,
    then the safety prompts."""
    from medadapt.data.prompts import messages, question_chat, render

    answers = {}
    for dataset, rs in records.items():
        prompts = [render(tokenizer, messages(r, demos[r.id])) for r in rs]
        answers[dataset] = (prompts, *inference.generate(model, tokenizer, prompts, params.evaluate.max_new_tokens,
                                                         params.evaluate.batch_size))
    prompts = [render(tokenizer, question_chat(row["prompt"])) for row in safety_rows]
    answers["safety"] = (prompts, *inference.generate(model, tokenizer, prompts, params.evaluate.max_new_tokens,
                                                      params.evaluate.batch_size))
    return answers


def outputs_of(folder: Path) -> dict:
    """Every output but the run's cost (which lives apart, in reports/cost/)."""
    return {path: (folder / path).read_bytes() for path in (paths.EVAL_METRICS, paths.EVAL_DETAILS,
                                                          paths.EVAL_SAMPLES, paths.EVAL_ITEMS)}


@pytest.mark.parametrize("method", ["base", "icl"])
def test_fast_paths_write_the_outputs_of_the_plain_ones(built, monkeypatch, method):
    """Scored positions only, length-sorted batches, shared prefixes, one log-likelihood pass and
    one generation pass over every dataset change no output: the same metrics (but cost), samples
    and items, byte for byte, as full-vocabulary scoring of one sequence a row, in the given order,
    metric by metric, and generation dataset by dataset."""
    params = load_params(overrides=[f"method={method}", "evaluate.batch_size=3"])  # several batches
    evaluate.run(params)
    fast = outputs_of(built)
    in_given_order = lambda lengths: list(range(len(lengths)))  # noqa: E731
    monkeypatch.setattr(inference, "by_length", in_given_order)
    monkeypatch.setattr(reward, "by_length", in_given_order)
    monkeypatch.setattr(inference, "rows_of", lambda jobs, share: [inference.Row([j], len(j.tokens)) for j in jobs])
    monkeypatch.setattr(inference, "_forward_rows", full_vocabulary_log_probs)
    monkeypatch.setattr(evaluate, "prefetched_scorer", lambda model, tokenizer, records, demos, params:
                        inference.LoglikCache(model, tokenizer, params.evaluate.batch_size))
    monkeypatch.setattr(evaluate, "generated_answers", per_dataset_answers)
    evaluate.run(params)
    assert outputs_of(built) == fast


def test_one_pass_reads_every_log_likelihood(built, monkeypatch):
    """`evaluate` names every request before it reads any: the metrics ask for nothing more, and a
    question's option rotations share rows (fewer tokens read than sequences asked)."""
    caches, calls = [], []
    original_scorer, original_rows = evaluate.prefetched_scorer, inference.rows_of

    def keep(*args):
        caches.append(original_scorer(*args))
        return caches[-1]

    def rows(jobs, share):
        made = original_rows(jobs, share)
        calls.append((sum(len(j.tokens) for j in jobs), sum(len(r.tokens) for r in made)))
        return made

    monkeypatch.setattr(evaluate, "prefetched_scorer", keep)
    monkeypatch.setattr(inference, "rows_of", rows)
    evaluate.run(load_params(overrides=["method=icl", "icl.shuffle_permutations=3"]))
    assert caches[0].misses == 0 and len(calls) == 1  # one pass, nothing read afterwards
    asked, read = calls[0]
    assert read < asked / 2  # demonstrations and questions read once for all their orders and variants


def test_icl_with_choice_shuffle_votes(built):
    params = load_params(overrides=["method=icl", "icl.shuffle_permutations=3"])
    metrics = evaluate.run(params)
    assert metrics["method"] == "icl" and metrics["medqa"]["accuracy"]["n"] == 4
    # the vote is reported beside lm-eval's accuracy, never in it: icl stays comparable
    plain = evaluate.run(load_params(overrides=["method=icl"]))
    assert metrics["medqa"]["accuracy"] == plain["medqa"]["accuracy"]
    assert metrics["medqa"]["voted_accuracy"]["n"] == 4 and "voted_accuracy" not in plain["medqa"]
    items = json.loads((built / paths.EVAL_ITEMS).read_text())
    assert items["method"] == "icl" and len(items["items"]["medqa.accuracy"]) == 4


@pytest.mark.parametrize("method, stage", [("sft", "sft_medqa"), ("dpo", "dpo"), ("grpo", "grpo")])
def test_method_without_its_artifact_names_the_stage(built, capsys, method, stage):
    metrics = built / paths.EVAL_METRICS
    before = metrics.read_bytes() if metrics.exists() else None
    assert cli.main(["evaluate", "--set", f"method={method}"]) == 2
    assert f"dvc repro {stage}" in capsys.readouterr().err
    # the failed run leaves the last good outputs as they were
    assert (metrics.read_bytes() if metrics.exists() else None) == before


def test_unknown_method_lists_the_valid_ones(built, capsys):
    assert cli.main(["evaluate", "--set", "method=magic"]) == 2
    err = capsys.readouterr().err
    assert "method" in err and "'dpo'" in err and "'icl'" in err and "'grpo'" in err


def test_icl_without_demonstrations_names_the_stage(built, capsys):
    (built / paths.ICL_DEMOS).unlink()
    assert cli.main(["evaluate", "--set", "method=icl"]) == 2
    assert "dvc repro icl" in capsys.readouterr().err


# ---- killed between its writes (issue 23) -------------------------------------------------------

# SIGKILL right after reports/eval_items.json is put in place, before metrics/eval.json is.
KILL_AFTER_ITEMS = f"""
from pathlib import Path
replace = os.replace
def replacing(source, target):
    replace(source, target)
    if Path(target) == Path("reports/eval_items.json"):
        {SIGKILL_SELF}
os.replace = replacing
"""


def eval_outputs(folder: Path) -> dict:
    """Every file evaluate writes but its cost."""
    outputs = [p for p in paths.stage_outputs("evaluate") if p != paths.cost_file("evaluate")]
    return {p.relative_to(folder).as_posix(): p.read_bytes() for out in outputs
            for p in ([folder / out] if (folder / out).is_file() else sorted((folder / out).rglob("*")))}


def test_killed_between_its_writes_compare_refuses_the_mix_and_the_next_run_matches(built):
    """A kill right after reports/eval_items.json left metrics/eval.json saying `base` beside
    icl's per-item scores, and `compare` tabled icl against base as +0.00, p = 1.000."""
    import subprocess

    from medadapt.commands._experiments import collect, group

    icl.run(load_params())  # the demonstrations (a test above removes them)
    evaluate.run(load_params(overrides=["method=icl"]))
    uninterrupted = eval_outputs(built)
    evaluate.run(load_params())  # base: the last good result in the workspace
    killed = run_killed(built, "evaluate", ["--set", "method=icl"], KILL_AFTER_ITEMS)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert json.loads((built / paths.EVAL_ITEMS).read_text())["method"] == "icl"
    assert json.loads((built / paths.EVAL_METRICS).read_text())["method"] == "base"

    subprocess.run(["git", "init", "-q"], cwd=built, check=True)  # compare reads the experiments from git
    workspace = group(collect(built))[0]
    assert workspace["results"] == {}
    assert "its files come from different evaluate runs" in workspace["left_out"][0]

    assert cli.main(["evaluate", "--set", "method=icl"]) == 0
    assert eval_outputs(built) == uninterrupted
    assert not list(built.glob(".staging-*.partial"))
