"""Issue 22's speed levers, measured one at a time, in one process, on one GPU.

    python3 scripts/gpu_levers.py OUT_DIR [--set key=value ...]    # in a prepared project folder

One process builds a random-init model of a preset's shapes (`medadapt.modeling.random_init`,
PRESET, default llama-3.1-8b; `tiny` on a CPU), then:
1. `plain`: plain LoRA steps (HF model + PEFT, AdamW; `training.plain`) on the batches
   `sft_pubmedqa` trains (packed rows of at most max_length, batch_size rows a step), one variant
   of `PLAIN` after the other: PEFT's defaults (float32 adapters under autocast), adapters in the
   base's bf16, + each decoder layer compiled, + Liger's fused linear cross-entropy, CUDA graphs;
   and the plain pair steps of rm and dpo, with PEFT's defaults and with the best SFT levers;
2. `stages`: the real `sft pubmedqa` stage once per variant of `STAGE_VARIANTS` (outputs cleared
   in between, so nothing resumes), each `Trainer.training_step` timed (CUDA-synchronised), its
   losses kept (a lever must give the same losses), steps 10-14 of the variant named by PROFILE
   profiled with `torch.profiler`;
3. `evaluate`: `rm`, `icl`, then `evaluate` for method sft_pubmedqa and icl, each phase's seconds.

Writes after each measurement (so a call cut short keeps what finished): OUT_DIR/levers.json,
OUT_DIR/profile.txt (top operators by GPU and by CPU time) and OUT_DIR/best_sets.txt: the
`--set` overrides of the fastest stage variant whose eval loss is within LOSS_TOLERANCE of the
presets' (packing + Liger), for `scripts/gpu_rehearse.sh none` to rehearse with. A variant that
fails is a result too (its error is recorded) and the others go on. Not a test and not a stage:
a measurement for the README's "Speed" section. Env: PLAIN, LEVERS (names, comma-separated),
BUDGET_S (skip what would start after it), EVALUATE=0 (skip 3), PROFILE.
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

from medadapt import paths  # noqa: E402
from medadapt.commands import rehearse  # noqa: E402
from medadapt.commands.preset import preset_shapes  # noqa: E402
from medadapt.modeling.models import base_path, load_base_model, load_tokenizer  # noqa: E402
from medadapt.modeling.random_init import write_random_llama  # noqa: E402
from medadapt.params import dump_params, load_params, parse_params  # noqa: E402
from medadapt.runtime import device_name, release_memory, timed  # noqa: E402
from medadapt.training.plain import Levers, pair_batches, plain_loop, sft_batches  # noqa: E402

REPO = Path(__file__).resolve().parents[1]  # its presets/ give the shapes
GPU = torch.cuda.is_available()  # the script also runs on a CPU, as its check (PRESET=tiny)
S = "sft.pubmedqa."
LOSS_TOLERANCE = 0.02  # relative: a lever whose eval loss moves more than this is not kept

PLAIN = {  # name: the plain step's levers (the table, in its order)
    "peft-default": Levers(),
    "bf16-adapters": Levers(autocast_adapter_dtype=False),
    "bf16+compiled": Levers(autocast_adapter_dtype=False, compile_layers="compiled"),
    "bf16+compiled+liger-flce": Levers(autocast_adapter_dtype=False, compile_layers="compiled", liger=True),
    "bf16+cudagraphs": Levers(autocast_adapter_dtype=False, compile_layers="cudagraphs"),
}
PACKED = [S + "packing=true"]
STAGE_VARIANTS = {  # name: overrides of sft.pubmedqa on top of the given params
    "packing+liger": PACKED + [S + "use_liger_kernel=true"],  # the presets' settings before this issue
    "packing+liger+bf16": PACKED + [S + "use_liger_kernel=true", S + "autocast_adapter_dtype=false"],
    "packing+bf16+compiled": PACKED + [S + "use_liger_kernel=false", S + "autocast_adapter_dtype=false",
                                       S + "compile_layers=compiled"],
    "packing+liger+bf16+compiled": PACKED + [S + "use_liger_kernel=true", S + "autocast_adapter_dtype=false",
                                             S + "compile_layers=compiled"],
    "packing+bf16+cudagraphs": PACKED + [S + "use_liger_kernel=false", S + "autocast_adapter_dtype=false",
                                         S + "compile_layers=cudagraphs"],
}
NEEDS_GPU = {"bf16+compiled+liger-flce", "bf16+cudagraphs", "packing+bf16+cudagraphs"}  # Triton, CUDA graphs


def sync() -> None:
    if GPU:
        torch.cuda.synchronize()


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
        return {"steps_timed": len(self.seconds), "first_step_seconds": round(self.seconds[0], 3),
                "step_seconds_median": round(statistics.median(steady), 4),
                "steps_seconds_total": round(sum(self.seconds), 2),
                "outside_steps_seconds": round(train_seconds - sum(self.seconds), 2)}


def clear_stage(stage: str) -> None:
    for folder in (paths.adapter_dir(stage), paths.checkpoint_dir(stage)):
        shutil.rmtree(folder, ignore_errors=True)
    for file in (paths.metrics_file(stage), paths.cost_file(stage)):
        Path(file).unlink(missing_ok=True)


def in_process(name: str, call) -> dict:
    """A stage run in this process: its wall seconds, metrics and cost, or its error."""
    release_memory()
    try:
        with timed() as clock:
            metrics = call()
    except Exception as error:  # a lever that fails here is a result too
        return {"error": f"{type(error).__name__}: {error}"[:2000]}
    return {"seconds": clock["seconds"], "metrics": metrics}


def sft_variant(name: str, params, profile: bool, out: Path) -> dict:
    from transformers import Trainer

    from medadapt.stages import sft

    variant = parse_params(dump_params(params), f"variant {name}", STAGE_VARIANTS[name])
    clear_stage("sft_pubmedqa")
    timer = StepTimer(range(10, 15) if profile else None)
    original = timer.install()
    try:
        result = in_process(name, lambda: sft.run(variant, "pubmedqa"))
    finally:
        Trainer.training_step = original
    row = {"variant": name, "overrides": STAGE_VARIANTS[name], "stage": "sft_pubmedqa"}
    if "error" in result:
        return {**row, **result}
    metrics, cost = result["metrics"], result["metrics"]["cost"]
    steady = max(cost["train_seconds"] - cost["compile_seconds"], 1e-9)
    row.update(seconds=result["seconds"], train_seconds=cost["train_seconds"], tokens=metrics["tokens_seen"],
               tokens_per_second=cost["train_tokens_per_second"],
               tokens_per_second_after_compile=round(metrics["tokens_seen"] / steady, 1),
               compile_seconds=cost["compile_seconds"], peak_memory_mb=cost["peak_memory_mb"],
               train_loss=metrics["train_loss"], eval_loss=metrics["eval_loss"], steps=metrics["steps"])
    if timer.seconds:
        row.update(timer.summary(cost["train_seconds"]))
    if timer.profiler is not None:
        averages = timer.profiler.key_averages()
        text = [f"== {name}: steps 10-14 of sft_pubmedqa, top operators by GPU time",
                averages.table(sort_by="cuda_time_total" if GPU else "self_cpu_time_total", row_limit=25),
                "== the same, by CPU time", averages.table(sort_by="cpu_time_total", row_limit=25)]
        (out / "profile.txt").write_text("\n".join(text))
    return row


def plain_variants(params, tokenizer, names: list[str], report: dict, save, deadline: float) -> None:
    """The plain step variants on sft_pubmedqa's packed rows, then rm's and dpo's pair steps."""
    base = load_base_model(params.model, for_training=True)
    packed = parse_params(dump_params(params), "plain", PACKED)
    for name in names:
        levers = PLAIN[name]
        if time.perf_counter() > deadline or (name in NEEDS_GPU and not GPU):
            report["skipped"].append(f"plain {name}" + ("" if GPU else ": needs a GPU"))
            continue
        try:
            batches = sft_batches(packed, tokenizer, "pubmedqa", static=levers.compile_layers != "eager")
            row = plain_loop(base, packed, batches, "sft", levers)
        except Exception as error:
            row = {"error": f"{type(error).__name__}: {error}"[:2000]}
        report["plain"].append({"variant": name, **row})
        print("[levers] plain", json.dumps(report["plain"][-1]), flush=True)
        save()
    fast = Levers(autocast_adapter_dtype=False, compile_layers="compiled")
    for stage in ("rm", "dpo"):
        for levers in (Levers(), fast):
            if time.perf_counter() > deadline:
                report["skipped"].append(f"plain {stage} {levers.name()}")
                continue
            try:
                row = plain_loop(base, params, pair_batches(params, tokenizer, stage), stage, levers)
            except Exception as error:
                row = {"error": f"{type(error).__name__}: {error}"[:2000]}
            report["plain"].append({"variant": f"{stage}: {levers.name()}", **row})
            print("[levers] plain", json.dumps(report["plain"][-1]), flush=True)
            save()
    del base
    release_memory()


