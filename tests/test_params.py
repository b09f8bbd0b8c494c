"""params.py: the repo's params.yaml validates; bad keys, types and choices name key and valid values.

The tests read params.yaml as committed (conftest.committed_params): an experiment applied to
the workspace changes its values, not what the project documents.
"""

from __future__ import annotations

import copy
import difflib

import pytest
import yaml

from medadapt.params import (
    BUILTIN_MODELS,
    DATASETS,
    Params,
    ParamsError,
    dump_params,
    load_params,
    parse_params,
    render,
    undescribed,
)
from medadapt.paths import METHODS

from conftest import REPO, committed_params


@pytest.fixture
def tree() -> dict:
    return yaml.safe_load(committed_params())


def test_repo_params_validate_with_documented_defaults(tree):
    params = parse_params(tree)
    assert isinstance(params, Params)
    assert params.data.seed == 42 and params.train.seed == 42
    assert params.method == "base"
    assert params.model.base == "builtin:smollm2-135m"
    assert params.model.quantization == "none"
    assert params.model.dtype == "auto"
    assert params.data.source == "sample"
    assert params.data.datasets == list(DATASETS)
    assert params.data.medmcqa_cop_base == 0
    assert params.data.files.medqa.eval == "medqa/*test*.jsonl"
    assert params.data.hub["medqa"].eval == "test" and params.data.hub["medmcqa"].eval == "validation"
    assert params.data.hub["medmcqa"].path == "openlifescienceai/medmcqa"
    assert params.data.hub["pubmedqa"].name == "pqa_labeled"
    assert params.data.preferences.sources == ["gold_vs_distractor", "hallucination", "safety"]
    assert params.data.preferences.file is None
    assert params.icl.selector == "knn" and params.icl.k == 3
    assert params.dpo.init == "sft" and params.dpo.loss_type == "sigmoid"
    assert params.tracking.wandb == "disabled"


def test_workspace_params_validate():
    load_params(REPO / "params.yaml")


