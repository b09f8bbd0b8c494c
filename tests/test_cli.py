"""cli.py: one subcommand per stage and helper with its own help, `check`, errors, environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, write_params
from medadapt import cli, paths
from medadapt.params import load_params


def test_each_command_is_listed_in_the_general_help(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("check", "prepare", "sft", "icl", "rm", "dpo", "evaluate", "inspect", "compare", "bench", "plots"):
        assert f"    {command} " in out


def test_sft_help_is_its_own(capsys):
    assert cli.main(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: medadapt sft") and "{pubmedqa,medmcqa,medqa}" in out
    assert "--set KEY=VALUE" in out and "--params" in out
    assert "evaluate" not in out  # not the general help


def test_sft_without_a_dataset_is_a_usage_error(capsys):
    assert cli.main(["sft"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: medadapt sft")
    assert "medadapt sft: error: the following arguments are required: dataset" in err
    assert "None" not in err and "Traceback" not in err


def test_bench_lists_its_targets(capsys):
    from medadapt import bench

    assert cli.BENCH_TARGETS == tuple(bench.TARGETS)
    assert cli.main(["bench", "--help"]) == 0
    assert "{eval,train}" in capsys.readouterr().out
    assert cli.main(["bench", "gpu"]) == 2
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_check_prints_ok_and_writes_a_constant_marker(project, capsys):
    assert cli.main(["check"]) == 0
    assert capsys.readouterr().out == "params.yaml: OK\n"
    marker = project / paths.PARAMS_CHECKED
    first = marker.read_bytes()
    write_params(project, method="dpo", seed=7)
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
    assert check["cmd"] == "medadapt check" and check["params"] == [{"params.yaml": None}]
    assert check["outs"] == [{str(paths.PARAMS_CHECKED): {"cache": False, "persist": True}}]
    for name, stage in stages.items():
        assert str(paths.PARAMS_CHECKED) in stage["deps"], name


def test_check_does_not_load_torch(project):
    """`check` runs before the pipeline on every params change: it must stay a fraction of a second."""
    code = "import sys; from medadapt import cli; assert cli.main(['check']) == 0; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.stdout.splitlines()[-1] == "False"


def test_a_failed_stage_leaves_the_last_outputs_and_checkpoints(project, capsys):
    """An ad-hoc run that fails must not delete the committed results of the last good run."""
    for path in (paths.adapter_dir("sft_pubmedqa"), paths.checkpoint_dir("sft_pubmedqa"), paths.METRICS):
        (project / path).mkdir(parents=True)
        (project / path / "last.txt").write_text("from the last good run")
    assert cli.main(["sft", "pubmedqa"]) == 2  # not prepared
    assert "prepare" in capsys.readouterr().err
    for path in (paths.adapter_dir("sft_pubmedqa"), paths.checkpoint_dir("sft_pubmedqa"), paths.METRICS):
        assert (project / path / "last.txt").exists(), path


@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("overrides, offline", [
    ([], True),  # the built-in base and the sample data: nothing to download
    (["model.base=meta-llama/Llama-3.1-8B-Instruct"], False),
    (["data.source=hub"], False),
])
def test_hub_goes_offline_only_when_nothing_needs_it(project, clean_environment, overrides, offline):
    cli.set_environment_defaults(load_params(overrides=overrides))
    assert (os.environ.get("HF_HUB_OFFLINE") == "1") == offline
    assert int(os.environ["OMP_NUM_THREADS"]) == cli.usable_cpus() >= 1


def test_exported_values_win(project, clean_environment, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    cli.set_environment_defaults(load_params())
    assert os.environ["HF_HUB_OFFLINE"] == "0" and os.environ["OMP_NUM_THREADS"] == "3"


def test_a_local_folder_base_is_offline(project, clean_environment):
    (project / "my-model").mkdir()
    cli.set_environment_defaults(load_params(overrides=["model.base=my-model"]))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