def best_sets(rows: list[dict]) -> list[str] | None:
    """The overrides of the fastest stage variant (tokens/s after compiling) whose eval loss is
    within LOSS_TOLERANCE of the presets' packing + Liger, for every SFT stage, with its adapter
    dtype and compilation for rm and dpo too (`train.*`)."""
    done = [r for r in rows if "error" not in r]
    reference = next((r for r in done if r["variant"] == "packing+liger"), None)
    if reference is None:
        return None
    same = [r for r in done if abs(r["eval_loss"] - reference["eval_loss"]) <= LOSS_TOLERANCE * reference["eval_loss"]]
    best = max(same, key=lambda r: r["tokens_per_second_after_compile"])
    sets = []
    for override in best["overrides"]:
        key, value = override.removeprefix(S).split("=", 1)
        if key in ("packing", "use_liger_kernel"):
            sets += [f"sft.{d}.{key}={value}" for d in paths.SFT_DATASETS]
        else:
            sets.append(f"train.{key}={value}")
    return sets


def timed_evaluate(params, method: str) -> dict:
    from medadapt.stages import evaluate

    result = in_process(method, lambda: evaluate.run(params.model_copy(update={"method": method})))
    if "error" in result:
        return {"method": method, **result}
    cost = result["metrics"]["cost"]
    return {"method": method, "seconds": result["seconds"], "questions_per_second": cost["questions_per_second"],
            "phase_seconds": cost["phase_seconds"], "peak_memory_mb": cost["peak_memory_mb"],
            "batch_size": params.evaluate.batch_size}


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    overrides = [a for a in sys.argv[2:] if a != "--set"]
    params = load_params("params.yaml", overrides)
    preset = os.environ.get("PRESET", "llama-3.1-8b")
    plain_names = [n for n in os.environ.get("PLAIN", ",".join(PLAIN)).split(",") if n]
    stage_names = [n for n in os.environ.get("LEVERS", ",".join(STAGE_VARIANTS)).split(",") if n]
    start = time.perf_counter()
    deadline = start + float(os.environ.get("BUDGET_S", "470"))
    tokenizer = load_tokenizer(base_path(params.model.base, Path(".")))
    report = {"preset": preset, "device": device_name(), "torch": torch.__version__, "plain": [], "stages": [],
              "evaluate": [], "skipped": []}
    save = lambda: (out / "levers.json").write_text(json.dumps(report, indent=1))  # noqa: E731
    with rehearse.scratch_project(Path(".").resolve()) as scratch:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(scratch / "compile-cache"))  # a cold cache, counted
        folder = scratch / "random-model"
        with timed() as build:
            report["shapes"] = write_random_llama(preset_shapes(preset, REPO), tokenizer, folder,
                                                  torch.bfloat16 if GPU else torch.float32, params.train.seed)
        report["build_seconds"] = build["seconds"]
        params = params.model_copy(update={"model": params.model.model_copy(update={"base": str(folder)})})
        plain_variants(params, tokenizer, plain_names, report, save, deadline)
        profiled = os.environ.get("PROFILE", "packing+bf16+compiled")
        for name in stage_names:
            if time.perf_counter() > deadline or (name in NEEDS_GPU and not GPU):
                report["skipped"].append(f"stage {name}" + ("" if GPU else ": needs a GPU"))
                continue
            report["stages"].append(sft_variant(name, params, profile=(name == profiled), out=out))
            print("[levers] stage", json.dumps(report["stages"][-1]), flush=True)
            save()
        sets = best_sets(report["stages"])
        if sets:
            report["best_sets"] = sets
            (out / "best_sets.txt").write_text(" ".join(sets) + "\n")
        if os.environ.get("EVALUATE", "1") == "1":
            from medadapt.stages import icl, rm

            for stage, call in (("rm", lambda: rm.run(params)), ("icl", lambda: icl.run(params))):
                report[stage] = {k: v for k, v in in_process(stage, call).items() if k != "metrics"}
            for method in ("sft_pubmedqa", "icl"):
                if time.perf_counter() > deadline + 60 or not paths.adapter_dir("sft_pubmedqa").is_dir():
                    report["skipped"].append(f"evaluate {method}")
                    continue
                report["evaluate"].append(timed_evaluate(params, method))
                print("[levers] evaluate", json.dumps(report["evaluate"][-1]), flush=True)
                save()
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    save()
    summary(report)


