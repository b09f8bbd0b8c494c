"""Stage `rm`: a reward model that scores helpfulness and safety, trained on preference pairs.

    dvc repro rm                # or: medadapt rm

Reads `rm.*`, `lora.*`, `model.*`, `seed`, the RM's part of the preference pairs
(`data/prepared/preferences/rm/{train,eval}.jsonl`: prompts `dpo` never sees, see
`data/preferences.py`), `data/safety/calibration.jsonl` and `data/judges/safety.jsonl`. Writes
`models/rm/` (LoRA adapter and the `score` head, safetensors, and `calibration.json`),
`metrics/rm.json` and DVCLive curves in `dvclive/rm/`.

After training:
- **The unsafe threshold.** The calibration pairs (`data/safety/calibration.jsonl`: 20 risky
  prompts in no preference pair and not among evaluate's, each with a safe and an unsafe answer)
  are split in halves by prompt, seeded and one per category (`reward.calibration_parts`). The
  threshold is the midpoint of the RM's mean scores of the safe and the unsafe answers of the
  first half; `metrics/rm.json` gives its accuracy (answers on their side) on that half
  (`threshold_accuracy.fit`, optimistic) and on the other half, which it never saw
  (`threshold_accuracy.held_out`). `models/rm/calibration.json` keeps the threshold, which
  `evaluate` reads.
- **The RM as a safety judge**, measured as the written rule is (`medadapt judges`): on the
  labelled answers of `data/judges/safety.jsonl` an answer is unsafe when its reward is below the
  threshold or it is degenerate (`scoring/degenerate.py`); precision, recall, false alarms and
  Youden's J with their intervals, per part, in `metrics/rm.json` → `judge` (every part is
  held out for the RM, which was never revised on them; `test` is the part set beside the rule's).
- Pairwise accuracy on the RM's held-out pairs, overall and per source.

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
from ..data.prompts import question_chat
from ..data.records import read_jsonl
from ..modeling.adapters import lora_config
from ..modeling.models import base_path, load_base_model, load_tokenizer
from ..modeling.reward import calibration_parts, calibration_rows, midpoint_threshold, pair_scores, right_side, score
from ..scoring.degenerate import degenerate
from ..scoring.judge_quality import LABELS, proportion, read_set, set_figures
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
        train_dataset=pair_dataset(read_jsonl(root / paths.preference_file("rm", "train"))),
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


def calibrate(model, tokenizer, fit: list[dict], held: list[dict], params) -> tuple[float, dict]:
    """The unsafe threshold, fit on one half of the calibration pairs, and its accuracy on that
    half and on the other (held out)."""
    train = params.training("rm")
    fit_safe, fit_unsafe = pair_scores(model, tokenizer, fit, train.batch_size, train.max_length)
    held_safe, held_unsafe = pair_scores(model, tokenizer, held, train.batch_size, train.max_length)
    threshold = round(midpoint_threshold(fit_safe, fit_unsafe), 6)
    return threshold, {
        "fit": proportion(right_side(fit_safe, fit_unsafe, threshold), 2 * len(fit)),
        "held_out": proportion(right_side(held_safe, held_unsafe, threshold), 2 * len(held)),
    }


def judge_figures(model, tokenizer, threshold: float, rows: list[dict], params) -> dict:
    """The RM as a safety judge on the labelled answers `rows` of `data/judges/safety.jsonl`:
    unsafe below `threshold` or degenerate, as `evaluate` judges (`scoring.judges.safety_metrics`)."""
    train = params.training("rm")
    rewards = score(model, tokenizer, [question_chat(r["prompt"]) for r in rows], [r["output"] for r in rows],
                    train.batch_size, train.max_length)
    flags = [reward < threshold or degenerate(r["output"], r["prompt"]) is not None for r, reward in zip(rows, rewards)]
    return {"positive_class": LABELS["safety"], "file": str(paths.JUDGES_SAFETY), "threshold": threshold,
            **set_figures(rows, LABELS["safety"], flags)}


def after_training(trainer, params, root: Path, inputs: dict, calibration: dict) -> dict:
    """Pairwise accuracy on held-out pairs, the safety threshold (kept in `calibration`) with its
    accuracy fit and held out, and the RM's figures as a safety judge."""
    model, tokenizer = trainer.model, trainer.processing_class
    model.eval()
    eval_pairs = read_jsonl(root / paths.preference_file("rm", "eval"))
    threshold, accuracy = calibrate(model, tokenizer, *inputs["calibration"], params)
    calibration["threshold"] = threshold
    return {
        **pairwise_metrics(model, tokenizer, eval_pairs, params),
        "safety_threshold": threshold,
        "threshold_accuracy": accuracy,
        "judge": judge_figures(model, tokenizer, threshold, inputs["labelled"], params),
        "train_pairs": len(trainer.train_dataset),
        "eval_pairs": len(eval_pairs),
    }


def run(params, root: Path = Path(".")) -> dict:
    # read before training, so that a bad calibration or labelled file stops the stage at once
    inputs = {"calibration": calibration_parts(calibration_rows(root), params.data.seed),
              "labelled": read_set(root / paths.JUDGES_SAFETY, "safety")}
    calibration = {}
    recipe = Recipe(
        stage="rm",
        trainer=make_trainer(params, root),
        train=params.training("rm"),
        inputs=[root / paths.preference_file("rm", "train")],
        after=lambda trainer: after_training(trainer, params, root, inputs, calibration),
        save_extra=lambda model, folder: write_json(folder / paths.CALIBRATION, calibration),
    )
    return run_training(recipe, params, root)


def main(argv: list[str] | None = None) -> int:
    # seeded with data.seed, as params.training("rm") is: the reward model is a judge (params.JUDGE_STAGES)
    return entry.main("rm", run, argv, before=relaunch("medadapt.stages.rm"))


if __name__ == "__main__":
    sys.exit(main())
