"""commands/codedeps.py: the import graph behind dvc.yaml's code deps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medadapt.commands.codedeps import DATA_MARK, rewrite_deps
from medadapt.sources import closure, code_digest, imported_modules, stage_code


def test_import_graph_follows_function_level_and_relative_imports():
    assert "medadapt.artifacts" in imported_modules("medadapt.entry")  # imported inside a function
    assert "medadapt.paths" in imported_modules("medadapt.stages.sft")  # `from .. import paths`
    assert "medadapt.scoring.safety" in closure("medadapt.stages.evaluate")  # through scoring/judges.py


def test_package_data_a_module_reads_is_a_dependency():
    assert "src/medadapt/scoring/drug_names.txt" in stage_code("evaluate")
    assert "src/medadapt/data/pubmedqa_test_pmids.txt" in stage_code("prepare")


def test_rewrite_replaces_only_the_src_lines_of_each_stage():
    text = ("stages:\n  icl:\n    cmd: python -m medadapt.stages.icl\n    deps:\n      - .params-checked\n"
            "      - src/medadapt/old.py\n      - data/prepared\n    params:\n      - icl.k\n")
    rewritten = rewrite_deps(text)
    assert "src/medadapt/old.py" not in rewritten
    assert "      - src/medadapt/stages/icl.py" in rewritten
    assert rewritten.index(".params-checked") < rewritten.index("src/medadapt/stages/icl.py") < rewritten.index(
        "data/prepared")
    assert rewritten.endswith("params:\n      - icl.k\n")


def test_code_digest_follows_the_stage_code_and_nothing_else(tmp_path, monkeypatch):
    from medadapt import sources

    before = code_digest("evaluate")
    assert code_digest("check") != before
    copy = tmp_path / "src"
    shutil.copytree(sources.SRC / "medadapt", copy / "medadapt")
    monkeypatch.setattr(sources, "SRC", copy)
    assert code_digest("evaluate") == before  # the same files in another checkout
    (copy / "medadapt/training/run.py").write_text("# training code: not evaluate's\n")
    assert code_digest("evaluate") == before
    (copy / "medadapt/scoring/drug_names.txt").write_text("aspirin\n")  # package data it reads
    assert code_digest("evaluate") != before


PREPARE = ("stages:\n  prepare:\n    cmd: python -m medadapt.stages.prepare\n    deps:\n      - .params-checked\n"
           "      - src/medadapt/old.py\n      - data/sample" + DATA_MARK + "\n      - data/safety/train.jsonl\n"
           "    params:\n      - data\n")


def test_rewrite_sets_prepare_s_data_inputs_from_the_params():
    rewritten = rewrite_deps(PREPARE, ["../shared/data", "/mnt/pairs.jsonl"])
    lines = rewritten.splitlines()
    assert "      - data/sample" + DATA_MARK not in lines
    code = lines.index("      - src/medadapt/stages/prepare.py")
    assert lines[code + 1:code + 3] == ["      - ../shared/data" + DATA_MARK, "      - /mnt/pairs.jsonl" + DATA_MARK]
    assert "      - data/safety/train.jsonl" in lines  # an input of the project's own stays
    assert rewrite_deps(rewritten, ["data/sample"]) == rewrite_deps(PREPARE, ["data/sample"])
    assert "data/sample" not in rewrite_deps(PREPARE, [])  # data.source: hub


def test_the_committed_dvc_yaml_marks_the_sample_folder():
    from conftest import REPO

    assert "      - data/sample" + DATA_MARK in (REPO / "dvc.yaml").read_text().splitlines()


def dvc_project(folder, outside) -> None:
    """A git + DVC project of this repo's code and dvc.yaml whose data.source is `outside`."""
    import shutil
    import subprocess

    from conftest import REPO, make_project

    make_project(folder, {"data": {"source": str(outside), "datasets": ["medqa"]}})
    shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, folder / name)
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=folder, check=True, capture_output=True)


@pytest.mark.slow
def test_dvc_sees_an_edit_of_data_outside_the_project(tmp_path):
    """Issue 23: with `data.source` a folder outside the project, editing its MedQA eval
    questions left `dvc status` clean and `dvc repro` skipping prepare."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from conftest import REPO

    outside, project = tmp_path / "shared", tmp_path / "project"
    shutil.copytree(REPO / "data/sample", outside)
    dvc_project(project, outside)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(project / "src"), "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    run("medadapt", "codedeps", "--write")
    run("dvc", "repro", "prepare")
    assert "up to date" in run("dvc", "status", "prepare")
    test_file = outside / "medqa/test.jsonl"
    rows = [json.loads(line) for line in test_file.read_text().splitlines()]
    test_file.write_text("".join(json.dumps({**row, "question": row["question"] + " (edited)"}) + "\n" for row in rows))
    status = run("dvc", "status", "prepare")
    assert "changed deps" in status and str(outside) in status, status
