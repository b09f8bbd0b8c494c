"""Speed levers every trainer gets, each measured (README, "Speed"): what TRL leaves slow here."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def scored_positions_only():
    """Make TRL's fused LM head project only the positions that have a label on every device.

    TRL 1.16 (`add_fused_lm_head`) does so where Triton runs (CUDA), but elsewhere scores every
    position, prompt and padding included, to keep tile shapes fixed for compilers we do not use.
    On a CPU that made an SFT step take 1.5 times as long (measured: 9.6 vs 6.4 CPU-s on one batch
    of two PubMedQA rows, SmolLM2-135M) for the same loss. A TRL without the switch is left as is.
    """
    from trl.trainer import utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


# ---- adapters in the base's dtype ------------------------------------------------------------


def adapters_in_base_dtype(model) -> int:
    """Cast every LoRA weight to its base layer's dtype, as PEFT's `autocast_adapter_dtype=False`
    leaves them; the number of tensors cast.

    PEFT's default keeps LoRA weights in float32 on a bf16/fp16 base, so each LoRA layer casts its
    input up and its output back in every forward and backward: 2,900 `aten::to` calls a step at
    Llama-3.1-8B's shapes (README, "Speed on a GPU"). TRL builds the adapter itself, so the setting
    cannot reach `get_peft_model` and is applied here, before the optimizer exists (as TRL itself
    casts QLoRA adapters to bf16). A float32 base (the CPU default) or a quantized one (TRL already
    keeps its adapters in bf16) is left as it is."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    cast = 0
    for module in model.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        dtype = module.get_base_layer().weight.dtype
        if dtype not in (torch.bfloat16, torch.float16):
            continue
        for name, tensor in module.named_parameters():
            if name.startswith("lora_") and tensor.dtype != dtype:
                tensor.data = tensor.data.to(dtype)
                cast += 1
    return cast


# ---- regional compilation --------------------------------------------------------------------

BACKEND = "inductor"  # torch.compile's default; the tests trace with aot_eager, which skips code generation


def decoder_layers(model) -> list:
    """The model's repeated blocks (transformers' `_no_split_modules`, e.g. LlamaDecoderLayer),
    PEFT-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    return [module for module in model.modules() if type(module).__name__ in names]


def static_rows(trainer) -> int | None:
    """Tokens a packed SFT batch is padded to: every batch then has one shape, [1, batch x
    max_length], and one compiled graph serves every step (packed rows are at most max_length
    long). Unpacked batches keep their lengths: after the second shape dynamo compiles one graph
    for any length (automatic dynamic shapes), where padding to max_length would double the work."""
    args = trainer.args
    if getattr(args, "packing", False) and args.max_length:
        return args.per_device_train_batch_size * args.max_length
    return None


@contextmanager
def compiled_layers(model, mode: str):
    """`torch.compile` each decoder layer in place while the block runs (regional compilation, as
    PyTorch's recipe does it: the layers share their compiled code, so a model compiles two graphs,
    its first layer's, whose input needs no gradient, and the others'). `mode`
    (`train.compile_layers`): eager (nothing compiled) | compiled | cudagraphs (mode
    reduce-overhead: CUDA graphs replay a layer's kernels with one launch). On exit the layers run
    eagerly again, so evaluation passes of other shapes compile nothing."""
    if mode == "eager":
        yield
        return
    layers = decoder_layers(model)
    options = {"backend": BACKEND, **({"mode": "reduce-overhead"} if mode == "cudagraphs" else {})}
    for layer in layers:
        layer.compile(**options)
    try:
        yield
    finally:
        for layer in layers:
            layer._compiled_call_impl = None  # what `nn.Module.compile` set: no public way back to eager


@contextmanager
def padded_to(collator, rows: int | None):
    """The collator pads every batch to a multiple of `rows` tokens while the block runs. The
    padding adds no loss term (labels -100; in a packed batch each pad token is a sequence of its
    own) and no counted token (`num_input_tokens_seen` counts non-pad tokens)."""
    before = getattr(collator, "pad_to_multiple_of", None)
    if rows is not None:
        collator.pad_to_multiple_of = rows
    try:
        yield
    finally:
        if rows is not None:
            collator.pad_to_multiple_of = before


@contextmanager
def training_levers(trainer, train):
    """The levers that apply while a trainer trains: compiled decoder layers, and with them packed
    batches of one shape, so one compiled graph serves every step."""
    rows = static_rows(trainer) if train.compile_layers != "eager" else None
    with padded_to(trainer.data_collator, rows), compiled_layers(trainer.model, train.compile_layers):
        yield


def compile_seconds() -> float:
    """Seconds this process has spent compiling so far: dynamo's frame compiles (tracing and
    inductor's forward and backward graphs) and the backward graphs inductor compiles lazily."""
    from torch._dynamo.utils import compilation_time_metrics

    keys = ("_compile.compile_inner", "compile_fx.<locals>.bw_compiler")
    return round(sum(sum(compilation_time_metrics.get(key, ())) for key in keys), 2)


# ---- per-step overhead -----------------------------------------------------------------------


def no_save_at_end():
    """A trainer callback that skips the checkpoint transformers writes after the last step: the
    run writes the adapter then and deletes every checkpoint (`run.cleanup`), and at 8B the
    optimizer state made that save take seconds for nothing."""
    from transformers import TrainerCallback

    class NoSaveAtEnd(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_save = False

    return NoSaveAtEnd()
