"""The process a stage runs in: its device, its rank, and what it costs (time, memory).

Shared by the trainers, `evaluate` and `bench`, so that every cost figure the project reports
is measured the same way.
"""

from __future__ import annotations

import os
import resource
import time
from contextlib import contextmanager

import torch


def on_gpu() -> bool:
    return torch.cuda.is_available()


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


@contextmanager
def timed():
    """Yields a dict whose `seconds` is filled in when the block ends."""
    result = {}
    start = time.perf_counter()
    yield result
    result["seconds"] = round(time.perf_counter() - start, 2)
