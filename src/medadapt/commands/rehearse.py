"""`medadapt rehearse <preset>`: the experiment's real stages on a random-init model of real shapes.

    medadapt prepare                                        # the user's data, as for `dvc repro`
    medadapt rehearse llama-3.1-8b                          # bf16 on a GPU
    medadapt rehearse llama-3.1-8b --set model.quantization=4bit

Before spending GPU hours: does the experiment fit, and how long does it take? A model of the
preset's shapes (`presets/<name>.yaml`, from each model's published config; no download) gets seeded random
weights and the tokenizer of `model.base`, whose vocabulary is kept when larger than the preset's. In
a scratch copy of the project (the user's prepared data; never the user's `models/` or `metrics/`)
with `model.base` pointing at that model, each stage `dvc repro` runs after `prepare` runs as
`dvc repro` runs it, in a process of its own (`python -m medadapt.stages.<stage>`, imports, model
load and compilation included): the SFT curriculum, `icl`, `rm`, `pairs` (when on-policy pairs are
a source), `dpo`, `grpo` and `evaluate` for each method of `rehearse.methods` (all by default), at the
user's sizes and params. The stages share one on-disk compile cache, fresh in the scratch folder
unless TORCHINDUCTOR_CACHE_DIR names one, so the first compilation is paid and counted once.

Then, in this process, plain LoRA steps (HF model + PEFT, AdamW) on each training stage's own
batches (`training.plain`: the SFT rows packed where the stage packs, the pairs of rm and dpo):
with PEFT's defaults, and with the stage's own levers where it has any. Every training stage gets
its ratio to the plain step of its own rows (pairs/s to the plain pair step).

Printed and written to `reports/rehearse/<preset>-<device>.json`: per stage its wall seconds,
tokens/s (SFT), pairs/s (rm, dpo), prompts/s (grpo) or questions/s (evaluate), compile seconds, peak memory (each
process's own: GPU allocator peak, or RSS on a CPU) and its ratios; the experiment's wall seconds
measured end to end (every stage's process, first to last; prepare excluded); and each goal of
`GOALS` with its measured value and whether it is met.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import paths
from ..artifacts import write_json
from ..data.records import read_jsonl
from ..modeling.models import base_path, load_base_model, load_tokenizer
from ..modeling.random_init import write_random_llama
from ..params import ParamsError, render
from ..runtime import device_name, on_gpu, release_memory, timed
from ..training.plain import Levers, pair_batches, plain_loop, sft_batches
from .preset import preset_shapes

OUT = paths.REPORTS / "rehearse"
PLAIN_STEPS = 5  # timed plain-loop steps, after one warm-up step
TRAINING_STAGES = (*paths.SFT_STAGES, "rm", "dpo")

# Issue 22's goals: (name, what is measured, the bound, "min" if the measure must reach it, "max" if stay under it)
GOALS = [
    ("sft_tokens_per_second", "the slowest SFT stage's tokens/s (compile time excluded)", 15000, "min"),
    ("sft_vs_peft_default", "the slowest SFT stage over the PEFT-default plain step of its rows", 1.55, "min"),
    ("compile_seconds", "the most seconds one training stage spent compiling", 30, "max"),
    ("rm_vs_plain", "rm pairs/s over the PEFT-default plain pair step", 1.3, "min"),
    ("dpo_vs_plain", "dpo pairs/s over the PEFT-default plain pair step", 1.3, "min"),
    ("evaluate_questions_per_second", "the slowest evaluated method's questions/s", 25, "min"),
    ("experiment_seconds", "every stage after prepare, measured end to end", 240, "max"),
]


# ---- the stages, each in its own process ------------------------------------------------------


@contextmanager
def scratch_project(root: Path):
    """A temporary project holding the user's prepared data, safety prompts and labelled answers
    (the rm stage measures the RM on `data/judges/safety.jsonl`), as cwd."""
    import shutil

    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="medadapt-rehearse-") as tmp:
        scratch = Path(tmp)
        for sub in (paths.PREPARED, paths.SAFETY_TRAIN.parent, paths.JUDGES):
            shutil.copytree(root / sub, scratch / sub)
        os.chdir(scratch)
        try:
            yield scratch
        finally:
            os.chdir(cwd)


def stage_commands(params) -> list[tuple[str, list[str]]]:
    """(name, module arguments) of each stage `dvc repro` runs after prepare, in its order, then
    evaluate per method."""
    calls = [(f"sft_{d}", ["medadapt.stages.sft", d]) for d in paths.SFT_DATASETS]
    calls += [("icl", ["medadapt.stages.icl"]), ("rm", ["medadapt.stages.rm"])]
    if "on_policy" in params.data.preferences.sources:
        calls.append(("pairs", ["medadapt.stages.pairs"]))
    calls += [("dpo", ["medadapt.stages.dpo"]), ("grpo", ["medadapt.stages.grpo"])]
    calls += [(f"evaluate:{m}", ["medadapt.stages.evaluate", "--set", f"method={m}"]) for m in params.rehearse.methods]
    return calls


def stage_environment(scratch: Path) -> dict:
    """The stages' environment: this medadapt importable, and one compile cache for all of them."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(scratch / "compile-cache"))
    return env


