"""costs.py on a git repo whose stage metrics are written by hand: which stages a method pays
for, the sums, GPU-seconds, the chart and `medadapt costs`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from medadapt.commands import costs
from medadapt.params import load_params

from conftest import REPO

SFT = ["sft_pubmedqa", "sft_medmcqa", "sft_medqa"]


def git(root: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, **({"GIT_COMMITTER_DATE": date} if date else {})}
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, env=env).stdout.strip()


def stage_cost(seconds: float, tokens: int, gpus: int = 0, memory: float = 1000.0) -> dict:
    return {"train_seconds": seconds, "train_tokens": tokens, "gpus": gpus, "peak_memory_mb": memory}


def write(root: Path, relative: str, data: dict) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_run(root: Path, method: str, gpus: int = 0, on_policy: bool = True, drop: str | None = None) -> None:
    """Every stage's metrics of one pipeline run, and `evaluate`'s for `method`."""
    for i, stage in enumerate(SFT, start=1):
        write(root, f"reports/cost/{stage}.json", stage_cost(10.0 * i, 100 * i, gpus))
    write(root, "reports/cost/rm.json", stage_cost(5.0, 50, gpus))
    write(root, "reports/cost/pairs.json", {"seconds": 7.0, "gpus": gpus, "peak_memory_mb": 900.0})
    sources = {"gold_vs_distractor": 5, **({"on_policy": 3} if on_policy else {})}
    write(root, "reports/cost/dpo.json", stage_cost(40.0, 400, gpus, 2000.0))
    write(root, "metrics/dpo.json", {"init": "sft", "train_pairs": sources})
    if drop:
        write(root, f"reports/cost/{drop}.json", {})
    accuracy = {"value": 0.5, "low": 0.25, "high": 0.75, "n": 12}
    answering = {"questions_per_second": 2.0, "gpus": min(gpus, 1), "peak_memory_mb": 500.0}
    write(root, "metrics/eval.json", {"method": method, "medqa": {"accuracy": accuracy}})
    write(root, "reports/cost/evaluate.json", answering)
    write(root, "reports/eval_items.json", {"method": method, "items": {"medqa.accuracy": {"q1": 1.0}}})


def experiment(root: Path, name: str, method: str, **run) -> None:
    """A commit under refs/exps/, as DVC stores a finished experiment; the workspace stays at HEAD.
    Each a minute after the last: the newest result of a method is the one compare keeps."""
    write_run(root, method, **run)
    git(root, "add", "-A")
    minute = len(git(root, "for-each-ref", "refs/exps").splitlines())
    git(root, "commit", "-qm", name, date=f"2026-01-01T00:{minute:02d}:00")
    sha = git(root, "rev-parse", "HEAD")
    git(root, "update-ref", f"refs/exps/cd/{sha}/{name}", sha)
    git(root, "reset", "-q", "--hard", "HEAD~1")


@pytest.fixture
def runs(tmp_path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "ci@example.invalid")
    git(tmp_path, "config", "user.name", "ci")
    write_run(tmp_path, "base")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "baseline")
    experiment(tmp_path, "sft-cpu", "sft")
    experiment(tmp_path, "dpo-cpu", "dpo")
    experiment(tmp_path, "dpo-static", "dpo", on_policy=False)
    experiment(tmp_path, "sft-gpu", "sft", gpus=2)
    experiment(tmp_path, "sft-lost", "sft", drop="sft_medqa")
    return tmp_path


def exp_rev(root: Path, name: str) -> str:
    return next(line.split()[0] for line in git(root, "for-each-ref", "refs/exps").splitlines()
                if line.endswith("/" + name))


def result(root: Path, source: str) -> dict:
    """What `compare.collect` gives for a method: its eval metrics and where they came from."""
    rev = "HEAD" if source == "HEAD" else exp_rev(root, source)
    return {"metrics": json.loads(git(root, "show", f"{rev}:metrics/eval.json")), "source": source}


def test_each_method_pays_for_the_stages_that_made_it(runs):
    stages = {m: costs.training_stages(m, None, runs) for m in ("base", "icl", "sft_medmcqa", "sft")}
    assert stages == {"base": [], "icl": [], "sft_medmcqa": SFT[:2], "sft": SFT}
    # on-policy pairs: the RM ranked them and the SFT policy sampled them
    assert costs.training_stages("dpo", "HEAD", runs) == [*SFT, "rm", "pairs", "dpo"]
    assert costs.training_stages("dpo", exp_rev(runs, "dpo-static"), runs) == [*SFT, "dpo"]


def test_grpo_pays_for_the_curriculum_and_the_reward_model_it_used(tmp_path):
    write(tmp_path, "metrics/grpo.json", {"init": "sft", "weights": {"correctness": 1.0, "reward_model": 0.25}})
    assert costs.training_stages("grpo", None, tmp_path) == [*SFT, "rm", "grpo"]
    write(tmp_path, "metrics/grpo.json", {"init": "base", "weights": {"correctness": 1.0}})  # weight 0: not listed
    assert costs.training_stages("grpo", None, tmp_path) == ["grpo"]


def test_method_costs_sum_the_stages_at_the_result_revision(runs):
    results = {"base": result(runs, "HEAD"), "sft": result(runs, "sft-cpu"), "dpo": result(runs, "dpo-cpu")}
    found = costs.method_costs(results, runs)
    assert found["base"]["stages"] == [] and found["base"]["train_seconds"] == 0
    assert found["base"]["train_gpu_seconds"] == 0  # trains nothing, on any device
    assert found["sft"]["train_seconds"] == 60.0 and found["sft"]["train_tokens"] == 600
    assert found["dpo"]["train_seconds"] == 60.0 + 5.0 + 7.0 + 40.0  # curriculum, rm, pairs, dpo
    assert found["dpo"]["train_tokens"] == 600 + 50 + 400  # sampling counts no training tokens
    assert found["dpo"]["train_peak_memory_mb"] == 2000.0
    assert found["sft"]["train_gpu_seconds"] == 0 and found["sft"]["eval_gpu_seconds_per_question"] == 0
    assert found["sft"]["eval_seconds_per_question"] == 0.5 and found["sft"]["eval_peak_memory_mb"] == 500.0
    assert costs.training_axis(found)[0] == "training wall seconds"


def test_gpu_seconds_and_missing_costs(runs):
    found = costs.method_costs({"base": result(runs, "HEAD"), "sft": result(runs, "sft-gpu")}, runs)
    assert found["sft"]["train_gpu_seconds"] == 2 * 60.0 and found["sft"]["eval_gpu_seconds_per_question"] == 0.5
    label, xs = costs.training_axis(found)
    assert label == "training GPU-hours" and xs["sft"] == pytest.approx(120 / 3600)
    lost = costs.method_costs({"sft": result(runs, "sft-lost")}, runs)["sft"]
    assert lost["missing"] == ["sft_medqa"] and lost["train_seconds"] == 30.0


def test_stage_cost_is_the_one_reader(runs):
    assert costs.stage_cost("rm", None, runs) == stage_cost(5.0, 50)
    assert costs.stage_cost("nothing", None, runs) == {}


def test_medadapt_costs_writes_only_with_a_prefix(runs):
    costs.main(load_params(REPO / "params.yaml"), runs)
    assert not (runs / "reports/cost.md").exists() and not (runs / "reports/cost.png").exists()


def test_medadapt_costs_writes_table_and_chart(runs):
    found = costs.main(load_params(REPO / "params.yaml"), runs, "reports/cost")
    assert set(found) == {"base", "sft", "dpo"}  # newest result per method, as compare collects them
    table = (runs / "reports/cost.md").read_text()
    assert table.splitlines()[0].startswith("| method | stages | train s |")
    assert "| dpo | sft_pubmedqa, sft_medmcqa, sft_medqa, dpo |" in table  # dpo-static is the newest dpo
    assert "(no cost recorded: sft_medqa)" in table  # sft-lost is the newest sft
    assert (runs / "reports/cost.png").stat().st_size > 5000


def test_methods_at_one_point_share_one_marker_and_legend_entry(runs):
    """Issue 24.10: base and icl train nothing and, on MedQA, scored alike: icl's marker hid
    base's, which still stood in the legend."""
    results = {"icl": result(runs, "HEAD"), "base": result(runs, "HEAD"), "sft": result(runs, "sft-cpu")}
    found = costs.method_costs(results, runs)
    legend = costs.cost_figure(results, found).axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["base = icl", "sft"]
