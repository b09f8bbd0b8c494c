"""GPU presets (presets/*.yaml): each validates offline against the repo's params.yaml, DVC's own
`-S` machinery writes the same values, the stated GPU memory is the estimator's, and the
estimator bounds the peaks measured on an H200."""

from __future__ import annotations

import shlex
import shutil
from types import SimpleNamespace

import pytest
import yaml

from medadapt.commands import preset as presets
from medadapt.params import ParamsError, load_params, parse_params

from conftest import REPO

NAMES = presets.preset_names(REPO)
EXPECTED = {  # name -> (model.base, quantization)
    "llama-3.1-8b": ("meta-llama/Llama-3.1-8B-Instruct", "none"),
    "llama-3.1-8b-40gb": ("meta-llama/Llama-3.1-8B-Instruct", "none"),
    "llama-3.1-8b-8bit": ("meta-llama/Llama-3.1-8B-Instruct", "8bit"),
    "llama-3.1-8b-4bit": ("meta-llama/Llama-3.1-8B-Instruct", "4bit"),
    "llama-3.1-8b-base": ("meta-llama/Llama-3.1-8B", "none"),
    "llama-3.1-70b": ("meta-llama/Llama-3.1-70B-Instruct", "4bit"),
    "llama-2-7b": ("meta-llama/Llama-2-7b-chat-hf", "none"),
    "llama-2-13b": ("meta-llama/Llama-2-13b-chat-hf", "none"),
}
PARAMETERS_B = {"meta-llama/Llama-3.1-8B-Instruct": 8.03, "meta-llama/Llama-3.1-8B": 8.03,
                "meta-llama/Llama-3.1-70B-Instruct": 70.55, "meta-llama/Llama-2-7b-chat-hf": 6.74,
                "meta-llama/Llama-2-13b-chat-hf": 13.02}  # the model cards' sizes


@pytest.fixture(scope="module")
def repo_params():
    return load_params(REPO / "params.yaml")


def applied(name: str):
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    return parse_params(tree, f"presets/{name}.yaml", presets.load_preset(name, REPO).overrides())


def test_every_expected_preset_exists():
    assert sorted(EXPECTED) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_preset_validates_and_sets_the_real_run(name):
    params = applied(name)
    base, quantization = EXPECTED[name]
    assert (params.model.base, params.model.quantization, params.model.dtype) == (base, quantization, "bfloat16")
    assert params.data.source == "hub" and "radqa" not in params.data.datasets
    for dataset in params.data.datasets:
        assert params.data.eval_size.get(dataset) == 100
    assert params.evaluate.max_new_tokens >= 256
    assert len(params.lora.target_modules) == 7
    # SFT packs examples into rows of up to 1024 tokens: 4 rows a step (about 8 PubMedQA, 14 MedQA,
    # 32 MedMCQA examples), so a 400-item stage still takes 12-50 optimizer steps
    sft = [params.training(f"sft_{d}") for d in ("pubmedqa", "medmcqa", "medqa")]
    assert {(t.packing, t.batch_size * t.grad_accum) for t in sft} == {(True, 4)}, sft
    # GRPO: groups of 8 answers with room for an explanation, one group a step (params.py checks whole groups)
    grpo = params.training("grpo")
    assert (grpo.num_generations, grpo.max_completion_length, grpo.batch_size * grpo.grad_accum) == (8, 256, 8)
    assert grpo.beta > 0 and grpo.prompts_per_dataset > 1


