"""`medadapt rehearse <preset>`: the experiment's real stages on a random-init model of real shapes.

    medadapt prepare                                        # the user's data, as for `dvc repro`
    medadapt rehearse llama-3.1-8b                          # bf16 on a GPU
    medadapt rehearse llama-3.1-8b --set model.quantization=4bit

Before spending GPU hours: does the experiment fit, and how long does it take? A model of the
preset's shapes (`presets/<name>.yaml`, from each model's published config; no download) gets seeded random
weights and the tokenizer of `model.base`, whose vocabulary is kept when larger than the preset's. In
a scratch copy of the project (the user's prepared data; never the user's `models/` or `metrics/`)
with `model.base` pointing at that model, the same stage code `dvc repro` runs goes through the
SFT curriculum, `icl`, `rm`, `dpo`, `grpo` and `evaluate` for each method of `rehearse.methods`, at the
user's sizes and params. Beside them, in the same process, runs a plain PyTorch LoRA loop (HF
model + PEFT, fused AdamW, the first SFT dataset's real length mix, without and with gradient
checkpointing), so every training figure has its ratio.

Printed and written to `reports/rehearse/<preset>-<device>.json`: per stage its wall seconds,
tokens/s (SFT), pairs/s (rm, dpo), prompts/s (grpo) or questions/s (evaluate), peak memory (GPU allocator peak per
stage; on a CPU the process RSS peak so far) and the ratio to the plain loop, and a projected
total for the whole experiment (prepare excluded), where methods not evaluated count the mean
time of those that were.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import paths
from ..artifacts import write_json
from ..data.prompts import messages, response
from ..data.records import read_jsonl, read_records
from ..modeling.adapters import lora_config
from ..modeling.models import base_path, load_base_model, load_tokenizer
from ..modeling.random_init import write_random_llama
from ..params import ParamsError
from ..runtime import device_name, on_gpu, peak_memory_mb, release_memory, timed, torch_dtype
from ..training.plain import optimizer_step, padded_batches, timed_steps
from .preset import preset_shapes

OUT = paths.REPORTS / "rehearse"
PLAIN_STEPS = 5  # timed plain-loop steps, after one warm-up step


# ---- the stages ---------------------------------------------------------------------------------


@contextmanager
def scratch_project(root: Path):
    """A temporary project holding the user's prepared data, safety prompts and labelled answers
    (the rm stage measures the RM on `data/judges/safety.jsonl`), as cwd."""
    import shutil

    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="medadapt-rehearse-") as tmp:
        scratch = Path(tmp)
        for sub in (paths.PREPARED, paths.SAFETY_TRAIN.parent, paths.JUDGES):
            shutil.copytree(root / sub, scratch / sub)
        os.chdir(scratch)
        try:
            yield scratch
        finally:
            os.chdir(cwd)


def stage_calls(params) -> list[tuple[str, object]]:
    """(name, call) for each stage `dvc repro` runs after prepare, then evaluate per method."""
    from ..stages import dpo, evaluate, grpo, icl, rm, sft

    calls = [(f"sft_{d}", lambda d=d: sft.run(params, d)) for d in paths.SFT_DATASETS]
    calls += [("icl", lambda: icl.run(params)), ("rm", lambda: rm.run(params)), ("dpo", lambda: dpo.run(params)),
              ("grpo", lambda: grpo.run(params))]
    for method in params.rehearse.methods:
        calls.append((f"evaluate:{method}", lambda m=method: evaluate.run(params.model_copy(update={"method": m}))))
    return calls


def throughput(name: str, metrics: dict, params) -> dict:
    """The stage's own throughput figure, from its metrics."""
    cost = metrics.get("cost", {})
    if name.startswith("sft_"):
        return {"tokens": metrics["tokens_seen"], "train_seconds": cost["train_seconds"],
                "tokens_per_second": cost["train_tokens_per_second"]}
    if name in ("rm", "dpo"):
        pairs = round(len(read_jsonl(paths.preference_file(name, "train"))) * params.training(name).epochs, 1)
        return {"pairs": pairs, "train_seconds": cost["train_seconds"],
                "pairs_per_second": round(pairs / max(cost["train_seconds"], 1e-9), 3)}
    if name == "grpo":  # prompts answered per second, each with a group of num_generations answers
        prompts = round(sum(metrics["train_prompts"].values()) * params.training("grpo").epochs, 1)
        return {"prompts": prompts, "train_seconds": cost["train_seconds"],
                "prompts_per_second": round(prompts / max(cost["train_seconds"], 1e-9), 3),
                "train_tokens_per_second": cost.get("train_tokens_per_second")}  # with generation: no plain-loop ratio
    if name.startswith("evaluate:"):
        return {"questions_per_second": cost["questions_per_second"], "phase_seconds": cost.get("phase_seconds")}
    return {}


def run_stage(name: str, call, params) -> dict:
    from transformers import set_seed

    release_memory()
    set_seed(params.data.seed if name.startswith(("icl", "evaluate")) else params.train.seed)  # as entry.main does
    with timed() as clock:
        metrics = call()
    row = {"stage": name, "seconds": clock["seconds"], "peak_memory_mb": peak_memory_mb(),
           **throughput(name, metrics, params)}
    print(f"[rehearse] {name}: " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "stage"), flush=True)
    return row


# ---- the plain loop -------------------------------------------------------------------------


