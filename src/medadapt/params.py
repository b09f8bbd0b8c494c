"""Typed, validated parameters: the one source of every param's default, range and description.

Every section of `params.yaml` is a pydantic model here, with `extra="forbid"` so that an unknown
or misspelt key is an error, and `Literal` types and bounds so that a value outside its range
names the valid ones. Each field's `description` is the only description of that param:
`params.yaml` is `render(Params())`, its comments generated from them (`medadapt params --write`;
tests/test_params.py checks that the committed file is exactly that).

The training stages share one `train` section; a stage's own section (`sft.<dataset>`, `rm`,
`dpo`, `grpo`) holds only the keys it sets differently, and `Params.training(stage)` resolves the two.
In an experiment, a key a stage's section does not hold yet is added with DVC's `++`:
`dvc exp run -S ++rm.batch_size=8` (a plain `-S` changes keys that exist).
"""

from __future__ import annotations

import copy
import difflib
import reprlib
from collections.abc import Hashable
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from .errors import UserError
from .paths import METHODS, SFT_DATASETS, SFT_STAGES

DATASETS = ("pubmedqa", "medmcqa", "medqa", "radqa")
# Training stages that make a judge, not a method: the reward model scores every method's answers,
# so it is seeded with data.seed and stays the same under every train.seed (issue 20's replicates).
JUDGE_STAGES = ("rm",)
Dataset = Literal[DATASETS]
Method = Literal[METHODS]
BUILTIN_MODELS = ("builtin:smollm2-135m", "builtin:tiny-llama")


class ParamsError(UserError, ValueError):
    """A params file or override that does not validate; the message names key and choices.
    `in_file`: whether the file holds a bad value (False when every bad value came from `--set`)."""

    def __init__(self, message: str, in_file: bool = True):
        super().__init__(message)
        self.in_file = in_file


class Section(BaseModel):
    # allow_inf_nan=False: `.inf` epochs or a `.nan` rate would pass every bound and fail in a stage.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def inside_folder(value: str | None) -> str | None:
    """A glob or file relative to the data folder (a `builtin:` name passes): `Path.glob` refuses an
    empty or absolute pattern, and `..` would read files DVC does not track with the folder."""
    if value is None or value.startswith("builtin:"):
        return value
    path = PurePosixPath(value)
    if not value.strip() or path.is_absolute() or ".." in path.parts:
        raise ValueError("must be a non-empty relative path (no leading / and no ..)")
    return value


InFolder = Annotated[str, AfterValidator(inside_folder)]


def section(default: Section, description: str):
    """A nested section's field: its defaults and its one-line description."""
    return Field(default_factory=lambda: default, description=description)


