"""Several processes per training stage (`compute.*`, launch.py, distributed.py): when a command
re-runs itself under `accelerate launch` and with which flags, FSDP loading of a 4-bit base, and
the real `sft_pubmedqa` command of dvc.yaml on two CPU processes (gloo) against one process."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from medadapt import cli
from medadapt.commands import bench_multi
from medadapt.modeling.models import build_tiny_llama, load_base_model
from medadapt.params import ComputeParams, ModelParams, ParamsError, load_params, parse_params
from medadapt.training import launch
from medadapt.training.arguments import trainer_args
from medadapt.training.checkpoints import fingerprint

from conftest import REPO, copy_prepared, make_project, write_params

ARGV = ["sft", "pubmedqa", "--set", "compute.num_processes=2"]


@pytest.fixture
def tree() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def params_with(tree, *overrides):
    return parse_params(tree, "params.yaml", list(overrides))


@pytest.fixture
def no_spawn(monkeypatch):
    """Records the command `launched` would run instead of running it; the launcher 'exits' 3."""
    calls = []

    def fake_run(cmd, check=False):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 3)

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return calls


# ---- params ----------------------------------------------------------------------------------


def test_compute_defaults_are_params_yaml(tree):
    assert load_params(REPO / "params.yaml").compute == ComputeParams()
    assert ComputeParams() == ComputeParams(num_processes=1, strategy="ddp", mixed_precision="auto")


def test_fsdp_with_an_8bit_base_is_a_params_error(tree):
    with pytest.raises(ParamsError, match="compute.strategy=fsdp needs model.quantization none or 4bit"):
        params_with(tree, "compute.strategy=fsdp", "model.quantization=8bit")
    params_with(tree, "compute.strategy=fsdp", "model.quantization=4bit")  # the QLoRA case validates


# ---- when a command is re-run under accelerate launch -----------------------------------------


SFT = "medadapt.stages.sft"
SFT_ARGV = ARGV[1:]  # what `python -m medadapt.stages.sft` receives


def test_one_process_runs_in_process(tree, no_spawn):
    assert launch.relaunch(SFT)(params_with(tree), SFT_ARGV[:1]) is None
    assert no_spawn == []


@pytest.mark.parametrize("stage", ["prepare", "icl", "pairs", "evaluate"])
def test_only_training_stages_are_relaunched(stage):
    """Only the training stages hand `entry.main` the relaunch hook (a call-graph fact: the other
    stage modules never reach launch.py, tests/test_dvcyaml.py checks that too)."""
    import importlib

    module = importlib.import_module(f"medadapt.stages.{stage}")
    assert not hasattr(module, "relaunch")
    for training in ("sft", "rm", "dpo", "grpo"):
        assert importlib.import_module(f"medadapt.stages.{training}").relaunch is launch.relaunch


def test_a_launched_worker_runs_the_stage_itself(tree, no_spawn, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch.relaunch(SFT)(params_with(tree, "compute.num_processes=2"), SFT_ARGV) is None
    assert no_spawn == []


def test_ddp_on_a_cpu_is_accelerates_multi_process_launcher_on_the_same_arguments(tree, no_spawn):
    assert launch.relaunch(SFT)(params_with(tree, "compute.num_processes=2"), SFT_ARGV) == 3
    [cmd] = no_spawn
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[-len(SFT_ARGV) - 2:] == ["-m", SFT, *SFT_ARGV]
    flags = cmd[3:-len(SFT_ARGV) - 2]
    assert "--multi_gpu" in flags and "--use_fsdp" not in flags
    pairs = dict(zip(flags, flags[1:]))
    assert pairs["--num_processes"] == "2" and pairs["--main_process_port"] == "0"
    assert pairs["--mixed_precision"] == "no"  # auto, on a CPU


def test_cli_returns_the_launchers_status_and_runs_nothing_itself(project, no_spawn):
    assert cli.main(ARGV) == 3
    assert len(no_spawn) == 1 and no_spawn[0][-len(SFT_ARGV):] == SFT_ARGV
    assert not (project / "models").exists() and not (project / "metrics").exists()


def test_fsdp_needs_gpus(tree, no_spawn):
    with pytest.raises(ParamsError, match="compute.strategy=fsdp needs GPUs"):
        launch.relaunch(SFT)(params_with(tree, "compute.num_processes=2", "compute.strategy=fsdp"), SFT_ARGV)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(launch, "on_gpu", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_fsdp_flags_are_the_qlora_recipe(tree, two_gpus):
    params = params_with(tree, "compute.num_processes=2", "compute.strategy=fsdp", "model.dtype=bfloat16")
    flags = launch.launch_flags(params)
    pairs = dict(zip(flags, flags[1:]))
    assert "--use_fsdp" in flags and "--multi_gpu" not in flags
    assert pairs["--fsdp_use_orig_params"] == "false"  # flat parameters: LoRA wrapped apart
    assert pairs["--fsdp_state_dict_type"] == "SHARDED_STATE_DICT"  # checkpoints and resume
    assert pairs["--fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert pairs["--mixed_precision"] == "bf16"  # auto follows model.dtype on a GPU


def test_more_processes_than_gpus_is_a_params_error(tree, two_gpus):
    with pytest.raises(ParamsError, match="num_processes=4 but this machine has 2 GPU"):
        launch.launch_flags(params_with(tree, "compute.num_processes=4"))


# ---- mixed precision and resume ---------------------------------------------------------------


def test_mixed_precision_reaches_the_trainer_arguments(tree):
    assert launch.mixed_precision(params_with(tree)) == "no"  # auto on a CPU
    params = params_with(tree, "compute.mixed_precision=bf16")
    args = trainer_args("sft_pubmedqa", params.training("sft_pubmedqa"), params)
    assert args["bf16"] is True and args["fp16"] is False


def test_a_checkpoint_of_another_compute_setup_is_not_resumed(tree, tmp_path):
    one, two = params_with(tree), params_with(tree, "compute.num_processes=2")
    assert fingerprint("sft_pubmedqa", one, {}, []) != fingerprint("sft_pubmedqa", two, {}, [])


# ---- FSDP loading of a 4-bit base -------------------------------------------------------------


def test_fsdp_stores_4bit_weights_in_the_compute_dtype_and_keeps_one_dtype(tmp_path, monkeypatch):
    model, tokenizer = build_tiny_llama(["a small text to train a tokenizer on"] * 8, seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    base = ModelParams(base=str(tmp_path), quantization="4bit", dtype="bfloat16")
    monkeypatch.chdir(tmp_path)  # no prepared project here: the folder base loads as it is
    plain = load_base_model(base, for_training=True)
    assert plain.model.layers[0].self_attn.q_proj.weight.dtype == torch.uint8
    assert {p.dtype for p in plain.parameters()} == {torch.uint8, torch.float32}  # PEFT's fp32 upcast
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    sharded = load_base_model(base, for_training=True)
    # FSDP-1 flattens each wrapped unit into one tensor: one floating dtype throughout
    assert {p.dtype for p in sharded.parameters()} == {torch.bfloat16}
    assert torch.isfinite(sharded(input_ids=torch.tensor([[5, 17, 99]])).logits.float()).all()


# ---- two processes on gloo through the dvc.yaml command ---------------------------------------

# Dropout off: each rank draws its own masks, which one process would draw differently.
CHANGES = {"lora": {"dropout": 0.0}}
TOLERANCE = 1e-4  # train loss and per-step losses (float sums in another order)
EVAL_TOLERANCE = 5e-3  # eval losses: the Trainer averages per-batch mean losses, over 2 rows per
#                      process instead of 4 (1.2e-3 apart on the bare base, before any step)


def stage_command(stage: str) -> list[str]:
    """The stage's `cmd` from the repository's dvc.yaml, run with this interpreter."""
    cmd = shlex.split(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["cmd"])
    assert cmd[:2] == ["python", "-m"]
    return [sys.executable, *cmd[1:]]


def run_stage(root: Path, stage: str, **changes) -> tuple[dict, str]:
    write_params(root, **changes)  # what `dvc exp run -S key=value` does before running the command
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    env.pop("LOCAL_RANK", None)
    done = subprocess.run(stage_command(stage), cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((root / f"metrics/{stage}.json").read_text()), done.stdout + done.stderr


def losses(root: Path) -> list[float]:
    rows = (root / "dvclive/sft_pubmedqa/plots/metrics/loss.tsv").read_text().splitlines()[1:]
    return [float(row.split("\t")[1]) for row in rows]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    """sft_pubmedqa at a global batch of 4: one process at batch 4, two processes at batch 2."""
    from medadapt.stages import prepare

    source = make_project(tmp_path_factory.mktemp("launch_src"), CHANGES)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(source)
        prepare.run(load_params())
    runs = {}
    for name, compute, batch in (("one", 1, 4), ("two", 2, 2)):
        root = copy_prepared(source, tmp_path_factory.mktemp(f"launch_{name}"))
        metrics, output = run_stage(root, "sft_pubmedqa", compute={"num_processes": compute},
                                    sft={"pubmedqa": {"batch_size": batch}})
        runs[name] = {"root": root, "metrics": metrics, "output": output}
    return runs


def test_dvc_yaml_reruns_training_stages_on_a_compute_change():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in ("sft_pubmedqa", "sft_medmcqa", "sft_medqa", "rm", "dpo", "grpo"):
        assert "compute" in stages[stage]["params"], stage
        assert {"src/medadapt/training/launch.py", "src/medadapt/training/distributed.py"} <= set(stages[stage]["deps"]), stage


@pytest.mark.slow
def test_two_processes_both_trained_one_adapter(one_and_two):
    one, two = one_and_two["one"], one_and_two["two"]
    assert "[launch] 2 processes (ddp)" in two["output"] and "[launch]" not in one["output"]
    # 16 examples at 2 per process: 4 optimizer steps only if both processes took their half
    # (one process at batch 2 would take 8); the token count is summed over the processes.
    assert two["metrics"]["steps"] == one["metrics"]["steps"] == 4
    assert two["metrics"]["tokens_seen"] == one["metrics"]["tokens_seen"] > 0
    root = two["root"]
    assert (root / "models/sft_pubmedqa/adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (root / "models").iterdir()) == ["base", "sft_pubmedqa"]  # no .partial
    assert not (root / "checkpoints/sft_pubmedqa").exists()  # nothing left to resume


@pytest.mark.slow
def test_two_processes_match_one_process_at_the_same_global_batch(one_and_two):
    one, two = one_and_two["one"]["metrics"], one_and_two["two"]["metrics"]
    # per-step losses equal: the gradients were averaged across processes (without the
    # all-reduce each process would follow its own half of the data from step 2 on)
    assert losses(one_and_two["two"]["root"]) == pytest.approx(losses(one_and_two["one"]["root"]), abs=TOLERANCE)
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=TOLERANCE)
    for key in ("eval_loss_base", "eval_loss_start", "eval_loss"):
        assert two[key] == pytest.approx(one[key], abs=EVAL_TOLERANCE), key
    assert two["eval_loss"] < two["eval_loss_base"]


# ---- the multi-GPU benchmark's model and measurement (one CPU process) -------------------------


@pytest.fixture
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)  # the bench's Accelerator is no stage's


@pytest.mark.parametrize("fsdp", ["false", "true"])
def test_random_4bit_llama_is_quantized_layer_by_layer(monkeypatch, fsdp):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", fsdp)
    shapes = bench_multi.preset_shapes("tiny")
    model = bench_multi.random_llama(shapes, "4bit", torch.bfloat16, torch.device("cpu"), seed=0)
    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == "Linear4bit" and type(model.lm_head).__name__ == "Linear"
    assert q_proj.weight.dtype == (torch.bfloat16 if fsdp == "true" else torch.uint8)  # FSDP: compute dtype
    assert not any(p.is_meta for p in model.parameters())
    logits = model(input_ids=torch.tensor([[5, 17, 99]])).logits
    assert logits.shape == (1, 3, shapes["vocab_size"]) and torch.isfinite(logits.float()).all()


def test_bench_multi_writes_tokens_per_second_and_memory(project, tmp_path, fresh_accelerate_state):
    out = tmp_path / "bench.json"
    assert bench_multi.main(["tiny", "--steps", "1", "--batch", "1", "--length", "16", "--out", str(out),
                             "--set", "model.quantization=4bit"]) == 0
    result = json.loads(out.read_text())
    assert result["num_processes"] == 1 and result["quantization"] == "4bit" and result["device"] == "cpu"
    assert result["tokens_per_second_total"] == result["tokens_per_second_per_gpu"] > 0
    [rank] = result["ranks"]
    assert rank["peak_memory_steps_mb"] > 0 and rank["seconds"] > 0