def summary(report: dict) -> None:
    print(f"\n[levers] summary ({report['device']}, {report['wall_seconds']} s)")
    default = next((r["tokens_per_second"] for r in report["plain"] if r.get("variant") == "peft-default"
                    and "error" not in r), None)
    for r in report["plain"]:
        ratio = f" ({r['tokens_per_second'] / default:.2f}x PEFT default)" if default and "error" not in r and \
            r.get("kind") == "sft" else ""
        figure = r.get("pairs_per_second", r.get("tokens_per_second"))
        print(f"[levers]   plain {r['variant']:40} " + (r["error"][:120] if "error" in r else f"{figure}{ratio}, "
              f"first step {r['first_step_seconds']} s, peak {r['peak_memory_mb']} MB"))
    for r in report["stages"]:
        print(f"[levers]   stage {r['variant']:40} " + (r["error"][:120] if "error" in r else
              f"{r['tokens_per_second_after_compile']} tokens/s after {r['compile_seconds']} s compiling "
              f"({r['tokens_per_second']} with it), eval loss {r['eval_loss']}, peak {r['peak_memory_mb']} MB"))
    for r in report["evaluate"]:
        print(f"[levers]   evaluate {r['method']:37} " + (r["error"][:120] if "error" in r else
              f"{r['questions_per_second']} questions/s, phases {r['phase_seconds']}"))
    print(f"[levers]   best sets: {' '.join(report.get('best_sets') or ['(none)'])}; skipped: {report['skipped']}")


if __name__ == "__main__":
    main()
