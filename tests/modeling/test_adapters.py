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

import peft.config
import peft.peft_model

from medadapt.modeling.adapters import lora_config, save_adapter
from medadapt.modeling.models import build_tiny_llama
from medadapt.params import LoraParams

TEXTS = ["Answer: yes\nExplanation: Systolic pressure fell by 12 mmHg with drug X."] * 20


def test_an_adapter_is_the_same_under_another_peft_patch_release(tmp_path, monkeypatch):
    """Issue 24.3: PEFT stamps its version into adapter_config.json and its model card README.md
    (and writes target_modules from a set, in any order): two releases save the same weights as
    the same bytes, with no stamp."""
    saved = []
    for version in ("0.21.2", "0.21.3"):
        monkeypatch.setattr(peft.config, "__version__", version)  # read when the LoRA config is made
        monkeypatch.setattr(peft.peft_model, "__version__", version)  # read when the model card is written
        model, tokenizer = build_tiny_llama(TEXTS, seed=1, vocab_size=300)  # seeds the LoRA weights too
        model = get_peft_model(model, lora_config(LoraParams(target_modules=["q_proj", "v_proj", "o_proj"])))
        save_adapter(model, tokenizer, tmp_path / version, {"lora": "r=8"})
        saved.append({path.name: path.read_bytes() for path in sorted((tmp_path / version).iterdir())})
    assert saved[0] == saved[1]
    assert not [name for name, data in saved[0].items() if version.encode() in data]
    config = json.loads(saved[0]["adapter_config.json"])
    assert "peft_version" not in config and config["target_modules"] == ["o_proj", "q_proj", "v_proj"]
