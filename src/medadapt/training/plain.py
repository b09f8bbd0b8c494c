"""A plain training loop, timed: the baseline that every training speed figure is set beside.

`medadapt rehearse` times plain LoRA steps (HF model + PEFT, fused AdamW) next to the stages,
`medadapt bench train` times them per quantization, and `bench_multi` per process count; each
brings its own step and batches, and all time them the same way here: one warm-up step (kernels,
allocator, optimizer state), then the rest with the device synchronised before and after.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..modeling.inference import right_pad
from ..runtime import on_gpu


def timed_steps(step: Callable[[object], None], batches: list, after_warmup: Callable[[], None] | None = None) -> float:
    """Run `step` on the first batch (warm-up), then time it on the rest; their wall seconds."""
    step(batches[0])
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


def padded_batches(rows: list[list[int]], batch_size: int, pad_id: int, device) -> list[dict]:
    """Causal-LM batches padded to their longest row, the padding masked out of the loss."""
    batches = []
    for start in range(0, len(rows), batch_size):
        ids, mask = right_pad(rows[start : start + batch_size], pad_id)
        batches.append({"input_ids": ids.to(device), "attention_mask": mask.to(device),
                        "labels": ids.masked_fill(mask == 0, -100).to(device)})
    return batches


def optimizer_step(optimizer, loss: torch.Tensor) -> None:
    """Backward, step, and gradients set to None."""
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
