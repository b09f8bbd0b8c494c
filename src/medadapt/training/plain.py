"""A plain training loop, timed: the baseline that every training speed figure is set beside.

`medadapt rehearse` times plain LoRA steps (HF model + PEFT, fused AdamW) on each training stage's
own batches (`sft_batches`, `pair_batches`: the rows the stage trains, packed where it packs) next
to the stages, `medadapt bench train` times them per quantization, and `bench_multi` per process
count; all time them the same way here: one warm-up step (kernels, allocator, optimizer state,
compilation), then the rest with the device synchronised before and after.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import paths
from ..data.prompts import messages, response
from ..data.records import read_jsonl, read_records
from ..modeling.inference import right_pad
from ..runtime import on_gpu, peak_memory_mb, torch_dtype


def timed_steps(step: Callable[[object], None], batches: list, after_warmup: Callable[[], None] | None = None,
                first: dict | None = None) -> float:
    """Run `step` on the first batch (warm-up; its seconds into `first`), then time it on the rest;
    their wall seconds."""
    start = time.perf_counter()
    step(batches[0])
    if on_gpu():
        torch.cuda.synchronize()
    if first is not None:
        first["seconds"] = round(time.perf_counter() - start, 3)
    if after_warmup is not None:
        after_warmup()
    if on_gpu():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    if on_gpu():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def optimizer_step(optimizer, loss: torch.Tensor) -> None:
    """Backward, step, and gradients set to None."""
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# ---- the stages' own rows ---------------------------------------------------------------------


def sft_batches(params, tokenizer, dataset: str, static: bool = False, root: Path = Path(".")) -> list[dict]:
    """The batches the SFT stage of `dataset` trains on, built with TRL's own pieces as its trainer
    builds them: the chat prompt and answer tokenized, loss on the answer only, packed (bfd) into
    rows of at most max_length where the stage packs, collated by TRL's collator (padding-free
    when packed; with `static`, a packed batch padded to batch x max_length, as compiled layers
    train it: `speed.static_rows`)."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    train = params.training(f"sft_{dataset}")
    limit = min(train.max_length, params.model.max_length)
    ids, labels = [], []
    for record in read_records(root / paths.split_file(dataset, "train")):
        chat = messages(record)
        prompt = tokenizer.apply_chat_template(chat, tokenize=True, add_generation_prompt=True, return_dict=True)
        whole = tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": response(record)}],
                                              tokenize=True, return_dict=True)["input_ids"]
        answer_from = len(prompt["input_ids"])
        ids.append(whole if train.packing else whole[:limit])
        labels.append([-100] * answer_from + whole[answer_from:len(ids[-1])])
    rows = Dataset.from_dict({"input_ids": ids, "labels": labels})
    if train.packing:
        rows = pack_dataset(rows, limit, "bfd")
    collator = DataCollatorForLanguageModeling(
        pad_token_id=tokenizer.pad_token_id, padding_free=train.packing,
        pad_to_multiple_of=train.batch_size * limit if train.packing and static else None)
    rows = rows.to_list()
    return [collator(rows[i : i + train.batch_size]) for i in range(0, len(rows), train.batch_size)]


def pair_batches(params, tokenizer, stage: str, root: Path = Path(".")) -> list[dict]:
    """Batches of the `rm` or `dpo` stage's pairs as their trainers read them: `batch_size` pairs a
    step, each the prompt with the chosen and with the rejected answer (rows 0..n-1 chosen, n..2n-1
    rejected), padded to the longest row; labels on the answers only."""
    train = params.training(stage)
    limit = min(train.max_length, params.model.max_length)
    pairs = read_jsonl(root / paths.preference_file(stage, "train"))
    batches = []
    for start in range(0, len(pairs), train.batch_size):
        chunk = pairs[start : start + train.batch_size]
        rows, answer_from = [], []
        for side in ("chosen", "rejected"):
            for pair in chunk:
                prompt = tokenizer.apply_chat_template(pair["prompt"], tokenize=True, add_generation_prompt=True,
                                                       return_dict=True)["input_ids"]
                rows.append(tokenizer.apply_chat_template(pair["prompt"] + pair[side], tokenize=True,
                                                          return_dict=True)["input_ids"][:limit])
                answer_from.append(min(len(prompt), len(rows[-1]) - 1))
        ids, mask = right_pad(rows, tokenizer.pad_token_id)
        labels = ids.masked_fill(mask == 0, -100)
        for row, first in enumerate(answer_from):
            labels[row, :first] = -100
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return batches


# ---- plain LoRA steps on them -------------------------------------------------------------------


@dataclass(frozen=True)
class Levers:
    """A plain step's speed levers, as the stages have them (`train.*`)."""

    autocast_adapter_dtype: bool = True  # PEFT's default: float32 LoRA weights on a bf16 base
    compile_layers: str = "eager"
    liger: bool = False  # Liger's fused linear cross-entropy for the LM head and loss (GPU)

    def name(self) -> str:
        parts = ["PEFT default" if self.autocast_adapter_dtype else "adapters in the base's dtype"]
        parts += [f"layers {self.compile_layers}"] * (self.compile_layers != "eager")
        parts += ["Liger fused linear cross-entropy"] * self.liger
        return ", ".join(parts)


