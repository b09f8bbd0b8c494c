"""Stage `dpo`: align the SFT model to the preferred answers with Direct Preference Optimization.

    dvc repro dpo               # or: medadapt dpo

Reads `dpo.*`, `lora.*`, `model.*`, `seed`, DPO's part of the preference pairs
(`data/prepared/preferences/dpo/{train,eval}.jsonl`, prompts the reward model never saw; plus the
`pairs` stage's on-policy ones when `on_policy` is in `data.preferences.sources`), and with
`dpo.init: sft` the final SFT adapter `models/sft_medqa/`. Writes `models/dpo/` (adapter
safetensors, tokenizer, hyperparameters.json), `metrics/dpo.json` and DVCLive curves in
`dvclive/dpo/`. The metrics report the reward accuracy and margin on the eval pairs overall and
per pair source (`per_source`: TRL's means over eval batches, with the number of pairs).

The reference model is the start model. With `init: sft` the SFT adapter is loaded trainable
and passed to `trl.DPOTrainer` without a `peft_config`: TRL then copies it into a frozen
adapter named `ref` and computes reference log-probs through it, so the KL anchor is the SFT
model, not the bare base. With `init: base` a fresh adapter is trained and the reference is
the base (adapter disabled). 8-bit/4-bit loading works as in SFT.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from .. import entry, paths
from ..data.preferences import pair_dataset
from ..data.records import read_jsonl
from ..modeling.adapters import load_adapter, lora_config
from ..modeling.models import ModelError, base_path, load_base_model, load_tokenizer
from ..training.arguments import trainer_args
from ..training.launch import relaunch
from ..training.run import Recipe
from ..training.run import run as run_training

SFT_ADAPTER = paths.method_adapter("sft")


def start_model(params, root: Path):
    """The policy to train and, by construction, its reference: the SFT model or the base."""
    model = load_base_model(params.model, root, for_training=True)
    if params.dpo.init == "base":
        return model, lora_config(params.lora)
    if not (root / SFT_ADAPTER / "adapter_config.json").exists():
        raise ModelError(f"dpo.init=sft needs the final SFT adapter {SFT_ADAPTER}: run `dvc repro {SFT_ADAPTER.name}` "
                         "(or set dpo.init=base)")
    return load_adapter(model, root / SFT_ADAPTER, trainable=True), None


def pair_files(split: str, params) -> list[Path]:
    """The pair files of a split: DPO's part of `prepare`'s, and the on-policy ones when that source is on."""
    files = [paths.preference_file("dpo", split)]
    if "on_policy" in params.data.preferences.sources:
        files.append(paths.on_policy_file(split))
    return files


def read_pairs(split: str, params, root: Path) -> list[dict]:
    # An on-policy file may be empty: every prompt's samples ranked the same, or none held out.
    return [pair for file in pair_files(split, params) if (root / file).stat().st_size
            for pair in read_jsonl(root / file)]


def make_trainer(params, root: Path = Path(".")):
    from trl import DPOConfig, DPOTrainer

    tokenizer = load_tokenizer(base_path(params.model.base, root))
    model, peft_config = start_model(params, root)
    config = DPOConfig(
        **trainer_args("dpo", params.training("dpo"), params, root),
        beta=params.dpo.beta,
        loss_type=[params.dpo.loss_type],
        truncation_mode="keep_start",
        eval_strategy="no",
        dataset_num_proc=None,
    )
    return DPOTrainer(
        model=model,
        args=config,
        train_dataset=pair_dataset(read_pairs("train", params, root)),
        eval_dataset=pair_dataset(read_pairs("eval", params, root)),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def trend(history: list[dict], key: str) -> dict:
    """First and last logged value of a training curve (the whole curve is a DVC plot)."""
    values = [row[key] for row in history if key in row]
    return {"first": round(values[0], 4), "last": round(values[-1], 4)} if values else {}


def eval_loss_before(trainer) -> dict:
    return {"eval_loss_start": round(trainer.evaluate(metric_key_prefix="start")["start_loss"], 4)}


def per_source(trainer, eval_pairs: list[dict]) -> dict:
    """Reward accuracy and margin of the trained policy on the eval pairs of each source.
    One `evaluate` per source: TRL names its reward metrics `eval_rewards/...` whatever the
    prefix, so one call over a dict of datasets would keep only the last source's."""
    scores = {}
    for source in sorted({p["source"] for p in eval_pairs}):
        pairs = [p for p in eval_pairs if p["source"] == source]
        result = trainer.evaluate(eval_dataset=pair_dataset(pairs), metric_key_prefix=f"eval_{source}")
        scores[source] = {"reward_accuracy": round(result["eval_rewards/accuracies"], 4),
                          "reward_margin": round(result["eval_rewards/margins"], 4), "n": len(pairs)}
    return scores


def after_training(trainer, params, root: Path) -> dict:
    """Reward accuracy, margin and log-probs on the eval pairs, overall and per source; the
    training log-prob trends; how many pairs of each source it trained on."""
    after = trainer.evaluate()
    history = trainer.state.log_history
    return {
        "per_source": per_source(trainer, read_pairs("eval", params, root)),
        "train_pairs": dict(sorted(Counter(p["source"] for p in read_pairs("train", params, root)).items())),
        "eval_loss": round(after["eval_loss"], 4),
        "eval_reward_accuracy": round(after["eval_rewards/accuracies"], 4),
        "eval_reward_margin": round(after["eval_rewards/margins"], 4),
        "eval_logps_chosen": round(after["eval_logps/chosen"], 4),
        "eval_logps_rejected": round(after["eval_logps/rejected"], 4),
        "train_logps_chosen": trend(history, "logps/chosen"),
        "train_logps_rejected": trend(history, "logps/rejected"),
        "init": params.dpo.init,
        "reference": "sft adapter (frozen copy)" if params.dpo.init == "sft" else "base (adapter disabled)",
    }


def run(params, root: Path = Path(".")) -> dict:
    start_adapter = SFT_ADAPTER if params.dpo.init == "sft" else None
    recipe = Recipe(
        stage="dpo",
        trainer=make_trainer(params, root),
        train=params.training("dpo"),
        inputs=[root / f for f in pair_files("train", params)] + ([root / start_adapter] if start_adapter else []),
        start_adapter=start_adapter,
        before=eval_loss_before,
        after=lambda trainer: after_training(trainer, params, root),
    )
    return run_training(recipe, params, root)


def main(argv: list[str] | None = None) -> int:
    return entry.main("dpo", run, argv, before=relaunch("medadapt.stages.dpo"), training=True)


if __name__ == "__main__":
    sys.exit(main())
