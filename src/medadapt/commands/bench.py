"""`medadapt bench [eval|train]`: measured speed, each path beside its baseline.

    medadapt bench eval           # scoring and generation on the prepared eval items
    medadapt bench train          # LoRA training steps: base in full precision, 8-bit, 4-bit

(Real model shapes: `medadapt rehearse <preset>` times the stages themselves on them.)

`eval` compares, in one process on `model.base` with the final SFT adapter when there is one:
log-likelihood scoring with one forward pass per shared context (ours) against one pass per
choice (lm-eval's general path), and generation with the LoRA adapter merged into the base
against the adapter attached. `train` runs the same LoRA forward/backward/optimizer steps on
the base unquantized, in 8-bit and in 4-bit NF4 (bitsandbytes). Every figure is printed and
written to `reports/bench/<target>-<device>.json`: wall time, questions/s or tokens/s, and
peak memory (GPU allocator peak on a GPU, process RSS peak on a CPU, where it only grows).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from ..artifacts import write_json
from ..data.prompts import loglik_request, messages, render
from ..data.records import read_records
from ..modeling.adapters import load_adapter, lora_config
from ..modeling.models import base_path, load_base_model, load_tokenizer
from ..paths import REPORTS, method_adapter, split_file
from ..runtime import device_name, on_gpu, peak_memory_mb, release_memory
from ..training.plain import optimizer_step, timed_steps

OUT = REPORTS / "bench"
SFT_ADAPTER = method_adapter("sft")


def measure(fn) -> dict:
    """Wall seconds and peak memory of `fn()`, whose result dict is merged in."""
    if on_gpu():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = fn()
    if on_gpu():
        torch.cuda.synchronize()
    return {**result, "seconds": round(time.perf_counter() - start, 3), "peak_memory_mb": peak_memory_mb()}


# ---- eval -----------------------------------------------------------------------------------


def bench_eval(params, root: Path) -> list[dict]:
    from ..modeling.inference import generate, loglikelihoods

    tokenizer = load_tokenizer(base_path(params.model.base, root))
    records = [r for d in params.data.datasets if d != "radqa"
               for r in read_records(root / split_file(d, "eval"))]
    requests = [loglik_request(r) for r in records]
    prompts = [render(tokenizer, messages(r)) for r in records[:16]]
    model = with_adapter(params, root)
    batch = params.evaluate.batch_size
    rows = []
    for name, shared in (("loglik: one pass per choice (baseline)", False), ("loglik: shared context", True)):
        stats = measure(lambda: {"scores": loglikelihoods(model, tokenizer, requests, batch, shared)})
        stats["questions_per_second"] = round(len(requests) / stats["seconds"], 3)
        stats.pop("scores")
        rows.append({"case": name, **stats})
    merged = copy.deepcopy(model).merge_and_unload() if params.model.quantization == "none" else None
    for name, candidate in (("generate: adapter attached (baseline)", model), ("generate: adapter merged", merged)):
        if candidate is None:
            continue
        stats = measure(lambda: dict(zip(("outputs", "tokens"), generate(candidate, tokenizer, prompts,
                                                                         params.evaluate.max_new_tokens, batch))))
        stats["tokens_per_second"] = round(stats["tokens"] / stats["seconds"], 2)
        stats.pop("outputs")
        rows.append({"case": name, **stats})
    return rows


def with_adapter(params, root: Path):
    """The base with the final SFT adapter, or a fresh non-zero one when SFT has not run."""
    model = load_base_model(params.model, root)
    if (root / SFT_ADAPTER / "adapter_config.json").exists():
        return load_adapter(model, root / SFT_ADAPTER).eval()
    from peft import get_peft_model

    config = lora_config(params.lora)
    config.init_lora_weights = False  # a zero adapter would make merging a no-op
    return get_peft_model(model, config).eval()


# ---- train ----------------------------------------------------------------------------------


def train_steps(model_params, params, root: Path, steps: int, batch: int, length: int) -> dict:
    """Tokens/s of LoRA steps (forward, backward, AdamW) on random tokens of fixed length."""
    from peft import get_peft_model

    model = get_peft_model(load_base_model(model_params, root, for_training=True), lora_config(params.lora))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(params.train.seed)
    data = torch.randint(0, vocab, (steps + 1, batch, length), generator=generator).to(model.device)

    def step(ids) -> None:
        optimizer_step(optimizer, model(input_ids=ids, labels=ids).loss)

    stats = measure(lambda: {"timed": timed_steps(step, list(data))})
    stats["seconds"] = round(stats.pop("timed"), 3)  # the timed steps only, not the warm-up
    stats["tokens_per_second"] = round(steps * batch * length / stats["seconds"], 1)
    return stats


def bench_train(params, root: Path, steps: int = 4, batch: int = 2, length: int = 256) -> list[dict]:
    rows = []
    for quantization in ("none", "8bit", "4bit"):
        candidate = params.model.model_copy(update={"quantization": quantization})
        stats = train_steps(candidate, params, root, steps, batch, length)
        release_memory()
        rows.append({"case": f"train LoRA, base {quantization}", "steps": steps, "batch": batch,
                     "length": length, **stats})
    baseline = rows[0]["tokens_per_second"]
    for row in rows:
        row["speed_vs_none"] = round(row["tokens_per_second"] / baseline, 3)
    return rows


TARGETS = {"eval": bench_eval, "train": bench_train}


def main(params, root: Path = Path("."), target: str | None = None) -> list[dict]:
    from ..params import ParamsError

    target = target or "eval"
    if target not in TARGETS:
        raise ParamsError(f"medadapt bench: unknown target {target!r}; valid: {', '.join(TARGETS)}")
    rows = TARGETS[target](params, root)
    device = device_name()
    model = params.model.base
    print(f"\nmedadapt bench {target} on {device} (model: {model})")
    for row in rows:
        figures = ", ".join(f"{k}={v}" for k, v in row.items() if k != "case")
        print(f"  {row['case']:44} {figures}")
    write_json(root / OUT / f"{target}-{device}.json", {"target": target, "device": device,
                                                        "model": model, "rows": rows})
    return rows

