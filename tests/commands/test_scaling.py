"""`medadapt scaling` on a git repo whose experiments are written by hand: which result joins which
curve, the x it is drawn at, the table and the plot. (The real grid runs in test_pipeline.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from medadapt.commands import scaling
from medadapt.params import load_params

from conftest import REPO


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def cell(value: float) -> dict:
    return {"value": value, "low": max(value - 0.1, 0), "high": min(value + 0.1, 1), "n": 12}


def write_result(root: Path, params: dict, method: str, accuracy: float, kept: int = 12, k_mean: float = 3.0) -> None:
    """The files one experiment commits: params, eval metrics, prepare's and icl's counts."""
    (root / "params.yaml").write_text(yaml.safe_dump({**params, "method": method}))
    (root / "metrics").mkdir(exist_ok=True)
    datasets = ("pubmedqa", "medmcqa", "medqa")
    evaluation = {"method": method, **{d: {"accuracy": cell(accuracy)} for d in datasets},
                  "radqa": {"f1": cell(accuracy / 2)}}
    (root / "metrics/eval.json").write_text(json.dumps(evaluation))
    (root / "metrics/prepare.json").write_text(json.dumps({"datasets": {d: {"train": kept} for d in datasets}}))
    (root / "metrics/icl.json").write_text(json.dumps({"datasets": {d: {"k_mean": k_mean} for d in datasets}}))


def experiment(root: Path, name: str, baseline: dict, changes: dict, method: str, accuracy: float, **counts) -> None:
    """A commit stored under refs/exps/ as DVC stores a finished experiment; the workspace stays at HEAD."""
    params = yaml.safe_load(yaml.safe_dump(baseline))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[leaf] = value
    write_result(root, params, method, accuracy, **counts)
    git(root, "add", "-A")
    git(root, "commit", "-qm", name)
    sha = git(root, "rev-parse", "HEAD")
    git(root, "update-ref", f"refs/exps/ab/{sha}/{name}", sha)
    git(root, "reset", "-q", "--hard", "HEAD~1")


@pytest.fixture
def grid(tmp_path) -> Path:
    """HEAD (method base) and a small grid: SFT at two train sizes, ICL at two k, and one outlier."""
    root = tmp_path
    baseline = yaml.safe_load((REPO / "params.yaml").read_text())
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "ci@example.invalid")
    git(root, "config", "user.name", "ci")
    write_result(root, baseline, "base", 0.25)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "baseline")
    sizes = {f"data.train_size.{d}": 4 for d in ("pubmedqa", "medmcqa", "medqa")}
    experiment(root, "sft-4", baseline, sizes, "sft", 0.3, kept=4)
    experiment(root, "sft-all", baseline, {k: 1000 for k in sizes}, "sft", 0.5, kept=48)
    experiment(root, "icl-0", baseline, {"icl.k": 0}, "icl", 0.2, k_mean=0.0)
    experiment(root, "icl-8", baseline, {"icl.k": 8}, "icl", 0.6, k_mean=5.5)
    experiment(root, "sft-lr", baseline, {"sft.medqa.learning_rate": 0.1}, "sft", 0.9)  # varies no budget
    return root


def test_results_join_the_curve_of_the_budget_they_vary(grid):
    points = scaling.collect(grid)
    sft = [p for p in points if p["budget"] == "train_size" and p["dataset"] == "medqa"]
    assert [(p["asked"], p["x"], p["value"], p["source"]) for p in sft] == [(4, 4, 0.3, "sft-4"),
                                                                            (1000, 48, 0.5, "sft-all")]
    icl = [p for p in points if p["budget"] == "icl.k" and p["dataset"] == "radqa"]
    assert [(p["x"], p["value"], p["metric"]) for p in icl] == [(0, 0.1, "f1"), (8, 0.3, "f1")]
    assert {p["k_used"] for p in points if p["budget"] == "icl.k" and p["dataset"] == "medqa"} == {0.0, 5.5}
    assert not any(p["source"] == "sft-lr" for p in points)  # it varies a learning rate, no budget
    assert not any(p["budget"] == "train_size" and p["dataset"] == "radqa" for p in points)  # not trained on
    assert {p["source"] for p in points if p["budget"] == "base"} == {"workspace"}


def test_main_writes_table_json_and_plot(grid):
    points = scaling.main(load_params(REPO / "params.yaml"), grid)
    text = (grid / "reports/scaling.md").read_text()
    assert "### sft: SFT train items per dataset" in text and "### icl: ICL demonstrations (k)" in text
    assert "| 1000 | 0.50 [0.40, 0.60] (48) |" in text  # asked 1000, prepare kept 48
    assert "| 8 | 0.60 [0.50, 0.70] (5.5) |" in text
    assert json.loads((grid / "reports/scaling.json").read_text())["points"] == points
    assert (grid / "reports/scaling.png").stat().st_size > 5000


def test_no_grid_says_what_to_run(tmp_path, capsys):
    git(tmp_path, "init", "-q")
    assert scaling.main(load_params(REPO / "params.yaml"), tmp_path) == []
    assert "queue the grid" in capsys.readouterr().out
