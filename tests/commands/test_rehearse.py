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


def test_runs_every_stage_and_the_plain_loop(report):
    result = report["result"]
    assert [row["stage"] for row in result["stages"]] == [
        "sft_pubmedqa", "sft_medmcqa", "sft_medqa", "icl", "rm", "dpo", "grpo", "evaluate:base", "evaluate:dpo"]
    rows = {row["stage"]: row for row in result["stages"]}
    assert rows["sft_pubmedqa"]["tokens_per_second"] > 0 and rows["rm"]["pairs_per_second"] > 0
    assert rows["evaluate:dpo"]["questions_per_second"] > 0
    assert rows["grpo"]["prompts"] == 3 and rows["grpo"]["prompts_per_second"] > 0
    assert rows["dpo"]["pairs"] > 0  # the epochs `dpo` resolves over `train`
    assert set(rows["dpo"]["vs_plain"]) == {"no_checkpointing", "with_checkpointing"}
    assert len(result["plain_loop"]) == 2 and all(b["tokens_per_second"] > 0 for b in result["plain_loop"])
    assert result["shapes"]["hidden_size"] == 128 and result["shapes"]["num_hidden_layers"] == 2
    stage_seconds = sum(r["seconds"] for r in result["stages"])
    assert result["projected_total_seconds"] >= stage_seconds  # five more methods counted


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
