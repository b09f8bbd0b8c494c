"""Typed, validated parameters: the one source of every param's default, range and description.

Every section of `params.yaml` is a pydantic model here, with `extra="forbid"` so that an unknown
or misspelt key is an error, and `Literal` types and bounds so that a value outside its range
names the valid ones. Each field's `description` is the only description of that param:
`params.yaml` is `render(Params())`, its comments generated from them (`medadapt params --write`;
tests/test_params.py checks that the committed file is exactly that).

The training stages share one `train` section; a stage's own section (`sft.<dataset>`, `rm`,
`dpo`) holds only the keys it sets differently, and `Params.training(stage)` resolves the two.
In an experiment, a key a stage's section does not hold yet is added with DVC's `++`:
`dvc exp run -S ++rm.batch_size=8` (a plain `-S` changes keys that exist).
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from .errors import UserError
from .paths import METHODS, SFT_DATASETS, SFT_STAGES

DATASETS = ("pubmedqa", "medmcqa", "medqa", "radqa")
Dataset = Literal[DATASETS]
Method = Literal[METHODS]
BUILTIN_MODELS = ("builtin:smollm2-135m", "builtin:tiny-llama")
SEED = Field(42, ge=0, lt=2**32)  # numpy and torch take seeds in [0, 2**32)


class ParamsError(UserError, ValueError):
    """A params file or override that does not validate; the message names key and choices."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def section(default: Section, description: str):
    """A nested section's field: its defaults and its one-line description."""
    return Field(default_factory=lambda: default, description=description)


class ModelParams(Section):
    base: str = Field("builtin:smollm2-135m", description="builtin:smollm2-135m | builtin:tiny-llama | a hub id | "
                                                         "a local folder")
    quantization: Literal["none", "8bit", "4bit"] = Field(
        "none", description="none | 8bit | 4bit: bitsandbytes loading of the base (train and eval)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto (bf16 on a GPU that has it, else fp32) | float32 | bfloat16 | float16")
    max_length: int = Field(1024, ge=32, description="tokens of prompt + answer; prepare counts examples over it")
    allow_pickle: bool = Field(False, description="load a base's pickled weights (pytorch_model.bin); safetensors "
                                                  "only otherwise")

    @field_validator("base")
    @classmethod
    def _known_builtin(cls, value: str) -> str:
        if value.startswith("builtin:") and value not in BUILTIN_MODELS:
            raise ValueError(f"unknown built-in model {value!r}; valid: {', '.join(BUILTIN_MODELS)}")
        return value


class HubDataset(Section):
    path: str = Field(description="dataset id on the Hugging Face hub")
    name: str | None = Field(None, description="configuration name")
    train: str | None = Field(description="the official train split (empty: none; train is drawn from the rest "
                                          "of eval)")
    eval: str = Field(description="the official evaluation split")
    eval_ids: str | None = Field(None, description="where one split holds both: its eval ids (as "
                                                   "data.files.*.eval_ids); builtin:pubmedqa-test is the 500 "
                                                   "official test PMIDs shipped with medadapt")
    revision: str = Field("main", description="a commit sha pins the data")


HUB_DEFAULTS = {
    "pubmedqa": HubDataset(path="qiaojin/PubMedQA", name="pqa_labeled", train="train", eval="train",
                           eval_ids="builtin:pubmedqa-test"),
    "medmcqa": HubDataset(path="openlifescienceai/medmcqa", train="train", eval="validation"),
    "medqa": HubDataset(path="GBaker/MedQA-USMLE-4-options", train="train", eval="test"),
}


class PerDataset(Section):
    """A count per dataset (no descriptions: the key is the dataset)."""

    pubmedqa: int = Field(12, ge=1)
    medmcqa: int = Field(12, ge=1)
    medqa: int = Field(12, ge=1)
    radqa: int = Field(12, ge=1)

    def get(self, dataset: str) -> int:
        return getattr(self, dataset)


