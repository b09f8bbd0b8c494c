"""LoRA adapters: their config, loading one onto a base, checking its files, and saving it.

A stage's adapter folder (`models/<stage>/`) holds PEFT's `adapter_config.json` and
`adapter_model.safetensors` (the reward model's also its `score` head), the tokenizer, and
`hyperparameters.json`: the resolved settings it was trained with (litgpt's habit of saving them
beside every checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..artifacts import atomic_dir
from .models import ModelError, first_line


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

    check_adapter(adapter_dir)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable, adapter_name=adapter_name)


def check_adapter(adapter_dir: Path) -> dict:
    """The adapter's config, after checking that its files are whole and agree: PEFT would
    otherwise try the hub for a missing file, fail deep inside safetensors for a truncated one, or
    raise a size mismatch, a KeyError or a TypeError for a config its weights or LoRA do not fit."""
    from safetensors import SafetensorError, safe_open

    adapter_dir = Path(adapter_dir)
    rerun = f"run `dvc repro {adapter_dir.name}`"
    config, weights = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not config.exists() or not weights.exists():
        raise ModelError(f"{adapter_dir} has no adapter (adapter_config.json and adapter_model.safetensors): {rerun}")
    try:
        settings = json.loads(config.read_text())
        with safe_open(str(weights), framework="pt") as handle:
            shapes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}
    except (ValueError, SafetensorError, OSError) as error:
        raise ModelError(f"{config if isinstance(error, json.JSONDecodeError) else weights} is damaged "
                         f"({first_line(error)}): {rerun}") from None
    problem = lora_config_problem(settings) or rank_problem(settings, shapes)
    if problem:
        raise ModelError(f"{config}: {problem}: {rerun}")
    return settings


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def lora_config_problem(settings) -> str | None:
    """What in a saved config PEFT's LoRA could not use (None when nothing): the keys medadapt's
    adapters set, with the types PEFT computes with."""
    if not isinstance(settings, dict):
        return f"expected a JSON object, got {type(settings).__name__}"
    targets = settings.get("target_modules")
    checks = [
        (settings.get("peft_type") == "LORA", (f"peft_type {settings.get('peft_type')!r} is not LORA "
                                               "(medadapt trains LoRA adapters)")),
        (isinstance(settings.get("r"), int) and not isinstance(settings.get("r"), bool) and settings["r"] > 0,
         f"r must be a positive integer (got {settings.get('r')!r})"),
        (_number(settings.get("lora_alpha")), f"lora_alpha must be a number (got {settings.get('lora_alpha')!r})"),
        (_number(settings.get("lora_dropout", 0.0)),
         f"lora_dropout must be a number (got {settings.get('lora_dropout')!r})"),
        (isinstance(targets, str) and targets or isinstance(targets, list) and targets
         and all(isinstance(t, str) and t for t in targets),
         f"target_modules must name the adapted modules (got {targets!r})"),
    ]
    return next((problem for ok, problem in checks if not ok), None)


def rank_problem(settings: dict, shapes: dict[str, list[int]]) -> str | None:
    """A LoRA weight whose rank is not the config's `r` (per-module ranks in `rank_pattern` are
    PEFT's to resolve; medadapt never writes them)."""
    if settings.get("rank_pattern"):
        return None
    for name, shape in sorted(shapes.items()):
        rank = shape[0] if ".lora_A." in name else shape[-1] if ".lora_B." in name else None
        if rank is not None and rank != settings["r"]:
            return f"r is {settings['r']} but {name} has rank {rank} (the config does not match its weights)"
    return None


def adapter_lora(settings: dict) -> dict:
    """The LoRA hyperparameters an adapter was trained with, in `lora.*` names."""
    targets = settings.get("target_modules")
    return {"r": settings.get("r"), "alpha": settings.get("lora_alpha"), "dropout": settings.get("lora_dropout"),
            "target_modules": sorted(targets) if isinstance(targets, (list, set)) else targets}


def trainable_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def save_adapter(model, tokenizer, out: Path, hyperparameters: dict, save_extra=None,
                 state_dict: dict | None = None) -> None:
    """Adapter safetensors, tokenizer and the resolved hyperparameters, written atomically;
    `state_dict`: the weights gathered under FSDP (`distributed.adapter_state_dict`)."""
    with atomic_dir(out) as tmp:
        # Only the trained adapter: DPO adds a frozen `ref` copy that is no output of ours.
        model.save_pretrained(str(tmp), safe_serialization=True, selected_adapters=["default"], state_dict=state_dict)
        normalise_adapter_config(tmp / "adapter_config.json")
        # PEFT's model card: its template's placeholders and PEFT's version, which another patch
        # release changes (and with it every fingerprint that hashes this folder); nothing of ours.
        (tmp / "README.md").unlink(missing_ok=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2, sort_keys=True) + "\n")
        if save_extra is not None:
            save_extra(model, tmp)


def normalise_adapter_config(config: Path) -> None:
    """Identical weights give a byte-identical adapter folder (and DVC re-runs nothing downstream):
    PEFT writes `target_modules` from a set, in a different order each run, so it is sorted; and
    it stamps its own version, which another patch release would change, so that is dropped."""
    settings = json.loads(config.read_text())
    if isinstance(settings.get("target_modules"), list):
        settings["target_modules"] = sorted(settings["target_modules"])
    settings.pop("peft_version", None)
    config.write_text(json.dumps(settings, indent=2, sort_keys=True))
