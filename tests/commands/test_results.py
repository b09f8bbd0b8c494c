"""`medadapt results`: the review table of a method sweep, one row per experiment naming its
method, within 120 columns, on a git repo whose experiments are stored as DVC stores them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from medadapt import cli
from medadapt.commands import results
from medadapt.paths import METHODS
from medadapt.scoring.stats import rate

from conftest import committed_params

METRICS = {"medmcqa": ("accuracy",), "medqa": ("accuracy",), "pubmedqa": ("accuracy", "consistency"),
           "radqa": ("f1",), "hallucination": ("per_answer",), "safety": ("unsafe_rate_rule",)}


def git(root: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, **({"GIT_COMMITTER_DATE": date} if date else {})}
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, env=env).stdout


def write_result(root: Path, method: str, right: int, **changes) -> None:
    """params.yaml with `method` (and `changes`, dotted) and a metrics/eval.json of 12 items each."""
    tree = yaml.safe_load(committed_params())
    tree["method"] = method
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node[part]
        node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(tree))
    scores = rate([1] * right + [0] * (12 - right))
    metrics = {"method": method, **{d: {name: scores for name in names} for d, names in METRICS.items()}}
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/eval.json").write_text(json.dumps(metrics))


def experiment(root: Path, name: str, method: str, right: int, **changes) -> None:
    """A commit under refs/exps/ as DVC stores a finished one; the workspace back at HEAD."""
    write_result(root, method, right, **changes)
    git(root, "add", "-A")
    minute = len(git(root, "for-each-ref", "refs/exps").splitlines())
    git(root, "commit", "-qm", name, date=f"2026-01-01T00:{minute:02d}:00")
    sha = git(root, "rev-parse", "HEAD").strip()
    git(root, "update-ref", f"refs/exps/cd/{sha}/{name}", sha)
    git(root, "reset", "-q", "--hard", "HEAD~1")


@pytest.fixture
def sweep(tmp_path, monkeypatch) -> Path:
    """HEAD evaluates base; a queued sweep evaluated the five other methods, and a grid point ICL
    at k=8 under a long name."""
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "ci@example.invalid")
    git(tmp_path, "config", "user.name", "ci")
    write_result(tmp_path, "base", 3)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    for right, method in enumerate(METHODS[1:], start=4):
        experiment(tmp_path, f"exp-{method}", method, right)
    experiment(tmp_path, "a-rather-long-experiment-name-for-icl", "icl", 9, **{"icl.k": 8})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_one_row_per_experiment_names_its_method_within_120_columns(sweep, capsys):
    assert cli.main(["results"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert max(len(line) for line in lines) <= results.WIDTH, max(lines, key=len)
    rows = [line for line in lines[2:] if line.startswith("| ")]
    methods = [row.split("|")[2].strip() for row in rows]
    assert sorted(methods) == sorted([*METHODS, "icl"])  # HEAD's base, the sweep, the grid point
    assert not any(row.startswith("| workspace ") for row in rows)  # the workspace is HEAD: one row
    head = next(row for row in rows if row.startswith("| HEAD "))
    assert head.split("|")[3].strip() == "0.25"  # 3 of 12 MedMCQA items
    assert "| a-rather-long-experim… * | icl " in printed
    assert "* a-rather-long-experim…: its params differ from HEAD's in icl.k" in printed


def test_the_workspace_gets_a_row_when_it_holds_another_result(sweep):
    write_result(sweep, "dpo", 11)
    found = results.rows(sweep)
    assert [(row["name"], row["method"]) for row in found[:2]] == [("workspace", "dpo"), ("HEAD", "base")]
    assert found[0]["values"][0] == pytest.approx(11 / 12, abs=1e-4)


def test_nothing_evaluated_says_what_to_run(tmp_path, monkeypatch, capsys):
    git(tmp_path, "init", "-q")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(committed_params())
    assert cli.main(["results"]) == 0
    assert "run `dvc repro`" in capsys.readouterr().out
