"""Stages `sft_pubmedqa`, `sft_medmcqa`, `sft_medqa`: the LoRA curriculum, one adapter carried on.

    dvc repro sft_medqa                 # the whole curriculum; or: medadapt sft <dataset>
    accelerate launch -m medadapt.cli sft medqa     # the same stage on several GPUs (DDP)

Reads `sft.<dataset>`, `lora.*`, `model.*`, `seed`, the prepared splits of <dataset>, and the
previous stage's adapter (`sft_pubmedqa` starts a fresh adapter on the base). Writes
`models/sft_<dataset>/` (adapter safetensors, tokenizer, hyperparameters.json),
`metrics/sft_<dataset>.json` and DVCLive curves in `dvclive/sft_<dataset>/`.

Assumptions and choices:
- Loss on the response tokens only: the data is in TRL's prompt/completion form, whose
  default is completion-only loss; the prompt is the same chat every method sees.
- `model.quantization` 8bit/4bit loads the base through bitsandbytes and prepares it for
  k-bit training (QLoRA); TRL then keeps the adapter weights in bf16, as the QLoRA paper does
  (on an unquantized base they stay in the model's dtype).
- A run killed mid-way resumes from its last checkpoint in `checkpoints/sft_<dataset>/`
  (a persistent DVC output) when params and inputs are unchanged; the adapter folder is
  written only after training finished.
"""

from __future__ import annotations

import sys
from pathlib import Path

from datasets import Dataset

from .. import entry, paths
from ..data.prompts import messages, response
from ..data.records import read_records
from ..modeling.adapters import load_adapter, lora_config
from ..modeling.models import base_path, load_base_model, load_tokenizer
from ..params import ParamsError
from ..training.arguments import trainer_args
from ..training.launch import relaunch
from ..training.run import Recipe, perplexity
from ..training.run import run as run_training


def sft_dataset(records) -> Dataset:
    """Conversational prompt/completion rows: TRL masks the prompt out of the loss."""
    return Dataset.from_list(
        [{"prompt": messages(r), "completion": [{"role": "assistant", "content": response(r)}]} for r in records]
    )


def previous_adapter(stage: str) -> Path | None:
    """The adapter this stage continues: the one before it in the curriculum (None for the first)."""
    previous = paths.previous_sft_stage(stage)
    return paths.adapter_dir(previous) if previous else None


def build_model(params, stage: str, root: Path):
    """The base with a fresh adapter (first stage) or the previous stage's, trainable."""
    model = load_base_model(params.model, root, for_training=True)
    previous = previous_adapter(stage)
    if previous is None:
        return model, lora_config(params.lora)
    return load_adapter(model, root / previous, trainable=True), None


def make_trainer(params, dataset: str, root: Path = Path(".")):
    from trl import SFTConfig, SFTTrainer

    stage = f"sft_{dataset}"
    train = params.training(stage)
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    model, peft_config = build_model(params, stage, root)
    config = SFTConfig(
        **trainer_args(stage, train, params, root),
        packing=train.packing,
        completion_only_loss=True,
        include_num_input_tokens_seen="non_padding",
        dataset_num_proc=None,
    )
    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=sft_dataset(read_records(root / paths.split_file(dataset, "train"))),
        eval_dataset=sft_dataset(read_records(root / paths.split_file(dataset, "eval"))),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def eval_losses(trainer, fresh_adapter: bool) -> dict:
    """Eval loss of the base (adapter off) and of the start model, before any step. A fresh
    adapter's B matrices are zero, so its start model computes exactly the base's outputs: one
    eval pass serves both (an eval pass costs half a training step per example)."""
    with trainer.model.disable_adapter():
        base = trainer.evaluate(metric_key_prefix="base")["base_loss"]
    start = base if fresh_adapter else trainer.evaluate(metric_key_prefix="start")["start_loss"]
    return {"eval_loss_base": round(base, 4), "eval_loss_start": round(start, 4)}


def after_training(trainer, params) -> dict:
    """Eval loss after the stage, and what it trained on."""
    after = trainer.evaluate()
    tokens = int(trainer.state.num_input_tokens_seen)
    return {
        "eval_loss": round(after["eval_loss"], 4),
        "eval_perplexity": perplexity(after["eval_loss"]),
        "tokens_seen": tokens,
        "train_examples": len(trainer.train_dataset),
        "quantization": params.model.quantization,
    }


def check_examples(trainer, params, dataset: str) -> None:
    """TRL drops an example whose prompt alone fills `max_length`; none left is a params error."""
    for split, data in (("train", trainer.train_dataset), ("eval", trainer.eval_dataset)):
        if len(data) == 0:
            limit = min(params.training(f"sft_{dataset}").max_length, params.model.max_length)
            raise ParamsError(f"sft.{dataset}.max_length / model.max_length: no {split} example of {dataset} fits "
                              f"in {limit} tokens (see the token lengths in metrics/prepare.json); raise them")


def run(params, dataset: str, root: Path = Path(".")) -> dict:
    stage = f"sft_{dataset}"
    trainer = make_trainer(params, dataset, root)
    check_examples(trainer, params, dataset)
    previous = previous_adapter(stage)
    recipe = Recipe(
        stage=stage,
        trainer=trainer,
        train=params.training(stage),
        inputs=[root / paths.split_file(dataset, "train")] + ([root / previous] if previous else []),
        start_adapter=previous,
        before=lambda trainer: eval_losses(trainer, fresh_adapter=previous is None),
        after=lambda trainer: after_training(trainer, params),
    )
    return run_training(recipe, params, root)


def main(argv: list[str] | None = None) -> int:
    return entry.main("sft", run, argv, before=relaunch("medadapt.stages.sft"), training=True)


if __name__ == "__main__":
    sys.exit(main())
