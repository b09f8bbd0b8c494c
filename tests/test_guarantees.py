"""What a reproducible pipeline owes its users: the right base, whole adapters, clear errors.

Each test is a case an adversarial user hit on the tiny model: a stage run against another
base than `models/base` holds, a damaged adapter, a missing or pickled base, stale ICL
demonstrations, LoRA params that a carried-in adapter ignores, adapter files that differed
between identical runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medadapt import cli, paths
from medadapt.modeling.adapters import load_adapter, save_adapter
from medadapt.modeling.models import ModelError, base_path, load_base_model
from medadapt.params import load_params
from medadapt.stages import prepare
from medadapt.training.run import Recipe, lora_section, setup

from conftest import copy_prepared, make_project, write_params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("guarantees"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        prepare.run(load_params())
    return root


@pytest.fixture
def proj(prepared, tmp_path, monkeypatch):
    root = copy_prepared(prepared, tmp_path / "proj")
    monkeypatch.chdir(root)
    return root


def fresh_adapter(folder: Path, r: int = 8) -> Path:
    """A tiny-llama LoRA adapter saved the way the trainers save it."""
    from peft import LoraConfig, get_peft_model

    from medadapt.modeling.models import load_tokenizer

    model = get_peft_model(load_base_model(load_params().model), LoraConfig(r=r, target_modules="all-linear"))
    save_adapter(model, load_tokenizer(str(paths.BASE_DIR)), folder, {})
    return folder


# ---- the base ----------------------------------------------------------------------------------


def test_models_base_says_what_it_holds(proj):
    assert json.loads((proj / paths.BASE_DIR / "base.json").read_text()) == {"base": "builtin:tiny-llama"}


def test_a_stage_refuses_another_base_than_prepared(proj, capsys):
    with pytest.raises(ModelError, match="dvc repro prepare"):
        base_path("builtin:smollm2-135m")
    assert cli.main(["rm", "--set", "model.base=builtin:smollm2-135m"]) == 2
    err = capsys.readouterr().err
    assert "tiny-llama" in err and "smollm2" in err and "Traceback" not in err
    assert not (proj / "models/rm").exists()


def test_a_missing_local_base_is_one_clear_line(proj, capsys):
    write_params(proj, model={"base": "/nonexistent/model"})
    (proj / paths.BASE_DIR / "base.json").write_text(json.dumps({"base": "/nonexistent/model"}))
    assert cli.main(["rm"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/model" in err and "no such folder" in err and "Traceback" not in err


def test_pickled_weights_are_refused_unless_allowed(proj, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "pickled"
    model = AutoModelForCausalLM.from_pretrained(str(paths.BASE_DIR))
    folder.mkdir()
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # pickled weights only
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((paths.BASE_DIR / name).read_bytes())
    write_params(proj, model={"base": str(folder)})
    (proj / paths.BASE_DIR / "base.json").write_text(json.dumps({"base": str(folder)}))
    with pytest.raises(ModelError, match="allow_pickle"):
        load_base_model(load_params().model)
    allowed = load_params(overrides=["model.allow_pickle=true"]).model
    assert load_base_model(allowed).config.vocab_size == model.config.vocab_size


class _Accelerator:
    is_main_process = True
    num_processes = 1

    def wait_for_everyone(self):
        pass


class _Trainer:
    accelerator = _Accelerator()
    is_fsdp_enabled = False
    model = torch.nn.Linear(2, 2)

    def is_world_process_zero(self):
        return True

    def add_callback(self, callback):
        pass


def test_resume_fingerprint_covers_the_base_weights(proj):
    params = load_params()
    recipe = Recipe(stage="rm", trainer=_Trainer(), train=params.training("rm"), inputs=[])
    marker = proj / paths.checkpoint_dir("rm") / "fingerprint.json"
    setup(recipe, params, proj)
    before = marker.read_text()
    weights = proj / paths.BASE_DIR / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    setup(recipe, params, proj)
    assert marker.read_text() != before


# ---- adapters ----------------------------------------------------------------------------------


def test_adapter_config_lists_target_modules_sorted_and_is_byte_identical(proj):
    torch.manual_seed(0)
    first = fresh_adapter(proj / "a")
    torch.manual_seed(0)
    second = fresh_adapter(proj / "b")
    config = json.loads((first / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(config["target_modules"]) and len(config["target_modules"]) > 1
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.parametrize("damage", ["config_json", "truncated", "deleted"])
def test_a_damaged_adapter_is_one_clear_line(proj, damage):
    folder = fresh_adapter(proj / "models/sft_pubmedqa")
    weights = folder / "adapter_model.safetensors"
    if damage == "config_json":
        (folder / "adapter_config.json").write_text("{not json")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        weights.unlink()
    with pytest.raises(ModelError, match="dvc repro sft_pubmedqa"):
        load_adapter(load_base_model(load_params().model), folder)


def test_lora_params_a_carried_adapter_ignores_are_said_and_not_recorded(proj, capsys):
    fresh_adapter(proj / "models/sft_pubmedqa", r=8)
    params = load_params(overrides=["lora.r=16"])
    recipe = Recipe(stage="sft_medmcqa", trainer=_Trainer(), train=params.training("sft_medmcqa"), inputs=[],
                    start_adapter=paths.adapter_dir("sft_pubmedqa"))
    lora = lora_section(recipe, params, proj)
    assert lora["r"] == 8  # what the adapter has, not what params say
    assert "lora.r=16 (adapter has 8)" in capsys.readouterr().err


# ---- ICL demonstrations ------------------------------------------------------------------------


def test_stale_demonstrations_are_a_clear_error(proj, capsys):
    from medadapt.stages import icl

    icl.run(load_params())
    demos = proj / paths.ICL_DEMOS
    rows = [json.loads(line) for line in demos.read_text().splitlines()]
    rows[0]["demos"][0] = "medqa-gone"
    demos.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from medadapt.modeling.methods import demonstrations

    with pytest.raises(ModelError, match="dvc repro icl"):
        demonstrations(load_params(overrides=["method=icl"]))
