"""Stage `grpo`: online RL. The final SFT model answers train prompts, and learns from its own answers.

    dvc repro grpo              # or: python -m medadapt.stages.grpo, medadapt grpo

Reads `train.*` with `grpo.*` over it (`params.training("grpo")`), `lora.*`, `model.*`, the
reward model's scoring batch size and length (`rm` over `train`), the prepared train splits of
`grpo.datasets` (MedQA, MedMCQA, PubMedQA: questions with a gold letter or label), the final SFT
adapter `models/sft_medqa/` and the reward model `models/rm/`; it is seeded with `train.seed`.
Writes `models/grpo/` (adapter safetensors, tokenizer, hyperparameters.json), `metrics/grpo.json`,
DVCLive curves in `dvclive/grpo/` and the run's cost in `reports/cost/grpo.json`.

For the first `grpo.prompts_per_dataset` train items of each dataset (the seeded order `prepare`
wrote), `trl.GRPOTrainer` samples `grpo.num_generations` answers per prompt (one group;
`grpo.temperature`, at most `grpo.max_completion_length` new tokens) and rewards each with the
weighted sum of the components in `training/rewards.py` (correctness by the shared parser, format,
the reward model's calibrated score, evaluate's hallucination rule; `grpo.weights`, a weight of 0
computes nothing). An answer's advantage is its reward against its group's mean, over the group's
std; the loss is TRL's default (`dapo`) plus `grpo.beta` x the per-token KL to the reference.
A prompt whose tokens and the completion budget exceed `min(max_length, model.max_length)` (the
resolved `max_length`) is left out (TRL 1.16's GRPOConfig has no prompt truncation), and counted.

`metrics/grpo.json`: the mean reward and each component's mean, each as the first and last logged
step and the mean over steps (`first`, `last`, `mean`); `kl` (to the reference); the mean
completion length; `zero_std_groups`, the share of groups whose answers all got the same reward
(TRL's `frac_reward_zero_std`: such a group's advantages are 0 and teach nothing); the prompts
trained on. Tokens/s and peak memory are in the shared run's cost, `reports/cost/grpo.json`.

The KL reference, from TRL 1.16's code (`trl/trainer/grpo_trainer.py`, `grpo_config.py`):
- given a PeftModel and no `peft_config`, with `beta` != 0 (grpo_trainer.py:478-506),
  GRPOTrainer adds a second adapter `ref` with the `default` adapter's config and copies its
  weights in; `self.ref_model` stays None (:983-990), and the reference log-probs are computed
  with `ref` active (:2723-2737, `use_adapter(model, "ref" if "ref" in model.peft_config else
  None)`). So with `init: sft` the SFT adapter is loaded trainable and the reference is a frozen
  copy of it: the SFT model, not the bare base. `dpo` gets the same from DPOTrainer.
- given a plain model and a `peft_config` (`init: base` here), it wraps a fresh adapter (:476)
  and, with no `ref` adapter, the reference is the model with adapters disabled
  (`use_adapter(model, None)`): the base.
- with `beta` = 0, TRL 1.16's default (grpo_config.py:681-682), no reference is used and no KL is
  computed or logged (grpo_trainer.py:984-986, :2710, :3097, :3267-3268). `grpo.beta` defaults
  to 0.04 and must be > 0, so `kl` (TRL's per-token k3 estimate, :3100-3102, averaged over
  completion tokens) is always reported.
Both adapters sit on one base, so this holds for a bf16 and for a 4-bit base alike: nothing is
merged into quantized weights (merging into a 4-bit base would re-quantize it, and the reference
would no longer be the SFT model `evaluate` scores as `method=sft`). On a k-bit base TRL casts
the trainable adapter to bf16 (:532-541) after the `ref` copy was made (`ref` is not trainable,
so it keeps the SFT weights in float32): the policy starts from their bf16 rounding, a small KL
at the first step there. `evaluate` with `method=grpo` loads `models/grpo/` alone on the base,
as for `dpo`: the saved adapter is the SFT adapter trained on (`modeling.adapters.save_adapter`
saves `default` only, not `ref`). Dropout is off in the policy and the reference
(`disable_dropout`), so that the KL at the first step is 0 (bf16 aside) and its curve shows how
far the policy moved, not dropout noise.

Batches: TRL counts the batch size in completions, and a generation batch (batch_size x
grad_accum x processes, batch_size and grad_accum as `grpo` resolves them over `train`) must hold
whole groups: `params.py` checks it, as it checks `num_generations` >= 2 and that some weight is
above 0, so `medadapt check` refuses them. A reward-model weight without `models/rm` is a
one-line error naming `dvc repro rm`.

Honesty of the comparison: `grpo` is trained on the reward model's score and on `evaluate`'s
hallucination rule, so `evaluate`'s RM-based figures (reward mean, unsafe rate by the RM) and its
hallucination rate are no independent judges of `method=grpo` (set their weights to 0 to keep
them independent). Its accuracy on the eval items stays an independent measure: it trains on
train prompts only, and the correctness reward reads their gold answers, never an eval item's.

The CPU default (1 prompt per dataset, groups of 4, 32 new tokens, one epoch: 3 steps of one
group each) shows the machinery, not the effect: three steps on a 135M model move little.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from .. import entry, paths
from ..data.prompts import messages, render
from ..data.records import read_records
from ..modeling.adapters import load_adapter, lora_config
from ..modeling.models import ModelError, base_path, load_base_model, load_tokenizer
from ..params import ParamsError
from ..training.arguments import trainer_args
from ..training.launch import relaunch
from ..training.rewards import components, prompt_row, require_reward_model
from ..training.run import Recipe
from ..training.run import run as run_training

SFT_ADAPTER = paths.method_adapter("sft")


def require_inputs(params, root: Path) -> None:
    """The models the params call for, before anything loads: one line naming what to run."""
    if params.grpo.weights.reward_model > 0:
        require_reward_model(params, root)
    if params.grpo.init == "sft" and not (root / SFT_ADAPTER / "adapter_config.json").exists():
        raise ModelError(f"grpo.init=sft needs the final SFT adapter {SFT_ADAPTER}: run `dvc repro {SFT_ADAPTER.name}` "
                         "(or set grpo.init=base)")


def start_model(params, root: Path):
    """The policy to train and, by construction, its reference: the SFT model or the base."""
    model = load_base_model(params.model, root, for_training=True)
    if params.grpo.init == "base":
        return model, lora_config(params.lora)
    return load_adapter(model, root / SFT_ADAPTER, trainable=True), None


def prompt_files(params) -> list[Path]:
    return [paths.split_file(d, "train") for d in params.grpo.datasets]


def prompt_records(params, root: Path) -> list:
    """The first `prompts_per_dataset` train items of each of `grpo.datasets`, in `prepare`'s order."""
    records = []
    for dataset, file in zip(params.grpo.datasets, prompt_files(params)):
        if not (root / file).exists():
            raise ModelError(f"grpo.datasets has {dataset}, which has no prepared train split {file}: add it to "
                             "data.datasets and run `dvc repro prepare` (or leave it out of grpo.datasets)")
        records += read_records(root / file)[: params.grpo.prompts_per_dataset]
    return records


