"""Sharing through a DVC remote: run part of the pipeline, `dvc push` to a local-folder remote,
`git clone` the repo elsewhere, `dvc pull`; the clone then has every model and nothing to run.

The uncached outputs (`metrics/`, `reports/cost/`) travel through git; data, models and the training
curves (`dvclive/<stage>/`) through the remote; a training stage leaves no `checkpoints/` behind once it finished.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_pipeline import run

from conftest import REPO, make_project

pytestmark = pytest.mark.slow
SMALL = {"data": {"train_size": {d: 8 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")},
                  "eval_size": {d: 6 for d in ("pubmedqa", "medmcqa", "medqa", "radqa")}}}
STAGE = "sft_pubmedqa"  # with `prepare` before it: data, the base model and one adapter


def git_dvc_repo(folder: Path) -> Path:
    """This repo's dvc.yaml and src with the tiny-model params, as a git + DVC repo."""
    make_project(folder, SMALL)
    shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, folder / name)
    run(folder, "git", "init", "-q", "-b", "main")
    run(folder, "git", "config", "user.email", "ci@example.invalid")
    run(folder, "git", "config", "user.name", "ci")
    run(folder, "dvc", "init", "-q")
    run(folder, "git", "add", "-A")
    run(folder, "git", "commit", "-qm", "project")  # DVCLive needs a commit to start from
    return folder


def test_push_clone_pull_leaves_nothing_to_run(tmp_path):
    origin = git_dvc_repo(tmp_path / "origin")
    run(origin, "dvc", "repro", STAGE)
    run(origin, "dvc", "remote", "add", "-d", "store", str(tmp_path / "remote"))
    run(origin, "git", "add", "-A")
    run(origin, "git", "commit", "-qm", "prepare and the first SFT stage")
    run(origin, "dvc", "push")

    run(tmp_path, "git", "clone", "-q", str(origin), "clone")
    clone = tmp_path / "clone"
    adapter = Path("models", STAGE, "adapter_model.safetensors")
    assert not (clone / adapter).exists()  # models are in the remote, not in git
    run(clone, "dvc", "pull", STAGE, "--with-deps")
    assert (clone / adapter).read_bytes() == (origin / adapter).read_bytes()
    assert (clone / "models/base/model.safetensors").exists()
    assert "up to date" in run(clone, "dvc", "status", STAGE, "--with-deps")
    assert "Running stage" not in run(clone, "dvc", "repro", STAGE)
    assert run(clone, "git", "status", "--porcelain").strip() == ""