class SplitFiles(Section):
    train: str | None = Field(description="glob of the official train split (empty or no match: train from the "
                                          "rest of the eval split)")
    eval: str = Field(description="glob of the official evaluation split")
    eval_ids: str | None = Field(None, description="where one file holds both splits: a file listing the eval "
                                                   "items' ids (JSON list, JSON object keyed by id, or one a line)")


class DataFiles(Section):
    pubmedqa: SplitFiles = SplitFiles(train="pubmedqa/ori_pqal.json", eval="pubmedqa/ori_pqal.json",
                                      eval_ids="pubmedqa/test_ground_truth.json")
    medmcqa: SplitFiles = SplitFiles(train="medmcqa/*train*.json*", eval="medmcqa/*dev*.json*")
    medqa: SplitFiles = SplitFiles(train="medqa/*train*.jsonl", eval="medqa/*test*.jsonl")
    radqa: SplitFiles = SplitFiles(train="radqa/*train*.json", eval="radqa/*test*.json")


class PreferenceParams(Section):
    sources: list[Literal["gold_vs_distractor", "hallucination", "safety", "file", "on_policy"]] = Field(
        ["gold_vs_distractor", "hallucination", "safety"],
        description="pair builders feeding rm and dpo; also: file (with preferences.file); on_policy (dpo only, "
                    "stage pairs)")
    file: str | None = Field(None, description="TRL-format JSONL of prompt/chosen/rejected, for source `file` "
                                               "(empty: none)")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="share of prompts held out to evaluate rm and dpo")
    max_pairs_per_source: int = Field(8, ge=1, description="cap per source after a seeded shuffle")

    @model_validator(mode="after")
    def _file_given(self) -> PreferenceParams:
        if "file" in self.sources and not self.file:
            raise ValueError("preferences.sources has 'file' but preferences.file is empty")
        return self


class DataParams(Section):
    source: str = Field("sample", description="sample (data/sample, illustrative) | hub | a folder of "
                                              "original-format files")
    datasets: list[Dataset] = Field(list(DATASETS), description="datasets prepared and evaluated")
    files: DataFiles = section(DataFiles(), "per dataset: globs of the official splits, relative to the source "
                                            "folder")
    medmcqa_cop_base: Literal[0, 1] = Field(0, description="0: hub release numbering (0 = opa); 1: original files "
                                                           "(1 = opa)")
    train_size: PerDataset = section(PerDataset(), "most train items kept per dataset (sized for minutes on 2 CPU "
                                                   "cores)")
    eval_size: PerDataset = section(PerDataset(), "eval items per dataset, the same for every method (use 100 on "
                                                  "real data)")
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="a train item whose TF-IDF cosine to an "
                                                                         "eval item reaches this is dropped")
    hub: dict[str, HubDataset] = Field(default_factory=lambda: dict(HUB_DEFAULTS),
                                       description="used when source is hub: official split names; pin revision "
                                                   "to a commit sha")
    preferences: PreferenceParams = section(PreferenceParams(), "preference pairs for the reward model and DPO")

    @field_validator("datasets")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError("must list each dataset once, at least one")
        return value


class LoraParams(Section):
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scale = alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: str | list[str] = Field("all-linear", description="PEFT target modules")