def fitting(records, tokenizer, params) -> tuple[list, int]:
    """The records whose prompt leaves room for a whole completion within the length limit, and
    how many did not (GRPOTrainer does not truncate prompts)."""
    knobs = params.training("grpo")
    limit = min(knobs.max_length, params.model.max_length)
    budget = limit - knobs.max_completion_length
    lengths = [len(tokenizer(render(tokenizer, messages(r)), add_special_tokens=False)["input_ids"]) for r in records]
    kept = [r for r, n in zip(records, lengths) if n <= budget]
    if not kept:
        raise ParamsError(f"grpo max_length / model.max_length: no train prompt leaves room for "
                          f"{knobs.max_completion_length} new tokens within {limit} tokens (prompts have "
                          f"{min(lengths)}-{max(lengths)}); raise them or lower grpo.max_completion_length")
    return kept, len(records) - len(kept)


def grpo_config(params, root: Path, reward_weights: list[float]):
    from trl import GRPOConfig

    knobs = params.training("grpo")
    args = trainer_args("grpo", knobs, params, root)
    del args["max_length"]  # no such field in GRPOConfig: prompts are filtered by `fitting`
    return GRPOConfig(
        **args,
        num_generations=knobs.num_generations,
        max_completion_length=knobs.max_completion_length,
        temperature=knobs.temperature,
        top_p=1.0,
        top_k=0,
        beta=knobs.beta,
        reward_weights=reward_weights,
        disable_dropout=True,
        eval_strategy="no",
        log_completions=False,
    )


