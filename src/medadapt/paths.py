"""Where every artifact lives, and which artifact each method evaluates: the one owner.

`dvc.yaml`'s outs, the stages and the helper commands all read these names; the test
`tests/test_paths.py` checks that every stage's outputs here are the outs `dvc.yaml` declares.
All paths are relative to the project root (the folder holding `dvc.yaml` and `params.yaml`).
"""

from __future__ import annotations

from pathlib import Path

# ---- inputs the project ships ----------------------------------------------------------------
SAMPLE = Path("data/sample")  # illustrative data in the original formats
SAFETY_TRAIN = Path("data/safety/train.jsonl")  # risky prompts with a safe and an unsafe answer
SAFETY_EVAL = Path("data/safety/eval.jsonl")  # held-out risky prompts, never trained on
# held-out risky prompts with a safe and an unsafe answer: the RM's unsafe threshold is set on
# them, never trained on
SAFETY_CALIBRATION = Path("data/safety/calibration.jsonl")
JUDGES = Path("data/judges")  # labelled answers that measure the judges, never trained on
JUDGES_HALLUCINATION = JUDGES / "hallucination.jsonl"
JUDGES_SAFETY = JUDGES / "safety.jsonl"
JUDGES_PARSE = JUDGES / "parse.jsonl"  # real generations with the answer a reader takes (the parser's set)

# ---- stage outputs ---------------------------------------------------------------------------
# Written by `check` when params.yaml validates; its bytes never change (see cli.check).
PARAMS_CHECKED = Path(".params-checked")
PREPARED = Path("data/prepared")  # <dataset>/{train,eval}.jsonl, preferences/{train,eval}.jsonl
PAIRS = PREPARED / "preferences"  # rm/ and dpo/: the preference pool split by prompt (data/preferences.py)
BASE_DIR = Path("models/base")
ICL_DEMOS = Path("data/icl/demos.jsonl")
ON_POLICY = Path("data/pairs/on_policy")  # {train,eval}.jsonl: pairs sampled from the SFT policy
MODELS = Path("models")
METRICS = Path("metrics")
CHECKPOINTS = Path("checkpoints")
DVCLIVE = Path("dvclive")
REPORTS = Path("reports")
EVAL_SAMPLES = REPORTS / "eval_samples.jsonl"
EVAL_ITEMS = REPORTS / "eval_items.json"
EVAL_DETAILS = REPORTS / "eval_details.json"  # every figure of evaluate beyond the headline metrics
COSTS = REPORTS / "cost"  # <stage>.json: seconds, tokens/s, memory: figures that vary between identical runs
PLOTS = REPORTS / "plots"
CONFUSION_PNG = REPORTS / "pubmedqa_confusion.png"
JUDGES_REPORT = REPORTS / "judges.json"  # the judges' precision and recall (`scoring/validation.py`)
CALIBRATION = "calibration.json"  # inside the reward model's folder
STAGE_LOCK = Path(".medadapt.lock")  # held by the stage running in this project folder (git-ignored)

SFT_DATASETS = ("pubmedqa", "medmcqa", "medqa")  # the curriculum, in order
SFT_STAGES = tuple(f"sft_{d}" for d in SFT_DATASETS)
TRAINING_STAGES = (*SFT_STAGES, "rm", "dpo", "grpo")


def split_file(dataset: str, split: str) -> Path:
    """A prepared split: `data/prepared/<dataset>/<split>.jsonl`."""
    return PREPARED / dataset / f"{split}.jsonl"


def preference_file(trainer: str, split: str) -> Path:
    """The static preference pairs one trainer reads (`rm` or `dpo`), of one split:
    `data/prepared/preferences/<trainer>/<split>.jsonl`; the two never share a prompt."""
    return PAIRS / trainer / f"{split}.jsonl"


def on_policy_file(split: str) -> Path:
    """On-policy pairs of one split: `data/pairs/on_policy/<split>.jsonl`."""
    return ON_POLICY / f"{split}.jsonl"