class TrainParams(Section):
    """The keys every trainer reads (SFT, reward model, DPO), resolved for one stage."""

    epochs: float = Field(1.0, gt=0, description="passes over the train split")
    learning_rate: float = Field(3e-4, gt=0, description="peak learning rate (linear decay)")
    batch_size: int = Field(4, ge=1, description="rows (SFT) or pairs (rm, dpo) per device")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps warming up")
    max_length: int = Field(1024, ge=32, description="tokens per example, capped by model.max_length")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory")
    save_steps: int = Field(50, ge=1, description="checkpoint interval, for resume (a save takes seconds at 8B)")
    torch_compile: bool = Field(False, description="torch.compile the model (GPU; each new batch shape recompiles)")
    use_liger_kernel: bool = Field(False, description="Liger's Triton RMSNorm/RoPE/SwiGLU kernels (GPU with "
                                                      "liger-kernel installed; else off)")
    autocast_adapter_dtype: bool = Field(True, description="PEFT's default: LoRA weights in float32 on a bf16/fp16 "
                                                           "base; false keeps them in its dtype (no casts around each "
                                                           "LoRA layer; no change on a float32 base)")
    compile_layers: Literal["eager", "compiled", "cudagraphs"] = Field(
        "eager", description="eager | compiled: torch.compile each decoder layer while training (one graph for all; "
                             "packed SFT rows padded to batch_size x max_length) | cudagraphs: compiled, with CUDA "
                             "graphs (GPU)")


def overrides_of(model: type[Section]) -> dict:
    """`model`'s fields as optional overrides (absent: the `train` value), bounds and descriptions kept."""
    return {name: (info.annotation | None, FieldInfo.merge_field_infos(info, default=None))
            for name, info in model.model_fields.items()}


TrainOverrides = create_model("TrainOverrides", __base__=Section, **overrides_of(TrainParams))


class SftStageParams(TrainOverrides):
    packing: bool = Field(False, description="pack examples into full rows, padding-free with position ids (SFT "
                                             "only)")


class SftParams(Section):
    pubmedqa: SftStageParams = section(SftStageParams(), "sft_pubmedqa: train.* keys set differently, and packing")
    medmcqa: SftStageParams = section(SftStageParams(), "sft_medmcqa: the same")
    medqa: SftStageParams = section(SftStageParams(), "sft_medqa: the same")


class IclParams(Section):
    k: int = Field(3, ge=0, description="demonstrations per prompt (dropped farthest-first to fit max_length)")
    selector: Literal["random", "knn", "balanced"] = Field(
        "knn", description="random | knn (TF-IDF cosine, Medprompt) | balanced (random, labels balanced)")
    shuffle_permutations: int = Field(0, ge=0, description="choice-shuffle ensemble: option orders voted per "
                                                           "question (0: off)")


class RmParams(TrainOverrides):
    """The reward model's train.* keys that differ from `train`."""


class OnPolicyParams(Section):
    """The `pairs` stage: answers sampled from the final SFT policy, ranked, best vs worst."""

    prompts_per_dataset: int = Field(8, ge=1, description="train prompts sampled per dataset (the first of the "
                                                          "seeded train order)")
    samples: int = Field(4, ge=2, description="answers sampled per prompt; the best is paired against the worst")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (no top-k/top-p cut)")
    max_new_tokens: int = Field(32, ge=1, description="generation budget per sampled answer")


class DpoParams(TrainOverrides):
    init: Literal["sft", "base"] = Field("sft", description="sft (start from the final SFT adapter) | base")
    beta: float = Field(0.1, gt=0, description="KL anchor strength")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        "sigmoid", description="sigmoid | ipo | hinge | robust")
    learning_rate: float | None = Field(1e-4, gt=0, description="peak learning rate (linear decay)")


class EvaluateParams(Section):
    max_new_tokens: int = Field(32, ge=1, description="generation budget per answer")
    batch_size: int = Field(8, ge=1, description="prompts per forward pass")
    consistency_variants: int = Field(3, ge=1, le=5, description="PubMedQA prompt variants (paraphrase, context "
                                                                 "order) per item")
    bootstrap_samples: int = Field(1000, ge=100, description="resamples for the 95% intervals")
    safety_prompts: int = Field(10, ge=0, description="held-out risky prompts answered, of 30 in "
                                                      "data/safety/eval.jsonl (0: skip)")
    merge_adapter: bool = Field(True, description="merge LoRA into an unquantized base before scoring (faster)")


