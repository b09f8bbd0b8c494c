"""cli.py: one subcommand per stage and helper with its own help, `check`, errors, environment."""

from __future__ import annotations

import os
import subprocess
import sys

from medadapt import cli, paths

from conftest import REPO


def test_each_command_is_listed_in_the_general_help(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("check", "prepare", "sft", "icl", "rm", "dpo", "grpo", "evaluate", "inspect", "compare", "bench",
                    "plots"):
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


def test_cli_imports_no_model_code():
    """`medadapt --help`, `check` and the dispatch never wait for torch: the stages and helper
    commands are imported by name when they run."""
    code = ("import sys; from medadapt import cli; cli.parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft', 'trl') "
            "or m.startswith(('medadapt.modeling', 'medadapt.training', 'medadapt.stages', 'medadapt.commands'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.stdout.strip() == "[]"


def test_bench_lists_its_targets(capsys):
    from medadapt.commands import bench

    assert cli.BENCH_TARGETS == tuple(bench.TARGETS)
    assert cli.main(["bench", "--help"]) == 0
    assert "{eval,train}" in capsys.readouterr().out
    assert cli.main(["bench", "gpu"]) == 2
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_a_failed_stage_leaves_the_last_outputs_and_checkpoints(project, capsys):
    """An ad-hoc run that fails must not delete the committed results of the last good run."""
    for path in (paths.adapter_dir("sft_pubmedqa"), paths.checkpoint_dir("sft_pubmedqa"), paths.METRICS):
        (project / path).mkdir(parents=True)
        (project / path / "last.txt").write_text("from the last good run")
    assert cli.main(["sft", "pubmedqa"]) == 2  # not prepared
    assert "prepare" in capsys.readouterr().err
    for path in (paths.adapter_dir("sft_pubmedqa"), paths.checkpoint_dir("sft_pubmedqa"), paths.METRICS):
        assert (project / path / "last.txt").exists(), path


