"""Stage `dpo`: align the SFT model to the preferred answers with Direct Preference Optimization.

    dvc repro dpo               # or: medadapt dpo

Reads `dpo.*`, `lora.*`, `model.*`, `seed`, the preference pairs, and with `dpo.init: sft` the
final SFT adapter `models/sft_medqa/`. Writes `models/dpo/` (adapter safetensors, tokenizer,
hyperparameters.json), `metrics/dpo.json` and DVCLive curves in `dvclive/dpo/`.

The reference model is the start model. With `init: sft` the SFT adapter is loaded trainable
and passed to `trl.DPOTrainer` without a `peft_config`: TRL then copies it into a frozen
adapter named `ref` and computes reference log-probs through it, so the KL anchor is the SFT
model, not the bare base. With `init: base` a fresh adapter is trained and the reference is
the base (adapter disabled). 8-bit/4-bit loading works as in SFT.
"""

from __future__ import annotations

from pathlib import Path

from .. import distributed, tracking
from ..artifacts import write_json
from ..data.records import read_jsonl
from ..models import ModelError, base_path, load_adapter, load_base_model, load_tokenizer, lora_config, trainable_parameters
from ..params import dump_params
from ..training import (
    CHECKPOINTS,
    clear_checkpoints,
    fingerprint,
    pair_dataset,
    peak_memory_mb,
    resume_checkpoint,
    save_adapter,
    summary_line,
    timed,
    trainer_args,
)

PAIRS = Path("data/prepared/preferences")
SFT_ADAPTER = Path("models/sft_medqa")
DPO_DIR = Path("models/dpo")
METRICS = Path("metrics/dpo.json")
OUTPUTS = [DPO_DIR, METRICS, tracking.DVCLIVE_ROOT / "dpo"]


def start_model(params, root: Path):
    """The policy to train and, by construction, its reference: the SFT model or the base."""
    model = load_base_model(params.model, root, for_training=True)
    if params.dpo.init == "base":
        return model, lora_config(params.lora)
    if not (root / SFT_ADAPTER / "adapter_config.json").exists():
        raise ModelError(f"dpo.init=sft needs the final SFT adapter {SFT_ADAPTER}: run `dvc repro sft_medqa` "
                         "(or set dpo.init=base)")
    return load_adapter(model, root / SFT_ADAPTER, trainable=True), None


def make_trainer(params, root: Path = Path(".")):
    from trl import DPOConfig, DPOTrainer

    tokenizer = load_tokenizer(base_path(params.model.base, root))
    model, peft_config = start_model(params, root)
    config = DPOConfig(
        **trainer_args("dpo", params.dpo, params, root),
        beta=params.dpo.beta,
        loss_type=[params.dpo.loss_type],
        truncation_mode="keep_start",
        eval_strategy="no",
        dataset_num_proc=None,
    )
    return DPOTrainer(
        model=model,
        args=config,
        train_dataset=pair_dataset(read_jsonl(root / PAIRS / "train.jsonl")),
        eval_dataset=pair_dataset(read_jsonl(root / PAIRS / "eval.jsonl")),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=tracking.callbacks("dpo", params, root),
    )


def trend(history: list[dict], key: str) -> dict:
    """First and last logged value of a training curve (the whole curve is a DVC plot)."""
    values = [row[key] for row in history if key in row]
    return {"first": round(values[0], 4), "last": round(values[-1], 4)} if values else {}


def run(params, root: Path = Path(".")) -> dict:
    trainer = make_trainer(params, root)
    distributed.prepare(trainer)  # several processes: wrap before the first evaluate
    sections = {"train": dump_params(params.dpo), "lora": dump_params(params.lora)}
    inputs = [root / PAIRS / "train.jsonl"] + ([root / SFT_ADAPTER] if params.dpo.init == "sft" else [])
    stamp = fingerprint("dpo", params, sections, inputs)
    checkpoint = resume_checkpoint(root / CHECKPOINTS / "dpo", stamp, trainer.accelerator)
    before = trainer.evaluate(metric_key_prefix="start")
    with timed() as clock:
        result = trainer.train(resume_from_checkpoint=checkpoint)
    after = trainer.evaluate()
    history = trainer.state.log_history
    trainable, total = trainable_parameters(trainer.model)
    metrics = {
        "train_loss": round(result.training_loss, 4),
        "eval_loss_start": round(before["start_loss"], 4),
        "eval_loss": round(after["eval_loss"], 4),
        "eval_reward_accuracy": round(after["eval_rewards/accuracies"], 4),
        "eval_reward_margin": round(after["eval_rewards/margins"], 4),
        "eval_logps_chosen": round(after["eval_logps/chosen"], 4),
        "eval_logps_rejected": round(after["eval_logps/rejected"], 4),
        "train_logps_chosen": trend(history, "logps/chosen"),
        "train_logps_rejected": trend(history, "logps/rejected"),
        "init": params.dpo.init,
        "reference": "sft adapter (frozen copy)" if params.dpo.init == "sft" else "base (adapter disabled)",
        "trainable_params": trainable,
        "trainable_percent": round(100 * trainable / total, 4),
        "steps": trainer.state.global_step,
        "cost": {"train_seconds": clock["seconds"], "peak_memory_mb": peak_memory_mb()},
    }
    if trainer.is_world_process_zero():
        hyperparameters = {"stage": "dpo", "seed": params.seed, "model": dump_params(params.model), **sections,
                           "start_adapter": str(SFT_ADAPTER) if params.dpo.init == "sft" else None}
        save_adapter(trainer.model, trainer.processing_class, root / DPO_DIR, hyperparameters)
        clear_checkpoints(root / CHECKPOINTS / "dpo")
        write_json(root / METRICS, metrics)
        print(summary_line("dpo", metrics))
    tracking.finish_wandb()
    return metrics
