"""dvc.yaml declares exactly what each stage runs and writes (issue: stale results)."""

from __future__ import annotations

import yaml

from conftest import REPO
from medadapt import paths
from medadapt.codedeps import closure, imported_modules, stage_code

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def declared(stage: str, kind: str) -> set[str]:
    entries = STAGES[stage].get(kind, [])
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def test_every_stage_lists_exactly_the_code_it_imports():
    """`python -m medadapt.codedeps` prints the lists; a new import must be declared."""
    for stage in paths.STAGES:
        code = {d for d in declared(stage, "deps") if d.startswith("src/")}
        assert code == set(stage_code(stage)), stage


def test_import_graph_follows_function_level_and_relative_imports():
    assert "medadapt.artifacts" in imported_modules("medadapt.cli")  # imported inside a function
    assert "medadapt.paths" in imported_modules("medadapt.stages.sft")  # `from .. import paths`
    assert "medadapt.scoring.safety" in closure("medadapt.stages.evaluate")  # through judging.py


def test_no_stage_imports_another_stage():
    for stage in ("prepare", "sft", "icl", "rm", "dpo", "evaluate"):
        module = f"medadapt.stages.{stage}"
        others = {m for m in closure(module) if m.startswith("medadapt.stages.") and m != module}
        assert not others, (module, others)


def test_stage_outputs_are_the_outs_dvc_yaml_declares():
    for stage in paths.STAGES:
        outs = declared(stage, "outs") | declared(stage, "metrics")
        expected = {p.as_posix() for p in paths.stage_outputs(stage) + paths.persistent_outputs(stage)}
        assert outs == expected, stage


def test_training_stages_do_not_depend_on_wandb_settings():
    for stage in paths.TRAINING_STAGES:
        params = declared(stage, "params")
        assert "tracking" not in params and "tracking.wandb" not in params, stage
