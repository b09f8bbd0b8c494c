"""stages/check.py: params.yaml validated before any other stage, by the params code alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medadapt import cli, paths
from medadapt.sources import stage_code

from conftest import REPO, make_project, write_params


def test_check_prints_ok_and_writes_a_constant_marker(project, capsys):
    assert cli.main(["check"]) == 0
    assert capsys.readouterr().out == "params.yaml: OK\n"
    marker = project / paths.PARAMS_CHECKED
    first = marker.read_bytes()
    write_params(project, method="dpo", data={"seed": 7})
    assert cli.main(["check"]) == 0
    assert marker.read_bytes() == first  # what lets DVC skip every stage that did not change


def test_check_names_the_bad_key_and_exits_2(project, capsys):
    write_params(project, method="dp")
    assert cli.main(["check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medadapt check: error: params.yaml: invalid parameters")
    assert "method:" in err and "'dp'" in err and "Traceback" not in err
    assert "git checkout params.yaml" in err  # the way back from what `dvc exp run -S` wrote there
    assert not (project / paths.PARAMS_CHECKED).exists()


def test_a_bad_set_value_blames_the_argument_and_suggests_no_undo(project, capsys):
    """The file is untouched by `--set`: no `git checkout` to run, and the error says where the
    value came from."""
    assert cli.main(["check", "--set", "method=dp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medadapt check: error: --set: invalid parameters")
    assert "from --set method=dp" in err and "git checkout" not in err and "params.yaml" not in err


def test_every_stage_waits_for_check():
    """dvc.yaml: `check` reads all of params.yaml and every other stage depends on its marker, so
    DVC runs it first and a bad value stops the pipeline before any output is removed
    (tests/test_pipeline.py runs that typo'd experiment)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    check = stages.pop("check")
    assert check["cmd"] == "python -m medadapt.stages.check" and check["params"] == [{"params.yaml": None}]
    assert check["outs"] == [{str(paths.PARAMS_CHECKED): {"cache": False, "persist": True}}]
    for name, stage in stages.items():
        assert str(paths.PARAMS_CHECKED) in stage["deps"], name


@pytest.mark.parametrize("args, status", [([], 0), (["--set", "model.base=org/model"], 2)])
def test_check_does_not_load_torch(project, args, status):
    """`check` runs before the pipeline on every params change: it must stay a fraction of a second,
    a hub id's look-up included (offline here)."""
    code = f"import sys; from medadapt import cli; assert cli.main({['check', *args]}) == {status}; " \
           "print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"})
    assert done.stdout.splitlines()[-1] == "False"


def test_check_depends_on_the_params_code_alone():
    assert stage_code("check") == ["src/medadapt/errors.py", "src/medadapt/gitindex.py", "src/medadapt/inputs.py",
                                   "src/medadapt/params.py", "src/medadapt/paths.py", "src/medadapt/stages/check.py"]


# ---- data outside the project is a tracked input (issue 23) ---------------------------------------


def with_dvc_yaml(project, *data_deps: str) -> None:
    deps = "".join(f"      - {d}\n" for d in (".params-checked", "src/medadapt/stages/prepare.py", *data_deps))
    (project / "dvc.yaml").write_text(f"stages:\n  prepare:\n    cmd: python -m medadapt.stages.prepare\n"
                                      f"    deps:\n{deps}")


def test_a_data_folder_that_prepare_does_not_depend_on_is_refused(project, tmp_path, capsys):
    """`data.source: ../shared/data` while dvc.yaml's prepare depended on data/sample only: edits
    of the outside files left `dvc status` clean and `dvc repro` skipped prepare."""
    outside = tmp_path / "outside"
    shutil.copytree(project / "data/sample", outside)  # real files: check finds them there
    with_dvc_yaml(project, "data/sample")
    write_params(project, data={"source": str(outside)})
    assert cli.main(["check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"medadapt check: error: params.yaml: dvc.yaml's prepare stage does not depend on "
                          f"{outside} (data.source), so DVC would not see its files change: run "
                          "`medadapt codedeps --write`")
    assert not (project / paths.PARAMS_CHECKED).exists()
    with_dvc_yaml(project, "data/sample", str(outside))
    assert cli.main(["check"]) == 0


def test_a_pairs_file_is_a_data_input_unless_its_folder_is(project, capsys):
    (project / "pairs").mkdir()
    shutil.copy(project / "data/safety/train.jsonl", project / "pairs/olaph.jsonl")
    with_dvc_yaml(project, "data/sample")
    overrides = ["--set", "data.preferences.sources=[safety,file]", "--set", "data.preferences.file=pairs/olaph.jsonl"]
    assert cli.main(["check", *overrides]) == 2
    assert "pairs/olaph.jsonl (data.preferences.file)" in capsys.readouterr().err
    with_dvc_yaml(project, "data/sample", "./pairs")
    assert cli.main(["check", *overrides]) == 0


def test_without_dvc_yaml_or_from_the_hub_there_is_nothing_to_track(project, tmp_path, capsys):
    shutil.copytree(project / "data/sample", tmp_path / "elsewhere")
    assert cli.main(["check", "--set", f"data.source={tmp_path / 'elsewhere'}"]) == 0  # not a DVC project
    with_dvc_yaml(project)
    assert cli.main(["check", "--set", "data.source=hub"]) == 2  # offline here: the hub itself is refused,
    err = capsys.readouterr().err  # but never for want of a dvc.yaml dependency
    assert "needs the network" in err and "does not depend" not in err


# ---- the README's undo after a typo'd experiment, literally ------------------------------------


def run(folder, *command: str, check: bool = True) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    assert (done.returncode == 0) == check, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}"
    return done.stdout + done.stderr


@pytest.fixture
def dvc_project(tmp_path) -> Path:
    """A git + DVC project on the tiny model whose params.yaml is written as the repo's is
    (`medadapt params --write`: DVC's layout, comments in a column), committed."""
    folder = make_project(tmp_path / "project")
    shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, folder / name)
    run(folder, "medadapt", "params", "--write")
    for command in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "ci@example.invalid"],
                    ["git", "config", "user.name", "ci"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "project"]):
        run(folder, *command)
    return folder


@pytest.mark.slow
def test_the_readme_undo_after_a_typo_restores_params_yaml(dvc_project):
    """README, "After a typo": `dvc exp run -S method=dp` fails in `check`, then `git checkout
    params.yaml` puts the committed values back. DVC's stash rewrites params.yaml at the same size
    within a second, which git's index used to hide (gitindex.py), in most tries: three typos."""
    committed = (dvc_project / "params.yaml").read_bytes()
    for typo in ("dp", "db", "sfft"):
        output = run(dvc_project, "dvc", "exp", "run", "-S", f"method={typo}", check=False)
        assert "medadapt check: error" in output and f"'{typo}'" in output
        assert f"method: {typo} " in (dvc_project / "params.yaml").read_text()
        assert run(dvc_project, "git", "status", "--porcelain") == " M params.yaml\n"
        run(dvc_project, "git", "checkout", "params.yaml")
        assert (dvc_project / "params.yaml").read_bytes() == committed
