"""`medadapt rehearse`: the real stages on a random model of a preset's shapes, beside a plain
LoRA loop, on the tiny preset; the user's models and metrics stay untouched."""

from __future__ import annotations

import json
import shutil

import pytest

from medadapt import cli
from medadapt.commands import rehearse
from medadapt.params import load_params
from medadapt.stages import prepare

from conftest import REPO, make_project

pytestmark = pytest.mark.slow
SMALL = {"data": {"train_size": {d: 4 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")},
                  "eval_size": {d: 2 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")},
                  "preferences": {"max_pairs_per_source": 2}},
         "evaluate": {"max_new_tokens": 4, "safety_prompts": 2, "bootstrap_samples": 100},
         "tracking": {"dvclive": False},
         "rehearse": {"methods": ["base", "dpo"]}}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("rehearse"), SMALL)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        prepare.run(load_params())
        before = sorted(p.relative_to(root) for p in root.rglob("*"))
        result = rehearse.main(load_params(), root, "tiny")
        after = sorted(p.relative_to(root) for p in root.rglob("*"))
    return {"root": root, "result": result, "new_files": sorted(set(after) - set(before))}


def test_runs_every_stage_in_its_own_process_and_the_plain_steps_of_its_rows(report):
    result = report["result"]
    assert [row["stage"] for row in result["stages"]] == [
        "sft_pubmedqa", "sft_medmcqa", "sft_medqa", "icl", "rm", "dpo", "grpo", "evaluate:base", "evaluate:dpo"]
    assert not any("error" in row for row in result["stages"]) and result["complete"]
    rows = {row["stage"]: row for row in result["stages"]}
    assert rows["sft_pubmedqa"]["tokens_per_second"] > 0 and rows["rm"]["pairs_per_second"] > 0
    assert rows["evaluate:dpo"]["questions_per_second"] > 0
    assert rows["grpo"]["prompts"] == 3 and rows["grpo"]["prompts_per_second"] > 0
    assert rows["dpo"]["pairs"] > 0  # the epochs `dpo` resolves over `train`
    assert rows["rm"]["compile_seconds"] == 0  # nothing compiled by default
    # each training stage beside the plain step of its own rows (pairs for rm and dpo)
    plain = {row["stage"]: row for row in result["plain_loop"]}
    assert set(plain) == {"sft_pubmedqa", "sft_medmcqa", "sft_medqa", "rm", "dpo"}
    assert plain["rm"]["kind"] == "rm" and plain["rm"]["pairs_per_second"] > 0
    assert plain["sft_medqa"]["tokens_per_second"] > 0 and plain["sft_medqa"]["levers"]["autocast_adapter_dtype"]
    for stage in plain:
        assert rows[stage]["vs_peft_default"] > 0 and rows[stage]["vs_same_levers"] == rows[stage]["vs_peft_default"]
    assert result["shapes"]["hidden_size"] == 128 and result["shapes"]["num_hidden_layers"] == 2
    # measured end to end, every stage's process: at least their sum, never a projection
    assert result["experiment_seconds"] >= result["stage_seconds_sum"] == pytest.approx(
        sum(r["seconds"] for r in result["stages"]), abs=0.05)
    goals = result["goals"]
    assert goals["experiment_seconds"]["measured"] is None  # two of seven methods evaluated: no total claimed
    assert goals["sft_tokens_per_second"]["measured"] == min(rows[s]["tokens_per_second_after_compile"]
                                                             for s in ("sft_pubmedqa", "sft_medmcqa", "sft_medqa"))
    assert goals["evaluate_questions_per_second"]["met"] is False  # a CPU is far from 25 questions/s


def test_writes_the_report_and_nothing_else(report):
    root = report["root"]
    out = root / "reports/rehearse/tiny-cpu.json"
    assert {str(p) for p in report["new_files"]} == {"reports", "reports/rehearse", "reports/rehearse/tiny-cpu.json"}
    assert json.loads(out.read_text())["preset"] == "tiny"


def test_unknown_preset_names_the_valid_ones(tmp_path, monkeypatch, capsys):
    make_project(tmp_path)
    shutil.copytree(REPO / "presets", tmp_path / "presets")  # a project's presets give the shapes
    monkeypatch.chdir(tmp_path)
    assert cli.main(["rehearse", "llama-9"]) == 2
    err = capsys.readouterr().err
    assert "llama-3.1-8b" in err and "llama-2-13b" in err and "tiny" in err


def test_no_preset_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """Issue 24.7: with no argument it used to take the 8B preset on a CPU (16 GB of random
    weights); it now asks for the preset and writes nothing."""
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert cli.main(["rehearse"]) == 2
    assert "the following arguments are required: preset" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before


def test_shapes_come_from_the_presets():
    """One table of shapes: presets/*.yaml (rehearse, bench_multi and the memory estimate read it)."""
    shapes = rehearse.preset_shapes("llama-3.1-70b", REPO)
    assert (shapes["hidden_size"], shapes["num_hidden_layers"], shapes["vocab_size"]) == (8192, 80, 128256)
    assert rehearse.preset_shapes("tiny")["hidden_size"] == 128
