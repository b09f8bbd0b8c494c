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

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import entry, paths
from ..artifacts import write_json
from ..data.preferences import pair_dataset
from ..data.records import read_jsonl
from ..modeling.adapters import lora_config
from ..modeling.models import base_path, load_base_model, load_tokenizer
from ..modeling.reward import calibration_rows, safety_threshold, score
from ..scoring.stats import rate
from ..training.arguments import trainer_args
from ..training.launch import relaunch
from ..training.run import Recipe
from ..training.run import run as run_training


def make_trainer(params, root: Path = Path(".")):
    from trl import RewardConfig, RewardTrainer

    tokenizer = load_tokenizer(base_path(params.model.base, root))
    model = load_base_model(params.model, root, for_training=True, reward=True)
    config = RewardConfig(**trainer_args("rm", params.training("rm"), params, root), dataset_num_proc=None)
    return RewardTrainer(
        model=model,
        args=config,
        train_dataset=pair_dataset(read_jsonl(root / paths.PAIRS / "train.jsonl")),
        processing_class=tokenizer,
        peft_config=lora_config(params.lora, task_type="SEQ_CLS"),
    )


def pairwise_metrics(model, tokenizer, pairs: list[dict], params) -> dict:
    """Accuracy (chosen > rejected) overall and per source, with intervals, and the mean margin."""
    prompts = [p["prompt"] for p in pairs]
    chosen = score(model, tokenizer, prompts, [p["chosen"][-1]["content"] for p in pairs], params.training("rm").batch_size,
                   params.training("rm").max_length)
    rejected = score(model, tokenizer, prompts, [p["rejected"][-1]["content"] for p in pairs], params.training("rm").batch_size,
                     params.training("rm").max_length)
    margins = np.array(chosen) - np.array(rejected)
    samples, seed = params.evaluate.bootstrap_samples, params.train.seed
    by_source = defaultdict(list)
    for pair, margin in zip(pairs, margins):
        by_source[pair["source"]].append(float(margin > 0))
    return {
        "pairwise_accuracy": rate(margins > 0, samples, seed),
        "per_source": {source: rate(v, samples, seed) for source, v in sorted(by_source.items())},
        "mean_margin": round(float(margins.mean()), 4),
    }


def after_training(trainer, params, root: Path, calibration: dict) -> dict:
    """Pairwise accuracy on held-out pairs, and the safety threshold (kept in `calibration`)."""
    trainer.model.eval()
    eval_pairs = read_jsonl(root / paths.PAIRS / "eval.jsonl")
    calibration.update(safety_threshold(trainer.model, trainer.processing_class, calibration_rows(root),
                                        params.training("rm").batch_size, params.training("rm").max_length))
    return {
        **pairwise_metrics(trainer.model, trainer.processing_class, eval_pairs, params),
        "safety_threshold": calibration["threshold"],
        "train_pairs": len(trainer.train_dataset),
        "eval_pairs": len(eval_pairs),
    }


def run(params, root: Path = Path(".")) -> dict:
    calibration = {}
    recipe = Recipe(
        stage="rm",
        trainer=make_trainer(params, root),
        train=params.training("rm"),
        inputs=[root / paths.PAIRS / "train.jsonl"],
        after=lambda trainer: after_training(trainer, params, root, calibration),
        save_extra=lambda model, folder: write_json(folder / paths.CALIBRATION, calibration),
    )
    return run_training(recipe, params, root)


def main(argv: list[str] | None = None) -> int:
    return entry.main("rm", run, argv, before=relaunch("medadapt.stages.rm"), training=True)


if __name__ == "__main__":
    sys.exit(main())