def stage_files(name: str) -> tuple[Path, Path]:
    stage = "evaluate" if name.startswith("evaluate:") else name
    return (paths.EVAL_METRICS if stage == "evaluate" else paths.metrics_file(stage)), paths.cost_file(stage)


def throughput(name: str, metrics: dict, cost: dict, params) -> dict:
    """The stage's own throughput figures, from its metrics and cost files."""
    if name.startswith("sft_"):
        steady = max(cost["train_seconds"] - cost.get("compile_seconds", 0.0), 1e-9)
        return {"tokens": metrics["tokens_seen"], "train_seconds": cost["train_seconds"],
                "tokens_per_second": cost["train_tokens_per_second"],
                "tokens_per_second_after_compile": round(metrics["tokens_seen"] / steady, 1)}
    if name in ("rm", "dpo"):
        pairs = round(len(read_jsonl(paths.preference_file(name, "train"))) * params.training(name).epochs, 1)
        steady = max(cost["train_seconds"] - cost.get("compile_seconds", 0.0), 1e-9)
        return {"pairs": pairs, "train_seconds": cost["train_seconds"],
                "pairs_per_second": round(pairs / max(cost["train_seconds"], 1e-9), 3),
                "pairs_per_second_after_compile": round(pairs / steady, 3)}
    if name == "grpo":  # prompts answered per second, each with a group of num_generations answers
        prompts = round(sum(metrics["train_prompts"].values()) * params.training("grpo").epochs, 1)
        return {"prompts": prompts, "train_seconds": cost["train_seconds"],
                "prompts_per_second": round(prompts / max(cost["train_seconds"], 1e-9), 3),
                "train_tokens_per_second": cost.get("train_tokens_per_second")}  # with generation: no plain-loop ratio
    if name.startswith("evaluate:"):
        return {"questions_per_second": cost["questions_per_second"], "phase_seconds": cost.get("phase_seconds")}
    return {}


def run_stage(name: str, argv: list[str], params, env: dict, logs: Path) -> dict:
    """The stage in its own process, as `dvc repro` runs it; its wall seconds and figures, or the
    error it ended with (the last lines of its log)."""
    logs.mkdir(exist_ok=True)
    log = logs / f"{name.replace(':', '-')}.log"
    with timed() as clock, log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", *argv], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            process.wait()
        finally:  # rehearse itself stopped (a time limit's SIGTERM, ^C): so does the stage
            if process.poll() is None:
                process.terminate()
                process.wait()
    row = {"stage": name, "seconds": clock["seconds"]}
    if process.returncode != 0:
        row["error"] = "\n".join(log.read_text(errors="replace").splitlines()[-12:])
    else:
        metrics_file, cost_file = stage_files(name)
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        cost = json.loads(cost_file.read_text()) if cost_file.exists() else {}
        row.update(peak_memory_mb=cost.get("peak_memory_mb"), **throughput(name, metrics, cost, params))
        if "compile_seconds" in cost:
            row["compile_seconds"] = cost["compile_seconds"]
    print(f"[rehearse] {name}: " + ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("stage", "error")),
          flush=True)
    if "error" in row:
        print(f"[rehearse] {name} failed:\n{row['error']}", flush=True)
    return row


