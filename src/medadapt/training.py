"""The one training run that every training stage (SFT, reward model, DPO) goes through.

    metrics = run(Recipe(stage="rm", trainer=..., train=params.rm, inputs=[...], ...), params, root)

A stage builds its TRL trainer and says what differs in a `Recipe`: its inputs, the adapter
it starts from, its metrics before and after training, and any extra file it saves. `run`
does the rest, the same way for all:

1. setup: fingerprint the run (params, inputs) and resume from `checkpoints/<stage>/` when an
   interrupted run had the same fingerprint, else start clean;
2. train: the stage's `before` metrics, the timed `trainer.train`, the stage's `after` metrics;
3. cleanup on rank 0 only: the adapter, tokenizer and `hyperparameters.json` written atomically
   into `models/<stage>/`, checkpoints cleared (the fingerprint stays), `metrics/<stage>.json`,
   the summary line; then W&B is closed on every rank.

Raises whatever the trainer raises; the adapter folder is written only after training finished.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import distributed, paths, tracking
from .artifacts import atomic_dir, remove, write_json
from .launch import mixed_precision
from .models import adapter_lora, check_adapter, trainable_parameters
from .params import dump_params
from .runtime import on_gpu, peak_memory_mb, timed

FINGERPRINT = "fingerprint.json"


@dataclass
class Recipe:
    """What one training stage adds to the shared run."""

    stage: str  # the dvc.yaml stage: sft_<dataset>, rm, dpo
    trainer: object  # a TRL trainer, built by the stage
    train: object  # the stage's params section (epochs, batch size, ...)
    inputs: list[Path]  # files the resume fingerprint hashes besides the params
    start_adapter: Path | None = None  # the adapter training continues, if any
    before: Callable[[object], dict] = lambda trainer: {}  # metrics before the first step
    after: Callable[[object], dict] = lambda trainer: {}  # metrics after training
    save_extra: Callable[[object, Path], None] | None = None  # writes more files into the adapter folder
    hyperparameters: dict = field(default_factory=dict)  # stage-specific, saved beside the adapter


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
        "seed": params.seed,
        "data_seed": params.seed,
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


def fingerprint(stage: str, params, sections: dict, inputs: list[Path]) -> str:
    """What a checkpoint was trained from: resuming with anything else would mix two runs."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"stage": stage, "seed": params.seed, "model": dump_params(params.model),
                              "compute": dump_params(params.compute), **sections}, sort_keys=True).encode())
    for path in (Path(p) for p in inputs if Path(p).exists()):  # no models/base/ for a base outside a project
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


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


def perplexity(loss: float) -> float:
    return round(math.exp(min(loss, 50.0)), 4)


def save_adapter(model, tokenizer, out: Path, hyperparameters: dict, save_extra=None,
                 state_dict: dict | None = None) -> None:
    """Adapter safetensors, tokenizer and the resolved hyperparameters, written atomically;
    `state_dict`: the weights gathered under FSDP (`distributed.adapter_state_dict`)."""
    with atomic_dir(out) as tmp:
        # Only the trained adapter: DPO adds a frozen `ref` copy that is no output of ours.
        model.save_pretrained(str(tmp), safe_serialization=True, selected_adapters=["default"], state_dict=state_dict)
        sort_target_modules(tmp / "adapter_config.json")
        tokenizer.save_pretrained(str(tmp))
        (tmp / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2, sort_keys=True) + "\n")
        if save_extra is not None:
            save_extra(model, tmp)


def sort_target_modules(config: Path) -> None:
    """PEFT writes `target_modules` from a set, in a different order each run: sort it, so that
    identical weights give a byte-identical adapter folder (and DVC re-runs nothing downstream)."""
    settings = json.loads(config.read_text())
    if isinstance(settings.get("target_modules"), list):
        settings["target_modules"] = sorted(settings["target_modules"])
        config.write_text(json.dumps(settings, indent=2, sort_keys=True))


def pair_dataset(pairs: list[dict]):
    """Preference pairs as the `datasets.Dataset` that RewardTrainer and DPOTrainer read."""
    from datasets import Dataset

    return Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])


def logged_tokens(history: list[dict]) -> int:
    """Tokens the trainer processed (non-padding, prompt included; TRL's `num_tokens`, counted
    the same way by the SFT, reward and DPO trainers), as last logged."""
    return int(next((row["num_tokens"] for row in reversed(history) if "num_tokens" in row), 0))


def summary_line(stage: str, metrics: dict) -> str:
    parts = [f"{key}={metrics[key]}" for key in sorted(metrics) if not isinstance(metrics[key], (dict, list))]
    return f"[{stage}] " + " ".join(parts)


# ---- the run -------------------------------------------------------------------------------


def lora_section(recipe: Recipe, params, root: Path) -> dict:
    """The LoRA settings the run really trains with: a carried-in adapter keeps its own, whatever
    `lora.*` says (the curriculum carries one adapter); a disagreement is said on stderr."""
    wanted = dump_params(params.lora)
    if recipe.start_adapter is None:
        return wanted
    actual = adapter_lora(check_adapter(root / recipe.start_adapter))
    differ = {k: (wanted[k], actual[k]) for k in wanted if wanted[k] != actual[k]
              and not (k == "target_modules" and wanted[k] == "all-linear")}  # PEFT expands it to a list
    if differ and recipe.trainer.is_world_process_zero():
        said = ", ".join(f"lora.{k}={w} (adapter has {a})" for k, (w, a) in differ.items())
        print(f"[{recipe.stage}] note: continues {recipe.start_adapter}, whose LoRA settings apply; "
              f"not applied: {said}", file=sys.stderr)
    return actual


