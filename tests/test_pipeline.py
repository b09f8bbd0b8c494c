"""The whole DVC pipeline on the tiny model, driven through `dvc` itself, as a user drives it.

One module-scoped project (a git + DVC repo in a tmp folder with this repo's dvc.yaml, src,
sample data and a tiny-model params.yaml): `dvc repro` runs every stage, a second `dvc repro`
has nothing to do, `dvc exp run -S method=icl` re-runs `evaluate` alone (read from DVC's own
output), `dvc metrics diff` shows the change, `medadapt compare` tables both methods, a
typo'd experiment (`-S method=dp`) fails in the `check` stage with every result left in place,
and a shrunk scaling grid runs queued, charted by `medadapt scaling` and `medadapt costs`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_project

pytestmark = pytest.mark.slow
STAGES = ["prepare", "sft_pubmedqa", "sft_medmcqa", "sft_medqa", "icl", "rm", "pairs", "dpo", "grpo", "evaluate"]
NOISE = ["gemm_4bit_forward", "is_gradient_checkpointing", "LOAD REPORT", "Consider training on your downstream task"]


def run(folder: Path, *command: str, check: bool = True, env: dict | None = None) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", **(env or {})}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    failed = done.returncode != 0
    assert failed != check, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
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
    for stage in ["check", *STAGES]:
        assert f"Running stage '{stage}'" in output
    for noise in NOISE:  # silenced by medadapt.quiet as harmless
        assert noise not in output
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert metrics["method"] == "base" and metrics["medqa"]["accuracy"]["n"] == 6
    again = run(repo, "dvc", "repro")
    assert "Running stage" not in again
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "base results")
    assert run(repo, "git", "status", "--porcelain") == ""  # nothing left over: the tree is clean


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file a run writes that must not vary: data, models, metrics, curves, reports, the
    checkpoint fingerprints; not the run's cost, nor DVC's and git's own folders."""
    skip = (".git/", ".dvc/", "reports/cost/", "dvc.lock", ".medadapt.lock", "wandb/")
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and not path.relative_to(root).as_posix().startswith(skip)
            and "__pycache__" not in path.parts}


# A sitecustomize module that makes transformers and peft stamp the next patch version, as a newer
# install of either would: every module of theirs that copies `__version__` gets it.
ANOTHER_RELEASE = """
import importlib.abc, importlib.machinery, importlib.metadata, sys

def next_patch(package):
    real = importlib.metadata.version(package)
    major, minor, patch = real.split(".")[:3]
    return real, f"{major}.{minor}.{int(patch) + 1}"

RELEASES = {package: next_patch(package) for package in ("transformers", "peft")}

class NextPatch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        package = name.split(".")[0]
        spec = importlib.machinery.PathFinder.find_spec(name, path) if package in RELEASES else None
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load, (real, other) = spec.loader.exec_module, RELEASES[package]
        def exec_module(module):
            load(module)
            if getattr(module, "__version__", None) == real:
                module.__version__ = other
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, NextPatch())
"""


def without_cost(lock: str) -> dict:
    """dvc.lock less the hashes of the run's cost files (seconds and memory vary by design)."""
    stages = yaml.safe_load(lock)["stages"]
    for stage in stages.values():
        stage["outs"] = [out for out in stage.get("outs", []) if not out["path"].startswith("reports/cost/")]
    return stages


def test_the_pipeline_in_a_fresh_clone_writes_byte_identical_files(repo, tmp_path):
    """Determinism: a fresh clone (no DVC cache, so every stage runs) reproduces every file of
    the first run byte for byte, adapters included, and the committed dvc.lock but the cost
    files' hashes, under another patch release of transformers and peft (issue 24.3: their
    version stamps re-hashed models/base and every stage after it)."""
    clone, hooks = tmp_path / "clone", tmp_path / "another-release"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(ANOTHER_RELEASE)
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    python_path = os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])])
    probe = "import transformers.configuration_utils as c, peft.config as p; print(c.__version__, p.__version__)"
    assert run(clone, sys.executable, "-c", probe, env={"PYTHONPATH": python_path}).split() != \
        run(clone, sys.executable, "-c", probe).split()  # the hook works
    run(clone, "dvc", "repro", env={"PYTHONPATH": python_path})
    first, second = tree_files(repo), tree_files(clone)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    assert without_cost((clone / "dvc.lock").read_text()) == without_cost(run(repo, "git", "show", "HEAD:dvc.lock"))


def test_a_forced_rerun_changes_only_the_cost_of_the_run(repo):
    """Outputs are byte-identical when their inputs are: re-running a training stage writes the
    same adapter, metrics and curves, so DVC re-runs nothing downstream, and git sees only the
    run's cost (seconds, memory) and its hash in dvc.lock."""
    output = run(repo, "dvc", "repro", "-f", "-s", "sft_pubmedqa")
    assert "Running stage 'sft_pubmedqa'" in output
    changed = {line[3:] for line in run(repo, "git", "status", "--porcelain").splitlines()}
    assert changed <= {"reports/cost/sft_pubmedqa.json", "dvc.lock"}, changed
    assert "Running stage" not in run(repo, "dvc", "repro")  # downstream is up to date
    run(repo, "git", "checkout", "--", "reports/cost/sft_pubmedqa.json", "dvc.lock")