def run_stages(params, scratch: Path, progress=lambda rows: None) -> tuple[list[dict], float]:
    """Every stage in order (one that fails is recorded, and the others still run: those that need
    its outputs fail at once, saying so); the rows, each passed to `progress` as it comes, and the
    wall seconds of them all."""
    env, rows = stage_environment(scratch), []
    (scratch / "params.yaml").write_text(render(params))  # what every stage process reads
    start = time.perf_counter()
    for name, argv in stage_commands(params):
        rows.append(run_stage(name, argv, params, env, scratch / "logs"))
        progress(rows)
    return rows, round(time.perf_counter() - start, 2)


# ---- the plain steps of each training stage's rows ---------------------------------------------


def stage_levers(params, stage: str) -> Levers:
    train = params.training(stage)
    return Levers(autocast_adapter_dtype=train.autocast_adapter_dtype, compile_layers=train.compile_layers)


def plain_loops(params, tokenizer) -> list[dict]:
    """Plain steps on each training stage's own batches: with PEFT's defaults, and with the stage's
    levers where it has any. One load of the base serves them all."""
    release_memory()
    base = load_base_model(params.model, for_training=True)
    rows = []
    for stage in TRAINING_STAGES:
        kind = stage if stage in ("rm", "dpo") else "sft"
        for levers in dict.fromkeys([Levers(), stage_levers(params, stage)]):
            batches = (sft_batches(params, tokenizer, stage.removeprefix("sft_"), levers.compile_layers != "eager")
                       if kind == "sft" else pair_batches(params, tokenizer, stage))
            try:
                row = plain_loop(base, params, batches, kind, levers, PLAIN_STEPS)
            except Exception as error:  # recorded; the stages' figures stand without it
                row = {"case": f"plain {kind} step: {levers.name()}", "levers": levers.__dict__,
                       "error": f"{type(error).__name__}: {error}"[:2000]}
            rows.append({"stage": stage, **row})
            print(f"[rehearse] plain, {stage}: {row['case']}: {row.get('error', '')}" + ", ".join(
                f"{k}={row[k]}" for k in ("tokens_per_second", "pairs_per_second", "first_step_seconds")
                if row.get(k) is not None), flush=True)
    del base
    release_memory()
    return rows


def with_ratios(stages: list[dict], plain: list[dict], params) -> list[dict]:
    """Each training stage's throughput over the plain step of its own rows: with PEFT's defaults
    (`vs_peft_default`) and with the stage's own levers (`vs_same_levers`)."""
    for row in stages:
        if row["stage"] not in TRAINING_STAGES or "error" in row:
            continue
        figure = "tokens_per_second" if row["stage"] in paths.SFT_STAGES else "pairs_per_second"
        steady = row.get(figure + "_after_compile", row[figure])
        for key, levers in (("vs_peft_default", Levers()), ("vs_same_levers", stage_levers(params, row["stage"]))):
            plain_row = next((p for p in plain if p["stage"] == row["stage"] and p.get("levers") == levers.__dict__
                              and figure in p), None)
            if plain_row is not None:
                row[key] = round(steady / plain_row[figure], 3)
    return stages


def goals(stages: list[dict], experiment_seconds: float, params) -> dict:
    """Each goal of GOALS: its measured value, the bound, and whether it is met (None: not measured)."""
    rows = {r["stage"]: r for r in stages if "error" not in r}
    sft = [rows[s] for s in paths.SFT_STAGES if s in rows]
    evaluated = [r for name, r in rows.items() if name.startswith("evaluate:")]
    complete = len(rows) == len(stages) and len(evaluated) == len(paths.METHODS)
    measured = {
        "sft_tokens_per_second": min((r["tokens_per_second_after_compile"] for r in sft), default=None),
        "sft_vs_peft_default": min((r["vs_peft_default"] for r in sft if "vs_peft_default" in r), default=None),
        "compile_seconds": max((r.get("compile_seconds", 0.0) for r in rows.values() if "compile_seconds" in r),
                               default=None),
        "rm_vs_plain": rows.get("rm", {}).get("vs_peft_default"),
        "dpo_vs_plain": rows.get("dpo", {}).get("vs_peft_default"),
        "evaluate_questions_per_second": min((r["questions_per_second"] for r in evaluated), default=None),
        "experiment_seconds": experiment_seconds if complete else None,  # never projected
    }
    out = {}
    for name, what, bound, sense in GOALS:
        value = measured[name]
        met = None if value is None else (value >= bound if sense == "min" else value <= bound)
        out[name] = {"what": what, "measured": value, ("at_least" if sense == "min" else "at_most"): bound,
                     "met": met}
    return out


