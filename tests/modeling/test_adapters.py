"""modeling/adapters.py: a saved adapter folder is the same bytes for the same weights."""

from __future__ import annotations

import json

import peft.config
import peft.peft_model
from peft import get_peft_model

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
