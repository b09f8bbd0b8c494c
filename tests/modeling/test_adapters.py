"""modeling/adapters.py: check_adapter reads an adapter's config as PEFT would use it, so that a
config that disagrees with its weights or with LoRA is one clear line, not a traceback in PEFT."""

from __future__ import annotations

import json

import pytest
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from medadapt.modeling.adapters import adapter_lora, check_adapter, normalise_adapter_config
from medadapt.modeling.models import ModelError


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A LoRA adapter (r=8) of a 1-layer Llama, saved as the stages save theirs."""
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=128)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    folder = tmp_path_factory.mktemp("adapter") / "sft_pubmedqa"
    model.save_pretrained(str(folder))
    normalise_adapter_config(folder / "adapter_config.json")
    return folder


def with_config(adapter, tmp_path, change) -> tuple:
    folder = tmp_path / "sft_pubmedqa"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes((adapter / "adapter_model.safetensors").read_bytes())
    settings = json.loads((adapter / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(change(settings)))
    return folder


def test_a_whole_adapter_passes(adapter):
    assert adapter_lora(check_adapter(adapter))["r"] == 8


@pytest.mark.parametrize("change, says", [
    (lambda s: {**s, "r": 4}, "r is 4 but"),  # PEFT: a size-mismatch RuntimeError
    (lambda s: {**s, "peft_type": "NOPE"}, "peft_type 'NOPE'"),
    (lambda s: [s], "expected a JSON object"),
    (lambda s: {k: v for k, v in s.items() if k != "target_modules"}, "target_modules"),
    (lambda s: {**s, "target_modules": []}, "target_modules"),
    (lambda s: {**s, "lora_alpha": "16"}, "lora_alpha"),
    (lambda s: {**s, "r": True}, "r "),
    (lambda s: {**s, "lora_dropout": "high"}, "lora_dropout"),
])
def test_a_config_peft_would_choke_on_is_one_line(adapter, tmp_path, change, says):
    folder = with_config(adapter, tmp_path, change)
    with pytest.raises(ModelError) as info:
        check_adapter(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'adapter_config.json'}: ") and says in message, message
    assert message.endswith("run `dvc repro sft_pubmedqa`") and "\n" not in message