def plain_step(kind: str, levers: Levers):
    """One training step of `kind` on a PEFT model: `sft` and `dpo` the causal-LM loss on the
    labelled tokens (DPO's pair rows, without its reference pass); `rm` a one-label score of each
    row's last token and the pairwise loss, as a reward model's step."""

    def causal(model, batch, head):
        if not levers.liger:
            return model(**batch).loss
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        inputs = {k: v for k, v in batch.items() if k != "labels"}
        hidden = model.get_base_model().model(**inputs).last_hidden_state[:, :-1]
        labels = batch["labels"][:, 1:]
        weight = model.get_base_model().get_output_embeddings().weight
        return LigerFusedLinearCrossEntropyLoss()(weight, hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1))

    def reward(model, batch, head):
        hidden = model.get_base_model().model(input_ids=batch["input_ids"],
                                              attention_mask=batch["attention_mask"]).last_hidden_state
        last = batch["attention_mask"].sum(dim=1) - 1
        scores = head(hidden[torch.arange(len(last), device=hidden.device), last]).float()[:, 0]
        chosen, rejected = scores.chunk(2)
        return -torch.nn.functional.logsigmoid(chosen - rejected).mean()

    return reward if kind == "rm" else causal


def plain_loop(base, params, batches: list[dict], kind: str, levers: Levers = Levers(), steps: int = 5) -> dict:
    """Tokens/s of plain LoRA steps (forward, backward, fused AdamW on a GPU) on `batches` of a stage,
    with a fresh adapter of `lora.*` on `base` and the given levers; the base is left as it came.
    The warm-up (the first step: kernels, allocator, optimizer state, compilation; with compiled
    layers one step per batch shape) is timed apart, as `first_step_seconds`."""
    from peft import get_peft_model

    from ..modeling.adapters import lora_config
    from .speed import compiled_layers, decoder_layers

    model = get_peft_model(base, lora_config(params.lora), autocast_adapter_dtype=levers.autocast_adapter_dtype)
    model.train()
    dtype = torch_dtype(params.model.dtype)  # a k-bit base reports float32: its unquantized layers are
    head = torch.nn.Linear(base.config.hidden_size, 1, dtype=dtype, device=base.device) if kind == "rm" else None
    trainable = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=on_gpu())
    # bf16 autocast, as the trainers run (`bf16=True`) on a GPU that has it, k-bit bases included
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu() and dtype == torch.bfloat16)
    loss_of = plain_step(kind, levers)
    device_batches = [{k: v.to(base.device) if torch.is_tensor(v) else v for k, v in b.items()}
                      for b in (batches * (steps + 1))[: steps + 1]]

    def step(batch):
        with autocast:
            loss = loss_of(model, batch, head)
        optimizer_step(optimizer, loss)

    first = {}
    # Compiled layers: one warm-up step per batch shape first (dynamo compiles a second graph, for any
    # length, when a second shape comes), so that no compilation falls in the timed steps.
    warm_up, shapes = [device_batches[0]], {tuple(device_batches[0]["input_ids"].shape)}
    for batch in device_batches[1:] if levers.compile_layers != "eager" else []:
        if tuple(batch["input_ids"].shape) not in shapes:
            shapes.add(tuple(batch["input_ids"].shape))
            warm_up.append(batch)
    steps_of = [warm_up] + [[batch] for batch in device_batches[1:]]
    try:
        with compiled_layers(model, levers.compile_layers):
            seconds = timed_steps(lambda batches: [step(b) for b in batches], steps_of, first=first)
    finally:
        model.unload()  # the base without LoRA layers, for the next loop
    tokens = sum(real_tokens(b) for b in device_batches[1:])
    rows = len(device_batches[1]["input_ids"]) if "position_ids" not in device_batches[1] else None
    return {"case": f"plain {kind} step: {levers.name()}", "kind": kind, "levers": asdict(levers),
            "layers": len(decoder_layers(base)), "steps": steps, "tokens": tokens,
            "pairs": steps * len(device_batches[1]["input_ids"]) // 2 if kind != "sft" else None,
            "shape": list(device_batches[1]["input_ids"].shape), "rows": rows,
            "first_step_seconds": first.get("seconds"), "seconds": round(seconds, 3),
            "tokens_per_second": round(tokens / seconds, 1),
            **({"pairs_per_second": round(steps * len(device_batches[1]["input_ids"]) / 2 / seconds, 3)}
               if kind != "sft" else {}), "peak_memory_mb": peak_memory_mb()}


def real_tokens(batch: dict) -> int:
    """Non-pad tokens of a batch: its attention mask, or in a packed batch every position that is
    not padding (padding restarts the position ids at 0, each pad token a sequence of one)."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    positions = batch["position_ids"][0]
    return int(positions.numel() - trailing_pads(positions))


def trailing_pads(positions: torch.Tensor) -> int:
    return int((positions.flip(0) == 0).int().cumprod(0).sum())
