"""Stages `rm` and `dpo` on the tiny model: outputs, the saved score head, a separable toy preference,
the DPO reference model, and preference pairs from a file through `prepare`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from medadapt import cli
from medadapt.data.prompts import SYSTEM
from medadapt.data.records import read_jsonl
from medadapt.modeling import reward
from medadapt.modeling.models import ModelError, load_base_model
from medadapt.params import load_params
from medadapt.paths import JUDGES_SAFETY, SFT_DATASETS
from medadapt.scoring.judge_quality import read_set
from medadapt.stages import dpo, prepare, rm, sft

from conftest import copy_prepared, make_project, write_params

# The sample prompts are 300-550 tokens: 1024 keeps every pair and SFT example.
CHANGES = {
    "model": {"max_length": 1024},
    "sft": {d: {"max_length": 1024, "epochs": 1, "learning_rate": 0.003} for d in SFT_DATASETS},
    "rm": {"max_length": 1024},
    "dpo": {"max_length": 1024, "learning_rate": 0.003},
}
DPO_METRIC_KEYS = {
    "train_loss", "eval_loss_start", "eval_loss", "eval_reward_accuracy", "eval_reward_margin",
    "eval_logps_chosen", "eval_logps_rejected", "train_logps_chosen", "train_logps_rejected", "init",
    "reference", "trainable_params", "trainable_percent", "steps",
}






def texts(pairs: list[dict], side: str) -> list[str]:
    return [p[side][-1]["content"] for p in pairs]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """prepare, the SFT curriculum, rm and dpo (init=sft) once, with the trainers' states captured."""
    root = tmp_path_factory.mktemp("rm_dpo")
    make_project(root, CHANGES)
    captured = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params()
        prepare.run(params)
        for dataset in SFT_DATASETS:
            sft.run(params, dataset)

        original_metrics = rm.pairwise_metrics

        def spy_metrics(model, tokenizer, pairs, params):
            # the trainer's own model, right after training
            captured["rm_chosen"] = reward.score(model, tokenizer, [p["prompt"] for p in pairs], texts(pairs, "chosen"),
                                                 params.training("rm").batch_size, params.training("rm").max_length)
            captured["rm_rejected"] = reward.score(model, tokenizer, [p["prompt"] for p in pairs],
                                                   texts(pairs, "rejected"), params.training("rm").batch_size, params.training("rm").max_length)
            return original_metrics(model, tokenizer, pairs, params)

        mp.setattr(rm, "pairwise_metrics", spy_metrics)
        rm_metrics = rm.run(params)

        original_trainer = dpo.make_trainer

        def spy_trainer(params, root=Path(".")):
            captured["dpo_trainer"] = original_trainer(params, root)
            return captured["dpo_trainer"]

        mp.setattr(dpo, "make_trainer", spy_trainer)
        dpo_metrics = dpo.run(params)
    return {"root": root, "params": params, "rm": rm_metrics, "dpo": dpo_metrics, **captured}


# ---- reward model ------------------------------------------------------------------------------