def sections(recipe: Recipe, params, root: Path) -> dict:
    """The settings that define the run, hashed for resume and saved beside the adapter."""
    return {"train": dump_params(recipe.train), "lora": lora_section(recipe, params, root)}


def setup(recipe: Recipe, params, root: Path) -> tuple[str | None, tuple[int, int]]:
    """Wrap the model for several processes (before anything evaluates it), count its trainable
    parameters (before FSDP shards them), fingerprint the run (params, inputs and the base's
    files); the checkpoint to resume from (None for a fresh start) and the counts."""
    distributed.prepare(recipe.trainer)
    counts = trainable_parameters(recipe.trainer.model)
    stamp = fingerprint(recipe.stage, params, sections(recipe, params, root), [root / paths.BASE_DIR, *recipe.inputs])
    return resume_checkpoint(root / paths.checkpoint_dir(recipe.stage), stamp, recipe.trainer.accelerator), counts


def whole_run_loss(history: list[dict], steps: int) -> float:
    """The mean train loss over every step, also after a resume (the trainer's own figure then
    covers only the steps of the resumed call). Each logged `loss` is the mean since the last log."""
    total, last = 0.0, 0
    for row in history:
        if "loss" in row and "step" in row and row["step"] > last:
            total += row["loss"] * (row["step"] - last)
            last = row["step"]
    return total / max(steps, 1)


def tokens_at(checkpoint: str | None) -> int:
    """Input tokens already seen at a resumed checkpoint (0 for a fresh start)."""
    if checkpoint is None:
        return 0
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0))


def train(recipe: Recipe, checkpoint: str | None, counts: tuple[int, int]) -> dict:
    """The stage's `before` metrics, the timed training, its `after` metrics and the shared ones.
    Every rank runs all of it: under FSDP a forward pass needs every rank."""
    trainer = recipe.trainer
    before = recipe.before(trainer)
    tokens_before = tokens_at(checkpoint)
    with timed() as clock:
        trainer.train(resume_from_checkpoint=checkpoint)
    after = recipe.after(trainer)
    trainable, total = counts
    steps = trainer.state.global_step
    metrics = {**before, **after}
    metrics.update(train_loss=round(whole_run_loss(trainer.state.log_history, steps), 4), trainable_params=trainable,
                   trainable_percent=round(100 * trainable / total, 4), steps=steps)
    metrics["cost"] = {  # the only figures that vary between identical runs
        "train_seconds": clock["seconds"],
        "train_tokens": logged_tokens(trainer.state.log_history),
        "gpus": trainer.args.n_gpu * trainer.args.world_size,  # DDP: 1 per process; DataParallel: n in one
        "peak_memory_mb": peak_memory_mb(),
        "resumed_from_step": int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0,
    }
    if "tokens_seen" in metrics:  # tokens of this call only, over this call's seconds
        tokens = metrics["tokens_seen"] - tokens_before
        metrics["cost"]["train_tokens_per_second"] = round(tokens / max(clock["seconds"], 1e-9), 1)
    return metrics


def cleanup(recipe: Recipe, params, metrics: dict, root: Path) -> None:
    """Rank 0 writes the adapter, clears checkpoints and writes metrics; every rank closes W&B."""
    trainer = recipe.trainer
    state_dict = distributed.adapter_state_dict(trainer)  # FSDP: a gather every rank joins
    if trainer.is_world_process_zero():
        hyperparameters = {"stage": recipe.stage, "seed": params.seed, "model": dump_params(params.model),
                           "start_adapter": recipe.start_adapter.as_posix() if recipe.start_adapter else None,
                           **sections(recipe, params, root), **recipe.hyperparameters}
        save_adapter(trainer.accelerator.unwrap_model(trainer.model), trainer.processing_class,
                     root / paths.adapter_dir(recipe.stage), hyperparameters, recipe.save_extra, state_dict)
        if params.tracking.dvclive:
            tracking.write_curves(recipe.stage, trainer.state.log_history, root)
        clear_checkpoints(root / paths.checkpoint_dir(recipe.stage))
        write_json(root / paths.cost_file(recipe.stage), metrics["cost"])
        write_json(root / paths.metrics_file(recipe.stage), {k: v for k, v in metrics.items() if k != "cost"})
        tracking.log_stage_artifacts(recipe.stage, root / paths.adapter_dir(recipe.stage),
                                     root / paths.metrics_file(recipe.stage), params)
        print(summary_line(recipe.stage, metrics))
    tracking.finish_wandb()


@contextmanager
def scored_positions_only():
    """Make TRL's fused LM head project only the positions that have a label on every device.

    TRL 1.16 (`add_fused_lm_head`) does so where Triton runs (CUDA), but elsewhere scores every
    position, prompt and padding included, to keep tile shapes fixed for compilers we do not use.
    On a CPU that made an SFT step take 1.5 times as long (measured: 9.6 vs 6.4 CPU-s on one batch
    of two PubMedQA rows, SmolLM2-135M) for the same loss. A TRL without the switch is left as is.
    """
    from trl.trainer import utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


def run(recipe: Recipe, params, root: Path = Path(".")) -> dict:
    checkpoint, counts = setup(recipe, params, root)
    with scored_positions_only():
        metrics = train(recipe, checkpoint, counts)
    cleanup(recipe, params, metrics, root)
    return metrics
