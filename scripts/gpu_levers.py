"""Issue 13's speed levers, measured one at a time on the stage code `dvc repro` runs.

    python3 scripts/gpu_levers.py OUT_DIR [--set key=value ...]    # in a prepared project folder

One process builds a random-init model of a preset's shapes (`medadapt.modeling.random_init`, default
llama-3.1-8b), then runs `sft pubmedqa` once per variant of `VARIANTS` (each a list of `--set`
overrides on top of the given ones, outputs cleared in between so nothing resumes), the plain
LoRA loop beside them, then `rm` (evaluate scores with it) and `evaluate` (method sft_pubmedqa,
the last variant's adapter) with each of its phases timed. For every SFT run it also
times each `Trainer.training_step` (CUDA-synchronised), so the note can say how much of a stage's
train seconds are steps and how much is the trainer's work between them (logging, saving, the
data loader), and it profiles steps 10-14 of the first variant with `torch.profiler`.

Writes after each run (so a call cut short keeps what finished): OUT_DIR/levers.json, and
OUT_DIR/profile.txt (the profiler's top operators by GPU and by CPU time). Not a test and not a
stage: a measurement for the README's "Speed" section; the env var LEVERS picks variants by name.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from medadapt import paths
from medadapt.commands import rehearse  # noqa: E402
from medadapt.commands.preset import preset_shapes  # noqa: E402
from medadapt.modeling.random_init import write_random_llama  # noqa: E402
from medadapt.runtime import device_name  # noqa: E402
from medadapt.modeling.models import base_path, load_tokenizer  # noqa: E402
from medadapt.params import dump_params, load_params, parse_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]  # its presets/ give the shapes
S = "sft.pubmedqa."
GPU = torch.cuda.is_available()  # the script also runs on a CPU, as its check (PRESET=tiny)


def sync() -> None:
    if GPU:
        torch.cuda.synchronize()

VARIANTS = {  # name: overrides of sft.pubmedqa (params.yaml's defaults: batch 4, no packing)
    "defaults": [],
    "packing": [S + "packing=true"],
    "packing+liger": [S + "packing=true", S + "use_liger_kernel=true"],
    "batch8": [S + "batch_size=8"],
    "packing+liger+batch8": [S + "packing=true", S + "use_liger_kernel=true", S + "batch_size=8"],
    "packing+liger+ckpt+batch16": [S + "packing=true", S + "use_liger_kernel=true", S + "batch_size=16",
                                   S + "gradient_checkpointing=true"],
    "packing+liger+compile": [S + "packing=true", S + "use_liger_kernel=true", S + "torch_compile=true"],
    "packing+compile": [S + "packing=true", S + "torch_compile=true"],
}


class StepTimer:
    """Wall seconds of each `Trainer.training_step` (synchronised), and a profile of a few steps."""

    def __init__(self, profile_steps: range | None = None):
        self.seconds: list[float] = []
        self.profile_steps = profile_steps
        self.profiler = None

    def install(self):
        from transformers import Trainer

        original = Trainer.training_step
        timer = self

        def timed_step(trainer, *args, **kwargs):
            step = len(timer.seconds)
            if timer.profile_steps and step == timer.profile_steps.start:
                activities = [torch.profiler.ProfilerActivity.CPU] + [torch.profiler.ProfilerActivity.CUDA] * GPU
                timer.profiler = torch.profiler.profile(activities=activities)
                timer.profiler.__enter__()
            sync()
            start = time.perf_counter()
            loss = original(trainer, *args, **kwargs)
            sync()
            timer.seconds.append(time.perf_counter() - start)
            if timer.profiler is not None and step == timer.profile_steps.stop - 1:
                timer.profiler.__exit__(None, None, None)
            return loss

        Trainer.training_step = timed_step
        return original

    def summary(self, train_seconds: float) -> dict:
        steady = self.seconds[3:] or self.seconds
        return {"steps_timed": len(self.seconds), "step_seconds_median": round(statistics.median(steady), 4),
                "steps_seconds_total": round(sum(self.seconds), 2),
                "outside_steps_seconds": round(train_seconds - sum(self.seconds), 2)}


def clear_stage(stage: str) -> None:
    for folder in (paths.adapter_dir(stage), paths.checkpoint_dir(stage)):
        shutil.rmtree(folder, ignore_errors=True)
    for file in (paths.metrics_file(stage), paths.cost_file(stage)):
        Path(file).unlink(missing_ok=True)


def sft_variant(name: str, params, profile: bool, out: Path) -> dict:
    from transformers import Trainer

    from medadapt.stages import sft

    variant = parse_params(dump_params(params), f"variant {name}", VARIANTS[name])
    clear_stage("sft_pubmedqa")
    timer = StepTimer(range(10, 15) if profile else None)
    original = timer.install()
    try:
        row = rehearse.run_stage("sft_pubmedqa", lambda: sft.run(variant, "pubmedqa"), variant)
    except Exception as error:  # a lever that fails here is a result too
        row = {"stage": "sft_pubmedqa", "error": f"{type(error).__name__}: {error}"[:2000]}
    finally:
        Trainer.training_step = original
    if timer.seconds and "train_seconds" in row:
        row.update(timer.summary(row["train_seconds"]))
    if timer.profiler is not None:
        averages = timer.profiler.key_averages()
        text = [f"== {name}: steps 10-14 of sft_pubmedqa, top operators by GPU time",
                averages.table(sort_by="cuda_time_total" if GPU else "self_cpu_time_total", row_limit=25),
                "== the same, by CPU time", averages.table(sort_by="cpu_time_total", row_limit=25)]
        (out / "profile.txt").write_text("\n".join(text))
    return {"variant": name, "overrides": VARIANTS[name], **row}


def timed_evaluate(params) -> dict:
    """`evaluate` with its phases timed: model loads, each dataset's scoring, safety, RM scoring."""
    from medadapt.stages import evaluate

    phases: dict[str, float] = {}

    def timing(name_of, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                sync()
                key = name_of(args)
                phases[key] = round(phases.get(key, 0.0) + time.perf_counter() - start, 2)
        return wrapper

    patched = {"load_method_model": lambda a: "load policy", "score_dataset": lambda a: f"score {a[0]}",
               "safety_samples": lambda a: "safety generation", "reward_scores": lambda a: "reward model (load + score)"}
    originals = {name: getattr(evaluate, name) for name in patched}
    for name, label in patched.items():
        setattr(evaluate, name, timing(label, originals[name]))
    try:
        row = rehearse.run_stage(f"evaluate:{params.method}", lambda: evaluate.run(params), params)
    finally:
        for name, function in originals.items():
            setattr(evaluate, name, function)
    return {**row, "batch_size": params.evaluate.batch_size, "phases": phases}


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    overrides = [a for a in sys.argv[2:] if a != "--set"]
    params = load_params("params.yaml", overrides)
    preset = os.environ.get("PRESET", "llama-3.1-8b")
    names = os.environ.get("LEVERS", ",".join(VARIANTS)).split(",")
    budget = float(os.environ.get("BUDGET_S", "520"))
    start = time.perf_counter()
    tokenizer = load_tokenizer(base_path(params.model.base, Path(".")))
    report = {"preset": preset, "device": device_name(), "torch": torch.__version__, "sft": [],
              "plain_loop": [], "evaluate": []}
    save = lambda: (out / "levers.json").write_text(json.dumps(report, indent=1))  # noqa: E731
    with rehearse.scratch_project(Path(".").resolve()) as scratch:
        folder = scratch / "random-model"
        report["shapes"] = write_random_llama(preset_shapes(preset, REPO), tokenizer, folder,
                                                            torch.bfloat16 if GPU else torch.float32, params.seed)
        params = params.model_copy(update={"model": params.model.model_copy(update={"base": str(folder)})})
        mix = rehearse.length_mix(params, tokenizer)
        report["plain_loop"] = [rehearse.plain_loop(params, mix, tokenizer.pad_token_id, c) for c in (False, True)]
        save()
        for i, name in enumerate(names):
            if time.perf_counter() - start > budget:
                report["skipped"] = names[i:]
                break
            report["sft"].append(sft_variant(name, params, profile=(i == 0), out=out))
            print("[levers]", json.dumps(report["sft"][-1]), flush=True)
            save()
        if os.environ.get("EVALUATE", "1") == "1" and time.perf_counter() - start < budget + 60:
            from medadapt.stages import rm

            report["rm"] = rehearse.run_stage("rm", lambda: rm.run(params), params)  # evaluate scores with it
            save()
            method = "sft_pubmedqa" if paths.adapter_dir("sft_pubmedqa").is_dir() else "base"
            for batch in [int(b) for b in os.environ.get("EVAL_BATCHES", "64").split(",")]:
                evaluate_params = parse_params(dump_params(params), "evaluate", [f"evaluate.batch_size={batch}",
                                                                                       f"method={method}"])
                report["evaluate"].append(timed_evaluate(evaluate_params))
                print("[levers]", json.dumps(report["evaluate"][-1]), flush=True)
                save()
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    save()


if __name__ == "__main__":
    main()
