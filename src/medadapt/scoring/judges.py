"""The judges `evaluate` applies to generated answers: hallucination, safety, the reward model.

The rules themselves live in `scoring/` (hallucination.py, safety.py, degenerate.py) and the
reward model in `modeling/reward.py`; this module applies them to evaluate's samples and turns
them into rates. A degenerate answer to a risky prompt (empty, only tags, a loop, an echo of the
question: `degenerate.py`) is unsafe-or-unusable for both safety judges, the rule and the reward
model alike, and `safety.degenerate_rate` says how many there were. How far each judge can be
trusted (precision, recall, Youden's J on labelled answers) is `judge_quality.py`'s business.
"""

from __future__ import annotations

from pathlib import Path

from .. import paths
from ..data.prompts import question_chat
from ..data.records import Record, read_jsonl
from ..modeling.reward import load_reward_model, load_threshold, score
from .degenerate import degenerate
from .hallucination import hallucination_rates, judge
from .safety import is_unsafe, sample_safety_prompts
from .stats import rate


def hallucination_sources(record: Record) -> list[str]:
    """What an answer to `record` may state facts from, besides the gold rationale (which `judge`
    adds): the question, context, options and gold answer."""
    return [record.question, record.context, *(record.options or []), record.answer_text]


def judge_answer(output: str, record: Record) -> dict | None:
    """The hallucination rule on one whole answer (answer line and explanation: the answer line
    can hallucinate too) against the record's sources; None where the record has no rationale.
    `evaluate` and the `grpo` stage's hallucination penalty (`training/rewards.py`) both judge
    through here."""
    return judge(output, hallucination_sources(record), record.rationale, record.context)


def hallucination(records_by_id: dict[str, Record], samples: list[dict], params) -> tuple[dict, dict]:
    """Hallucination rates per answer and per fact, judged only where a gold rationale exists;
    each judged sample gets its `unsupported_facts` (None: not judged)."""
    judgements, flags = [], {}
    for sample in samples:
        record = records_by_id[sample["id"]]
        verdict = judge_answer(sample["output"], record)
        sample["unsupported_facts"] = None if verdict is None else verdict["unsupported"]
        judgements.append(verdict)
        if verdict is not None:
            flags[sample["id"]] = float(bool(verdict["unsupported"]))
    return hallucination_rates(judgements, params.evaluate.bootstrap_samples, params.data.seed), flags


def judge_safety_rule(samples: list[dict]) -> None:
    """Each answer to a risky prompt gets `degenerate` (why it is no answer, or None) and
    `unsafe_rule`; the question is the last turn of the sample's `chat`."""
    for sample in samples:
        question = sample["chat"][-1]["content"]
        sample["degenerate"] = degenerate(sample["output"], question)
        sample["unsafe_rule"] = is_unsafe(sample["output"], question)


def reward_scores(samples: list[dict], chats: list[list[dict]], params, root: Path) -> float:
    """Each sample's `reward` by the reward model; returns the RM's unsafe threshold."""
    rm, rm_tokenizer = load_reward_model(params, root)
    rewards = score(rm, rm_tokenizer, chats, [s["output"] for s in samples], params.evaluate.batch_size,
                    params.training("rm").max_length)
    for sample, reward in zip(samples, rewards):
        sample["reward"] = round(reward, 4)
    return load_threshold(root)


def safety_metrics(samples: list[dict], safety: list[dict], threshold: float, params) -> dict:
    """Unsafe rates on the risky prompts by the rule and by the RM (a degenerate answer is unsafe
    whatever its reward), the share of degenerate answers, and the mean reward."""
    n, seed = params.evaluate.bootstrap_samples, params.data.seed
    for sample in safety:
        sample["unsafe_rm"] = sample["reward"] < threshold or sample["degenerate"] is not None
    return {
        "reward_mean": rate([s["reward"] for s in samples + safety], n, seed, binary=False),
        "unsafe_rate_rule": rate([s["unsafe_rule"] for s in safety], n, seed),
        "unsafe_rate_rm": rate([s["unsafe_rm"] for s in safety], n, seed),
        "degenerate_rate": rate([s["degenerate"] is not None for s in safety], n, seed),
        "rm_threshold": round(threshold, 4),
    }


def safety_rows(params, root: Path) -> list[dict]:
    """The held-out risky prompts this run answers (a seeded sample across categories)."""
    if not params.evaluate.safety_prompts:
        return []
    return sample_safety_prompts(read_jsonl(root / paths.SAFETY_EVAL), params.evaluate.safety_prompts, params.data.seed)


def safety_samples(rows: list[dict], answers, params) -> list[dict]:
    """The held-out risky prompts' samples from their generated `answers` (prompts, outputs,
    token counts), judged by the written rule."""
    prompts, outputs, _ = answers
    samples = [{"id": row["id"], "dataset": "safety", "method": params.method, "category": row["category"],
                "chat": question_chat(row["prompt"]), "prompt": prompt, "output": output}
               for row, prompt, output in zip(rows, prompts, outputs)]
    judge_safety_rule(samples)
    return samples
