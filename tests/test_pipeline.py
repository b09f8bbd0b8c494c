"""The whole DVC pipeline on the tiny model, driven through `dvc` itself, as a user drives it.

One module-scoped project (a git + DVC repo in a tmp folder with this repo's dvc.yaml, src,
sample data and a tiny-model params.yaml): `dvc repro` runs every stage, a second `dvc repro`
has nothing to do, `dvc exp run -S method=icl` re-runs `evaluate` alone (read from DVC's own
output), `dvc metrics diff` shows the change, and `medadapt compare` tables both methods; a
shrunk scaling grid runs queued, and `medadapt scaling` and `medadapt costs` chart it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, make_project

pytestmark = pytest.mark.slow
STAGES = ["prepare", "sft_pubmedqa", "sft_medmcqa", "sft_medqa", "icl", "rm", "pairs", "dpo", "evaluate"]


def run(folder: Path, *command: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    smaller = {"data": {"train_size": {d: 8 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")},
                        "eval_size": {d: 6 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")},
                        "preferences": {"max_pairs_per_source": 6}}}
    folder = make_project(tmp_path_factory.mktemp("pipeline"), smaller)
    shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
    shutil.copy(REPO / ".gitignore", folder / ".gitignore")
    run(folder, "git", "init", "-q", "-b", "main")
    run(folder, "git", "config", "user.email", "ci@example.invalid")
    run(folder, "git", "config", "user.name", "ci")
    run(folder, "dvc", "init", "-q")
    run(folder, "git", "add", "-A")
    run(folder, "git", "commit", "-qm", "project")
    return folder


def test_repro_runs_every_stage_then_nothing(repo):
    output = run(repo, "dvc", "repro")
    for stage in STAGES:
        assert f"Running stage '{stage}'" in output
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert metrics["method"] == "base" and metrics["medqa"]["accuracy"]["n"] == 6
    again = run(repo, "dvc", "repro")
    assert "Running stage" not in again
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "base results")


def test_switching_method_reruns_only_evaluate(repo):
    output = run(repo, "dvc", "exp", "run", "-S", "method=icl")
    ran = [stage for stage in STAGES if f"Running stage '{stage}'" in output]
    assert ran == ["evaluate"], output
    assert json.loads((repo / "metrics/eval.json").read_text())["method"] == "icl"
    diff = run(repo, "dvc", "metrics", "diff")
    assert "metrics/eval.json" in diff


def test_compare_tables_both_methods(repo):
    output = run(repo, "medadapt", "compare")
    assert "| base |" in output and "| icl |" in output
    rows = json.loads((repo / "reports/compare.json").read_text())["rows"]
    icl = next(r for r in rows if r["method"] == "icl")
    assert "vs_base" in icl["metrics"]["MedQA acc"]
    assert (repo / "reports/compare.png").stat().st_size > 1000


def test_scaling_grid_runs_queued_then_charts(repo):
    """The README's grid, shrunk: ICL at k 0 and 1, SFT at 4 train items per dataset."""
    run(repo, "dvc", "exp", "run", "--queue", "-S", "method=icl", "-S", "icl.k=0,1")
    run(repo, "dvc", "exp", "run", "--queue", "-S", "method=sft", "-S",
        "data.train_size={pubmedqa:4,medmcqa:4,medqa:4}")
    run(repo, "dvc", "exp", "run", "--run-all", "-j", "1")
    run(repo, "medadapt", "scaling")
    points = json.loads((repo / "reports/scaling.json").read_text())["points"]
    medqa = {(p["budget"], p["method"], p.get("asked")) for p in points if p["dataset"] == "medqa"}
    assert {("icl.k", "icl", 0), ("icl.k", "icl", 1), ("icl.k", "icl", 3), ("train_size", "sft", 4),
            ("base", "base", None)} <= medqa
    assert (repo / "reports/scaling.png").stat().st_size > 5000
    output = run(repo, "medadapt", "costs")
    assert "| sft | sft_pubmedqa, sft_medmcqa, sft_medqa |" in output and "| icl | none |" in output
    assert (repo / "reports/cost.png").stat().st_size > 5000
