"""Stage `grpo` (issue 21): the params it refuses, its wiring into the pipeline, then the stage on the
tiny model (slow): outputs and metrics, the KL reference, resume, `method=grpo`. The reward
components on hand-made answers: tests/training/test_rewards.py."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerCallback

from medadapt import cli, paths
from medadapt.data.prompts import messages
from medadapt.modeling import reward
from medadapt.modeling.adapters import load_adapter
from medadapt.modeling.models import load_base_model
from medadapt.params import SFT_DATASETS, Params, ParamsError, load_params, parse_params
from medadapt.sources import closure, stage_code
from medadapt.stages import evaluate, grpo, prepare, rm, sft
from medadapt.training import rewards

from conftest import REPO, copy_prepared, make_project

MC = {"id": "mc1", "dataset": "medmcqa", "question": "Which vitamin deficiency causes scurvy?", "context": None,
      "options": ["Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"], "answer": "B",
      "rationale": "Scurvy is due to lack of vitamin C, needed for collagen; 10 mg a day prevents it."}


# ---- params ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("grpo.num_generations=1", "grpo.num_generations: Input should be greater than or equal to 2"),
    ("grpo.weights={correctness: 0, format: 0, reward_model: 0, hallucination: 0}", "grpo.weights are all zero"),
    ("grpo.num_generations=3", "must be a multiple of grpo.num_generations (3)"),
    ("train.batch_size=2", ("train.batch_size x train.grad_accum x compute.num_processes (2 x 1 x 1) must be a "
                            "multiple of grpo.num_generations (4)")),  # grpo's batch resolved over train
    ("grpo.datasets=[medqa, radqa]", "grpo.datasets.1: Input should be 'pubmedqa', 'medmcqa' or 'medqa'"),
    ("grpo.beta=0", "grpo.beta: Input should be greater than 0"),
])
def test_check_refuses_bad_grpo_params_in_one_line(project, capsys, override, message):
    assert cli.main(["check", "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    line = next(line for line in err.splitlines() if message in line)
    assert "{" not in line  # the message, not the section's values
    assert not (project / paths.PARAMS_CHECKED).exists()


def test_whole_groups_across_processes_and_accumulation():
    parse_params({"grpo": {"num_generations": 8, "batch_size": 4, "grad_accum": 2}})
    parse_params({"grpo": {"num_generations": 8, "batch_size": 4}, "compute": {"num_processes": 2}})
    parse_params({"grpo": {"num_generations": 8}, "train": {"batch_size": 8}})  # train's batch, resolved
    parse_params({"grpo": {"num_generations": 8, "batch_size": 4}, "train": {"grad_accum": 2}})
    with pytest.raises(ParamsError, match=r"grpo.batch_size x train.grad_accum x compute.num_processes \(4 x 1 x 1\)"):
        parse_params({"grpo": {"num_generations": 8, "batch_size": 4}})


def test_the_grpo_section_holds_its_keys_and_only_the_train_keys_it_sets():
    params = Params()
    assert params.grpo.learning_rate == 5e-5 and params.grpo.batch_size is None and params.grpo.seed is None
    resolved = params.training("grpo")
    assert (resolved.learning_rate, resolved.batch_size, resolved.seed) == (5e-5, params.train.batch_size,
                                                                             params.train.seed)
    assert (resolved.num_generations, resolved.max_completion_length, resolved.beta) == (4, 32, 0.04)
    committed = yaml.safe_load((REPO / "params.yaml").read_text())["grpo"]
    assert set(committed) & set(params.train.model_dump()) == {"learning_rate"}


# ---- the pipeline's wiring -----------------------------------------------------------------------------


def test_method_grpo_evaluates_the_grpo_adapter_and_reruns_only_evaluate():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert paths.method_adapter("grpo") == Path("models/grpo") and "grpo" in paths.METHODS
    assert paths.STAGES.index("grpo") == paths.STAGES.index("dpo") + 1 and "grpo" in paths.TRAINING_STAGES
    assert "models/grpo" in stages["evaluate"]["deps"]
    assert {"models/sft_medqa", "models/rm", "data/prepared", "models/base"} <= set(stages["grpo"]["deps"])
    assert {"train", "grpo", "lora", "model", "rm", "compute", "tracking.dvclive"} <= set(stages["grpo"]["params"])
    assert "method" not in stages["grpo"]["params"]
    assert stages["grpo"]["cmd"] == "python -m medadapt.stages.grpo"
    assert "grpo" in load_params(REPO / "params.yaml").rehearse.methods


def test_grpo_imports_no_other_stage_and_shares_evaluates_judges():
    modules = closure("medadapt.stages.grpo")
    assert not {m for m in modules if m.startswith("medadapt.stages.") and m != "medadapt.stages.grpo"}
    assert {"medadapt.training.rewards", "medadapt.scoring.judges", "medadapt.scoring.answers",
            "medadapt.modeling.reward", "medadapt.scoring.hallucination"} <= modules
    assert "src/medadapt/training/rewards.py" not in stage_code("evaluate")  # the rewards are training code


def test_the_dvc_plots_of_grpo_read_its_curves():
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    files = {file for plot in plots if isinstance(plot, dict) for props in plot.values()
             for file in (props.get("y") or {}) if "grpo" in file}
    expected = {f"dvclive/grpo/plots/metrics/{name}.tsv" for name in (
        "reward", "kl", "frac_reward_zero_std", "completions/mean_length", "learning_rate",
        *(f"rewards/{c}/mean" for c in rewards.COMPONENTS))}
    assert files == expected


def test_the_stage_module_runs_as_every_stage_does():
    assert grpo.main.__module__ == "medadapt.stages.grpo"
    assert grpo.relaunch.__module__ == "medadapt.training.launch"  # compute.num_processes > 1: accelerate


# ---- the stage on the tiny model ---------------------------------------------------------------------

CHANGES = {"sft": {d: {"learning_rate": 0.003} for d in SFT_DATASETS},
           "grpo": {"learning_rate": 0.003, "save_steps": 2, "prompts_per_dataset": 2}}  # 6 steps that move it
METRIC_KEYS = {"init", "reference", "weights", "reward", "rewards", "kl", "completion_length", "zero_std_groups",
               "num_generations", "train_prompts", "prompts_too_long", "tokens_seen", "quantization", "train_loss",
               "trainable_params", "trainable_percent", "steps"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """prepare, the SFT curriculum, rm and grpo once, with the GRPO trainer kept."""
    root = tmp_path_factory.mktemp("grpo")
    make_project(root, CHANGES)
    captured = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params()
        prepare.run(params)
        for dataset in SFT_DATASETS:
            sft.run(params, dataset)
        rm.run(params)
        original = grpo.make_trainer

        def spy(params, root=Path(".")):
            captured["trainer"] = original(params, root)
            return captured["trainer"]

        mp.setattr(grpo, "make_trainer", spy)
        metrics = grpo.run(params)
    return {"root": root, "params": params, "metrics": metrics, **captured}


@pytest.mark.slow
def test_stage_writes_the_adapter_metrics_cost_and_curves(built):
    root, metrics = built["root"], built["metrics"]
    folder = root / "models/grpo"
    for name in ("adapter_model.safetensors", "adapter_config.json", "hyperparameters.json", "tokenizer.json"):
        assert (folder / name).is_file(), name
    keys = load_file(str(folder / "adapter_model.safetensors")).keys()
    assert keys and all("lora_" in k for k in keys) and not any(".ref." in k for k in keys)  # no reference copy
    hyper = json.loads((folder / "hyperparameters.json").read_text())
    assert hyper["stage"] == "grpo" and hyper["start_adapter"] == "models/sft_medqa"
    assert hyper["reward_components"] == list(rewards.COMPONENTS)
    assert hyper["train"]["learning_rate"] == 0.003 and hyper["train"]["num_generations"] == 4  # resolved
    saved = json.loads((root / "metrics/grpo.json").read_text())
    cost = json.loads((root / "reports/cost/grpo.json").read_text())
    assert set(saved) == METRIC_KEYS and saved == json.loads(json.dumps({k: v for k, v in metrics.items() if k != "cost"}))
    assert cost["train_tokens_per_second"] > 0 and cost["peak_memory_mb"] > 0 and cost["train_tokens"] > 0
    assert saved["steps"] == 6 and saved["train_prompts"] == {d: 2 for d in ("medmcqa", "medqa", "pubmedqa")}
    for trend in [saved["reward"], saved["kl"], saved["completion_length"], saved["zero_std_groups"],
                  *saved["rewards"].values()]:
        assert set(trend) == {"first", "last", "mean"}
    assert 0 < saved["completion_length"]["mean"] <= 32 and 0 <= saved["zero_std_groups"]["mean"] <= 1
    assert saved["weights"] == {"correctness": 1.0, "format": 0.25, "reward_model": 0.25, "hallucination": 0.5}
    assert not (root / "checkpoints/grpo").exists()  # finished: nothing left to resume
    curves = root / "dvclive/grpo/plots/metrics"
    for name in ("reward", "kl", "frac_reward_zero_std", "completions/mean_length", "rewards/correctness/mean",
                 "rewards/format/mean", "rewards/reward_model/mean", "rewards/hallucination/mean"):
        assert (curves / f"{name}.tsv").is_file(), name
    assert not (curves / "step_time.tsv").exists()  # wall time: no curve git tracks


@pytest.mark.slow
def test_logged_reward_is_the_weighted_sum_of_the_components(built):
    rows = [r for r in built["trainer"].state.log_history if "reward" in r]
    weights = built["metrics"]["weights"]
    assert len(rows) == 6
    for row in rows:  # one prompt per step: a component not judged for it (None) adds 0
        expected = sum(w * (row[f"rewards/{name}/mean"] or 0.0) for name, w in weights.items())
        assert row["reward"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_kl_starts_at_zero_and_the_policy_moves_from_the_sft_adapter(built):
    kl = built["metrics"]["kl"]
    assert kl["first"] == 0.0 and kl["last"] > 0  # dropout off: policy == reference at the first step
    trained = load_file(str(built["root"] / "models/grpo/adapter_model.safetensors"))
    start = load_file(str(built["root"] / "models/sft_medqa/adapter_model.safetensors"))
    assert set(trained) == set(start) and any(not torch.equal(trained[k], start[k]) for k in start)


def completion_logps(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    return torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]


@pytest.mark.slow
def test_the_reference_is_the_frozen_sft_adapter_not_the_base(built):
    root, params, trainer = built["root"], built["params"], built["trainer"]
    model = trainer.model
    assert set(model.peft_config) == {"default", "ref"}
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".ref." in n)
    start = load_file(str(root / "models/sft_medqa/adapter_model.safetensors"))
    state = {n: p for n, p in model.named_parameters() if ".ref." in n}
    for key, value in start.items():  # after training, `ref` still holds the SFT weights
        name = key.removesuffix(".weight") + ".ref.weight"
        assert torch.equal(state[name].detach().cpu(), value), key
    ids = torch.tensor([[5, 17, 99, 250, 3, 42, 7, 300, 12]])
    from trl.trainer.utils import use_adapter

    with use_adapter(model, "ref"):
        reference = completion_logps(model, ids)
    sft_model = load_adapter(load_base_model(params.model, root), root / "models/sft_medqa")
    expected = completion_logps(sft_model, ids)
    assert torch.allclose(reference, expected, atol=1e-5)
    with sft_model.disable_adapter():
        base = completion_logps(sft_model, ids)
    assert not torch.allclose(reference, base, atol=1e-3)  # the test can tell the SFT model from the base


@pytest.mark.slow
def test_on_a_4bit_base_the_reference_keeps_the_sft_weights(built, monkeypatch):
    """Nothing is merged into quantized weights: both adapters sit on the 4-bit base; TRL casts the
    trainable one to bf16 after copying it, so the frozen reference keeps the SFT weights in float32."""
    monkeypatch.chdir(built["root"])
    trainer = grpo.make_trainer(load_params(overrides=["model.quantization=4bit"]))
    model = trainer.model
    assert type(model.base_model.model.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    kinds = {(".ref." in n, p.requires_grad, p.dtype) for n, p in model.named_parameters() if "lora_" in n}
    assert kinds == {(False, True, torch.bfloat16), (True, False, torch.float32)}
    start = load_file(str(built["root"] / "models/sft_medqa/adapter_model.safetensors"))
    state = dict(model.named_parameters())
    assert all(torch.equal(state[k.removesuffix(".weight") + ".ref.weight"].detach(), v) for k, v in start.items())


@pytest.mark.slow
def test_init_base_trains_a_fresh_adapter_against_the_base(built, monkeypatch):
    monkeypatch.chdir(built["root"])
    trainer = grpo.make_trainer(load_params(overrides=["grpo.init=base"]))
    assert set(trainer.model.peft_config) == {"default"}  # no `ref`: the reference is the adapter disabled
    b_weights = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert b_weights and all(torch.count_nonzero(p) == 0 for p in b_weights)


@pytest.mark.slow
def test_reward_model_component_with_the_trained_rm(built, monkeypatch):
    from medadapt.data.records import Record

    root, params = built["root"], built["params"]
    monkeypatch.chdir(root)
    record = Record(**MC)
    function = rewards.load_reward_model_reward(params, root)
    outputs = ["Answer: B. Vitamin C\nExplanation: collagen.", "Answer: A", "I would rather not say."]
    threshold = json.loads((root / "models/rm/calibration.json").read_text())["threshold"]
    model, tokenizer = reward.load_reward_model(params, root)
    raw = reward.score(model, tokenizer, [messages(record)] * 3, outputs, 4, params.training("rm").max_length)
    row = rewards.prompt_row(record)
    columns = {key: [value] * 3 for key, value in row.items() if key != "prompt"}
    scores = function(prompts=[row["prompt"]] * 3, completions=[[{"role": "assistant", "content": o}] for o in outputs],
                      **columns)
    assert scores == pytest.approx([math.tanh((s - threshold) / 2) for s in raw], abs=1e-5)
    assert function.threshold == threshold


@pytest.mark.slow
def test_evaluate_scores_method_grpo(built, monkeypatch):
    monkeypatch.chdir(built["root"])
    params = built["params"].model_copy(update={"method": "grpo"})
    metrics = evaluate.run(params)
    saved = json.loads((built["root"] / "metrics/eval.json").read_text())
    assert saved["method"] == metrics["method"] == "grpo"
    samples = [json.loads(line) for line in (built["root"] / "reports/eval_samples.jsonl").read_text().splitlines()]
    assert samples and all(s["method"] == "grpo" for s in samples)


class FailAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


@pytest.fixture
def fresh(built, tmp_path, monkeypatch):
    """A copy of the project with its SFT adapter and RM, and no GRPO output, as cwd."""
    root = copy_prepared(built["root"], tmp_path / "proj")
    for stage in ("sft_medqa", "rm"):
        shutil.copytree(built["root"] / "models" / stage, root / "models" / stage)
    monkeypatch.chdir(root)
    return root


@pytest.mark.slow
def test_resume_after_a_crash_reports_the_uninterrupted_run(built, fresh, monkeypatch):
    params = load_params()
    original = grpo.make_trainer

    def crashing(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_callback(FailAtStep(3))
        return trainer

    with monkeypatch.context() as mp:
        mp.setattr(grpo, "make_trainer", crashing)
        with pytest.raises(RuntimeError, match="simulated crash"):
            grpo.run(params)
    assert (fresh / "checkpoints/grpo/checkpoint-2").is_dir() and not (fresh / "models/grpo").exists()
    metrics = grpo.run(params)
    assert metrics["cost"]["resumed_from_step"] == 2
    whole = built["metrics"]
    for key in ("reward", "rewards", "kl", "completion_length", "zero_std_groups", "train_loss", "tokens_seen", "steps"):
        assert metrics[key] == whole[key], key
    assert (fresh / "models/grpo/adapter_model.safetensors").read_bytes() == \
        (built["root"] / "models/grpo/adapter_model.safetensors").read_bytes()
    rows = (fresh / "dvclive/grpo/plots/metrics/reward.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in rows] == list(range(1, 7))
    assert not (fresh / "checkpoints/grpo").exists()


@pytest.mark.slow
def test_cli_grpo_without_the_reward_model_is_one_line(fresh, capsys):
    shutil.rmtree(fresh / "models/rm")
    assert cli.main(["grpo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medadapt grpo: error: grpo.weights.reward_model=0.25 needs the reward model models/rm")
    assert "`dvc repro rm`" in err and len(err.splitlines()) == 1
    assert not (fresh / "models/grpo").exists()
    assert cli.main(["grpo", "--set", "grpo.weights.reward_model=0"]) == 0  # weight 0: no RM needed
    assert json.loads((fresh / "metrics/grpo.json").read_text())["weights"] == {
        "correctness": 1.0, "format": 0.25, "hallucination": 0.5}
