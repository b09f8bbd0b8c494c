"""Shared fixtures: a throw-away project folder on the tiny model, and the real data samples."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Small sizes so that every stage runs in seconds on the tiny model (whose 1024-token BPE
# vocabulary makes a PubMedQA prompt about 500 tokens long).
TINY = {
    "model": {"base": "builtin:tiny-llama", "max_length": 1024},
    "data": {
        "train_size": {"pubmedqa": 16, "medmcqa": 16, "medqa": 16, "radqa": 12},
        "eval_size": {"pubmedqa": 8, "medmcqa": 8, "medqa": 8, "radqa": 8},
        "preferences": {"max_pairs_per_source": 16},
    },
    "sft": {d: {"epochs": 1, "batch_size": 4, "max_length": 1024, "save_steps": 2, "learning_rate": 0.003}
            for d in ("pubmedqa", "medmcqa", "medqa")},
    "rm": {"batch_size": 4, "max_length": 1024},
    "dpo": {"batch_size": 4, "max_length": 1024},
    "evaluate": {"max_new_tokens": 12, "bootstrap_samples": 200, "safety_prompts": 4},
}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@functools.cache
def committed_params() -> str:
    """The repo's params.yaml as committed at HEAD, not as an experiment left the workspace
    (`dvc exp run` writes its values there); outside git (an unpacked sdist), the file."""
    try:
        return subprocess.run(["git", "show", "HEAD:./params.yaml"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return (REPO / "params.yaml").read_text()


def make_project(folder: Path, changes: dict | None = None) -> Path:
    """The repo's sample data and its committed params.yaml with TINY (and `changes`) applied."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("data/sample", "data/safety", "data/judges"):  # data/judges: the rm stage measures the RM on it
        shutil.copytree(REPO / sub, folder / sub)
    tree = merge(merge(yaml.safe_load(committed_params()), TINY), changes or {})
    (folder / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    return folder


def copy_prepared(source: Path, root: Path) -> Path:
    """The prepared data, the base model and params.yaml of `source` (no adapters) in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "models/base"):
        shutil.copytree(source / sub, root / sub)
    shutil.copy(source / "params.yaml", root / "params.yaml")
    return root


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with the repo's sample data and a tiny-model params.yaml, as cwd."""
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_params(folder: Path, **changes) -> None:
    """Apply nested changes to the folder's params.yaml."""
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), changes), sort_keys=False))


# ---- killing a stage at a chosen moment (issue 23) -------------------------------------------------

SIGKILL_SELF = "os.kill(os.getpid(), signal.SIGKILL)"


def run_killed(root: Path, stage: str, argv: list[str], patch: str) -> subprocess.CompletedProcess:
    """`python -m medadapt.stages.<stage> argv` in `root`, with `patch` (Python run first, `os` and
    `signal` imported) typically replacing a library or medadapt function with one that calls
    SIGKILL_SELF at the moment under test. Returns the finished process (killed: returncode -9)."""
    script = (f"import os, signal, sys\n{patch}\nfrom medadapt.stages import {stage}\n"
              f"sys.exit({stage}.main({argv!r}))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          check=False)


def files_under(root: Path, *parts: str) -> dict[str, bytes]:
    """Every file under the given paths of `root` (files or folders), by relative path."""
    found = {}
    for part in parts:
        path = root / part
        for file in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            found[file.relative_to(root).as_posix()] = file.read_bytes()
    return found
