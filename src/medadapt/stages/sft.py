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

from pathlib import Path

from datasets import Dataset

from .. import distributed, tracking
from ..artifacts import write_json
from ..data.records import read_records
from ..models import base_path, load_adapter, load_base_model, load_tokenizer, lora_config, trainable_parameters
from ..params import SFT_DATASETS, ParamsError, dump_params
from ..prompts import messages, response
from ..training import (
    CHECKPOINTS,
    clear_checkpoints,
    fingerprint,
    peak_memory_mb,
    perplexity,
    resume_checkpoint,
    save_adapter,
    summary_line,
    timed,
    trainer_args,
)

PREPARED = Path("data/prepared")


def stage_name(dataset: str) -> str:
    return f"sft_{dataset}"


def adapter_dir(dataset: str, root: Path = Path(".")) -> Path:
    return root / "models" / stage_name(dataset)


def previous_adapter(dataset: str, root: Path = Path(".")) -> Path | None:
    """The adapter this stage continues: the one before it in the curriculum."""
    index = SFT_DATASETS.index(dataset)
    return adapter_dir(SFT_DATASETS[index - 1], root) if index else None


def outputs(dataset: str) -> list[Path]:
    stage = stage_name(dataset)
    return [adapter_dir(dataset), Path(f"metrics/{stage}.json"), tracking.DVCLIVE_ROOT / stage]


def sft_dataset(records) -> Dataset:
    """Conversational prompt/completion rows: TRL masks the prompt out of the loss."""
    return Dataset.from_list(
        [{"prompt": messages(r), "completion": [{"role": "assistant", "content": response(r)}]} for r in records]
    )


def build_model(params, dataset: str, root: Path):
    """The base with a fresh adapter (first stage) or the previous stage's, trainable."""
    model = load_base_model(params.model, root, for_training=True)
    previous = previous_adapter(dataset, root)
    if previous is None:
        return model, lora_config(params.lora)
    return load_adapter(model, previous, trainable=True), None


def make_trainer(params, dataset: str, root: Path = Path(".")):
    from trl import SFTConfig, SFTTrainer

    stage = stage_name(dataset)
    train = getattr(params.sft, dataset)
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    model, peft_config = build_model(params, dataset, root)
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
        train_dataset=sft_dataset(read_records(root / PREPARED / dataset / "train.jsonl")),
        eval_dataset=sft_dataset(read_records(root / PREPARED / dataset / "eval.jsonl")),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=tracking.callbacks(stage, params, root),
    )


def eval_losses(trainer) -> dict:
    """Eval loss of the base (adapter off) and of the start model, before any step."""
    with trainer.model.disable_adapter():
        base = trainer.evaluate(metric_key_prefix="base")["base_loss"]
    start = trainer.evaluate(metric_key_prefix="start")["start_loss"]
    return {"eval_loss_base": round(base, 4), "eval_loss_start": round(start, 4)}


def check_examples(trainer, params, dataset: str) -> None:
    """TRL drops an example whose prompt alone fills `max_length`; none left is a params error."""
    for split, data in (("train", trainer.train_dataset), ("eval", trainer.eval_dataset)):
        if len(data) == 0:
            limit = min(getattr(params.sft, dataset).max_length, params.model.max_length)
            raise ParamsError(f"sft.{dataset}.max_length / model.max_length: no {split} example of {dataset} fits "
                              f"in {limit} tokens (see the token lengths in metrics/prepare.json); raise them")


def run(params, dataset: str, root: Path = Path(".")) -> dict:
    stage = stage_name(dataset)
    trainer = make_trainer(params, dataset, root)
    distributed.prepare(trainer)  # several processes: wrap before the first evaluate
    check_examples(trainer, params, dataset)
    previous = previous_adapter(dataset, root)
    inputs = [root / PREPARED / dataset / "train.jsonl"] + ([previous] if previous else [])
    sections = {"train": dump_params(getattr(params.sft, dataset)), "lora": dump_params(params.lora)}
    stamp = fingerprint(stage, params, sections, inputs)
    checkpoint = resume_checkpoint(root / CHECKPOINTS / stage, stamp, trainer.accelerator)

    before = eval_losses(trainer)
    with timed() as clock:
        result = trainer.train(resume_from_checkpoint=checkpoint)
    after = trainer.evaluate()
    trainable, total = trainable_parameters(trainer.model)
    tokens = int(trainer.state.num_input_tokens_seen)
    metrics = {
        **before,
        "train_loss": round(result.training_loss, 4),
        "eval_loss": round(after["eval_loss"], 4),
        "eval_perplexity": perplexity(after["eval_loss"]),
        "trainable_params": trainable,
        "trainable_percent": round(100 * trainable / total, 4),
        "tokens_seen": tokens,
        "train_examples": len(trainer.train_dataset),
        "steps": trainer.state.global_step,
        "quantization": params.model.quantization,
        "cost": {  # the only figures that vary between identical runs
            "train_seconds": clock["seconds"],
            "train_tokens_per_second": round(tokens / max(clock["seconds"], 1e-9), 1),
            "peak_memory_mb": peak_memory_mb(),
            "resumed_from_step": int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0,
        },
    }
    hyperparameters = {"stage": stage, "start_adapter": str(previous) if previous else None,
                       "seed": params.seed, "model": dump_params(params.model), **sections}
    if trainer.is_world_process_zero():
        save_adapter(trainer.model, trainer.processing_class, adapter_dir(dataset, root), hyperparameters)
        clear_checkpoints(root / CHECKPOINTS / stage)
        write_json(root / f"metrics/{stage}.json", metrics)
        print(summary_line(stage, metrics))
    tracking.finish_wandb()
    return metrics
