"""`python -m medadapt.commands.bench_multi <shapes>`: LoRA training steps on one or several GPUs (DDP or FSDP).

    python -m medadapt.commands.bench_multi llama-3.1-8b --out one.json                                   # one GPU
    python -m medadapt.commands.bench_multi llama-3.1-8b --set compute.num_processes=2 --out ddp.json      # DDP
    python -m medadapt.commands.bench_multi llama-3.1-70b --set compute.num_processes=2 \\
        --set compute.strategy=fsdp --set model.quantization=4bit --steps 1 --batch 1 --out f.json

The processes start exactly as the training stages' do (`training/launch.py`: same flags from `compute.*`,
`--set` and `--params` as for `medadapt`). Every process builds a random-init Llama of the named
shapes on its own device from the same seed, layer by layer (a 4-bit model is quantized as each
layer is drawn, so Llama-3.1-70B needs neither a checkpoint on disk nor its 140 GB in 16 bits),
adds LoRA from `lora.*` and runs AdamW steps on random tokens after one warm-up step. Rank 0
writes tokens/s (per GPU and in total) and each rank's memory: the peak while building and
wrapping the model, what stays allocated after wrapping (FSDP: the shard), and the peak during
the timed steps (GPU allocator figures; process RSS on a CPU, where they only grow).
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..artifacts import write_json
from ..modeling.adapters import lora_config
from ..modeling.random_init import random_llama
from ..params import load_params
from ..runtime import on_gpu, peak_memory_mb, torch_dtype
from ..training.launch import launched, mixed_precision
from ..training.plain import timed_steps
from .preset import preset_shapes

# The shapes of presets/<name>.yaml (commands/preset.py), or the tiny test model's.
SHAPES = ("llama-3.1-8b", "llama-3.1-70b", "tiny")


# ---- the measurement ------------------------------------------------------------------------


def lora_model(params, shape: dict, device):
    """The random base with a fresh adapter; on a 4-bit base the adapter is in the compute dtype,
    as TRL makes it in the stages."""
    from peft import get_peft_model

    dtype = torch_dtype(params.model.dtype)
    model = get_peft_model(random_llama(shape, params.model.quantization, dtype, device, params.train.seed),
                           lora_config(params.lora))
    if params.model.quantization == "4bit":
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(dtype)
    return model


def reset_peak() -> None:
    if on_gpu():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def allocated_mb() -> float:
    return round(torch.cuda.memory_allocated() / 2**20, 1) if on_gpu() else peak_memory_mb()


def measure(params, shape: dict, steps: int, batch: int, length: int) -> dict:
    """Build, wrap (DDP/FSDP as launched) and time LoRA steps; every rank's figures, on rank 0."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    accelerator = Accelerator(mixed_precision=mixed_precision(params), cpu=not on_gpu())
    model = lora_model(params, shape, accelerator.device)
    if accelerator.distributed_type == DistributedType.FSDP:
        from transformers.trainer import update_fsdp_plugin_peft

        update_fsdp_plugin_peft(model, accelerator)  # as distributed.prepare does for the stages
    model = accelerator.prepare(model)
    # after wrapping, as the Trainer does under FSDP: the optimizer then holds each rank's shards
    optimizer = accelerator.prepare(torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4))
    load_peak, resident = peak_memory_mb(), allocated_mb()
    generator = torch.Generator().manual_seed(params.train.seed + accelerator.process_index)
    data = torch.randint(0, shape["vocab_size"], (steps + 1, batch, length), generator=generator)

    def step(ids) -> None:
        ids = ids.to(accelerator.device)
        accelerator.backward(model(input_ids=ids, labels=ids).loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed_steps(step, list(data), after_warmup=reset_peak)
    mine = torch.tensor([[seconds, load_peak, resident, peak_memory_mb()]], device=accelerator.device)
    ranks = accelerator.gather(mine).tolist()
    slowest = max(r[0] for r in ranks)
    tokens = steps * batch * length * accelerator.num_processes
    return {
        "tokens_per_second_total": round(tokens / slowest, 1),
        "tokens_per_second_per_gpu": round(tokens / slowest / accelerator.num_processes, 1),
        "ranks": [{"seconds": round(r[0], 3), "peak_memory_load_mb": round(r[1], 1),
                   "allocated_after_wrap_mb": round(r[2], 1), "peak_memory_steps_mb": round(r[3], 1)} for r in ranks],
        "is_main_process": accelerator.is_main_process,
    }


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m medadapt.commands.bench_multi", description=__doc__.splitlines()[0])
    cli.add_argument("shapes", choices=list(SHAPES))
    cli.add_argument("--out", required=True, help="JSON file rank 0 writes")
    cli.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    cli.add_argument("--batch", type=int, default=4, help="sequences per GPU per step")
    cli.add_argument("--length", type=int, default=512, help="tokens per sequence")
    cli.add_argument("--params", default="params.yaml")
    cli.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    params = load_params(args.params, args.overrides)
    code = launched(params, "medadapt.commands.bench_multi", argv)
    if code is not None:
        return code
    result = measure(params, preset_shapes(args.shapes, command="bench_multi"), args.steps, args.batch, args.length)
    if result.pop("is_main_process"):
        compute = params.compute
        setup = {"shapes": args.shapes, "quantization": params.model.quantization,
                 "num_processes": compute.num_processes, "strategy": compute.strategy if compute.num_processes > 1
                 else "one process", "mixed_precision": mixed_precision(params), "lora_r": params.lora.r,
                 "steps": args.steps, "batch_per_gpu": args.batch, "length": args.length,
                 "device": torch.cuda.get_device_name(0) if on_gpu() else "cpu", "torch": torch.__version__}
        write_json(args.out, {**setup, **result})
        print(f"[bench_multi] {setup} -> {result}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
