"""training/speed.py: the levers every trainer gets, on the tiny model: adapters in the base's dtype,
compiled decoder layers with one shape for every packed batch, no checkpoint after the last step."""

from __future__ import annotations

import shutil

import pytest
import torch
from peft import get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, TrainerControl, TrainerState, TrainingArguments

from medadapt.modeling.adapters import lora_config
from medadapt.params import LoraParams, load_params
from medadapt.stages import prepare, sft
from medadapt.training import speed

from conftest import make_project

TINY = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=256)


def lora_dtypes(model) -> set:
    return {p.dtype for n, p in model.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("dtype, expected", [(torch.bfloat16, torch.bfloat16), (torch.float32, torch.float32)])
def test_adapters_leave_float32_on_a_bf16_base_only(dtype, expected):
    torch.manual_seed(0)
    model = get_peft_model(LlamaForCausalLM(TINY).to(dtype), lora_config(LoraParams()))
    assert lora_dtypes(model) == {torch.float32}  # PEFT's default: autocast_adapter_dtype=True
    cast = speed.adapters_in_base_dtype(model)
    assert lora_dtypes(model) == {expected}
    assert cast == (0 if dtype == torch.float32 else 2 * 7 * TINY.num_hidden_layers)  # A and B of 7 projections


def test_decoder_layers_are_found_through_peft():
    model = get_peft_model(LlamaForCausalLM(TINY), lora_config(LoraParams()))
    assert [type(layer).__name__ for layer in speed.decoder_layers(model)] == ["LlamaDecoderLayer"] * 2


def test_no_checkpoint_is_written_after_the_last_step(tmp_path):
    """The run deletes every checkpoint once the adapter is written: the last step's save is waste."""
    args = TrainingArguments(output_dir=str(tmp_path), save_strategy="steps", save_steps=2, use_cpu=True)
    state, callback = TrainerState(max_steps=4), speed.no_save_at_end()
    for step, saved in ((2, True), (4, False)):
        state.global_step = step
        control = TrainerControl(should_save=step % args.save_steps == 0)  # what DefaultFlowCallback decided
        callback.on_step_end(args, state, control)
        assert control.should_save is saved


@pytest.mark.slow
def test_compiled_layers_train_one_graph_with_the_eager_losses(tmp_path, monkeypatch):
    """SFT with packing and each decoder layer compiled: every batch padded to batch x max_length, two
    graphs compiled for the whole run (the first layer's input needs no gradient, the others' do),
    the losses of the eager run, and the layers eager again afterwards. The aot_eager backend traces
    through dynamo and AOTAutograd as inductor does, without generating code (minutes on a CPU)."""
    from torch._dynamo.utils import counters
    from transformers import Trainer

    make_project(tmp_path, {"lora": {"dropout": 0.0}, "tracking": {"dvclive": False}})  # no dropout: same RNG draws
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(speed, "BACKEND", "aot_eager")
    prepare.run(load_params())
    shapes, layers = [], []
    original_step, original_trainer = Trainer.training_step, sft.make_trainer

    def recording_step(self, model, inputs, *args, **kwargs):
        shapes.append(tuple(inputs["input_ids"].shape))
        return original_step(self, model, inputs, *args, **kwargs)

    def keep_layers(*args, **kwargs):
        trainer = original_trainer(*args, **kwargs)
        layers.extend(speed.decoder_layers(trainer.model))
        return trainer

    monkeypatch.setattr(Trainer, "training_step", recording_step)
    monkeypatch.setattr(sft, "make_trainer", keep_layers)
    sizes = ["sft.pubmedqa.packing=true", "sft.pubmedqa.batch_size=2", "sft.pubmedqa.max_length=512"]
    results = {}
    for mode in ("eager", "compiled"):
        shutil.rmtree("models/sft_pubmedqa", ignore_errors=True)
        shutil.rmtree("checkpoints/sft_pubmedqa", ignore_errors=True)
        shapes.clear()
        counters.clear()
        results[mode] = sft.run(load_params(overrides=sizes + [f"sft.pubmedqa.compile_layers={mode}"]), "pubmedqa")
        results[mode]["shapes"] = set(shapes)
        results[mode]["frames"] = counters["frames"]["ok"]
    eager, compiled = results["eager"], results["compiled"]
    assert len(eager["shapes"]) > 1 and compiled["shapes"] == {(1, 2 * 512)}  # one shape, padded
    assert eager["frames"] == 0 and compiled["frames"] == 2
    assert compiled["cost"]["compile_seconds"] > 0 == eager["cost"]["compile_seconds"]
    for key in ("train_loss", "eval_loss", "tokens_seen", "steps"):  # padding: no loss term, no counted token
        assert compiled[key] == pytest.approx(eager[key], abs=2e-4), key
    assert compiled["cost"]["train_tokens"] == eager["cost"]["train_tokens"] == eager["tokens_seen"]
    assert layers and all(layer._compiled_call_impl is None for layer in layers)  # eager again after training
