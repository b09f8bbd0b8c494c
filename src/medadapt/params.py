"""Typed, validated parameters: the single source of the defaults in `params.yaml`.

Every section of `params.yaml` is a pydantic model here, with `extra="forbid"` so that an
unknown or misspelt key is an error, and `Literal` types so that a value outside its choices
names the valid ones. The defaults below are the values `params.yaml` ships with (a test
checks that the two agree), and its comments repeat the one-line descriptions below.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .paths import METHODS, SFT_DATASETS  # noqa: F401  (re-exported: the params' choices)

DATASETS = ("pubmedqa", "medmcqa", "medqa", "radqa")
Dataset = Literal["pubmedqa", "medmcqa", "medqa", "radqa"]
Method = Literal["base", "icl", "sft_pubmedqa", "sft_medmcqa", "sft", "dpo"]  # paths.METHODS


class ParamsError(ValueError):
    """A params file or override that does not validate; the message names key and choices."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelParams(Section):
    base: str = "builtin:smollm2-135m"  # builtin:smollm2-135m | builtin:tiny-llama | hub id | folder
    quantization: Literal["none", "8bit", "4bit"] = "none"  # bitsandbytes loading of the base
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on a GPU that has it
    max_length: int = Field(1024, ge=32)  # tokens of prompt + answer; longer examples are cut
    allow_pickle: bool = False  # load a base's pickled weights (pytorch_model.bin); safetensors only otherwise

    @field_validator("base")
    @classmethod
    def _known_builtin(cls, value: str) -> str:
        if value.startswith("builtin:") and value not in BUILTIN_MODELS:
            raise ValueError(f"unknown built-in model {value!r}; valid: {', '.join(BUILTIN_MODELS)}")
        return value


BUILTIN_MODELS = ("builtin:smollm2-135m", "builtin:tiny-llama")


class HubDataset(Section):
    path: str  # dataset id on the Hugging Face hub
    name: str | None = None  # configuration name
    train: str | None  # the official train split (null: none; train is drawn from the rest of eval)
    eval: str  # the official evaluation split
    eval_ids: str | None = None  # where one split holds both: its eval ids (as data.files.*.eval_ids)
    revision: str = "main"  # a commit sha pins the data


HUB_DEFAULTS = {
    "pubmedqa": HubDataset(path="qiaojin/PubMedQA", name="pqa_labeled", train="train", eval="train",
                           eval_ids="builtin:pubmedqa-test"),
    "medmcqa": HubDataset(path="openlifescienceai/medmcqa", train="train", eval="validation"),
    "medqa": HubDataset(path="GBaker/MedQA-USMLE-4-options", train="train", eval="test"),
}


class PerDataset(Section):
    pubmedqa: int = Field(12, ge=1)
    medmcqa: int = Field(12, ge=1)
    medqa: int = Field(12, ge=1)
    radqa: int = Field(12, ge=1)

    def get(self, dataset: str) -> int:
        return getattr(self, dataset)


class SplitFiles(Section):
    train: str | None  # glob of the official train split (null or no match: train from the rest of eval)
    eval: str  # glob of the official evaluation split
    # where one file holds both splits: the eval items' ids, a file under the source folder (JSON
    # list, JSON object keyed by id, or one id a line) or builtin:pubmedqa-test (shipped PMIDs)
    eval_ids: str | None = None


class DataFiles(Section):
    pubmedqa: SplitFiles = SplitFiles(train="pubmedqa/ori_pqal.json", eval="pubmedqa/ori_pqal.json",
                                      eval_ids="pubmedqa/test_ground_truth.json")
    medmcqa: SplitFiles = SplitFiles(train="medmcqa/*train*.json*", eval="medmcqa/*dev*.json*")
    medqa: SplitFiles = SplitFiles(train="medqa/*train*.jsonl", eval="medqa/*test*.jsonl")
    radqa: SplitFiles = SplitFiles(train="radqa/*train*.json", eval="radqa/*test*.json")


