"""`medadapt preset [NAME]`: the `-S key=value` arguments of a GPU preset, for `dvc exp run`.

    dvc exp run --queue $(medadapt preset llama-3.1-8b) -S method=base,icl,sft,dpo,grpo
    medadapt preset            # lists the presets, each with the GPU memory it needs

A preset is `presets/<name>.yaml`:
- `params`: only the keys it changes, nested as in `params.yaml`;
- `extends`: optionally another preset whose params and shapes it starts from;
- `shapes`: the `LlamaConfig` sizes of its model (from the model's `config.json`), for a
  random-init rehearsal without a download; not params;
- `gpu_memory_gb`: the estimate of `memory_estimate` (a test keeps the two equal).

Why plain `-S` arguments rather than a `preset:` key resolved inside `params.py`: with `-S`
the effective values land in `params.yaml`, where DVC tracks each key a stage reads (a
change of batch size re-runs the training stages, not `icl`), and `dvc exp show` shows them.
A `preset:` key would hide them behind one name that every stage would have to depend on.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..params import Params, ParamsError, dump_params, flatten, parse_params, render
from ..paths import SFT_STAGES

PRESETS = Path("presets")
GIB = 2**30
# Bytes per parameter of a decoder linear layer: bf16, LLM.int8, NF4 with double-quantized
# scales (4.127 bits).
WEIGHT_BYTES = {"none": 2.0, "8bit": 1.0, "4bit": 0.516}
# Bytes kept for the backward pass per token, per layer and per unit of hidden size, fitted to
# the H200 peaks quoted in the README (k-bit bases run their residual stream in float32,
# because prepare_model_for_kbit_training casts the unquantized layers to float32).
ACTIVATION_BYTES = {"none": 80, "8bit": 165, "4bit": 125}
MARGIN = 1.1  # allocator fragmentation and CUDA workspaces beyond the allocated peak


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    params: dict
    shapes: dict
    gpu_memory_gb: int

    def overrides(self) -> list[str]:
        """`key=value` strings in the grammar of both `dvc exp run -S` and `parse_params`; a key that
        the shipped params.yaml does not hold (a training stage's override) gets DVC's `++`, which
        adds it, or sets it where an earlier experiment added it."""
        held = set(flatten(yaml.safe_load(render(Params()))))
        return [f"{'' if key in held else '++'}{key}={override_value(value, key)}"
                for key, value in flatten(self.params).items()]

    def arguments(self) -> list[str]:
        return [part for override in self.overrides() for part in ("-S", override)]


def override_value(value, key: str) -> str:
    """A value as one shell word: `$(medadapt preset ...)` is split on spaces, not parsed."""
    if isinstance(value, list):
        return "[" + ",".join(override_value(item, key) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    text = positional(value) if isinstance(value, float) else str(value)
    if not text or any(c.isspace() or c in "'\"\\,=$`[]{}()" for c in text):
        raise ParamsError(f"preset value {key}={text!r} cannot be passed as one shell word")
    return text


def positional(number: float) -> str:
    """0.00005, not 5e-05: YAML (`--set`) reads an exponent without a dot as a string."""
    text = f"{number:.12f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = deep_merge(merged[key], value) if both else value
    return merged


def preset_names(root: Path = Path(".")) -> list[str]:
    return sorted(path.stem for path in (root / PRESETS).glob("*.yaml"))


def read_preset(name: str, root: Path = Path(".")) -> dict:
    """The preset's YAML with its `extends` chain merged in (params and shapes)."""
    path = root / PRESETS / f"{name}.yaml"
    if not path.exists():
        raise ParamsError(f"no preset {name!r} in {root / PRESETS}; valid: {', '.join(preset_names(root))}")
    tree = yaml.safe_load(path.read_text())
    parent = tree.pop("extends", None)
    if parent:
        base = read_preset(parent, root)
        tree["params"] = deep_merge(base["params"], tree.get("params", {}))
        tree["shapes"] = {**base["shapes"], **tree.get("shapes", {})}
    return tree


def load_preset(name: str, root: Path = Path(".")) -> Preset:
    tree = read_preset(name, root)
    return Preset(name=name, description=tree["description"], params=tree["params"],
                  shapes=tree["shapes"], gpu_memory_gb=tree["gpu_memory_gb"])


def preset_shapes(name: str, root: Path = Path("."), command: str = "medadapt") -> dict:
    """The LlamaConfig shapes of a preset (its `shapes:` only: its params are not applied), or of
    `tiny`, the test model's; the one table of model shapes (rehearse and bench_multi read it)."""
    if name == "tiny":
        from ..modeling.models import TINY_SHAPES  # here, not at the top: listing presets needs no torch

        return dict(TINY_SHAPES)
    try:
        return {"tie_word_embeddings": False, **load_preset(name, root).shapes}
    except ParamsError as error:
        raise ParamsError(f"{command}: {error}, or tiny") from None


def apply(preset: Preset, params):
    """`params` with the preset's overrides, validated: the values a `dvc exp run` would get."""
    return parse_params(dump_params(params), f"preset {preset.name}", preset.overrides())


# ---- GPU memory estimate ----------------------------------------------------------------------


def parameter_counts(shapes: dict) -> tuple[int, int, int]:
    """Decoder linear parameters, embedding + LM head parameters, and LoRA parameters per unit
    of rank when every projection (q, k, v, o, gate, up, down) carries an adapter."""
    h, inner, layers = shapes["hidden_size"], shapes["intermediate_size"], shapes["num_hidden_layers"]
    kv = h // shapes["num_attention_heads"] * shapes["num_key_value_heads"]
    projections = [(h, h), (h, kv), (h, kv), (h, h), (h, inner), (h, inner), (inner, h)]
    linear = layers * sum(a * b for a, b in projections)
    lora_per_rank = layers * sum(a + b for a, b in projections)
    embeddings = shapes["vocab_size"] * h * (1 if shapes.get("tie_word_embeddings") else 2)
    return linear, embeddings, lora_per_rank


def training_bytes(shapes: dict, quantization: str, lora_r: int, train, max_length: int,
                   sequences: int = 1, logits: bool = True, reference: bool = False) -> float:
    """Peak bytes of one training step: weights, adapter with AdamW state, kept activations and
    the vocabulary logits (bf16 logits, their float32 copy and gradient; float32 on k-bit)."""
    linear, embeddings, lora_per_rank = parameter_counts(shapes)
    h, layers, vocab = shapes["hidden_size"], shapes["num_hidden_layers"], shapes["vocab_size"]
    kbit = quantization != "none"
    weights = linear * WEIGHT_BYTES[quantization] + embeddings * (4 if kbit else 2)
    adapter = lora_per_rank * lora_r * 16  # float32 weight, gradient and two AdamW moments
    tokens = train.batch_size * sequences * min(train.max_length, max_length)
    layer = ACTIVATION_BYTES[quantization] * h
    if train.gradient_checkpointing:  # each layer's input is kept; one layer is recomputed at a time
        activations = tokens * (layers * h * (4 if kbit else 2) + layer)
    else:
        activations = tokens * layers * layer
    head = tokens * vocab * ((12 if kbit else 10) if logits else 0)
    head += tokens * vocab * 6 if reference else 0  # DPO's reference forward, without gradient
    return weights + adapter + activations + head


def grpo_bytes(shapes: dict, quantization: str, lora_r: int, grpo, max_length: int) -> float:
    """Peak bytes of a `grpo` step: the policy's training step with the reference's forward (the
    frozen `ref` adapter on the same base: no second base), the KV cache of sampling one
    generation batch (batch_size x grad_accum answers, prompt and completion within max_length),
    and, with a reward-model weight above 0, the reward model: a second copy of the base loaded
    beside it (a sequence classifier: no LM head; its scoring of a batch is small beside the
    policy's step)."""
    linear, _, lora_per_rank = parameter_counts(shapes)
    h, layers, vocab = shapes["hidden_size"], shapes["num_hidden_layers"], shapes["vocab_size"]
    kv = h // shapes["num_attention_heads"] * shapes["num_key_value_heads"]
    policy = training_bytes(shapes, quantization, lora_r, grpo, max_length, reference=True)
    tokens = min(grpo.max_length, max_length)
    cache = grpo.batch_size * grpo.grad_accum * tokens * layers * 2 * kv * 2  # bf16 keys and values
    reward_model = linear * WEIGHT_BYTES[quantization] + vocab * h * 2 + lora_per_rank * lora_r * 4
    return policy + cache + (reward_model if grpo.weights.reward_model > 0 else 0)


def evaluate_bytes(shapes: dict, quantization: str, evaluate, max_length: int) -> float:
    """Peak bytes of `evaluate`: weights, a batch of log-probabilities over the vocabulary
    (bf16 logits and their float32 log-softmax), and the KV cache of greedy generation."""
    linear, embeddings, _ = parameter_counts(shapes)
    h, layers, vocab = shapes["hidden_size"], shapes["num_hidden_layers"], shapes["vocab_size"]
    kv = h // shapes["num_attention_heads"] * shapes["num_key_value_heads"]
    weights = linear * WEIGHT_BYTES[quantization] + embeddings * 2
    logits = evaluate.batch_size * max_length * vocab * 6
    cache = evaluate.batch_size * (max_length + evaluate.max_new_tokens) * layers * 2 * kv * 2
    return weights + logits + cache


def memory_estimate(preset: Preset, params) -> dict[str, float]:
    """GiB per stage for `params` with the preset applied, before the margin. An estimate from
    the model's shapes and the batch sizes, not a measurement: `medadapt rehearse` measures."""
    p = apply(preset, params)
    shapes, quant, r, length = preset.shapes, p.model.quantization, p.lora.r, p.model.max_length
    stages = {stage: training_bytes(shapes, quant, r, p.training(stage), length) for stage in SFT_STAGES}
    stages["rm"] = training_bytes(shapes, quant, r, p.training("rm"), length, sequences=2, logits=False)
    stages["dpo"] = training_bytes(shapes, quant, r, p.training("dpo"), length, sequences=2, reference=True)
    stages["grpo"] = grpo_bytes(shapes, quant, r, p.training("grpo"), length)
    stages["evaluate"] = evaluate_bytes(shapes, quant, p.evaluate, length)
    return {stage: round(value / GIB, 1) for stage, value in stages.items()}


def needed_gb(estimate: dict[str, float]) -> int:
    return math.ceil(max(estimate.values()) * MARGIN)


# ---- the command --------------------------------------------------------------------------------


def main(params, root: Path = Path("."), name: str | None = None) -> list[str]:
    """With a name: print its `-S` arguments on stdout (what `$(...)` captures) and its
    description and memory on stderr. Without: list every preset."""
    if name is None:
        for preset in [load_preset(each, root) for each in preset_names(root)]:
            print(f"{preset.name:22} {preset.gpu_memory_gb:4} GB  {preset.description}")
        print("\nGPU memory: an estimate (weights, LoRA, activations, logits), not a measurement.")
        return []
    preset = load_preset(name, root)
    # A preset that does not validate stops here, not inside dvc exp run.
    stages = ", ".join(f"{stage} {gb}" for stage, gb in memory_estimate(preset, params).items())
    print(f"# {preset.name}: {preset.description}; needs about {preset.gpu_memory_gb} GB of GPU memory "
          f"(estimate; per stage before the {MARGIN - 1:.0%} margin: {stages})", file=sys.stderr)
    arguments = preset.arguments()
    print(" ".join(arguments))
    return arguments