class RehearseParams(Section):
    methods: list[Method] = Field(list(METHODS), description="methods it evaluates")


class TrackingParams(Section):
    wandb: Literal["disabled", "offline", "online"] = Field(
        "disabled", description="disabled | offline (no network needed) | online")
    wandb_project: str = Field("medadapt", description="W&B project name")
    dvclive: bool = Field(True, description="log trainer metrics and plots with DVCLive")


class ComputeParams(Section):
    num_processes: int = Field(1, ge=1, description="processes (GPUs) per training stage; >1 runs it under "
                                                    "`accelerate launch` (on a CPU: gloo)")
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="with num_processes > 1: ddp (a model copy per GPU, the fast path) | fsdp (weights "
                           "sharded, for bases too big for one GPU; GPUs only)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto (bf16/fp16 as model.dtype on a GPU, else no) | no | bf16 | fp16")


class Params(Section):
    seed: int = Field(SEED.default, ge=0, lt=2**32, description="one seed for splits, model init, sampling and "
                                                                "training")
    method: Method = Field("base", description="model that `evaluate` scores: " + " | ".join(METHODS))
    model: ModelParams = section(ModelParams(), "the base model every method shares")
    data: DataParams = section(DataParams(), "where the items come from and how many")
    lora: LoraParams = section(LoraParams(), "the adapter every training stage trains")
    train: TrainParams = section(TrainParams(), "every training stage (sft.*, rm, dpo) reads these; its own "
                                                "section overrides them")
    sft: SftParams = section(SftParams(), "the curriculum stages, in order: keys that differ from train")
    icl: IclParams = section(IclParams(), "in-context learning: the demonstrations of method=icl")
    rm: RmParams = section(RmParams(), "reward model (sequence classifier with LoRA, trl.RewardTrainer): keys that "
                                       "differ from train")
    on_policy: OnPolicyParams = section(OnPolicyParams(), "stage pairs (with `on_policy` in "
                                                          "data.preferences.sources): SFT samples ranked by "
                                                          "correctness, then the RM")
    dpo: DpoParams = section(DpoParams(), "trl.DPOTrainer, the start model as reference: its keys, and train.* "
                                          "keys that differ")
    evaluate: EvaluateParams = section(EvaluateParams(), "how every method is scored")
    tracking: TrackingParams = section(TrackingParams(), "W&B and DVCLive")
    compute: ComputeParams = section(ComputeParams(), "training stages (sft_*, rm, dpo) only")
    rehearse: RehearseParams = section(RehearseParams(), "`medadapt rehearse <preset>`: the stages on a random "
                                                         "model of real shapes")

    @model_validator(mode="after")
    def _fsdp_shards_4bit_not_8bit(self) -> Params:
        # FSDP shards floating-point tensors: 4-bit weights can be stored in one, LLM.int8 ones cannot.
        if self.compute.strategy == "fsdp" and self.model.quantization == "8bit":
            raise ValueError("compute.strategy=fsdp needs model.quantization none or 4bit (got 8bit)")
        return self

    def training(self, stage: str):
        """The train.* keys of a training stage, `train` with the stage's section laid over it; the
        stage's own keys (packing, DPO's beta...) come with them, in the stage section's type."""
        own = self.stage_section(stage)
        merged = {**self.train.model_dump(), **own.model_dump(exclude_none=True)}
        return type(own).model_validate(merged)

    def stage_section(self, stage: str) -> Section:
        if stage in SFT_STAGES:
            return getattr(self.sft, stage.removeprefix("sft_"))
        if stage in ("rm", "dpo"):
            return getattr(self, stage)
        raise KeyError(f"{stage!r} is no training stage")