class PreferenceParams(Section):
    sources: list[Literal["gold_vs_distractor", "hallucination", "safety", "file", "on_policy"]] = [
        "gold_vs_distractor",
        "hallucination",
        "safety",
    ]  # which pair builders feed `rm` and `dpo` (on_policy: `dpo` only, from the `pairs` stage)
    file: str | None = None  # TRL-format JSONL (prompt, chosen, rejected) for source `file`
    eval_fraction: float = Field(0.2, gt=0, lt=1)  # share of pairs held out for rm/dpo eval
    max_pairs_per_source: int = Field(8, ge=1)  # cap per source, after seeded shuffle

    @model_validator(mode="after")
    def _file_given(self) -> PreferenceParams:
        if "file" in self.sources and not self.file:
            raise ValueError("preferences.sources has 'file' but preferences.file is empty")
        return self


class DataParams(Section):
    source: str = "sample"  # sample | hub | a folder of files in the original formats
    datasets: list[Dataset] = list(DATASETS)  # datasets to prepare and evaluate
    files: DataFiles = DataFiles()  # per dataset, globs per official split, relative to the source folder
    medmcqa_cop_base: Literal[0, 1] = 0  # 0: hub release (0 = opa); 1: original files (1 = opa)
    train_size: PerDataset = PerDataset()  # max train items per dataset
    eval_size: PerDataset = PerDataset()  # eval items per dataset (the same items for every method)
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)  # TF-IDF cosine to an eval item that drops a train item
    hub: dict[str, HubDataset] = HUB_DEFAULTS  # per dataset, used when source is hub
    preferences: PreferenceParams = PreferenceParams()

    @field_validator("datasets")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError("must list each dataset once, at least one")
        return value


class LoraParams(Section):
    r: int = Field(8, ge=1)  # adapter rank
    alpha: int = Field(16, ge=1)  # scaling numerator (scale = alpha / r)
    dropout: float = Field(0.05, ge=0, lt=1)  # dropout on the adapter input
    target_modules: str | list[str] = "all-linear"  # PEFT target modules


class TrainParams(Section):
    """The keys every trainer reads (SFT, reward model, DPO)."""

    epochs: float = Field(1.0, gt=0)  # passes over the train split
    learning_rate: float = Field(3e-4, gt=0)  # peak learning rate
    batch_size: int = Field(4, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)  # gradient accumulation steps
    warmup_ratio: float = Field(0.1, ge=0, lt=1)  # share of steps warming up
    max_length: int = Field(1024, ge=32)  # tokens per example (capped by model.max_length)
    gradient_checkpointing: bool = False  # trade compute for memory
    save_steps: int = Field(50, ge=1)  # checkpoint interval, for resume (a save takes seconds at 8B)
    torch_compile: bool = False  # torch.compile the model (GPU; each new batch shape recompiles)
    use_liger_kernel: bool = False  # Liger's Triton RMSNorm/RoPE/SwiGLU (GPU with liger-kernel installed; else off)


class SftTrainParams(TrainParams):
    packing: bool = False  # pack examples into full-length rows, padding-free with position ids (SFT only)


class SftParams(Section):
    pubmedqa: SftTrainParams = SftTrainParams()
    medmcqa: SftTrainParams = SftTrainParams()
    medqa: SftTrainParams = SftTrainParams()


class IclParams(Section):
    k: int = Field(3, ge=0)  # demonstrations per prompt
    selector: Literal["random", "knn", "balanced"] = "knn"  # how demonstrations are chosen
    shuffle_permutations: int = Field(0, ge=0)  # choice-shuffle ensemble size (0: off)


class OnPolicyParams(Section):
    """The `pairs` stage: answers sampled from the final SFT policy, ranked, best vs worst."""

    prompts_per_dataset: int = Field(8, ge=1)  # train prompts sampled per dataset (the first of the seeded train order)
    samples: int = Field(4, ge=2)  # answers sampled per prompt
    temperature: float = Field(1.0, gt=0)  # sampling temperature (no top-k/top-p cut)
    max_new_tokens: int = Field(32, ge=1)  # generation budget per sampled answer


