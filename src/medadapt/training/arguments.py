"""The trainer arguments every training stage shares: one mapping of `train.*` onto TRL's configs.

`trainer_args` returns the keyword arguments that `SFTConfig`, `RewardConfig`, `DPOConfig` and
`GRPOConfig` have in common; a stage adds only its own (packing, beta, ...).
"""

from __future__ import annotations

from pathlib import Path

from .. import paths, tracking
from ..runtime import on_gpu
from .launch import mixed_precision


def trainer_args(stage: str, train, params, root: Path = Path(".")) -> dict:
    """Keyword arguments common to SFTConfig, RewardConfig and DPOConfig."""
    tracking.configure_wandb(params)
    return {
        "output_dir": str(root / paths.checkpoint_dir(stage)),
        "num_train_epochs": train.epochs,
        "learning_rate": train.learning_rate,
        "per_device_train_batch_size": train.batch_size,
        "per_device_eval_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "warmup_steps": train.warmup_ratio,  # a float below 1 is a ratio of all steps
        "max_length": min(train.max_length, params.model.max_length),
        checkpointing_key(): train.gradient_checkpointing,
        "save_strategy": "steps",
        "save_steps": train.save_steps,
        "save_total_limit": 2,
        "logging_steps": 1,
        "seed": train.seed,
        "data_seed": train.seed,
        "bf16": mixed_precision(params) == "bf16",
        "fp16": mixed_precision(params) == "fp16",
        "use_cpu": not on_gpu(),
        "dataloader_pin_memory": on_gpu(),
        "report_to": tracking.report_to(params),
        "run_name": tracking.run_name(stage, params),
        "disable_tqdm": False,
        "torch_compile": train.torch_compile,
        "use_liger_kernel": liger_usable(stage, train.use_liger_kernel),
    }


def liger_usable(stage: str, wanted: bool) -> bool:
    """Liger's kernels are Triton (GPU) code from an optional package: asked for where they cannot
    run, the stage trains without them and says so, so one params.yaml serves CPU and GPU."""
    if not wanted:
        return False
    import importlib.util

    if on_gpu() and importlib.util.find_spec("liger_kernel") is not None:
        return True
    print(f"[{stage}] use_liger_kernel: off here (needs a GPU and `pip install liger-kernel`)")
    return False


def checkpointing_key() -> str:
    """transformers 5.24 renamed `gradient_checkpointing`; older 5.x releases know only that."""
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {f.name for f in fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
