"""Stage `rm`: a reward model that scores helpfulness and safety, trained on preference pairs.

    dvc repro rm                # or: medadapt rm

Reads `rm.*`, `lora.*`, `model.*`, `seed` and `data/prepared/preferences/{train,eval}.jsonl`.
Writes `models/rm/` (LoRA adapter and the `score` head, safetensors), `metrics/rm.json` and
DVCLive curves in `dvclive/rm/`.

After training, the RM scores the safe and unsafe answers of `data/safety/train.jsonl`; the
midpoint of their means, saved as `models/rm/calibration.json`, is the threshold below which
`evaluate` calls an answer unsafe by the RM.

Assumptions: the RM shares the base of every other method (a one-label
AutoModelForSequenceClassification whose new `score` head PEFT trains and saves as a module to
save); TRL's RewardTrainer drops pairs longer than `rm.max_length`. Pairwise accuracy counts
an eval pair as right when the chosen answer scores strictly above the rejected one.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from .. import distributed, tracking
from ..artifacts import write_json
from ..data.preferences import SAFETY_TRAIN
from ..data.records import read_jsonl
from ..models import base_path, load_base_model, load_tokenizer, lora_config, trainable_parameters
from ..params import dump_params
from ..reward import CALIBRATION, RM_DIR, safety_threshold, score
from ..scoring.stats import rate
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
METRICS = Path("metrics/rm.json")
OUTPUTS = [RM_DIR, METRICS, tracking.DVCLIVE_ROOT / "rm"]


def make_trainer(params, root: Path = Path(".")):
    from trl import RewardConfig, RewardTrainer

    tokenizer = load_tokenizer(base_path(params.model.base, root))
    model = load_base_model(params.model, root, for_training=True, reward=True)
    config = RewardConfig(**trainer_args("rm", params.rm, params, root), dataset_num_proc=None)
    return RewardTrainer(
        model=model,
        args=config,
        train_dataset=pair_dataset(read_jsonl(root / PAIRS / "train.jsonl")),
        processing_class=tokenizer,
        peft_config=lora_config(params.lora, task_type="SEQ_CLS"),
        callbacks=tracking.callbacks("rm", params, root),
    )


def pairwise_metrics(model, tokenizer, pairs: list[dict], params) -> dict:
    """Accuracy (chosen > rejected) overall and per source, with intervals, and the mean margin."""
    prompts = [p["prompt"] for p in pairs]
    chosen = score(model, tokenizer, prompts, [p["chosen"][-1]["content"] for p in pairs], params.rm.batch_size,
                   params.rm.max_length)
    rejected = score(model, tokenizer, prompts, [p["rejected"][-1]["content"] for p in pairs], params.rm.batch_size,
                     params.rm.max_length)
    margins = np.array(chosen) - np.array(rejected)
    samples, seed = params.evaluate.bootstrap_samples, params.seed
    by_source = defaultdict(list)
    for pair, margin in zip(pairs, margins):
        by_source[pair["source"]].append(float(margin > 0))
    return {
        "pairwise_accuracy": rate(margins > 0, samples, seed),
        "per_source": {source: rate(v, samples, seed) for source, v in sorted(by_source.items())},
        "mean_margin": round(float(margins.mean()), 4),
    }


def run(params, root: Path = Path(".")) -> dict:
    trainer = make_trainer(params, root)
    distributed.prepare(trainer)  # several processes: wrap before the first evaluate
    sections = {"train": dump_params(params.rm), "lora": dump_params(params.lora)}
    stamp = fingerprint("rm", params, sections, [root / PAIRS / "train.jsonl"])
    checkpoint = resume_checkpoint(root / CHECKPOINTS / "rm", stamp, trainer.accelerator)
    with timed() as clock:
        result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.model.eval()
    eval_pairs = read_jsonl(root / PAIRS / "eval.jsonl")
    trainable, total = trainable_parameters(trainer.model)
    calibration = safety_threshold(trainer.model, trainer.processing_class, read_jsonl(root / SAFETY_TRAIN),
                                   params.rm.batch_size, params.rm.max_length)
    metrics = {
        **pairwise_metrics(trainer.model, trainer.processing_class, eval_pairs, params),
        "safety_threshold": calibration["threshold"],
        "train_loss": round(result.training_loss, 4),
        "train_pairs": len(trainer.train_dataset),
        "eval_pairs": len(eval_pairs),
        "trainable_params": trainable,
        "trainable_percent": round(100 * trainable / total, 4),
        "steps": trainer.state.global_step,
        "cost": {"train_seconds": clock["seconds"], "peak_memory_mb": peak_memory_mb()},
    }
    if trainer.is_world_process_zero():
        hyperparameters = {"stage": "rm", "seed": params.seed, "model": dump_params(params.model), **sections}
        save_adapter(trainer.model, trainer.processing_class, root / RM_DIR, hyperparameters)
        write_json(root / RM_DIR / CALIBRATION, calibration)
        clear_checkpoints(root / CHECKPOINTS / "rm")
        write_json(root / METRICS, metrics)
        print(summary_line("rm", metrics))
    tracking.finish_wandb()
    return metrics
