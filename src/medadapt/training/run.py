"""The one training run that every training stage (SFT, reward model, DPO) goes through.

    metrics = run(Recipe(stage="rm", trainer=..., train=params.training("rm"), inputs=[...], ...), params, root)

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

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import paths, tracking
from ..artifacts import write_json
from ..modeling.adapters import adapter_lora, check_adapter, save_adapter, trainable_parameters
from ..params import dump_params
from ..runtime import peak_memory_mb, timed
from . import distributed
from .checkpoints import clear_checkpoints, fingerprint, resume_checkpoint, tokens_at, train_tokens_at
from .speed import adapters_in_base_dtype, compile_seconds, no_save_at_end, scored_positions_only, training_levers


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


def perplexity(loss: float) -> float:
    return round(math.exp(min(loss, 50.0)), 4)


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
    files); the checkpoint to resume from (None for a fresh start) and the counts. Adapters leave
    float32 first when `autocast_adapter_dtype` is off (DDP buckets the parameters as they are)."""
    if not recipe.train.autocast_adapter_dtype:
        adapters_in_base_dtype(recipe.trainer.model)
    recipe.trainer.add_callback(no_save_at_end())
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


def closing_row_loss(history: list[dict], loss: float) -> None:
    """The trainer's closing log row holds the mean loss of this call's steps, after a resume of
    the resumed steps only: it gets the whole run's (the same float on an uninterrupted run), so
    that the curves equal an uninterrupted run's."""
    row = next((row for row in reversed(history) if "train_loss" in row), None)
    if row is not None:
        row["train_loss"] = loss


def train(recipe: Recipe, checkpoint: str | None, counts: tuple[int, int]) -> dict:
    """The stage's `before` metrics, the timed training, its `after` metrics and the shared ones.
    Every rank runs all of it: under FSDP a forward pass needs every rank."""
    trainer = recipe.trainer
    before = recipe.before(trainer)
    tokens_before = tokens_at(checkpoint)
    # TRL (1.16) counts `num_tokens` from 0 in every `train` call and does not restore it from a
    # checkpoint: a resumed run logged only its own tokens (6,280 against 39,804 uninterrupted).
    trainer._total_train_tokens = train_tokens_at(checkpoint)
    compiled_before = compile_seconds()
    with timed() as clock, training_levers(trainer, recipe.train):
        trainer.train(resume_from_checkpoint=checkpoint)
    after = recipe.after(trainer)
    trainable, total = counts
    steps = trainer.state.global_step
    loss = whole_run_loss(trainer.state.log_history, steps)
    closing_row_loss(trainer.state.log_history, loss)
    metrics = {**before, **after}
    metrics.update(train_loss=round(loss, 4), trainable_params=trainable,
                   trainable_percent=round(100 * trainable / total, 4), steps=steps)
    metrics["cost"] = {  # the only figures that vary between identical runs
        "train_seconds": clock["seconds"],
        # SFT's non-pad count where it has one: TRL's own counts the padding of compiled static batches
        "train_tokens": metrics.get("tokens_seen", logged_tokens(trainer.state.log_history)),
        "gpus": trainer.args.n_gpu * trainer.args.world_size,  # DDP: 1 per process; DataParallel: n in one
        "peak_memory_mb": peak_memory_mb(),
        "resumed_from_step": int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0,
        "compile_seconds": round(compile_seconds() - compiled_before, 2),  # within train_seconds
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
        hyperparameters = {"stage": recipe.stage, "model": dump_params(params.model),
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


def run(recipe: Recipe, params, root: Path = Path(".")) -> dict:
    checkpoint, counts = setup(recipe, params, root)
    with scored_positions_only():
        metrics = train(recipe, checkpoint, counts)
    cleanup(recipe, params, metrics, root)
    return metrics
