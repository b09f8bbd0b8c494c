"""stages/check.py: params.yaml validated before any other stage, by the params code alone."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from medadapt import cli, paths
from medadapt.sources import stage_code

from conftest import REPO, write_params


def test_check_prints_ok_and_writes_a_constant_marker(project, capsys):
    assert cli.main(["check"]) == 0
    assert capsys.readouterr().out == "params.yaml: OK\n"
    marker = project / paths.PARAMS_CHECKED
    first = marker.read_bytes()
    write_params(project, method="dpo", data={"seed": 7})
    assert cli.main(["check"]) == 0
    assert marker.read_bytes() == first  # what lets DVC skip every stage that did not change


def test_check_names_the_bad_key_and_exits_2(project, capsys):
    assert cli.main(["check", "--set", "method=dp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medadapt check: error: params.yaml: invalid parameters")
    assert "method:" in err and "'dp'" in err and "Traceback" not in err
    assert not (project / paths.PARAMS_CHECKED).exists()


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


def test_check_does_not_load_torch(project):
    """`check` runs before the pipeline on every params change: it must stay a fraction of a second."""
    code = "import sys; from medadapt import cli; assert cli.main(['check']) == 0; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.stdout.splitlines()[-1] == "False"




def test_check_depends_on_the_params_code_alone():
    assert stage_code("check") == ["src/medadapt/errors.py", "src/medadapt/params.py", "src/medadapt/paths.py",
                                   "src/medadapt/stages/check.py"]