def length_mix(params, tokenizer) -> list[list[int]]:
    """Token ids of the first SFT dataset's train examples (prompt and answer), as SFT sees them."""
    dataset = paths.SFT_DATASETS[0]
    limit = min(params.training(f"sft_{dataset}").max_length, params.model.max_length)
    rows = []
    for record in read_records(paths.split_file(dataset, "train")):
        chat = messages(record) + [{"role": "assistant", "content": response(record)}]
        rows.append(tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"][:limit])
    return rows


def plain_loop(params, rows: list[list[int]], pad_id: int, checkpointing: bool) -> dict:
    """Non-pad tokens/s of plain LoRA steps (forward, backward, fused AdamW) on the stages' model."""
    from peft import get_peft_model

    release_memory()
    model = get_peft_model(load_base_model(params.model, for_training=True), lora_config(params.lora))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    batch_size = params.training(paths.SFT_STAGES[0]).batch_size
    batches = padded_batches(rows, batch_size, pad_id, model.device)
    batches = (batches * (PLAIN_STEPS + 1))[: PLAIN_STEPS + 1]  # one warm-up step, then the timed ones
    # bf16 autocast, as the trainers run (`bf16=True`) on a GPU that has it, k-bit bases included
    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=on_gpu() and torch_dtype(params.model.dtype) == torch.bfloat16)

    def step(batch):
        with autocast:
            loss = model(**batch).loss
        optimizer_step(optimizer, loss)

    seconds = timed_steps(step, batches)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches[1:])
    return {"case": f"plain LoRA loop, batch {batch_size}, " + ("with" if checkpointing else "no")
            + " gradient checkpointing", "steps": PLAIN_STEPS, "tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_second": round(tokens / seconds, 1), "peak_memory_mb": peak_memory_mb()}


def with_ratios(rows: list[dict], baseline: list[dict], mean_pair_tokens: float) -> list[dict]:
    """Each training stage's throughput over the plain loop's (pairs/s: the loop's tokens/s over
    the mean tokens of a pair, chosen plus rejected)."""
    plain = {("with" if "with gradient" in b["case"] else "no") + "_checkpointing": b["tokens_per_second"]
             for b in baseline}
    for row in rows:
        if "tokens_per_second" in row:
            row["vs_plain"] = {k: round(row["tokens_per_second"] / v, 3) for k, v in plain.items()}
        elif "pairs_per_second" in row:
            row["vs_plain"] = {k: round(row["pairs_per_second"] / (v / mean_pair_tokens), 3) for k, v in plain.items()}
    return rows


def mean_pair_tokens(tokenizer) -> float:
    pairs = read_jsonl(paths.preference_file("rm", "train")) + read_jsonl(paths.preference_file("dpo", "train"))
    count = sum(len(tokenizer.apply_chat_template(p["prompt"] + p[side], tokenize=True, return_dict=True)["input_ids"])
                for p in pairs for side in ("chosen", "rejected"))
    return count / max(len(pairs), 1)


def projected_total(rows: list[dict]) -> float:
    """Every stage once, and `evaluate` for every method (the mean of those run, for the rest)."""
    evaluated = [r["seconds"] for r in rows if r["stage"].startswith("evaluate:")]
    others = sum(r["seconds"] for r in rows if not r["stage"].startswith("evaluate:"))
    mean = sum(evaluated) / len(evaluated) if evaluated else 0.0
    return round(others + mean * len(paths.METHODS), 1)


# ---- the command -----------------------------------------------------------------------------


def rehearse(params, root: Path, preset: str, shapes: dict) -> dict:
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    with scratch_project(root) as scratch:
        folder = scratch / "random-model"
        dtype = torch.bfloat16 if on_gpu() and torch.cuda.is_bf16_supported() else torch.float32
        with timed() as build:
            shapes = write_random_llama(shapes, tokenizer, folder, dtype, params.train.seed)
        params = params.model_copy(update={"model": params.model.model_copy(update={"base": str(folder)})})
        rows = [run_stage(name, call, params) for name, call in stage_calls(params)]
        mix = length_mix(params, tokenizer)
        baseline = [plain_loop(params, mix, tokenizer.pad_token_id, checkpointing) for checkpointing in (False, True)]
        pair_tokens = mean_pair_tokens(tokenizer)
    return {"preset": preset, "device": device_name(), "shapes": shapes, "dtype": str(dtype).replace("torch.", ""),
            "quantization": params.model.quantization, "build_seconds": build["seconds"],
            "sizes": {**{d: {"train": params.data.train_size.get(d), "eval": params.data.eval_size.get(d)}
                         for d in params.data.datasets},
                      "max_pairs_per_source": params.data.preferences.max_pairs_per_source},
            "stages": with_ratios(rows, baseline, pair_tokens), "plain_loop": baseline,
            "mean_pair_tokens": round(pair_tokens, 1), "projected_total_seconds": projected_total(rows)}


def main(params, root: Path = Path("."), preset: str | None = None) -> dict:
    shapes = preset_shapes(preset, root, "medadapt rehearse")
    if not (root / paths.PREPARED).is_dir():
        raise ParamsError(f"medadapt rehearse: {root / paths.PREPARED} is missing: run `medadapt prepare` first")
    report = rehearse(params, Path(root).resolve(), preset, shapes)
    out = root / OUT / f"{preset}-{report['device']}.json"
    write_json(out, report)
    print(f"\nmedadapt rehearse {preset} on {report['device']} ({report['dtype']}, quantization "
          f"{report['quantization']}): projected total {report['projected_total_seconds']} s; written to {out}")
    for row in report["stages"] + report["plain_loop"]:
        name = row.get("stage", row.get("case"))
        print(f"  {name:52} " + ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("stage", "case")))
    return report