# ---- the command -----------------------------------------------------------------------------


def rehearse(params, root: Path, preset: str, shapes: dict, save=lambda report: None) -> dict:
    """The report; `save` gets it after each stage too, marked incomplete, so that a run cut short
    keeps what finished."""
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    with scratch_project(root) as scratch:
        folder = scratch / "random-model"
        dtype = torch.bfloat16 if on_gpu() and torch.cuda.is_bf16_supported() else torch.float32
        with timed() as build:
            shapes = write_random_llama(shapes, tokenizer, folder, dtype, params.train.seed)
        params = params.model_copy(update={"model": params.model.model_copy(update={"base": str(folder)})})
        cache = Path(stage_environment(scratch)["TORCHINDUCTOR_CACHE_DIR"])
        report = {"preset": preset, "device": device_name(), "complete": False, "shapes": shapes,
                  "dtype": str(dtype).replace("torch.", ""), "quantization": params.model.quantization,
                  "build_seconds": build["seconds"],
                  "sizes": {**{d: {"train": params.data.train_size.get(d), "eval": params.data.eval_size.get(d)}
                               for d in params.data.datasets},
                            "max_pairs_per_source": params.data.preferences.max_pairs_per_source},
                  "levers": {stage: {**stage_levers(params, stage).__dict__,
                                     "packing": getattr(params.training(stage), "packing", False),
                                     "use_liger_kernel": params.training(stage).use_liger_kernel}
                             for stage in TRAINING_STAGES},
                  "compile_cache": {"files_at_start": sum(1 for _ in cache.rglob("*")) if cache.is_dir() else 0,
                                    "shared_by": "every stage of this rehearsal"},
                  "methods": list(params.rehearse.methods)}
        stages, experiment_seconds = run_stages(params, scratch, lambda rows: save({**report, "stages": rows}))
        report.update(experiment_seconds=experiment_seconds, stage_seconds_sum=round(sum(r["seconds"] for r in stages), 2))
        save({**report, "stages": stages})
        plain = plain_loops(params, tokenizer) if not any("error" in r for r in stages if r["stage"] in TRAINING_STAGES) else []
    stages = with_ratios(stages, plain, params)
    return {**report, "complete": True, "stages": stages, "plain_loop": plain,
            "goals": goals(stages, experiment_seconds, params)}


def stop(signum, frame):
    raise SystemExit(128 + signum)


def main(params, root: Path = Path("."), preset: str | None = None) -> dict:
    shapes = preset_shapes(preset, root, "medadapt rehearse")
    if not (root / paths.PREPARED).is_dir():
        raise ParamsError(f"medadapt rehearse: {root / paths.PREPARED} is missing: run `medadapt prepare` first")
    out = root / OUT / f"{preset}-{device_name()}.json"
    signal.signal(signal.SIGTERM, stop)  # a time limit: the stage running stops, what finished stays written
    report = rehearse(params, Path(root).resolve(), preset, shapes, lambda partial: write_json(out, partial))
    write_json(out, report)
    print(f"\nmedadapt rehearse {preset} on {report['device']} ({report['dtype']}, quantization "
          f"{report['quantization']}): the experiment took {report['experiment_seconds']} s end to end "
          f"({len(report['methods'])} methods evaluated); written to {out}")
    for row in report["stages"] + report["plain_loop"]:
        name = row.get("case", row["stage"]) if "case" in row else row["stage"]
        print(f"  {name:52} " + ", ".join(f"{k}={v}" for k, v in row.items()
                                           if k not in ("stage", "case", "levers", "phase_seconds", "error")))
    for name, goal in report["goals"].items():
        print(f"  goal {name}: {goal['measured']} (met: {goal['met']})")
    return report