def test_switching_method_reruns_only_evaluate(repo):
    output = run(repo, "dvc", "exp", "run", "-S", "method=icl")
    ran = [stage for stage in ["check", *STAGES] if f"Running stage '{stage}'" in output]
    assert ran == ["check", "evaluate"], output  # check's output is unchanged: nothing else re-runs
    assert json.loads((repo / "metrics/eval.json").read_text())["method"] == "icl"
    diff = run(repo, "dvc", "metrics", "diff")
    assert "metrics/eval.json" in diff


def test_compare_tables_both_methods(repo):
    output = run(repo, "medadapt", "compare")
    assert "| base |" in output and "| icl |" in output
    assert not (repo / "reports/compare.json").exists()  # printing writes nothing
    run(repo, "medadapt", "compare", "reports/compare")
    rows = json.loads((repo / "reports/compare.json").read_text())["groups"][0]["rows"]
    icl = next(r for r in rows if r["method"] == "icl")
    assert icl["metrics"]["MedQA acc"]["vs_base"]["n"] == 6
    assert (repo / "reports/compare.png").stat().st_size > 1000


def test_typo_in_an_experiment_stops_before_any_output_is_removed(repo):
    results = [repo / "metrics/eval.json", repo / "reports/eval_items.json", repo / "reports/eval_samples.jsonl",
               repo / "reports/pubmedqa_confusion.png", *sorted((repo / "reports/plots").iterdir())]
    before = {path: path.read_bytes() for path in results}
    output = run(repo, "dvc", "exp", "run", "-S", "method=dp", check=False)
    assert "medadapt check: error" in output and "method:" in output and "'dp'" in output
    assert "Running stage 'evaluate'" not in output
    assert {path: path.read_bytes() for path in results if path.exists()} == before
    assert "git checkout params.yaml" in output  # the way back
    # The recovery the README gives: the last experiment's values back, nothing left to run.
    last = run(repo, "dvc", "exp", "list", "--name-only").split()[0]
    run(repo, "dvc", "exp", "apply", last)
    assert "Running stage" not in run(repo, "dvc", "repro")
    assert {path: path.read_bytes() for path in results} == before
    assert "| icl |" in run(repo, "medadapt", "compare")


def test_a_missing_data_folder_stops_in_check_with_every_output_in_place(repo):
    """Issue 24.2: `check` looks for what the params name, so DVC never removes prepare's outputs
    for a source that is not there."""
    outputs = [repo / "metrics/prepare.json", repo / "data/prepared/medqa/eval.jsonl", repo / "models/base/config.json"]
    before = {path: path.read_bytes() for path in outputs}
    output = run(repo, "dvc", "exp", "run", "-S", "data.source=../shared/dta", check=False)
    assert "medadapt check: error" in output and "data.source: no folder ../shared/dta" in output
    assert "Running stage 'prepare'" not in output
    assert {path: path.read_bytes() for path in outputs} == before
    run(repo, "git", "checkout", "params.yaml")
    assert "data.source" not in run(repo, "git", "status", "--porcelain")


def test_scaling_grid_runs_queued_then_charts(repo):
    """The README's grid, shrunk to what re-runs only `icl` and `evaluate` (a train-size point
    re-runs the whole pipeline: too slow for CI): ICL at k 0 and 1, and the SFT method."""
    run(repo, "dvc", "exp", "run", "--queue", "-S", "method=icl", "-S", "icl.k=0,1")
    run(repo, "dvc", "exp", "run", "--queue", "-S", "method=sft")
    run(repo, "dvc", "exp", "run", "--run-all", "-j", "2")  # two experiments at once, in their own folders
    run(repo, "medadapt", "scaling")
    points = json.loads((repo / "reports/scaling.json").read_text())["points"]
    medqa = {(p["budget"], p["method"], p.get("asked")) for p in points if p["dataset"] == "medqa"}
    assert {("icl.k", "icl", 0), ("icl.k", "icl", 1), ("icl.k", "icl", 3), ("base", "base", None)} <= medqa
    assert (repo / "reports/scaling.png").stat().st_size > 5000
    output = run(repo, "medadapt", "costs", "reports/cost")  # with a prefix it also writes them
    assert "| sft | sft_pubmedqa, sft_medmcqa, sft_medqa |" in output and "| icl | none |" in output
    assert (repo / "reports/cost.png").stat().st_size > 5000


def test_a_training_replicate_trains_once_for_every_method(repo):
    """Issue 20's seed grid: an experiment whose training inputs an earlier one already ran restores
    the training stages from DVC's run-cache (no training stage declares a persistent output), so a
    second method under the same train.seed runs `evaluate` alone, and compare shows the seeds of
    one method as one row."""
    first = run(repo, "dvc", "exp", "run", "--temp", "-S", "train.seed=7", "-S", "method=base")
    assert "Running stage 'sft_pubmedqa'" in first and "Running stage 'rm'" not in first  # the RM judges with data.seed
    second = run(repo, "dvc", "exp", "run", "--temp", "-S", "train.seed=7", "-S", "method=sft")
    for stage in ("sft_pubmedqa", "sft_medmcqa", "sft_medqa", "dpo", "grpo"):
        assert f"Running stage '{stage}'" not in second, stage
        assert f"Stage '{stage}' is cached - skipping run" in second, stage
    assert "Running stage 'evaluate'" in second
    seeds = run(repo, "python", "-c", "from medadapt.commands._experiments import collect; "
                "print(sorted((r['method'], r['train_seed']) for r in collect()))")
    assert "('sft', 7)" in seeds  # evaluate records the training seed of the method's adapter