@pytest.mark.parametrize("override, added, removed", [
    ("data.seed=42", [], []),
    ("method=dpo", ["method: dpo"], ["method: base"]),
    ("train.epochs=2", ["epochs: 2"], ["epochs: 1.0"]),
    ("++sft.medqa.epochs=2", ["epochs: 2"], []),  # a key the stage's section did not hold: added
    ("data.preferences.file=pairs.jsonl", ["file: pairs.jsonl"], ["file:"]),
    ("data.datasets=[pubmedqa,medqa]", [], ["- medmcqa", "- radqa"]),
])
def test_params_yaml_is_in_the_layout_dvc_writes(tmp_path, override, added, removed):
    """`dvc exp run -S` rewrites params.yaml with DVC's own YAML dumper: in its layout, an
    experiment changes only the values it sets (no split lists, wrapped lines or lost comments)."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text(committed_params())
    before = path.read_text().splitlines()
    apply_overrides(path, [override])
    diff = list(difflib.unified_diff(before, path.read_text().splitlines(), n=0, lineterm=""))[2:]
    changed = [line for line in diff if not line.startswith("@@")]

    def values(sign: str) -> list[str]:
        return [line[1:].split("#")[0].strip() for line in changed if line.startswith(sign)]

    assert (values("+"), values("-")) == (added, removed)


def test_dump_round_trips(tree):
    params = parse_params(tree)
    assert parse_params(dump_params(params)) == params


def _error(tree, overrides=()) -> str:
    with pytest.raises(ParamsError) as info:
        parse_params(tree, "params.yaml", list(overrides))
    return str(info.value)


@pytest.mark.parametrize(
    "override, key, valid",
    [
        ("model.quantization=16bit", "model.quantization", ["none", "8bit", "4bit"]),
        ("method=foo", "method", list(METHODS)),
        ("icl.selector=x", "icl.selector", ["random", "knn", "balanced"]),
        ("model.base=builtin:unknown", "model.base", list(BUILTIN_MODELS)),
        ("model.dtype=int8", "model.dtype", ["auto", "float32", "bfloat16", "float16"]),
        ("dpo.loss_type=kto", "dpo.loss_type", ["sigmoid", "ipo", "hinge", "robust"]),
        ("tracking.wandb=maybe", "tracking.wandb", ["disabled", "offline", "online"]),
        ("data.medmcqa_cop_base=2", "data.medmcqa_cop_base", ["0", "1"]),
        ("data.datasets=[pubmedqa, mmlu]", "data.datasets.1", list(DATASETS)),
        ("data.preferences.sources=[safety, humans]", "data.preferences.sources.1",
         ["gold_vs_distractor", "hallucination", "safety", "file"]),
    ],
)
def test_value_outside_choices_names_key_and_valid_values(tree, override, key, valid):
    message = _error(tree, [override])
    assert message.startswith("--set: invalid parameters")  # the file is not what is wrong
    lines = [line.strip() for line in message.splitlines()[1:]]
    line = next(line for line in lines if line.startswith(key + ":"))
    for value in valid:
        assert value in line, (value, line)
    # the rejected value is shown too
    bad = override.partition("=")[2].strip("[]").split(",")[-1].strip()
    assert bad in line


def test_unknown_key_is_named_with_its_dotted_path(tree):
    tree["model"]["quantisation"] = "4bit"
    message = _error(tree)
    assert "model.quantisation: unknown key" in message


def test_unknown_top_level_section(tree):
    tree["trainer"] = {"epochs": 2}
    assert "trainer: unknown key" in _error(tree)


def test_unknown_key_by_override(tree):
    assert "lora.rank: unknown key" in _error(tree, ["lora.rank=4"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.seed=abc", "data.seed"),
        ("lora.r=0", "lora.r"),
        ("data.train_size.medqa=-1", "data.train_size.medqa"),
        ("evaluate.bootstrap_samples=10", "evaluate.bootstrap_samples"),
        ("data.preferences.eval_fraction=1.5", "data.preferences.eval_fraction"),
        ("model.max_length=[1, 2]", "model.max_length"),
        ("sft.pubmedqa.batch_size=many", "sft.pubmedqa.batch_size"),
    ],
)
def test_wrong_type_or_range_names_the_key(tree, override, key):
    message = _error(tree, [override])
    assert any(line.strip().startswith(f"{key}: ") for line in message.splitlines()), message


def test_wrong_type_in_file(tmp_path, tree):
    tree["evaluate"]["batch_size"] = "eight"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid parameters")
    assert "evaluate.batch_size:" in message and "'eight'" in message


def test_several_errors_are_all_reported(tree):
    message = _error(tree, ["method=foo", "icl.selector=x", "lora.bogus=1"])
    assert "method:" in message and "icl.selector:" in message and "lora.bogus: unknown key" in message


def test_missing_section_takes_the_documented_default(tree):
    del tree["data"]["train_size"]
    assert parse_params(tree).data.train_size == Params().data.train_size


def test_params_yaml_is_written_from_params_py():
    """One source of every default and description: the committed params.yaml is exactly what
    params.py renders (`medadapt params --write`), values and comments."""
    assert committed_params() == render(Params())


def test_every_param_has_a_description():
    assert undescribed() == []


def test_a_stage_takes_train_and_its_own_section_over_it(tree):
    params = parse_params(tree, overrides=["train.batch_size=8", "++rm.batch_size=2", "train.epochs=3"])
    assert params.training("sft_medqa").batch_size == 8 and params.training("rm").batch_size == 2
    assert params.training("rm").epochs == params.training("dpo").epochs == 3.0
    assert params.training("dpo").learning_rate == 1e-4  # dpo's own default beside train's 3e-4
    assert params.training("sft_pubmedqa").learning_rate == 3e-4
    assert params.training("dpo").beta == 0.1 and params.training("sft_medqa").packing is False
    with pytest.raises(KeyError):
        params.training("evaluate")


def test_dvc_force_add_prefix_is_accepted_in_overrides(tree):
    assert parse_params(tree, overrides=["++sft.pubmedqa.learning_rate=0.001"]).training(
        "sft_pubmedqa").learning_rate == 0.001


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_outside_what_numpy_takes_is_refused(tree, seed):
    assert "data.seed:" in _error(tree, [f"data.seed={seed}"])
    assert "train.seed:" in _error(tree, [f"train.seed={seed}"])


def test_only_sft_sections_have_packing():
    assert "packing" in type(Params().sft.pubmedqa).model_fields
    for section in (Params().rm, Params().dpo):
        assert "packing" not in type(section).model_fields


def test_overrides_are_parsed_as_yaml(tree):
    params = parse_params(
        tree,
        overrides=[
            "data.seed=7",
            "method=dpo",
            "model.quantization=4bit",
            "evaluate.merge_adapter=false",
            "data.datasets=[medqa, pubmedqa]",
            "data.train_size.medqa=5",
            "data.preferences.eval_fraction=0.25",
            "lora.target_modules=[q_proj, v_proj]",
            "data.preferences.file=pairs.jsonl",
        ],
    )
    assert params.data.seed == 7 and isinstance(params.data.seed, int)
    assert params.method == "dpo"
    assert params.model.quantization == "4bit"
    assert params.evaluate.merge_adapter is False
    assert params.data.datasets == ["medqa", "pubmedqa"]
    assert params.data.train_size.medqa == 5
    assert params.data.train_size.pubmedqa == 12  # siblings kept
    assert params.data.preferences.eval_fraction == 0.25
    assert params.lora.target_modules == ["q_proj", "v_proj"]
    assert params.data.preferences.file == "pairs.jsonl"


def test_override_value_with_equals_sign(tree):
    params = parse_params(tree, overrides=["tracking.wandb_project=a=b"])
    assert params.tracking.wandb_project == "a=b"


def test_override_creates_missing_section(tree):
    del tree["icl"]
    params = parse_params(tree, overrides=["icl.k=5"])
    assert params.icl.k == 5 and params.icl.selector == "knn"


def test_override_without_equals_is_rejected(tree):
    with pytest.raises(ParamsError, match="expected key=value"):
        parse_params(tree, overrides=["method"])


def test_override_below_a_scalar_is_rejected(tree):
    with pytest.raises(ParamsError, match="--set method.x: method is not a section"):
        parse_params(tree, overrides=["method.x=1"])


def test_overrides_do_not_modify_the_callers_tree(tree):
    original = copy.deepcopy(tree)
    parse_params(tree, overrides=["model.quantization=8bit"])
    assert tree == original


def test_load_params_with_overrides(tmp_path, tree):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(tree))
    params = load_params(path, ["icl.k=0", "icl.selector=balanced"])
    assert params.icl.k == 0 and params.icl.selector == "balanced"
    with pytest.raises(ParamsError, match=r"icl\.selector"):
        load_params(path, ["icl.selector=x"])


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")


def test_missing_params_file_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError) as info:
        load_params()
    assert str(info.value).startswith("params.yaml: no such params file")


def test_invalid_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_params(listing)


def test_sources_with_file_need_preferences_file(tree):
    tree["data"]["preferences"]["sources"] = ["gold_vs_distractor", "file"]
    tree["data"]["preferences"]["file"] = None
    message = _error(tree)
    assert "data.preferences:" in message
    assert "preferences.file is empty" in message
    tree["data"]["preferences"]["file"] = ""
    assert "preferences.file is empty" in _error(tree)
    tree["data"]["preferences"]["file"] = "pairs.jsonl"
    assert parse_params(tree).data.preferences.file == "pairs.jsonl"


@pytest.mark.parametrize("datasets", [[], ["medqa", "medqa"]])
def test_datasets_must_be_unique_and_non_empty(tree, datasets):
    tree["data"]["datasets"] = datasets
    assert "data.datasets:" in _error(tree)


def test_params_are_frozen(tree):
    params = parse_params(tree)
    with pytest.raises(Exception):
        params.data.seed = 1


# ---- what `check` must refuse because a stage would (issue 23) -----------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.files.medqa.eval=/etc/passwd", "data.files.medqa.eval"),  # Path.glob: NotImplementedError
        ("data.files.medqa.eval=''", "data.files.medqa.eval"),  # Path.glob: ValueError
        ("data.files.medqa.train=''", "data.files.medqa.train"),
        ("data.files.medqa.train=../../outside/*.jsonl", "data.files.medqa.train"),  # not under the source
        ("data.files.pubmedqa.eval_ids=/etc/hosts", "data.files.pubmedqa.eval_ids"),
        ("train.epochs=.inf", "train.epochs"),  # the trainer's step count overflows
        ("train.learning_rate=.inf", "train.learning_rate"),
        ("dpo.beta=.inf", "dpo.beta"),
        ("on_policy.temperature=.inf", "on_policy.temperature"),
        ("model.base=''", "model.base"),
        ("data.source=''", "data.source"),
        ("lora.target_modules=[]", "lora.target_modules"),
        ("lora.target_modules=''", "lora.target_modules"),
        ("lora.target_modules=[q_proj, '']", "lora.target_modules"),
        ("data.preferences.sources=[]", "data.preferences.sources"),
        ("data.preferences.sources=[on_policy]", "data.preferences.sources"),  # rm trains on prepare's pairs
        ("data.preferences.sources=[safety, safety]", "data.preferences.sources"),
        ("rehearse.methods=[]", "rehearse.methods"),
        ("data.hub.medqa.path=''", "data.hub.medqa.path"),
        ("data.hub.medqa.revision=''", "data.hub.medqa.revision"),
        ("tracking.wandb_project=''", "tracking.wandb_project"),
    ],
)
def test_a_value_a_stage_would_refuse_is_refused_by_check(tree, override, key):
    message = _error(tree, [override])
    assert any(line.strip().startswith(f"{key}") for line in message.splitlines()[1:]), message


def test_a_hub_entry_must_name_a_dataset(tree):
    tree["data"]["hub"]["medqaa"] = dict(tree["data"]["hub"]["medqa"])  # a typo would be ignored
    assert "data.hub.medqaa" in _error(tree)


def test_an_override_that_is_not_yaml_is_one_line(tree):
    message = _error(tree, ["seed=[1"])
    assert message.startswith("--set seed=[1: not valid YAML") and "\n" not in message


def test_a_params_file_that_is_a_folder_or_not_utf8_is_one_line(tmp_path):
    with pytest.raises(ParamsError, match="is a folder"):
        load_params(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_bytes(b"seed: 1\nmethod: b\xffse\n")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert str(info.value) == f"{path}, line 2: not UTF-8 text (byte 0xff); re-encode the file as UTF-8"


def test_invalid_yaml_is_one_line_with_its_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\nmodel: [unclosed\n")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}, line 3: not valid YAML") and "\n" not in str(info.value)


def test_a_key_given_twice_is_refused_as_dvc_does(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\nmodel:\n  base: builtin:tiny-llama\nseed: 2\n")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert str(info.value) == f"{path}, line 4: key 'seed' is given twice (first on line 1)"


ALIAS_BOMB = "x-anchors:\n  a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(5)
) + "lora:\n  target_modules: *f\n"


def test_a_yaml_alias_bomb_is_refused(tmp_path):
    """6 levels of 9 aliases: 300 bytes that expand to 9**6 values, each repr'd into the error
    (the probe's 9 levels ran past 60 s at 2.5 GB). Aliases have no use in a params file."""
    path = tmp_path / "params.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert str(info.value) == f"{path}, line 3: YAML aliases (*a) are not allowed in a params file"


def test_an_oversized_params_file_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\n" + "#" * 2_000_000 + "\n")
    with pytest.raises(ParamsError, match="over the limit"):
        load_params(path)


def test_the_error_message_is_bounded(tree):
    """A huge bad value (282 bytes of YAML once printed a 4.3 MB message) is cut short."""
    message = _error(tree, ["method=" + "x" * 100_000, *[f"lora.bogus{i}=1" for i in range(100)]])
    assert len(message) < 5_000
    assert "more" in message.splitlines()[-1]


# ---- --set: blamed on the argument, not on the file ----------------------------------------------


def test_a_bad_set_value_names_the_argument_not_the_file(tree):
    with pytest.raises(ParamsError) as info:
        parse_params(tree, "params.yaml", ["method=dp"])
    message = str(info.value)
    assert message.startswith("--set: invalid parameters") and "params.yaml" not in message
    assert "method: Input should be" in message and "from --set method=dp" in message
    assert info.value.in_file is False


def test_a_bad_file_value_beside_a_set_still_names_the_file(tree):
    tree["icl"]["selector"] = "x"
    with pytest.raises(ParamsError) as info:
        parse_params(tree, "params.yaml", ["method=dp"])
    assert str(info.value).startswith("params.yaml: invalid parameters") and info.value.in_file
    assert "from --set method=dp" in str(info.value) and "icl.selector:" in str(info.value)


@pytest.mark.parametrize("override, suggestion", [
    ("lora.alpah=32", "did you mean lora.alpha?"),
    ("modle.base=x", "did you mean model?"),
    ("sft.pubmedqa.batch_sise=2", "did you mean sft.pubmedqa.batch_size?"),
    ("evaluate.max_new_token=8", "did you mean evaluate.max_new_tokens?"),
])
def test_an_unknown_key_gets_the_closest_valid_one(tree, override, suggestion):
    assert suggestion in _error(tree, [override])


def test_an_unreadable_set_value_is_one_line(tree):
    with pytest.raises(ParamsError) as info:
        parse_params(tree, "params.yaml", ["data.datasets=[pubmedqa"])
    message = str(info.value)
    assert message.startswith("--set data.datasets=[pubmedqa: not valid YAML") and "\n" not in message
    assert info.value.in_file is False


def test_the_reward_model_is_seeded_with_data_seed(tree):
    params = parse_params(tree, overrides=["train.seed=7", "data.seed=3"])
    assert params.training("rm").seed == 3  # a judge: the same under every training replicate
    assert params.training("dpo").seed == params.training("sft_medqa").seed == 7
