"""Several processes per training stage: the same stage module re-runs itself under `accelerate launch`.

    compute: {num_processes: 2, strategy: ddp}     # params.yaml; or dvc exp run -S compute.num_processes=8

With `compute.num_processes` above 1, a training stage (`python -m medadapt.stages.sft|rm|dpo|grpo`,
as `dvc.yaml` runs it, or `medadapt sft|rm|dpo|grpo`) starts `python -m accelerate.commands.launch ...
-m medadapt.stages.<stage> <the same arguments>` and returns its exit status; the launched workers (they have LOCAL_RANK set) run the stage itself. This module
only starts Accelerate's launcher: the processes, their rendezvous and the gradient reduction
are torch.distributed's (torchrun). `ddp` is `--multi_gpu`, which on a machine without GPUs runs
the processes on the CPU over gloo (the trainers there set `use_cpu`); `fsdp` is `--use_fsdp`
with the settings FSDP+QLoRA needs (see `fsdp_flags`), on GPUs only.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from ..params import ParamsError
from ..runtime import on_gpu, torch_dtype


def is_worker() -> bool:
    """A process started by a launcher (accelerate launch / torchrun set LOCAL_RANK): never relaunch it."""
    return "LOCAL_RANK" in os.environ


def mixed_precision(params) -> str:
    """`no`, `bf16` or `fp16`: `compute.mixed_precision`, where `auto` follows `model.dtype` on a GPU."""
    chosen = params.compute.mixed_precision
    if chosen != "auto":
        return chosen
    if not on_gpu():
        return "no"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(torch_dtype(params.model.dtype), "no")


def fsdp_flags() -> list[str]:
    """FSDP-1 settings that FSDP+QLoRA needs (PEFT's documented recipe):
    - use_orig_params false: flat parameters save memory; transformers' Trainer then wraps the
      LoRA layers apart from the frozen base (peft's auto-wrap policy), which this requires;
    - transformer-layer wrapping, full sharding;
    - sharded checkpoints (each rank writes its part: fast, and what resume reads back);
    - every rank loads the base itself (transformers 5 does so anyway) and rank 0's weights are
      broadcast at wrapping, so that every rank starts from the same weights."""
    return [
        "--use_fsdp",
        "--fsdp_version", "1",
        "--fsdp_sharding_strategy", "FULL_SHARD",
        "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
        "--fsdp_state_dict_type", "SHARDED_STATE_DICT",
        "--fsdp_use_orig_params", "false",
        "--fsdp_cpu_ram_efficient_loading", "false",
        "--fsdp_sync_module_states", "true",
        "--fsdp_offload_params", "false",
    ]


def launch_flags(params) -> list[str]:
    """`accelerate launch` options for `compute.*`, all explicit so that a user's accelerate config
    file changes nothing that matters; port 0 picks a free port (stages and tests may overlap)."""
    compute = params.compute
    if compute.strategy == "fsdp" and not on_gpu():
        raise ParamsError("compute.strategy=fsdp needs GPUs (Accelerate shards on GPUs only); use ddp on a CPU")
    if on_gpu() and compute.num_processes > torch.cuda.device_count():
        raise ParamsError(f"compute.num_processes={compute.num_processes} but this machine has "
                          f"{torch.cuda.device_count()} GPU(s)")
    flags = [
        "--num_processes", str(compute.num_processes),
        "--num_machines", "1",
        "--main_process_port", "0",
        "--mixed_precision", mixed_precision(params),
        "--dynamo_backend", "no",
    ]
    if "OMP_NUM_THREADS" in os.environ:  # accelerate would otherwise reset it to cores / processes
        flags += ["--num_cpu_threads_per_process", os.environ["OMP_NUM_THREADS"]]
    return flags + (fsdp_flags() if compute.strategy == "fsdp" else ["--multi_gpu"])


def launch_command(params, module: str, argv: list[str]) -> list[str]:
    """The full command line: Accelerate's launcher, run by this interpreter, on `python -m module argv`."""
    return [sys.executable, "-m", "accelerate.commands.launch", *launch_flags(params), "-m", module, *argv]


def relaunch(module: str):
    """The `before` hook of a training stage's `entry.main`: `python -m module argv` under `accelerate
    launch` when `compute.num_processes` > 1 (see `launched`), else None (run here)."""
    return lambda params, argv: launched(params, module, argv)


def launched(params, module: str, argv: list[str]) -> int | None:
    """Run `python -m module argv` under `accelerate launch` when `compute.num_processes` > 1 and
    this process is not already a worker; returns the launcher's exit status, or None to run here."""
    if params.compute.num_processes == 1 or is_worker():
        return None
    cmd = launch_command(params, module, argv)
    print(f"[launch] {params.compute.num_processes} processes ({params.compute.strategy}): {' '.join(cmd)}",
          flush=True)
    return subprocess.run(cmd, check=False).returncode