# ---- reading params.yaml and --set overrides --------------------------------------------------


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
    """Validate a params tree; `overrides` are `key.sub=value` strings (value parsed as YAML), with
    DVC's `+`/`++` prefix for a key the file does not hold yet allowed and ignored."""
    tree = copy.deepcopy(tree or {})
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep:
            raise ParamsError(f"override {override!r}: expected key=value")
        _set_dotted(tree, key.strip().lstrip("+"), yaml.safe_load(raw))
    try:
        return Params.model_validate(tree)
    except ValidationError as error:
        raise ParamsError(_format_error(error, source)) from None


def add_arguments(parser) -> None:
    """`--params FILE` and `--set KEY=VALUE` on an argparse parser: every command takes them."""
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param for this run only, e.g. --set method=sft (repeatable)")


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


# ---- params.yaml, written from the types ------------------------------------------------------

HEADER = """\
# medadapt parameters, one comment per key: each is the key's description in src/medadapt/params.py,
# which validates every key (an unknown key, a wrong type or a value outside its range stops the
# stage with the key and its valid values). `medadapt params --write` rewrites this file from them.
# A training stage's section (sft.<dataset>, rm, dpo) holds only keys that differ from `train`; set
# one it does not hold yet with `dvc exp run -S ++rm.batch_size=8`.
"""
COMMENT_COLUMN = 30


def _scalar(value) -> str:
    """A value as DVC's YAML writer leaves it: `null` as nothing, floats without an exponent."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.12f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()


def _line(indent: int, text: str, description: str | None) -> str:
    line = " " * indent + text
    if description:
        line = line.ljust(COMMENT_COLUMN - 2) + "  # " + description
    return line


def _render(model: BaseModel, indent: int, described: set) -> list[str]:
    """A section's lines. An override section (a training stage's) shows only the keys it sets; a
    field's comment comes where that field of that class first appears (a class repeated per
    dataset is described once)."""
    lines = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None and isinstance(model, TrainOverrides) and name in TrainParams.model_fields:
            continue  # not set: the stage takes train's value
        description = info.description if (type(model), name) not in described else None
        described.add((type(model), name))
        if isinstance(value, BaseModel):
            inner = _render(value, indent + 2, described)
            lines += [_line(indent, f"{name}:" if inner else f"{name}: {{}}", description), *inner]
        elif isinstance(value, dict):
            lines.append(_line(indent, f"{name}:", description))
            for key, item in value.items():
                lines += [_line(indent + 2, f"{key}:", None), *_render(item, indent + 4, described)]
        elif isinstance(value, list):
            lines += [_line(indent, f"{name}:", description), *(" " * indent + f"- {_scalar(v)}" for v in value)]
        else:
            lines.append(_line(indent, f"{name}: {_scalar(value)}".rstrip(), description))
    return lines


def render(params: Params) -> str:
    """`params.yaml` for these values, every key commented with its description, in the layout
    DVC's YAML writer uses (block mappings and lists, `key:` for null), so that `dvc exp run -S`
    changes only the lines of the values it sets. A blank line opens each section."""
    lines = []
    for line in _render(params, 0, set()):
        top = line[:1] not in (" ", "-")
        if top and isinstance(getattr(params, line.split(":", 1)[0]), BaseModel):
            lines.append("")
        lines.append(line)
    return HEADER + "\n" + "\n".join(lines) + "\n"


def undescribed() -> list[str]:
    """Params without a description (a count per dataset needs none: its key is the dataset)."""
    missing, seen = [], set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            if not info.description and model is not PerDataset and model is not DataFiles:
                missing.append(prefix + name)
            for candidate in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    walk(candidate, f"{prefix}{name}.")

    walk(Params, "")
    return missing


def render_diff(path: Path) -> str:
    """How the file differs from `render` of its own values ('' when it is exactly that)."""
    text = Path(path).read_text()
    expected = render(load_params(path))
    return "".join(difflib.unified_diff(text.splitlines(True), expected.splitlines(True), str(path), "render"))


__all__ = ["DATASETS", "SFT_DATASETS", "Params", "ParamsError", "load_params", "parse_params", "render"]
