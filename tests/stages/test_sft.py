"""Stages `sft_*`: the LoRA curriculum on the tiny model: outputs, learning, the adapter chain,
8-bit/4-bit training, resume from checkpoints (and its fingerprint), W&B offline, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import TrainerCallback

from medadapt import cli, tracking
from medadapt.modeling.models import load_base_model
from medadapt.params import load_params
from medadapt.paths import SFT_DATASETS
from medadapt.stages import prepare, sft

from conftest import SIGKILL_SELF, copy_prepared, files_under, make_project, run_killed, write_params

# The sample prompts are 300-550 tokens: 1024 keeps every example (256 would drop them all).
# A high learning rate and two epochs so that the tiny model measurably learns.
CHANGES = {
    "model": {"max_length": 1024},
    "sft": {d: {"max_length": 1024, "epochs": 2, "learning_rate": 0.003, "save_steps": 2} for d in SFT_DATASETS},
}
STEPS = 2 * 16 // 4  # epochs * train items / batch size




def lora_state(model) -> dict[str, torch.Tensor]:
    """The adapter's tensors under the names they are saved with."""
    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """One prepared project and the whole curriculum, with each stage's start adapter captured."""
    root = tmp_path_factory.mktemp("sft_chain")
    make_project(root, CHANGES)
    starts, results = {}, {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params()
        prepare.run(params)
        original = sft.make_trainer

        def capturing(params, dataset, root=Path(".")):
            trainer = original(params, dataset, root)
            starts[dataset] = lora_state(trainer.model)  # before any step
            return trainer

        mp.setattr(sft, "make_trainer", capturing)
        for dataset in SFT_DATASETS:
            results[dataset] = sft.run(params, dataset)
    return {"root": root, "params": params, "starts": starts, "results": results}




@pytest.fixture
def fresh(chain, tmp_path, monkeypatch):
    """A copy of the prepared project (data and base, no adapters) as cwd."""
    root = copy_prepared(chain["root"], tmp_path / "proj")
    monkeypatch.chdir(root)
    return root


# ---- outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", SFT_DATASETS)
def test_stage_writes_adapter_folder(chain, dataset):
    root = chain["root"]
    folder = root / f"models/sft_{dataset}"
    for name in ("adapter_model.safetensors", "adapter_config.json", "hyperparameters.json",
                 "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    assert not (root / f"models/sft_{dataset}.partial").exists()
    hyper = json.loads((folder / "hyperparameters.json").read_text())
    assert hyper["stage"] == f"sft_{dataset}"
    assert hyper["train"]["seed"] == 42
    assert hyper["train"]["learning_rate"] == 0.003 and hyper["train"]["epochs"] == 2
    assert hyper["lora"]["r"] == 8
    assert hyper["model"]["base"] == "builtin:tiny-llama"
    index = SFT_DATASETS.index(dataset)
    expected_start = None if index == 0 else str(Path("models") / f"sft_{SFT_DATASETS[index - 1]}")
    assert hyper["start_adapter"] == expected_start
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and config["task_type"] == "CAUSAL_LM"
    keys = load_file(str(folder / "adapter_model.safetensors")).keys()
    assert keys and all("lora_" in k for k in keys)
    # only the fingerprint stays in the checkpoint folder after a finished run
    assert not (root / f"checkpoints/sft_{dataset}").exists()  # nothing left to resume
    # DVCLive curves
    assert (root / f"dvclive/sft_{dataset}/metrics.json").is_file()


@pytest.mark.parametrize("dataset", SFT_DATASETS)
def test_adapter_loads_on_base(chain, dataset):
    root, params = chain["root"], chain["params"]
    folder = root / f"models/sft_{dataset}"
    base = load_base_model(params.model, root)
    model = PeftModel.from_pretrained(base, str(folder))
    model.eval()
    saved = load_file(str(folder / "adapter_model.safetensors"))
    loaded = lora_state(model)
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    ids = torch.tensor([[5, 17, 99, 250, 3, 42, 7]])
    with torch.no_grad():
        with_adapter = model(input_ids=ids).logits
        with model.disable_adapter():
            without = model(input_ids=ids).logits
    assert not torch.allclose(with_adapter, without, atol=1e-5)  # the trained adapter changes the model


@pytest.mark.parametrize("dataset", SFT_DATASETS)
def test_eval_loss_below_base(chain, dataset):
    root = chain["root"]
    metrics = json.loads((root / f"metrics/sft_{dataset}.json").read_text())
    metrics["cost"] = json.loads((root / f"reports/cost/sft_{dataset}.json").read_text())
    assert metrics == json.loads(json.dumps(chain["results"][dataset]))
    assert metrics["eval_loss"] < metrics["eval_loss_base"], metrics
    assert metrics["steps"] == STEPS
    assert metrics["quantization"] == "none"
    assert metrics["cost"]["resumed_from_step"] == 0
    assert metrics["tokens_seen"] > 0
    assert 0 < metrics["trainable_percent"] < 100
    assert metrics["eval_perplexity"] == pytest.approx(2.718281828 ** metrics["eval_loss"], rel=1e-3)


def test_first_stage_starts_from_a_fresh_adapter(chain):
    start = chain["starts"]["pubmedqa"]
    b_weights = [v for k, v in start.items() if "lora_B" in k]
    assert b_weights and all(torch.count_nonzero(v) == 0 for v in b_weights)
    metrics = chain["results"]["pubmedqa"]
    assert metrics["eval_loss_start"] == pytest.approx(metrics["eval_loss_base"], abs=1e-3)


@pytest.mark.parametrize(("dataset", "previous"), [("medmcqa", "pubmedqa"), ("medqa", "medmcqa")])
def test_chain_starts_from_previous_adapter(chain, dataset, previous):
    root = chain["root"]
    start = chain["starts"][dataset]
    saved = load_file(str(root / f"models/sft_{previous}/adapter_model.safetensors"))
    assert set(start) == set(saved)
    for key in saved:
        assert torch.equal(start[key], saved[key]), key
    # and it trained on from there: its own adapter differs from the one it started from
    own = load_file(str(root / f"models/sft_{dataset}/adapter_model.safetensors"))
    assert any(not torch.equal(own[k], saved[k]) for k in saved)
    metrics = chain["results"][dataset]
    assert metrics["eval_loss_start"] != metrics["eval_loss_base"]  # the carried adapter is active at step 0


def test_build_model_loads_previous_adapter_trainable(chain, monkeypatch):
    root = chain["root"]
    monkeypatch.chdir(root)
    model, peft_config = sft.build_model(chain["params"], "sft_medmcqa", root)
    assert peft_config is None
    saved = load_file(str(root / "models/sft_pubmedqa/adapter_model.safetensors"))
    state = lora_state(model)
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    model, peft_config = sft.build_model(chain["params"], "sft_pubmedqa", root)
    assert peft_config is not None and peft_config.r == 8


# ---- quantized training -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["8bit", "4bit"])
def quantized(chain, request, tmp_path_factory):
    """A few steps of the first stage on an 8-bit or 4-bit (bitsandbytes, CPU) base."""
    root = copy_prepared(chain["root"], tmp_path_factory.mktemp(f"sft_{request.param}"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params(overrides=[f"model.quantization={request.param}", "sft.pubmedqa.epochs=1"])
        metrics = sft.run(params, "pubmedqa")
    return {"root": root, "params": params, "metrics": metrics, "quantization": request.param}


def test_quantized_training(quantized):
    root, params, metrics, quantization = (quantized[k] for k in ("root", "params", "metrics", "quantization"))
    assert metrics["quantization"] == quantization
    assert metrics["steps"] == 4
    assert metrics["train_loss"] == metrics["train_loss"]  # not NaN
    folder = root / "models/sft_pubmedqa"
    assert (folder / "adapter_model.safetensors").is_file()
    assert json.loads((folder / "hyperparameters.json").read_text())["model"]["quantization"] == quantization
    saved = load_file(str(folder / "adapter_model.safetensors"))
    assert any(torch.count_nonzero(v) for k, v in saved.items() if "lora_B" in k)  # it trained
    base = load_base_model(params.model, root)
    layer = base.model.layers[0].self_attn.q_proj
    assert type(layer).__name__ == {"8bit": "Linear8bitLt", "4bit": "Linear4bit"}[quantization]
    model = PeftModel.from_pretrained(base, str(folder))
    model.eval()
    loaded = lora_state(model)
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k].to(saved[k].dtype), saved[k]) for k in saved)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[5, 17, 99, 250]])).logits
    assert torch.isfinite(logits).all()


