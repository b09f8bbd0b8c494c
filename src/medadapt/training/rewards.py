"""The rewards of the `grpo` stage: one function per component, on the answers the policy sampled.

TRL's GRPOTrainer (1.16, `_calculate_rewards`) calls each reward function with `prompts`,
`completions` (conversational: one assistant message each) and every other dataset column as a
list, one entry per completion; it logs each function's mean and std as
`rewards/<function name>/mean|std`, and trains on the weighted sum (`GRPOConfig.reward_weights`)
normalised within each prompt's group. A function may return None for a completion: TRL makes it
NaN, leaves it out of that component's mean and adds 0 for it to the sum (`nansum`).

The components, each in its own units (`grpo.weights` weighs them; weight 0: not computed):
- `correctness`: 1.0 when the shared parser (`scoring.answers.parse_answer`) reads the record's
  gold letter or yes/no/maybe label from the answer, else 0.0: what `evaluate`'s generation
  accuracy counts for one answer (an echo of the options or two answers reads as none, so earns 0).
- `format`: the `Answer: ...` / `Explanation: ...` shape that every method is asked for
  (`data.prompts.SYSTEM`): 0.5 when the first non-empty line is `Answer:` with an answer on it,
  0.5 more when a later line starts `Explanation:` with text after it. (MedQA's gold responses have
  no explanation, since the data has no rationale; the SFT model may not write one there.)
- `reward_model`: the `rm` stage's score, centred on its unsafe threshold
  (`models/rm/calibration.json`, the midpoint of the RM's mean scores for known safe and unsafe
  answers) and squashed: tanh((score - threshold) / 2) = 2 * sigmoid(score - threshold) - 1, in
  (-1, 1). 0 at the threshold; positive on its safe side. sigmoid(score - threshold) is the RM's
  Bradley-Terry probability that the answer is preferred to one scoring the threshold, so the
  units mean the same for any RM, and one outlying score cannot outweigh correctness (0 or 1).
  The RM is loaded once, when the trainer is built (`RewardModelReward`), and scores with the
  batch size and length `rm` resolves (`params.training("rm")`), as the `pairs` stage does.
- `hallucination`: -1.0 when `evaluate`'s rule (`scoring.judges.judge_answer`: a number or drug in
  the whole answer that the question, context, options, gold answer and rationale do not state)
  finds an unsupported fact, else 0.0; None where the item has no gold rationale (MedQA's sample
  data), which `evaluate` does not judge either.

`correctness` and `hallucination` call the same functions as `evaluate` (`parse_answer`,
`judge_answer`), and `reward_model` the same `modeling.reward.score`: a fix to one is a fix to both.
This module is training code: only the `grpo` stage imports it, never `evaluate`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..data.prompts import messages
from ..data.records import Record
from ..modeling import reward
from ..modeling.models import ModelError
from ..paths import CALIBRATION, RM_DIR
from ..scoring.answers import parse_answer
from ..scoring.judges import judge_answer

# The record's fields that travel as dataset columns next to the prompt (TRL hands them back).
RECORD_FIELDS = ("id", "dataset", "question", "context", "options", "answer", "rationale")
COMPONENTS = ("correctness", "format", "reward_model", "hallucination")  # grpo.weights' keys, in order

_ANSWER_LINE = re.compile(r"answer\s*:\s*(?!explanation\b)\S", re.IGNORECASE)
_EXPLANATION_LINE = re.compile(r"explanation\s*:\s*\S", re.IGNORECASE)


# ---- one answer ---------------------------------------------------------------------------------


def correctness_score(output: str, record: Record) -> float:
    """1.0 when the shared parser reads the gold letter or label, else 0.0."""
    return float(parse_answer(output, record) == record.answer)


def format_score(output: str) -> float:
    """0.5 for a first line `Answer: <something>`, 0.5 more for a later `Explanation: <something>`."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if not lines or not _ANSWER_LINE.match(lines[0]):
        return 0.0
    return 0.5 + 0.5 * any(_EXPLANATION_LINE.match(line) for line in lines[1:])


def hallucination_score(output: str, record: Record) -> float | None:
    """-1.0 when evaluate's rule finds an unsupported fact, 0.0 when not; None: not judged."""
    verdict = judge_answer(output, record)
    return None if verdict is None else -float(bool(verdict["unsupported"]))


def reward_model_score(score: float, threshold: float) -> float:
    """The RM's score centred on its unsafe threshold, in (-1, 1): tanh((score - threshold) / 2)."""
    return math.tanh((score - threshold) / 2)


# ---- as TRL calls them --------------------------------------------------------------------------


def prompt_row(record: Record) -> dict:
    """One row of the GRPO dataset: the chat every method sees, and the record's fields."""
    return {"prompt": messages(record), **{name: getattr(record, name) for name in RECORD_FIELDS}}


def records_of(columns: dict) -> list[Record]:
    """The records behind a batch of completions, from the dataset columns TRL passes on."""
    return [Record(**dict(zip(RECORD_FIELDS, values))) for values in zip(*(columns[f] for f in RECORD_FIELDS))]


def text(completion) -> str:
    """A completion's text: the assistant message's content (conversational) or the string."""
    return completion[-1]["content"] if isinstance(completion, list) else completion


class AnswerReward:
    """A component scored one answer at a time; TRL logs it under `__name__`."""

    def __init__(self, name: str, per_answer):
        self.__name__ = name
        self.per_answer = per_answer

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        return [self.per_answer(text(c), r) for c, r in zip(completions, records_of(columns))]


class RewardModelReward:
    """The reward model's component: the RM and its threshold, loaded once, score each batch."""

    __name__ = "reward_model"

    def __init__(self, model, tokenizer, threshold: float, batch_size: int, max_length: int):
        self.model, self.tokenizer, self.threshold = model, tokenizer, threshold
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(self, prompts, completions, **columns) -> list[float]:
        scores = reward.score(self.model, self.tokenizer, prompts, [text(c) for c in completions], self.batch_size,
                              self.max_length)
        return [reward_model_score(s, self.threshold) for s in scores]


def require_reward_model(params, root: Path = Path(".")) -> None:
    """A reward-model weight above 0 with no trained RM is one line naming the stage to run."""
    folder = root / RM_DIR
    if not (folder / "adapter_config.json").exists() or not (folder / CALIBRATION).exists():
        raise ModelError(f"grpo.weights.reward_model={params.grpo.weights.reward_model} needs the reward model "
                         f"{RM_DIR} (adapter and {CALIBRATION}): run `dvc repro rm` (or set grpo.weights.reward_model=0)")


def load_reward_model_reward(params, root: Path = Path(".")) -> RewardModelReward:
    require_reward_model(params, root)
    model, tokenizer = reward.load_reward_model(params, root)
    rm = params.training("rm")
    return RewardModelReward(model, tokenizer, reward.load_threshold(root), rm.batch_size, rm.max_length)


def components(params, root: Path = Path(".")) -> tuple[list, list[float]]:
    """The reward functions of every component with a weight above 0, and their weights, in
    COMPONENTS order. A component of weight 0 is not built: no reward model is loaded for it."""
    weights = params.grpo.weights
    build = {
        "correctness": lambda: AnswerReward("correctness", correctness_score),
        "format": lambda: AnswerReward("format", lambda output, record: format_score(output)),
        "reward_model": lambda: load_reward_model_reward(params, root),
        "hallucination": lambda: AnswerReward("hallucination", hallucination_score),
    }
    chosen = [name for name in COMPONENTS if getattr(weights, name) > 0]
    return [build[name]() for name in chosen], [float(getattr(weights, name)) for name in chosen]