def make_trainer(params, root: Path = Path(".")):
    from datasets import Dataset
    from trl import GRPOTrainer

    require_inputs(params, root)
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    records, dropped = fitting(prompt_records(params, root), tokenizer, params)
    functions, weights = components(params, root)  # the reward model is loaded here, once
    model, peft_config = start_model(params, root)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=functions,
        args=grpo_config(params, root, weights),
        train_dataset=Dataset.from_list([prompt_row(r) for r in records]),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.medadapt_prompts = {"by_dataset": dict(sorted(Counter(r.dataset for r in records).items())),
                                "dropped_too_long": dropped}
    return trainer


def trend(history: list[dict], key: str) -> dict | None:
    """First and last logged value of a training curve and its mean over the logged steps (None
    values, a step with nothing judged, are left out); None when it was never logged."""
    values = [row[key] for row in history if row.get(key) is not None]
    if not values:
        return None
    return {"first": significant(values[0]), "last": significant(values[-1]), "mean": significant(sum(values) / len(values))}


def significant(value: float) -> float:
    """Four significant digits: a KL of 3e-6 (a few small steps) must not round to 0."""
    return float(f"{value:.4g}")


def after_training(trainer, params) -> dict:
    """The reward and its components at the start and the end, KL, completion length, the share
    of groups that taught nothing, and what it trained on."""
    history = trainer.state.log_history
    names = [f.__name__ for f in trainer.reward_funcs]
    return {
        "init": params.grpo.init,
        "reference": "sft adapter (frozen copy)" if params.grpo.init == "sft" else "base (adapter disabled)",
        "weights": dict(zip(names, trainer.reward_weights.tolist())),
        "reward": trend(history, "reward"),
        "rewards": {name: trend(history, f"rewards/{name}/mean") for name in names},
        "kl": trend(history, "kl"),
        "completion_length": trend(history, "completions/mean_length"),
        "zero_std_groups": trend(history, "frac_reward_zero_std"),
        "num_generations": params.grpo.num_generations,
        "train_prompts": trainer.medadapt_prompts["by_dataset"],
        "prompts_too_long": trainer.medadapt_prompts["dropped_too_long"],
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "quantization": params.model.quantization,
    }


def run(params, root: Path = Path(".")) -> dict:
    start_adapter = SFT_ADAPTER if params.grpo.init == "sft" else None
    trainer = make_trainer(params, root)
    rm_inputs = [root / paths.RM_DIR] if params.grpo.weights.reward_model > 0 else []
    recipe = Recipe(
        stage="grpo",
        trainer=trainer,
        train=params.training("grpo"),
        inputs=[root / f for f in prompt_files(params)] + rm_inputs + ([root / start_adapter] if start_adapter else []),
        start_adapter=start_adapter,
        after=lambda trainer: after_training(trainer, params),
        hyperparameters={"reward_components": [f.__name__ for f in trainer.reward_funcs],
                         "loss_type": trainer.args.loss_type, "scale_rewards": trainer.args.scale_rewards},
    )
    return run_training(recipe, params, root)


def main(argv: list[str] | None = None) -> int:
    return entry.main("grpo", run, argv, before=relaunch("medadapt.stages.grpo"), training=True)


if __name__ == "__main__":
    sys.exit(main())