@pytest.mark.parametrize("name", NAMES)
def test_dvc_set_param_writes_the_same_values(name, tmp_path):
    """`dvc exp run $(medadapt preset NAME)` goes through DVC's hydra override parser, not ours."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    arguments = presets.load_preset(name, REPO).arguments()
    (overrides,) = to_path_overrides(arguments[1::2]).values()
    apply_overrides(tmp_path / "params.yaml", overrides)
    assert load_params(tmp_path / "params.yaml") == applied(name)


def test_a_later_set_param_overrides_the_preset(tmp_path):
    from dvc.utils.hydra import apply_overrides

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    overrides = presets.load_preset("llama-2-13b", REPO).overrides() + ["model.quantization=4bit"]
    apply_overrides(tmp_path / "params.yaml", overrides)
    assert load_params(tmp_path / "params.yaml").model.quantization == "4bit"


@pytest.mark.parametrize("name", NAMES)
def test_stated_gpu_memory_is_the_estimate(name, repo_params):
    preset = presets.load_preset(name, REPO)
    estimate = presets.memory_estimate(preset, repo_params)
    assert set(estimate) == {"sft_pubmedqa", "sft_medmcqa", "sft_medqa", "rm", "dpo", "grpo", "evaluate"}
    assert preset.gpu_memory_gb == presets.needed_gb(estimate), estimate


@pytest.mark.parametrize("name", NAMES)
def test_shapes_build_the_model_config_with_its_parameter_count(name):
    from transformers import LlamaConfig

    preset = presets.load_preset(name, REPO)
    config = LlamaConfig(**preset.shapes)
    assert config.hidden_size == preset.shapes["hidden_size"]
    linear, embeddings, _ = presets.parameter_counts(preset.shapes)
    norms = (2 * preset.shapes["num_hidden_layers"] + 1) * preset.shapes["hidden_size"]
    expected = PARAMETERS_B[EXPECTED[name][0]]
    assert (linear + embeddings + norms) / 1e9 == pytest.approx(expected, rel=0.01)


# Peak GPU memory (GiB, torch's allocator) of LoRA r=8 training steps on a random-init model of
# Llama-3.1-8B's shapes on one H200: docs/gpu.md's bench table (batch 4 x 512) and issue 13's
# plain loop (batch 4 x 1024 without checkpointing, batch 8 x 1024 with it).
MEASURED = [("none", 4, 512, False, 39.5), ("8bit", 4, 512, False, 56.3), ("4bit", 4, 512, False, 42.9),
            ("none", 4, 1024, False, 54.0), ("none", 8, 1024, True, 29.0)]


@pytest.mark.parametrize("quantization, batch, length, checkpointing, measured", MEASURED)
def test_estimate_bounds_the_measured_peaks(quantization, batch, length, checkpointing, measured):
    shapes = presets.load_preset("llama-3.1-8b", REPO).shapes
    train = SimpleNamespace(batch_size=batch, max_length=length, gradient_checkpointing=checkpointing)
    estimate = presets.training_bytes(shapes, quantization, 8, train, 4096) / presets.GIB * presets.MARGIN
    assert measured <= estimate <= 1.25 * measured


def test_grpo_counts_the_reward_models_copy_of_the_base_only_when_it_rewards(repo_params):
    preset = presets.load_preset("llama-3.1-8b", REPO)
    with_rm = presets.memory_estimate(preset, repo_params)["grpo"]
    without = presets.memory_estimate(preset, repo_params.model_copy(update={"grpo": repo_params.grpo.model_copy(
        update={"weights": repo_params.grpo.weights.model_copy(update={"reward_model": 0.0})})}))["grpo"]
    linear, embeddings, _ = presets.parameter_counts(preset.shapes)
    copy = (linear * presets.WEIGHT_BYTES["none"] + embeddings / 2 * 2) / presets.GIB  # a classifier: no LM head
    assert with_rm - without == pytest.approx(copy, abs=0.2)


def test_cli_prints_one_shell_word_per_argument(repo_params, capsys):
    arguments = presets.main(repo_params, REPO, "llama-3.1-8b-4bit")
    out, err = capsys.readouterr()
    assert out.strip() == " ".join(arguments)
    assert shlex.split(out) == out.split()  # what `$(medadapt preset ...)` passes to dvc
    assert arguments[::2] == ["-S"] * (len(arguments) // 2)
    assert "-S model.quantization=4bit" in out and "GB of GPU memory (estimate; per stage" in err


def test_cli_lists_presets_and_names_the_valid_ones(repo_params, capsys):
    presets.main(repo_params, REPO, None)
    listing = capsys.readouterr().out
    assert all(name in listing for name in NAMES) and "estimate" in listing
    with pytest.raises(ParamsError, match="valid: llama-2-13b"):
        presets.main(repo_params, REPO, "llama-4")


def test_a_value_that_is_not_one_shell_word_is_refused():
    with pytest.raises(ParamsError, match="one shell word"):
        presets.override_value("a b", "model.base")
    assert presets.override_value(["x", 1, 0.00005, True, None], "k") == "[x,1,0.00005,true,null]"



def test_no_preset_recommends_training_once_per_method():
    """Issue 24.6: a queued preset with several methods trains once only when the queue runs one
    experiment at a time (the later ones restore the training stages from DVC's run-cache, which
    two concurrent experiments cannot share): a preset that recommends the queue says `-j 1`."""
    for path in sorted((REPO / "presets").glob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.startswith("#") and "--queue" in line and "$(medadapt preset" in line:
                assert line.rstrip().endswith("dvc queue start -j 1"), (path.name, line)