class ModelParams(Section):
    base: str = Field("builtin:smollm2-135m", min_length=1,
                      description="builtin:smollm2-135m | builtin:tiny-llama | a hub id | a local folder")
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
    path: str = Field(min_length=1, description="dataset id on the Hugging Face hub")
    name: str | None = Field(None, description="configuration name")
    train: str | None = Field(description="the official train split (empty: none; train is drawn from the rest "
                                          "of eval)")
    eval: str = Field(min_length=1, description="the official evaluation split")
    eval_ids: InFolder | None = Field(None, description="where one split holds both: its eval ids (as "
                                                   "data.files.*.eval_ids); builtin:pubmedqa-test is the 500 "
                                                   "official test PMIDs shipped with medadapt")
    revision: str = Field("main", min_length=1, description="a commit sha pins the data")


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
    train: InFolder | None = Field(description="glob of the official train split (empty or no match: train from the "
                                          "rest of the eval split)")
    eval: InFolder = Field(description="glob of the official evaluation split")
    eval_ids: InFolder | None = Field(None, description="where one file holds both splits: a file listing the eval "
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
    rm_fraction: float = Field(0.5, gt=0, lt=1, description="share of preference prompts (seeded, per source mix) "
                                                            "whose pairs only rm trains and evaluates on; dpo gets "
                                                            "the rest")
    max_pairs_per_source: int = Field(8, ge=1, description="cap per source, for rm and for dpo each, after a "
                                                           "seeded shuffle")

    @field_validator("sources")
    @classmethod
    def _static_pairs(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must list each source once")
        if not set(value) - {"on_policy"}:  # on_policy pairs come after rm, which trains on prepare's
            raise ValueError("needs a source besides on_policy: rm trains on the pairs prepare builds")
        return value

    @model_validator(mode="after")
    def _file_given(self) -> PreferenceParams:
        if "file" in self.sources and not self.file:
            raise ValueError("preferences.sources has 'file' but preferences.file is empty")
        return self


class DataParams(Section):
    seed: int = Field(42, ge=0, lt=2**32, description="draws the eval and train items, ICL's demonstrations, the "
                                                      "safety prompts and every interval: fixed across training "
                                                      "replicates")
    source: str = Field("sample", min_length=1, description="sample (data/sample, illustrative) | hub | a folder of "
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
    hub: dict[Dataset, HubDataset] = Field(default_factory=lambda: dict(HUB_DEFAULTS),
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

    @field_validator("target_modules")
    @classmethod
    def _named(cls, value: str | list[str]) -> str | list[str]:
        if not value or not all(value if isinstance(value, list) else [value]):
            raise ValueError("needs a module name (or a pattern such as all-linear), none empty")
        return value


class TrainParams(Section):
    """The keys every trainer reads (SFT, reward model, DPO, GRPO), resolved for one stage."""

    seed: int = Field(42, ge=0, lt=2**32, description="seeds training (adapter init, data order, sampling): "
                                                      "vary it to replicate a method on the same eval items")
    epochs: float = Field(1.0, gt=0, description="passes over the train split")
    learning_rate: float = Field(3e-4, gt=0, description="peak learning rate (linear decay)")
    batch_size: int = Field(4, ge=1, description="rows (SFT), pairs (rm, dpo) or sampled answers (grpo) per device")
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


class GrpoWeights(Section):
    """Weights of the reward components (`training/rewards.py`); a component of weight 0 is not computed."""

    correctness: float = Field(1.0, ge=0, description="1 when the shared parser reads the gold letter or label, "
                                                      "else 0")
    format: float = Field(0.25, ge=0, description="`Answer:` line first (0.5), then an `Explanation:` (0.5 more)")
    reward_model: float = Field(0.25, ge=0, description="the `rm` stage's score, tanh((score - threshold) / 2); "
                                                        "needs models/rm")
    hallucination: float = Field(0.5, ge=0, description="-1 when evaluate's rule finds an unsupported number or "
                                                        "drug, else 0")


class GrpoParams(TrainOverrides):
    """trl.GRPOTrainer (issue 21): its keys, and the train.* keys it sets differently. Its batch
    (`batch_size` x `grad_accum`, resolved over `train`) counts sampled answers, in whole groups."""

    learning_rate: float | None = Field(5e-5, gt=0, description="peak learning rate (linear decay)")
    init: Literal["sft", "base"] = Field("sft", description="sft (start from the final SFT adapter; KL reference: "
                                                            "a frozen copy of it) | base")
    datasets: list[Literal["pubmedqa", "medmcqa", "medqa"]] = Field(
        ["pubmedqa", "medmcqa", "medqa"], description="train prompts from (questions with a gold letter or label; "
                                                      "RadQA excluded)")
    prompts_per_dataset: int = Field(1, ge=1, description="train prompts per dataset (the first of the seeded "
                                                          "train order)")
    num_generations: int = Field(4, ge=2, description="answers sampled per prompt (a group, >= 2): rewards are "
                                                      "compared within it")
    max_completion_length: int = Field(32, ge=1, description="new tokens per sampled answer")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (no top-k/top-p cut)")
    beta: float = Field(0.04, gt=0, description="KL coefficient to the reference (> 0; TRL's default 0 computes "
                                                "no KL)")
    weights: GrpoWeights = section(GrpoWeights(), "reward = the weighted sum of these components (weight 0: not "
                                                  "computed; not all 0)")

    @field_validator("datasets")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError("must list each dataset once, at least one")
        return value

    @model_validator(mode="after")
    def _some_weight(self) -> GrpoParams:
        if not any(self.weights.model_dump().values()):
            raise ValueError("grpo.weights are all zero: nothing would be rewarded; give one component a weight > 0")
        return self


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
    methods: list[Method] = Field(list(METHODS), min_length=1, description="methods it evaluates")


class CompareParams(Section):
    """`medadapt compare` and `medadapt power`: what the verdict rests on (read by no stage)."""

    primary: list[str] = Field(
        ["MedQA acc", "MedMCQA acc", "PubMedQA acc", "Hallucination rate", "Unsafe rate (rule)"],
        description="the metrics the verdict rests on: Holm's family is every pair of methods on these; the "
                    "rest is secondary, without stars")
    alpha: float = Field(0.05, gt=0, lt=1, description="family-wise error rate of the primary tests")
    power: float = Field(0.8, gt=0, lt=1, description="the power a plan of items and seeds aims at")
    target_difference: float = Field(0.05, gt=0, lt=1, description="the difference whose items and seeds the "
                                                                   "plan gives")
    balance_cost: bool = Field(False, description="weigh training cost too in the balance (a method may then "
                                                  "stay for being cheaper)")

    @field_validator("primary")
    @classmethod
    def _some(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError("must list each primary metric once, at least one")
        return value


class TrackingParams(Section):
    wandb: Literal["disabled", "offline", "online"] = Field(
        "disabled", description="disabled | offline (no network needed) | online")
    wandb_project: str = Field("medadapt", min_length=1, description="W&B project name")
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
    method: Method = Field("base", description="model that `evaluate` scores: " + " | ".join(METHODS))
    model: ModelParams = section(ModelParams(), "the base model every method shares")
    data: DataParams = section(DataParams(), "where the items come from and how many")
    lora: LoraParams = section(LoraParams(), "the adapter every training stage trains")
    train: TrainParams = section(TrainParams(), "every training stage (sft.*, rm, dpo, grpo) reads these; its "
                                                "own section overrides them")
    sft: SftParams = section(SftParams(), "the curriculum stages, in order: keys that differ from train")
    icl: IclParams = section(IclParams(), "in-context learning: the demonstrations of method=icl")
    rm: RmParams = section(RmParams(), "reward model (sequence classifier with LoRA, trl.RewardTrainer): keys that "
                                       "differ from train")
    on_policy: OnPolicyParams = section(OnPolicyParams(), "stage pairs (with `on_policy` in "
                                                          "data.preferences.sources): SFT samples ranked by "
                                                          "correctness, then the RM")
    dpo: DpoParams = section(DpoParams(), "trl.DPOTrainer, the start model as reference: its keys, and train.* "
                                          "keys that differ")
    grpo: GrpoParams = section(GrpoParams(), "trl.GRPOTrainer, online RL from the SFT model (CPU default: the "
                                             "machinery, not the effect): its keys, and train.* keys that differ")
    evaluate: EvaluateParams = section(EvaluateParams(), "how every method is scored")
    compare: CompareParams = section(CompareParams(), "`medadapt compare` and `medadapt power` (no stage reads "
                                                      "it)")
    tracking: TrackingParams = section(TrackingParams(), "W&B and DVCLive")
    compute: ComputeParams = section(ComputeParams(), "training stages (sft_*, rm, dpo, grpo) only")
    rehearse: RehearseParams = section(RehearseParams(), "`medadapt rehearse <preset>`: the stages on a random "
                                                         "model of real shapes")

    @model_validator(mode="after")
    def _fsdp_shards_4bit_not_8bit(self) -> Params:
        # FSDP shards floating-point tensors: 4-bit weights can be stored in one, LLM.int8 ones cannot.
        if self.compute.strategy == "fsdp" and self.model.quantization == "8bit":
            raise ValueError("compute.strategy=fsdp needs model.quantization none or 4bit (got 8bit)")
        return self

    @model_validator(mode="after")
    def _grpo_batches_hold_whole_groups(self) -> Params:
        # TRL groups a prompt's answers inside one generation batch: batch_size x grad_accum (its
        # steps per generation) x processes, with batch_size and grad_accum as grpo resolves them.
        grpo, processes = self.training("grpo"), self.compute.num_processes
        if (grpo.batch_size * grpo.grad_accum * processes) % grpo.num_generations:
            keys = [f"{'train' if getattr(self.grpo, k) is None else 'grpo'}.{k}" for k in ("batch_size", "grad_accum")]
            hint = "; grpo takes train's value where it sets none (`++grpo.<key>=...` sets its own)" \
                if any(k.startswith("train.") for k in keys) else ""
            raise ValueError(f"{keys[0]} x {keys[1]} x compute.num_processes ({grpo.batch_size} x {grpo.grad_accum} "
                             f"x {processes}) must be a multiple of grpo.num_generations ({grpo.num_generations}): "
                             f"a grpo batch holds whole groups{hint}")
        return self

    def training(self, stage: str):
        """The train.* keys of a training stage, `train` with the stage's section laid over it; the
        stage's own keys (packing, DPO's beta...) come with them, in the stage section's type."""
        own = self.stage_section(stage)
        merged = {**self.train.model_dump(), **own.model_dump(exclude_none=True)}
        if stage in JUDGE_STAGES:  # a judge stays fixed while the methods' training is replicated
            merged["seed"] = self.data.seed
        return type(own).model_validate(merged)

    def stage_section(self, stage: str) -> Section:
        if stage in SFT_STAGES:
            return getattr(self.sft, stage.removeprefix("sft_"))
        if stage in ("rm", "dpo", "grpo"):
            return getattr(self, stage)
        raise KeyError(f"{stage!r} is no training stage")


# ---- reading params.yaml and --set overrides --------------------------------------------------


MAX_PARAMS_BYTES = 1_000_000  # params.yaml is about 10 KB; a file this big is no params file
MAX_ERRORS = 20  # lines of a validation error; the rest are counted
# A bad value is shown cut short: the whole repr of a large value once made a 4.3 MB message.
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 80, 80, 6, 6, 3


def _fields_at(path: tuple) -> list[str]:
    """The keys of the section at `path` (e.g. ("sft", "pubmedqa")); [] where no section is."""
    model = Params
    for part in path:
        field = model.model_fields.get(str(part))
        model = field.annotation if field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def _unknown_key(loc: tuple) -> str:
    """`unknown key`, with the closest valid key of its section when one is close."""
    close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1)
    return f"unknown key; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?" if close else "unknown key"


def set_by(key: str, overrides: list[str]) -> str | None:
    """The `--set` argument that gave `key` (dotted) its value, or a value inside it; None if none did."""
    for override in overrides:
        name = override.partition("=")[0].strip().lstrip("+")
        if name == key or name.startswith(key + ".") or key.startswith(name + "."):
            return override
    return None


def _format_error(error: ValidationError, source: str, overrides: list[str]) -> tuple[str, bool]:
    """The message, and whether any error is in the file (not only in `--set` values): a key set
    by `--set` is blamed on that argument, never on the file, which it did not change. At most
    MAX_ERRORS lines, each value shown cut short."""
    lines, in_file = [], False
    items = error.errors()
    for item in items[:MAX_ERRORS]:
        key = ".".join(str(part) for part in item["loc"])
        given = set_by(key, overrides) if key else None
        in_file = in_file or not given
        if item["type"] == "value_error" and isinstance(item.get("input"), dict):
            # a check across keys (a model validator): its message names them; the section's values would bury it
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: {message}" if key else f"  {message}")
            continue
        key = key or "(top level)"
        message = _unknown_key(item["loc"]) if item["type"] == "extra_forbidden" else item["msg"]
        got = "" if item["type"] in ("missing", "extra_forbidden") else f" (got {_SHORT.repr(item.get('input'))})"
        lines.append(f"  {key}: {message}{got}" + (f", from --set {_SHORT.repr(given)[1:-1]}" if given else ""))
    if len(items) > MAX_ERRORS:
        lines.append(f"  ... and {len(items) - MAX_ERRORS} more")
    return "\n".join([f"{source if in_file else '--set'}: invalid parameters", *lines]), in_file


class _Refused(Exception):
    """YAML that parses but that a params file must not hold: (line, problem)."""


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what DVC refuses or what no params file needs: a key given
    twice (PyYAML keeps the last silently; DVC rejects the file) and aliases (`*name`: an alias
    bomb of a few hundred bytes expands to billions of values)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(event.start_mark.line + 1,
                           f"YAML aliases (*{event.anchor}) are not allowed in a params file")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        first = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the safe loader refuses it below
            if key in first:
                raise _Refused(key_node.start_mark.line + 1, f"key {key!r} is given twice (first on line {first[key]})")
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str, numbered: bool = True, in_file: bool = True):
    """The YAML value of `text`; anything ParamsLoader refuses, or bad YAML, is one ParamsError line
    naming `source` (and the line, if `numbered`); `in_file` False for a `--set` value."""
    try:
        return yaml.load(text, Loader=ParamsLoader)  # a SafeLoader subclass: plain data only
    except _Refused as refused:
        line, problem = refused.args
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = f"not valid YAML ({getattr(error, 'problem', None) or str(error).splitlines()[0]})"
    where = f"{source}, line {line}" if numbered and line else source
    raise ParamsError(f"{where}: {problem}", in_file=in_file)


def _set_dotted(tree: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ParamsError(f"--set {dotted}: {part} is not a section", in_file=False)
    node[leaf] = value


def parse_params(tree: dict, source: str = "params.yaml", overrides: list[str] = ()) -> Params:
    """Validate a params tree; `overrides` are `key.sub=value` strings (value parsed as YAML), with
    DVC's `+`/`++` prefix for a key the file does not hold yet allowed and ignored."""
    tree = copy.deepcopy(tree or {})
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep:
            raise ParamsError(f"--set {override}: expected key=value", in_file=False)
        _set_dotted(tree, key.strip().lstrip("+"), parse_yaml(raw, f"--set {override}", numbered=False, in_file=False))
    try:
        return Params.model_validate(tree)
    except ValidationError as error:
        message, in_file = _format_error(error, source, list(overrides))
        raise ParamsError(message, in_file=in_file) from None


def add_arguments(parser) -> None:
    """`--params FILE` and `--set KEY=VALUE` on an argparse parser: every command takes them."""
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param for this run only, e.g. --set method=sft (repeatable)")


def read_params_text(path: Path) -> str:
    """The params file as text; a missing file, a folder, an oversized file or bytes that are not
    UTF-8 are one ParamsError line."""
    if not path.exists():
        raise ParamsError(f"{path}: no such params file (run from the project root)")
    if not path.is_file():
        raise ParamsError(f"{path}: is a folder, expected a params file")
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ParamsError(f"{path}: {path.stat().st_size:,} bytes, over the limit of {MAX_PARAMS_BYTES:,} "
                          "for a params file (MAX_PARAMS_BYTES)")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ParamsError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); "
                          "re-encode the file as UTF-8") from None


def load_params(path: str | Path = "params.yaml", overrides: list[str] = ()) -> Params:
    path = Path(path)
    tree = parse_yaml(read_params_text(path), str(path))
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
# A training stage's section (sft.<dataset>, rm, dpo, grpo) holds only keys that differ from
# `train`; set one it does not hold yet with `dvc exp run -S ++rm.batch_size=8`.
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