def adapter_dir(stage: str) -> Path:
    """The adapter a training stage writes: `models/<stage>/`."""
    return MODELS / stage


def metrics_file(stage: str) -> Path:
    return METRICS / f"{stage}.json"


def cost_file(stage: str) -> Path:
    return COSTS / f"{stage}.json"


def checkpoint_dir(stage: str) -> Path:
    return CHECKPOINTS / stage


def dvclive_dir(stage: str) -> Path:
    return DVCLIVE / stage


RM_DIR = adapter_dir("rm")
EVAL_METRICS = metrics_file("eval")


def previous_sft_stage(stage: str) -> str | None:
    """The curriculum stage whose adapter `stage` continues (None for the first)."""
    index = SFT_STAGES.index(stage)
    return SFT_STAGES[index - 1] if index else None


# ---- methods ---------------------------------------------------------------------------------
# `method` (read by `evaluate` alone) -> the training stage whose adapter it evaluates. `sft` is
# the whole curriculum, i.e. the adapter of its last stage; `base` and `icl` use the bare base.
# `dpo` and `grpo` train one adapter (with `init: sft`, the final SFT adapter trained on), loaded alone.
METHOD_STAGES = {
    "base": None,
    "icl": None,
    "sft_pubmedqa": "sft_pubmedqa",
    "sft_medmcqa": "sft_medmcqa",
    "sft": SFT_STAGES[-1],
    "dpo": "dpo",
    "grpo": "grpo",  # online RL from the final SFT adapter (issue 21)
}
METHODS = tuple(METHOD_STAGES)


def method_adapter(method: str) -> Path | None:
    stage = METHOD_STAGES[method]
    return adapter_dir(stage) if stage else None


# ---- what each stage writes (must match dvc.yaml's outs, metrics and plots files) --------------
def stage_outputs(stage: str) -> list[Path]:
    """The outputs DVC removes before the stage runs (persistent ones are apart, below)."""
    if stage == "check":
        return []
    if stage == "prepare":
        return [PREPARED, BASE_DIR, metrics_file("prepare")]
    if stage == "icl":
        return [ICL_DEMOS, metrics_file("icl")]
    if stage == "pairs":
        return [ON_POLICY, metrics_file("pairs"), cost_file("pairs")]
    if stage in TRAINING_STAGES:
        return [adapter_dir(stage), dvclive_dir(stage), metrics_file(stage), cost_file(stage)]
    if stage == "evaluate":
        return [EVAL_SAMPLES, EVAL_ITEMS, EVAL_DETAILS, PLOTS, CONFUSION_PNG, EVAL_METRICS, cost_file("evaluate")]
    raise KeyError(f"no stage named {stage!r}")


def persistent_outputs(stage: str) -> list[Path]:
    """Outputs DVC keeps across runs: the constant file `check` writes (kept, so that a failed check
    never deletes it). A training stage's `checkpoints/<stage>/` is no DVC output at all: the stage
    keeps it for resuming a killed run and removes it when training finished, so DVC's run-cache
    can restore a training stage that already ran with the same inputs (a persistent output would
    forbid that: `dvc/stage/cache.py`)."""
    return [PARAMS_CHECKED] if stage == "check" else []


# The dvc.yaml stages in pipeline order: the one list (cli.py, codedeps, rehearse and the tests read it).
STAGES = ("check", "prepare", *SFT_STAGES, "icl", "rm", "pairs", "dpo", "grpo", "evaluate")


def stage_module(stage: str) -> str:
    """The module of `medadapt.stages` a dvc.yaml stage runs: the curriculum stages share `sft`."""
    return "sft" if stage in SFT_STAGES else stage


STAGE_MODULES = tuple(dict.fromkeys(stage_module(stage) for stage in STAGES))  # the `medadapt <stage>` commands


# ---- data inputs -------------------------------------------------------------------------------
def source_folder(source: str) -> Path | None:
    """The folder `data.source` reads: data/sample for `sample`, none for `hub`, else the path."""
    return SAMPLE if source == "sample" else None if source == "hub" else Path(source)
