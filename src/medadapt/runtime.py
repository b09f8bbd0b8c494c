"""The process a stage runs in: its device and dtype, its rank, and what it costs (time, memory).

Shared by the trainers, `evaluate` and the helper commands, so that every cost figure the
project reports is measured the same way.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from contextlib import contextmanager

import torch


def on_gpu() -> bool:
    return torch.cuda.is_available()


def device_name() -> str:
    """The GPU's name (spaces as dashes, for file names), or `cpu`."""
    return torch.cuda.get_device_name(0).replace(" ", "-") if on_gpu() else "cpu"


def torch_dtype(name: str) -> torch.dtype:
    """`model.dtype` as a torch dtype; `auto` is bf16 on a GPU that has it, float32 elsewhere."""
    if name == "auto":
        if on_gpu() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def fsdp_enabled() -> bool:
    """This process is an FSDP worker: `accelerate launch --use_fsdp` sets the variable for it."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def attention_without_cudnn() -> None:
    """On CUDA, leave cuDNN out of PyTorch's scaled-dot-product attention (flash and memory-efficient
    attention remain). Every stage feeds rows of varied lengths, and cuDNN builds an execution plan
    for each new shape: on one H200 at Llama-3.1-8B shapes that took 9 ms of CPU per attention call,
    and the GPU stood idle through most of each SFT step (scripts/gpu_levers.py, README "Speed")."""
    if on_gpu():
        torch.backends.cuda.enable_cudnn_sdp(False)


def is_main_process() -> bool:
    """Rank 0 of an `accelerate launch`/`torchrun` job (they set RANK), or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def peak_memory_mb() -> float:
    """GPU allocator peak on a GPU; process RSS peak on a CPU (it only grows there)."""
    if on_gpu():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def release_memory() -> None:
    """Free what the last model left, and start the next GPU peak from here."""
    gc.collect()
    if on_gpu():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


@contextmanager
def timed():
    """Yields a dict whose `seconds` is filled in when the block ends."""
    result = {}
    start = time.perf_counter()
    yield result
    result["seconds"] = round(time.perf_counter() - start, 2)
