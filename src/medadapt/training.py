"""What the three trainers (SFT, reward model, DPO) share: arguments, resume, saving, costs."""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from . import tracking
from .artifacts import atomic_dir, remove
from .launch import mixed_precision
from .models import on_gpu
from .params import dump_params

CHECKPOINTS = Path("checkpoints")
FINGERPRINT = "fingerprint.json"


def trainer_args(stage: str, train, params, root: Path = Path(".")) -> dict:
    """Keyword arguments common to SFTConfig, RewardConfig and DPOConfig."""
    return {
        "output_dir": str(root / CHECKPOINTS / stage),
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
        "seed": params.seed,
        "data_seed": params.seed,
        "bf16": mixed_precision(params) == "bf16",
        "fp16": mixed_precision(params) == "fp16",
        "use_cpu": not on_gpu(),
        "dataloader_pin_memory": on_gpu(),
        "report_to": tracking.report_to(params),
        "run_name": tracking.run_name(stage, params),
        "disable_tqdm": False,
    }


def checkpointing_key() -> str:
    """transformers 5.24 renamed `gradient_checkpointing`; older 5.x releases know only that."""
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {f.name for f in fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def fingerprint(stage: str, params, sections: dict, inputs: list[Path]) -> str:
    """What a checkpoint was trained from: resuming with anything else would mix two runs."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"stage": stage, "seed": params.seed, "model": dump_params(params.model),
                              "compute": dump_params(params.compute), **sections}, sort_keys=True).encode())
    for path in inputs:
        files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
        for file in files:
            digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def is_main_process() -> bool:
    """Rank 0 of an `accelerate launch`/`torchrun` job (they set RANK), or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def resume_checkpoint(output_dir: Path, stamp: str, accelerator) -> str | None:
    """The last checkpoint of an interrupted run with the same fingerprint, else a clean folder.
    Every rank decides first; then rank 0 alone clears the folder, while the others wait."""
    from transformers.trainer_utils import get_last_checkpoint

    output_dir = Path(output_dir)
    marker = output_dir / FINGERPRINT
    same_run = marker.exists() and json.loads(marker.read_text()).get("fingerprint") == stamp
    last = get_last_checkpoint(str(output_dir)) if same_run else None
    accelerator.wait_for_everyone()
    if last is None and accelerator.is_main_process:
        remove(output_dir)
        output_dir.mkdir(parents=True)
        marker.write_text(json.dumps({"fingerprint": stamp}) + "\n")
    accelerator.wait_for_everyone()
    return last


def clear_checkpoints(output_dir: Path) -> None:
    """After a finished run only the fingerprint stays (the folder is a persistent DVC output)."""
    for child in Path(output_dir).iterdir():
        if child.name != FINGERPRINT:
            remove(child)


def peak_memory_mb() -> float:
    if on_gpu():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


@contextmanager
def timed():
    """Yields a dict whose `seconds` is filled in when the block ends."""
    result = {}
    start = time.perf_counter()
    yield result
    result["seconds"] = round(time.perf_counter() - start, 2)


def perplexity(loss: float) -> float:
    return round(math.exp(min(loss, 50.0)), 4)


def save_adapter(model, tokenizer, out: Path, hyperparameters: dict, state_dict: dict | None = None) -> None:
    """Adapter safetensors, tokenizer and the resolved hyperparameters, written atomically;
    `state_dict`: the weights gathered under FSDP (`distributed.adapter_state_dict`)."""
    with atomic_dir(out) as tmp:
        # Only the trained adapter: DPO adds a frozen `ref` copy that is no output of ours.
        model.save_pretrained(str(tmp), safe_serialization=True, selected_adapters=["default"], state_dict=state_dict)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2, sort_keys=True) + "\n")


def pair_dataset(pairs: list[dict]):
    """Preference pairs as the `datasets.Dataset` that RewardTrainer and DPOTrainer read."""
    from datasets import Dataset

    return Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])


def summary_line(stage: str, metrics: dict) -> str:
    parts = [f"{key}={metrics[key]}" for key in sorted(metrics) if not isinstance(metrics[key], (dict, list))]
    return f"[{stage}] " + " ".join(parts)