class RmParams(TrainParams):
    pass


class DpoParams(TrainParams):
    init: Literal["sft", "base"] = "sft"  # start (and reference) model
    beta: float = Field(0.1, gt=0)  # strength of the KL anchor
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"  # DPO loss variant
    learning_rate: float = Field(1e-4, gt=0)


class EvaluateParams(Section):
    max_new_tokens: int = Field(32, ge=1)  # generation budget per answer
    batch_size: int = Field(8, ge=1)  # prompts per forward pass
    consistency_variants: int = Field(3, ge=1, le=5)  # PubMedQA prompt variants per item
    bootstrap_samples: int = Field(1000, ge=100)  # resamples for 95% intervals
    safety_prompts: int = Field(10, ge=0)  # held-out risky prompts answered (0: skip)
    merge_adapter: bool = True  # merge LoRA into an unquantized base before scoring


class RehearseParams(Section):
    methods: list[Method] = list(METHODS)  # the methods `medadapt rehearse` evaluates


class TrackingParams(Section):
    wandb: Literal["disabled", "offline", "online"] = "disabled"  # W&B mode
    wandb_project: str = "medadapt"  # W&B project name
    dvclive: bool = True  # log trainer metrics and plots with DVCLive


class ComputeParams(Section):
    num_processes: int = Field(1, ge=1)  # processes (GPUs) per training stage; >1 runs it under `accelerate launch`
    strategy: Literal["ddp", "fsdp"] = "ddp"  # with num_processes > 1: ddp (a model copy per GPU) | fsdp (sharded)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: model.dtype's bf16/fp16 on a GPU, else no


class Params(Section):
    seed: int = 42  # one seed for splits, inits, sampling and training
    method: Method = "base"  # see paths.METHOD_STAGES
    model: ModelParams = ModelParams()
    data: DataParams = DataParams()
    lora: LoraParams = LoraParams()
    sft: SftParams = SftParams()
    icl: IclParams = IclParams()
    rm: RmParams = RmParams()
    on_policy: OnPolicyParams = OnPolicyParams()
    dpo: DpoParams = DpoParams()
    evaluate: EvaluateParams = EvaluateParams()
    tracking: TrackingParams = TrackingParams()
    compute: ComputeParams = ComputeParams()
    rehearse: RehearseParams = RehearseParams()

    @model_validator(mode="after")
    def _fsdp_shards_4bit_not_8bit(self) -> Params:
        # FSDP shards floating-point tensors: 4-bit weights can be stored in one, LLM.int8 ones cannot.
        if self.compute.strategy == "fsdp" and self.model.quantization == "8bit":
            raise ValueError("compute.strategy=fsdp needs model.quantization none or 4bit (got 8bit)")
        return self


def _format_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        got = "" if item["type"] in ("missing", "extra_forbidden") else f" (got {item.get('input')!r})"
        lines.append(f"  {key}: {message}{got}")
    return "\n".join(lines)


def _set_dotted(tree: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ParamsError(f"override {dotted}: {part} is not a section")
    node[leaf] = value


def parse_params(tree: dict, source: str = "params.yaml", overrides: list[str] = ()) -> Params:
    """Validate a params tree; `overrides` are `key.sub=value` strings (value parsed as YAML)."""
    tree = copy.deepcopy(tree or {})
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep:
            raise ParamsError(f"override {override!r}: expected key=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    try:
        return Params.model_validate(tree)
    except ValidationError as error:
        raise ParamsError(_format_error(error, source)) from None


def load_params(path: str | Path = "params.yaml", overrides: list[str] = ()) -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file (run from the project root)")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if tree is not None and not isinstance(tree, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return parse_params(tree, str(path), overrides)


def flatten(tree: dict | None, prefix: str = "") -> dict:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`: one entry per leaf of a nested params tree (lists are leaves)."""
    flat = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return flat


def dump_params(params: Params | BaseModel) -> dict:
    return params.model_dump(mode="json")
