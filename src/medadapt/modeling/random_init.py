"""Llama models of real shapes with seeded random weights: no download, the real cost per token.

`medadapt rehearse` writes one to disk (`write_random_llama`, shard by shard, so 70B shapes need
only disk); `medadapt bench_multi` builds one where it trains (`random_llama`, layer by layer on
the device, quantized to NF4 as each layer is drawn). Both draw every weight by one rule,
`initial_weight`: norms are ones, the rest N(0, 0.02), Llama's own initialisation. Real weights
take the same time per token as random ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UserError
from ..runtime import on_gpu
from .models import quantization_config

SHARD_BYTES = 4 * 2**30
STD = 0.02  # LlamaConfig.initializer_range


def initial_weight(name: str, shape, dtype: torch.dtype, generator: torch.Generator, std: float = STD) -> torch.Tensor:
    """One parameter's seeded random value, on the generator's device."""
    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=dtype, device=generator.device)
    return (torch.randn(shape, generator=generator, device=generator.device) * std).to(dtype)


def write_random_llama(shapes: dict, tokenizer, folder: Path, dtype: torch.dtype, seed: int) -> dict:
    """A Llama of `shapes` with seeded random weights, saved shard by shard (the whole model never
    sits in memory at once), and the tokenizer, whose vocabulary is kept when larger; the shapes used."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    shapes = dict(shapes, vocab_size=max(shapes["vocab_size"], len(tokenizer)))
    config = LlamaConfig(**shapes, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config.dtype = dtype
    with torch.device("meta"):
        names = {name: tuple(p.shape) for name, p in LlamaForCausalLM(config).state_dict().items()}
    generator = torch.Generator("cuda" if on_gpu() else "cpu").manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    weight_map, shard, size, total, last = {}, {}, 0, 0, list(names)[-1]
    for name, shape in names.items():
        shard[name] = initial_weight(name, shape, dtype, generator, config.initializer_range).cpu()
        size += shard[name].numel() * shard[name].element_size()
        if size >= SHARD_BYTES or name == last:
            file = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
            save_file(shard, str(folder / file), metadata={"format": "pt"})
            weight_map.update({key: file for key in shard})
            total, shard, size = total + size, {}, 0
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return shapes


def to_4bit(linear: torch.nn.Linear, dtype, quant) -> torch.nn.Module:
    """An NF4 copy of `linear` (bitsandbytes quantizes when the weight moves to its device), stored
    in `quant.bnb_4bit_quant_storage`: the compute dtype under FSDP, uint8 otherwise."""
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False, compute_dtype=dtype,
                              compress_statistics=True, quant_type="nf4",
                              quant_storage=quant.bnb_4bit_quant_storage, device="meta")
    layer.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, compress_statistics=True,
                                     quant_type="nf4", quant_storage=quant.bnb_4bit_quant_storage,
                                     module=layer).to(linear.weight.device)
    return layer


def _draw(module: torch.nn.Module, prefix: str, device, dtype, generator: torch.Generator) -> None:
    """Materialise a meta-device module's own parameters on `device` by `initial_weight`."""
    module.to_empty(device=device, recurse=False)
    for name, param in module.named_parameters(recurse=False):
        param.data = initial_weight(f"{prefix}{name}", param.shape, dtype, generator).to(device)


def random_llama(shape: dict, quantization: str, dtype, device, seed: int):
    """A LlamaForCausalLM of `shape` with seeded random weights on `device`; with `4bit` every
    linear layer of the decoder is NF4, as `models.load_base_model` would load it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if quantization not in ("none", "4bit"):
        raise UserError(f"a random base is built in none or 4bit, not model.quantization={quantization}")
    config = LlamaConfig(**shape)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    quant = quantization_config(quantization, dtype)
    generator = torch.Generator(device).manual_seed(seed)
    for prefix, module in model.named_modules():
        prefix = f"{prefix}." if prefix else ""
        if any(p.is_meta for p in module.parameters(recurse=False)):
            _draw(module, prefix, device, dtype, generator)
        if quant is not None:
            for name, child in module.named_children():
                if isinstance(child, torch.nn.Linear) and child is not model.lm_head:
                    _draw(child, f"{prefix}{name}.", device, dtype, generator)
                    setattr(module, name, to_4bit(child, dtype, quant))
    with torch.device(device):  # the rotary tables are buffers computed at init
        model.model.rotary_emb = type(model.model.rotary_emb)(config)
    model.is_loaded_in_4bit = quant is not None  # PEFT then puts its bitsandbytes LoRA layers on
    return model