def test_rm_writes_adapter_calibration_and_metrics(built):
    root = built["root"]
    folder = root / "models/rm"
    for name in ("adapter_model.safetensors", "adapter_config.json", "calibration.json", "hyperparameters.json",
                 "tokenizer.json"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"
    assert set(json.loads((folder / "calibration.json").read_text())) == {"threshold"}  # what evaluate reads
    assert not (root / "checkpoints/rm").exists()


def test_rm_threshold_is_fit_on_one_half_and_reported_on_the_other(built):
    """Issue 19: the threshold was fit and measured on the same 20 pairs."""
    metrics = json.loads((built["root"] / "metrics/rm.json").read_text())
    pairs = len(read_jsonl(built["root"] / "data/safety/calibration.jsonl"))
    fit, held = metrics["threshold_accuracy"]["fit"], metrics["threshold_accuracy"]["held_out"]
    assert fit["n"] == held["n"] == pairs  # half the pairs each, two answers a pair
    for figure in (fit, held):
        assert set(figure) == {"value", "low", "high", "k", "n"} and 0 <= figure["low"] <= figure["high"] <= 1


def test_rm_is_measured_as_a_safety_judge_on_the_labelled_answers(built):
    root, params = built["root"], built["params"]
    judge = json.loads((root / "metrics/rm.json").read_text())["judge"]
    rows = read_set(root / JUDGES_SAFETY, "safety")
    assert judge["all"]["n"] == len(rows) and judge["test"]["n"] == sum(r["part"] == "test" for r in rows)
    assert judge["threshold"] == json.loads((root / "models/rm/calibration.json").read_text())["threshold"]
    for part in ("all", "dev", "test"):
        assert set(judge[part]["youden_j"]) == {"value", "low", "high", "better_than_chance"}
    model, tokenizer = reward.load_reward_model(params, root)
    again = rm.judge_figures(model, tokenizer, judge["threshold"], rows, params)
    assert again["test"]["confusion"] == judge["test"]["confusion"]


def test_rm_metrics_shape(built):
    root = built["root"]
    metrics = json.loads((root / "metrics/rm.json").read_text())
    returned = json.loads(json.dumps(built["rm"]))
    assert json.loads((root / "reports/cost/rm.json").read_text()) == returned.pop("cost")
    assert metrics == returned  # the run's cost lives apart from its metrics
    eval_pairs = read_jsonl(root / "data/prepared/preferences/rm/eval.jsonl")
    accuracy = metrics["pairwise_accuracy"]
    assert set(accuracy) == {"value", "low", "high", "n"}
    assert accuracy["n"] == len(eval_pairs) == metrics["eval_pairs"]
    assert 0 <= accuracy["low"] <= accuracy["value"] <= accuracy["high"] <= 1
    sources = {p["source"] for p in eval_pairs}
    assert set(metrics["per_source"]) == sources
    assert sum(s["n"] for s in metrics["per_source"].values()) == accuracy["n"]
    for stats in metrics["per_source"].values():
        assert set(stats) == {"value", "low", "high", "n"}
        assert 0 <= stats["low"] <= stats["value"] <= stats["high"] <= 1
    assert metrics["train_pairs"] == len(read_jsonl(root / "data/prepared/preferences/rm/train.jsonl"))
    assert metrics["steps"] > 0 and metrics["safety_threshold"] == json.loads(
        (root / "models/rm/calibration.json").read_text())["threshold"]


def test_rm_adapter_holds_the_score_head(built):
    keys = load_file(str(built["root"] / "models/rm/adapter_model.safetensors")).keys()
    assert any("score" in k for k in keys), sorted(keys)[:5]
    assert any("lora_A" in k for k in keys)


def test_rm_reloads_to_the_same_scores(built):
    root, params = built["root"], built["params"]
    pairs = read_jsonl(root / "data/prepared/preferences/rm/eval.jsonl")
    prompts = [p["prompt"] for p in pairs]
    loaded = []
    for _ in range(2):  # two independent loads: a head not saved would be re-initialised randomly
        model, tokenizer = reward.load_reward_model(params, root)
        loaded.append((reward.score(model, tokenizer, prompts, texts(pairs, "chosen"), 4, 1024),
                       reward.score(model, tokenizer, prompts, texts(pairs, "rejected"), 4, 1024)))
    assert loaded[0][0] == pytest.approx(loaded[1][0], abs=1e-5)
    assert loaded[0][0] == pytest.approx(built["rm_chosen"], abs=1e-4)
    assert loaded[0][1] == pytest.approx(built["rm_rejected"], abs=1e-4)
    # the saved metric agrees with the reloaded model
    right = [c > r for c, r in zip(*loaded[0])]
    assert built["rm"]["pairwise_accuracy"]["value"] == round(sum(right) / len(right), 4)


def test_rm_calibration_from_reloaded_model(built):
    root, params = built["root"], built["params"]
    model, tokenizer = reward.load_reward_model(params, root)
    fit, _ = reward.calibration_parts(reward.calibration_rows(root), params.data.seed)
    again = reward.midpoint_threshold(*reward.pair_scores(model, tokenizer, fit, 4, 1024))
    saved = json.loads((root / "models/rm/calibration.json").read_text())
    assert again == pytest.approx(saved["threshold"], abs=1e-4)
    assert reward.load_threshold(root) == saved["threshold"]


@pytest.mark.parametrize("broken, message", [
    ("data/judges/safety.jsonl", "data/judges/safety.jsonl: no such file"),
    ("data/safety/calibration.jsonl", "data/safety/calibration.jsonl: no such file"),
])
def test_rm_without_its_labelled_files_stops_before_training(built, tmp_path, monkeypatch, capsys, broken, message):
    root = copy_prepared(built["root"], tmp_path / "broken")
    (root / broken).unlink()
    monkeypatch.chdir(root)
    assert cli.main(["rm"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (root / "models/rm").exists() and not (root / "checkpoints/rm").exists()


TOPICS = ["chest pain", "a headache", "a rash", "a fever", "back pain", "a cough", "dizziness", "nausea",
          "a sore throat", "ankle swelling", "blurred vision", "tingling hands", "ear pain", "a nosebleed",
          "heartburn", "insomnia", "joint pain", "a burn", "a bee sting", "palpitations", "hiccups", "cramps",
          "itching", "a bruise"]


def toy_pair(i: int, topic: str) -> dict:
    prompt = [{"role": "system", "content": SYSTEM},
              {"role": "user", "content": f"Case {i}: I have {topic} since this morning. What should I do?"}]
    advice = f"Explanation: {topic.capitalize()} has many causes; this is general information only.\n"
    return {"id": f"toy-{i}", "prompt": prompt, "source": "toy", "dataset": "toy",
            "chosen": [{"role": "assistant", "content": advice + "Answer: safe. Call your doctor."}],
            "rejected": [{"role": "assistant", "content": advice + "Answer: unsafe."}]}


def write_pairs(path: Path, pairs: list[dict]) -> None:
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))


def test_rm_learns_a_separable_toy_preference(built, tmp_path, monkeypatch):
    root = copy_prepared(built["root"], tmp_path / "toy")
    monkeypatch.chdir(root)
    train = [toy_pair(i, TOPICS[i % 16]) for i in range(36)]
    held_out = [toy_pair(100 + i, topic) for i, topic in enumerate(TOPICS[16:] + TOPICS[:4])]
    assert not {p["prompt"][-1]["content"] for p in train} & {p["prompt"][-1]["content"] for p in held_out}
    write_pairs(root / "data/prepared/preferences/rm/train.jsonl", train)
    write_pairs(root / "data/prepared/preferences/rm/eval.jsonl", held_out)
    params = load_params(overrides=["rm.learning_rate=0.003", "rm.epochs=3"])
    metrics = rm.run(params, root)
    assert metrics["train_pairs"] == 36 and metrics["eval_pairs"] == len(held_out)
    assert metrics["pairwise_accuracy"]["n"] == len(held_out)
    assert metrics["pairwise_accuracy"]["value"] >= 0.9, metrics["pairwise_accuracy"]
    assert metrics["mean_margin"] > 0
    assert set(metrics["per_source"]) == {"toy"}


# ---- DPO ---------------------------------------------------------------------------------------


def eval_batch(trainer) -> dict:
    return next(iter(trainer.get_eval_dataloader()))


def completion_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of the completion tokens, by hand; the batch is [chosen..., rejected...]."""
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    targets = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].bool()
    token_logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    sums = (token_logps * mask).sum(dim=1)
    return sums.chunk(2)


def sft_model(params, root):
    model = PeftModel.from_pretrained(load_base_model(params.model, root), str(root / "models/sft_medqa"))
    model.eval()
    return model


def reference_matches_sft(trainer, params, root):
    """Assert the trainer's reference log-probs equal a freshly loaded SFT model's on an eval
    batch; return that model, the batch, and the reference's and the model's chosen log-probs."""
    trainer.model.eval()
    batch = eval_batch(trainer)
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    expected = sft_model(params, root)
    sft_chosen, sft_rejected = completion_logps(expected, batch)
    assert torch.allclose(ref_chosen, sft_chosen, atol=1e-3, rtol=1e-5)
    assert torch.allclose(ref_rejected, sft_rejected, atol=1e-3, rtol=1e-5)
    return expected, batch, ref_chosen, sft_chosen


def test_dpo_reference_is_the_sft_model(built, monkeypatch):
    root, params = built["root"], built["params"]
    monkeypatch.chdir(root)
    trainer = dpo.make_trainer(params, root)
    assert set(trainer.model.peft_config) == {"default", "ref"}
    expected, batch, ref_chosen, _ = reference_matches_sft(trainer, params, root)
    with expected.disable_adapter():  # the test can tell the SFT model from the bare base
        base_chosen, _ = completion_logps(expected, batch)
    assert not torch.allclose(ref_chosen, base_chosen, atol=1e-2)


def test_dpo_reference_stays_sft_while_the_policy_moves(built):
    trainer = built["dpo_trainer"]
    _, batch, _, sft_chosen = reference_matches_sft(trainer, built["params"], built["root"])
    trainer.model.set_adapter("default")
    policy_chosen, _ = completion_logps(trainer.model, batch)
    assert not torch.allclose(policy_chosen, sft_chosen, atol=1e-2)


def test_dpo_init_base_reference_is_the_base(built, monkeypatch):
    root = built["root"]
    monkeypatch.chdir(root)
    params = load_params(overrides=["dpo.init=base"])
    trainer = dpo.make_trainer(params, root)
    assert set(trainer.model.peft_config) == {"default"}
    trainer.model.eval()
    batch = eval_batch(trainer)
    ref_chosen, _ = trainer.compute_ref_log_probs(trainer.model, batch)
    base = load_base_model(params.model, root)
    base_chosen, _ = completion_logps(base, batch)
    assert torch.allclose(ref_chosen, base_chosen, atol=1e-3, rtol=1e-5)


def test_dpo_init_sft_without_adapter_raises(built, tmp_path, monkeypatch, capsys):
    root = copy_prepared(built["root"], tmp_path / "nosft")
    monkeypatch.chdir(root)
    params = load_params()
    assert params.dpo.init == "sft"
    with pytest.raises(ModelError, match=r"dvc repro sft_medqa"):
        dpo.run(params, root)
    assert not (root / "models/dpo").exists()
    assert cli.main(["dpo"]) == 2
    assert "dvc repro sft_medqa" in capsys.readouterr().err


def test_dpo_writes_default_adapter_only(built):
    root = built["root"]
    folder = root / "models/dpo"
    assert (folder / "adapter_model.safetensors").is_file()
    assert (folder / "adapter_config.json").is_file()
    assert not (folder / "ref").exists()
    assert [p for p in folder.iterdir() if p.is_dir()] == []
    keys = load_file(str(folder / "adapter_model.safetensors")).keys()
    assert keys and not any(".ref." in k for k in keys)
    assert set(keys) == set(load_file(str(root / "models/sft_medqa/adapter_model.safetensors")).keys())
    hyper = json.loads((folder / "hyperparameters.json").read_text())
    assert hyper["stage"] == "dpo" and hyper["start_adapter"] == "models/sft_medqa"
    # the DPO adapter trained on from the SFT one
    dpo_weights = load_file(str(folder / "adapter_model.safetensors"))
    sft_weights = load_file(str(root / "models/sft_medqa/adapter_model.safetensors"))
    assert any(not torch.equal(dpo_weights[k], sft_weights[k]) for k in dpo_weights)
    # nothing left to resume (another test of this module builds a DPO trainer, which makes the folder)
    assert not list((root / "checkpoints/dpo").glob("checkpoint-*"))


def test_dpo_adapter_reloads(built):
    root, params = built["root"], built["params"]
    model = PeftModel.from_pretrained(load_base_model(params.model, root), str(root / "models/dpo"))
    assert set(model.peft_config) == {"default"}
    trainer = built["dpo_trainer"]
    batch = eval_batch(trainer)
    trainer.model.set_adapter("default")
    reloaded, _ = completion_logps(model, batch)
    policy, _ = completion_logps(trainer.model, batch)
    assert torch.allclose(reloaded, policy, atol=1e-3, rtol=1e-5)


def test_dpo_metrics(built):
    root = built["root"]
    metrics = json.loads((root / "metrics/dpo.json").read_text())
    returned = json.loads(json.dumps(built["dpo"]))
    assert json.loads((root / "reports/cost/dpo.json").read_text()) == returned.pop("cost")
    assert metrics == returned  # the run's cost lives apart from its metrics
    assert DPO_METRIC_KEYS <= set(metrics)
    assert 0 <= metrics["eval_reward_accuracy"] <= 1
    assert set(metrics["train_logps_chosen"]) == {"first", "last"}
    assert set(metrics["train_logps_rejected"]) == {"first", "last"}
    assert metrics["init"] == "sft" and metrics["reference"].startswith("sft")
    assert metrics["steps"] > 0
    # at step 0 the policy is its reference: the sigmoid DPO loss is log 2
    assert metrics["eval_loss_start"] == pytest.approx(0.6931, abs=2e-3)


# ---- preference pairs from a file --------------------------------------------------------------


def test_file_preferences_through_prepare(project, shared_data):
    path = shared_data / "preference" / "olaph_preference_gemma-7b_test_kqa_golden_iter-dpo-step.jsonl"
    write_params(project, data={"preferences": {"sources": ["file"], "file": str(path)}})
    params = load_params()
    metrics = prepare.run(params)
    train, held = [], []
    cap = params.data.preferences.max_pairs_per_source
    for side in ("rm", "dpo"):
        side_train = read_jsonl(project / f"data/prepared/preferences/{side}/train.jsonl")
        side_held = read_jsonl(project / f"data/prepared/preferences/{side}/eval.jsonl")
        assert len(side_train) + len(side_held) == cap and side_train and side_held
        assert metrics["preferences"][side]["sources"] == {"file": cap}
        train, held = train + side_train, held + side_held
    lines = path.read_text().splitlines()
    for pair in train + held:
        assert pair["source"] == "file" and pair["dataset"] == "file"
        number = int(pair["id"].rsplit("-", 1)[1])
        assert pair["id"] == f"file-{path.stem}-{number}"
        row = json.loads(lines[number - 1])
        assert pair["prompt"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["prompt"]}]
        assert pair["chosen"] == [{"role": "assistant", "content": row["chosen"]}]
        assert pair["rejected"] == [{"role": "assistant", "content": row["rejected"]}]
    assert len({p["id"] for p in train + held}) == 2 * cap
    # grouped by prompt: no prompt on both sides
    assert not {p["prompt"][-1]["content"] for p in train} & {p["prompt"][-1]["content"] for p in held}
