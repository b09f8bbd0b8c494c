"""dvc.yaml declares exactly what each stage runs and writes (issue: stale results)."""

from __future__ import annotations

import yaml

from medadapt import paths
from medadapt.sources import closure, stage_code

from conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def declared(stage: str, kind: str) -> set[str]:
    entries = STAGES[stage].get(kind, [])
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def test_every_stage_lists_exactly_the_code_it_imports():
    """`medadapt codedeps` prints the lists (`--write` rewrites them); a new import must be declared."""
    for stage in paths.STAGES:
        code = {d for d in declared(stage, "deps") if d.startswith("src/")}
        assert code == set(stage_code(stage)), stage


def test_no_stage_imports_another_stage():
    for stage in paths.STAGE_MODULES:
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


def test_every_stage_runs_its_own_module():
    for stage in paths.STAGES:
        assert STAGES[stage]["cmd"].split()[:3] == ["python", "-m", f"medadapt.stages.{paths.stage_module(stage)}"]


def test_stages_are_listed_in_pipeline_order():
    assert list(STAGES) == list(paths.STAGES)


def test_the_reward_model_reads_every_train_key_but_the_replicate_seed():
    """The RM is a judge: seeded with data.seed, it stays fixed under train.seed replicates, so its
    stage must not depend on train.seed (nor miss any other train key)."""
    from medadapt.params import TrainParams

    keys = declared("rm", "params")
    assert {f"train.{name}" for name in TrainParams.model_fields if name != "seed"} <= keys
    assert "train" not in keys and "train.seed" not in keys and "data.seed" in keys