def test_quantized_adapter_is_bf16_as_trl_does_for_qlora(quantized):
    # TRL casts trainable LoRA weights of a k-bit base to bf16 (QLoRA paper, section 3); the
    # stage documents it.
    saved = load_file(str(quantized["root"] / "models/sft_pubmedqa/adapter_model.safetensors"))
    assert {v.dtype for v in saved.values()} == {torch.bfloat16}


# ---- resume -------------------------------------------------------------------------------------


class FailAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


def crash_run(monkeypatch, params, dataset="pubmedqa", step=3):
    original = sft.make_trainer

    def crashing(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_callback(FailAtStep(step))
        return trainer

    with monkeypatch.context() as mp:
        mp.setattr(sft, "make_trainer", crashing)
        with pytest.raises(RuntimeError, match="simulated crash"):
            sft.run(params, dataset)


def test_resume_after_crash(chain, fresh, monkeypatch):
    params = load_params()
    crash_run(monkeypatch, params)
    assert not (fresh / "models/sft_pubmedqa").exists()
    assert not (fresh / "models/sft_pubmedqa.partial").exists()
    assert not (fresh / "metrics/sft_pubmedqa.json").exists()
    checkpoints = fresh / "checkpoints/sft_pubmedqa"
    assert (checkpoints / "checkpoint-2").is_dir()
    assert not (checkpoints / "checkpoint-3").exists()
    assert (checkpoints / "fingerprint.json").is_file()

    metrics = sft.run(params, "pubmedqa")
    assert metrics["cost"]["resumed_from_step"] == 2
    assert metrics["steps"] == STEPS
    saved = json.loads((fresh / "reports/cost/sft_pubmedqa.json").read_text())
    assert saved["resumed_from_step"] == 2
    # ...and reports what the uninterrupted run (the chain's first stage, same params) reported,
    # with the whole curve: one loss row per step.
    whole = chain["results"]["pubmedqa"]
    for key in ("train_loss", "eval_loss", "tokens_seen", "steps"):
        assert metrics[key] == whole[key], key
    rows = (fresh / "dvclive/sft_pubmedqa/plots/metrics/loss.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in rows] == list(range(1, STEPS + 1))
    assert (fresh / "models/sft_pubmedqa/adapter_model.safetensors").is_file()
    assert not checkpoints.exists()  # finished: nothing left to resume
    # The tokens it processed are the whole run's, in the cost and the curves (issue 23: TRL's
    # count restarted at 0 on resume, so `medadapt costs` under-counted).
    uninterrupted = json.loads((chain["root"] / "reports/cost/sft_pubmedqa.json").read_text())
    assert saved["train_tokens"] == uninterrupted["train_tokens"]
    assert files_under(fresh, "dvclive/sft_pubmedqa") == files_under(chain["root"], "dvclive/sft_pubmedqa")


# A SIGKILL in the middle of a checkpoint save: the model and optimizer of checkpoint-4 are on
# disk, its trainer_state.json (written last) is not.
KILL_DURING_SAVE = f"""
import transformers
save_rng_state = transformers.Trainer._save_rng_state
def killing(self, output_dir):
    if output_dir.endswith("checkpoint-4"):
        {SIGKILL_SELF}
    save_rng_state(self, output_dir)
transformers.Trainer._save_rng_state = killing
"""
STAGE_OUTPUTS = ("models/sft_pubmedqa", "metrics/sft_pubmedqa.json", "dvclive/sft_pubmedqa")


@pytest.mark.slow
def test_killed_during_a_checkpoint_save_the_next_run_resumes_to_the_same_bytes(chain, fresh):
    """Issue 23: the half-saved checkpoint-4 was picked for resume, and every later run failed
    (FileNotFoundError: trainer_state.json) until someone deleted it by hand."""
    killed = run_killed(fresh, "sft", ["pubmedqa"], KILL_DURING_SAVE)
    assert killed.returncode == -9, killed.stderr[-2000:]
    half = fresh / "checkpoints/sft_pubmedqa/checkpoint-4"
    assert half.is_dir() and not (half / "trainer_state.json").exists()

    assert sft.main(["pubmedqa"]) == 0
    cost = json.loads((fresh / "reports/cost/sft_pubmedqa.json").read_text())
    assert cost["resumed_from_step"] == 2
    assert files_under(fresh, *STAGE_OUTPUTS) == files_under(chain["root"], *STAGE_OUTPUTS)
    assert not (fresh / "checkpoints/sft_pubmedqa").exists()


# A SIGKILL in the adapter swap: right after its first removal once the new adapter is whole
# (the old code removed models/sft_pubmedqa there, to rename the new one in next).
KILL_DURING_SWAP = f"""
from pathlib import Path
from medadapt import artifacts
removing = artifacts.remove
def remove(path):
    swapping = Path("models/sft_pubmedqa.partial/adapter_model.safetensors").exists()
    removing(path)
    if swapping:
        {SIGKILL_SELF}
artifacts.remove = remove
"""


@pytest.mark.slow
def test_killed_during_the_adapter_swap_a_whole_adapter_stays_and_the_next_run_matches(chain, fresh):
    """Issue 23: the swap removed the old adapter, then renamed the new one in; a kill between
    left no adapter, the new one stranded in `.partial`."""
    import shutil

    from medadapt.modeling.adapters import check_adapter

    shutil.copytree(chain["root"] / "models/sft_pubmedqa", fresh / "models/sft_pubmedqa")  # a last good one
    killed = run_killed(fresh, "sft", ["pubmedqa"], KILL_DURING_SWAP)
    assert killed.returncode == -9, killed.stderr[-2000:]
    check_adapter(fresh / "models/sft_pubmedqa")  # whole, in place

    assert sft.main(["pubmedqa"]) == 0
    assert files_under(fresh, *STAGE_OUTPUTS) == files_under(chain["root"], *STAGE_OUTPUTS)
    assert not list((fresh / "models").glob("*.partial"))


def test_changed_params_do_not_resume(fresh, monkeypatch):
    crash_run(monkeypatch, load_params())
    checkpoints = fresh / "checkpoints/sft_pubmedqa"
    assert (checkpoints / "checkpoint-2").is_dir()
    stamp = json.loads((checkpoints / "fingerprint.json").read_text())["fingerprint"]

    write_params(fresh, sft={"pubmedqa": {"learning_rate": 0.002}})
    metrics = sft.run(load_params(), "pubmedqa")
    assert metrics["cost"]["resumed_from_step"] == 0
    assert metrics["steps"] == STEPS
    assert not checkpoints.exists()  # the other run's checkpoints were cleared, then its own at the end
    assert metrics["cost"]["resumed_from_step"] == 0 and stamp
    hyper = json.loads((fresh / "models/sft_pubmedqa/hyperparameters.json").read_text())
    assert hyper["train"]["learning_rate"] == 0.002


def test_changed_train_data_does_not_resume(fresh, monkeypatch):
    crash_run(monkeypatch, load_params())
    train = fresh / "data/prepared/pubmedqa/train.jsonl"
    lines = train.read_text().splitlines(keepends=True)
    train.write_text("".join(lines[:-1]))  # one item fewer
    metrics = sft.run(load_params(), "pubmedqa")
    assert metrics["cost"]["resumed_from_step"] == 0


# ---- tracking -------------------------------------------------------------------------------------


def test_wandb_offline_run_is_written(fresh, tmp_path, monkeypatch):
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    # report_to() writes these into os.environ; registering them here restores them afterwards
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_PROJECT", "medadapt-test")
    monkeypatch.setenv("WANDB_SILENT", "true")
    write_params(fresh, tracking={"wandb": "offline"}, sft={"pubmedqa": {"epochs": 1}})
    params = load_params()
    assert tracking.report_to(params) == ["wandb"]
    sft.run(params, "pubmedqa")
    runs = list(wandb_dir.rglob("offline-run-*")) + list((fresh / "wandb").glob("offline-run-*"))
    assert runs, "no wandb offline-run-* folder was written"
    assert any(f.suffix == ".wandb" and f.stat().st_size > 0 for run in runs for f in run.iterdir())
    import wandb

    assert wandb.run is None  # finished by the stage


# ---- the CLI ---------------------------------------------------------------------------------------


def test_cli_unknown_sft_dataset(project, capsys):
    assert cli.main(["sft", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "pubmedqa" in err and "medqa" in err
    assert cli.main(["sft"]) == 2
    assert not (project / "models").exists()


def test_cli_sft_without_prepare_names_the_stage(project, capsys):
    assert cli.main(["sft", "pubmedqa"]) == 2
    assert "prepare" in capsys.readouterr().err


def test_cli_sft_with_no_example_fitting_max_length_is_a_clear_error(fresh, capsys):
    write_params(fresh, sft={"pubmedqa": {"max_length": 64}})
    assert cli.main(["sft", "pubmedqa"]) == 2
    assert "max_length" in capsys.readouterr().err
