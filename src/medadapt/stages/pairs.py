"""Stage `pairs`: on-policy preference pairs, sampled from the final SFT policy, for `dpo`.

    dvc repro pairs             # or: medadapt pairs

Reads `on_policy.*`, `data.preferences.{sources,eval_fraction}`, `data.datasets`, `model.*`,
`rm.{batch_size,max_length}`, `seed`, the prepared train splits and static pairs, the final SFT
adapter `models/sft_medqa/` and the reward model `models/rm/`. Writes
`data/pairs/on_policy/{train,eval}.jsonl` and `metrics/pairs.json`.

For each of the first `on_policy.prompts_per_dataset` train items of every dataset (the seeded
order `prepare` wrote) whose prompt is in no pair of the reward model's part of the pool
(`data/prepared/preferences/rm/`), the SFT policy samples `on_policy.samples` answers to the chat every
method sees. Each answer is ranked by correctness first (the shared parser's answer against the
gold letter or label; SQuAD exact match for RadQA spans) and then by the reward model's score;
the best is paired against the worst, and a prompt whose answers all rank the same gives no
pair. Samples are seeded per prompt (`seed` and the item id), so a re-run writes the same pairs.

Honesty of the DAG: the RM ranks these pairs, so it must never train on them: `rm` reads only
its own part of `prepare`'s static pairs, and only `dpo` reads these (when `on_policy` is in
`data.preferences.sources`); no prompt of them is an RM prompt. A DPO policy trained on them
learns the RM's preferences, so the RM-based figures of `evaluate` (reward mean, unsafe rate by
the RM) are no independent judge of `dpo` then. Eval pairs are held out by prompt as DPO's static
pairs are (`split_like`). Without `on_policy` in the sources the stage writes empty files and
samples nothing.
"""

from __future__ import annotations

import sys
import zlib
from collections import Counter
from pathlib import Path

from .. import entry, paths
from ..artifacts import write_json
from ..data.preferences import on_policy_pair, prompt_text, split_like
from ..data.prompts import messages, render
from ..data.records import read_jsonl, read_records, write_jsonl
from ..modeling.adapters import load_adapter
from ..modeling.inference import sample
from ..modeling.models import base_path, load_base_model, load_tokenizer
from ..modeling.reward import load_reward_model, score
from ..runtime import on_gpu, peak_memory_mb, timed
from ..scoring.answers import parse_answer
from ..scoring.metrics import exact_match
from ..scoring.stats import rate

SFT_ADAPTER = paths.method_adapter("sft")


def correct(output: str, record) -> float:
    """1 when the shared parser reads the gold answer (a letter or label; a RadQA span by SQuAD
    exact match), else 0."""
    answer = parse_answer(output, record)
    if record.dataset == "radqa":
        return exact_match(answer, record.answer)
    return float(answer == record.answer)


def prompt_records(params, root: Path) -> list:
    """The first `prompts_per_dataset` train items of each dataset, in `prepare`'s seeded order,
    whose prompt the reward model's pairs do not ask: the RM never judges DPO on its own prompts."""
    rm_pairs = [p for split in ("train", "eval") for p in read_jsonl(root / paths.preference_file("rm", split))]
    asked = {prompt_text(p) for p in rm_pairs}
    records = []
    for dataset in params.data.datasets:
        train = read_records(root / paths.split_file(dataset, "train"))
        records += [r for r in train if messages(r)[-1]["content"] not in asked][: params.on_policy.prompts_per_dataset]
    return records


def load_policy(params, root: Path):
    """The base with the final SFT adapter, merged where the base is unquantized (faster)."""
    model = load_adapter(load_base_model(params.model, root), root / SFT_ADAPTER)
    if params.model.quantization == "none":
        model = model.merge_and_unload()
    model.eval()
    return model


def sample_answers(records, params, root: Path) -> list[list[str]]:
    """`on_policy.samples` answers per record from the SFT policy, seeded per item."""
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    policy = load_policy(params, root)
    knobs = params.on_policy
    return [sample(policy, tokenizer, render(tokenizer, messages(r)), knobs.samples, knobs.temperature,
                   knobs.max_new_tokens, zlib.crc32(f"{params.train.seed}-{r.id}".encode()))
            for r in records]


def rewards(records, answers: list[list[str]], params, root: Path) -> list[list[float]]:
    """The reward model's score of every sampled answer, grouped per record."""
    model, tokenizer = load_reward_model(params, root)
    flat = [(messages(r), a) for r, group in zip(records, answers) for a in group]
    scores = score(model, tokenizer, [p for p, _ in flat], [a for _, a in flat], params.training("rm").batch_size,
                   params.training("rm").max_length)
    size = params.on_policy.samples
    return [scores[i : i + size] for i in range(0, len(scores), size)]


def build(params, root: Path) -> tuple[list[dict], dict]:
    """On-policy pairs of every prompt that has a best and a worst answer, and their metrics."""
    records = prompt_records(params, root)
    answers = sample_answers(records, params, root)
    graded = [[correct(a, r) for a in group] for r, group in zip(records, answers)]
    scores = rewards(records, answers, params, root)
    pairs = [on_policy_pair(r, messages(r), group, right, reward)
             for r, group, right, reward in zip(records, answers, graded, scores)]
    kept = [p for p in pairs if p]
    by_correctness = sum(max(right) > min(right) for right, p in zip(graded, pairs) if p)
    metrics = {
        "prompts": len(records),
        "sample_accuracy": rate([c for group in graded for c in group], params.evaluate.bootstrap_samples,
                                params.train.seed),
        "pairs_by_dataset": dict(sorted(Counter(p["dataset"] for p in kept).items())),
        "ranked_by_correctness": by_correctness,  # the rest were ranked by the RM alone
        "skipped_equal": len(records) - len(kept),
    }
    return kept, metrics


def run(params, root: Path = Path(".")) -> dict:
    prefs = params.data.preferences
    metrics, train, held = {"enabled": "on_policy" in prefs.sources}, [], []
    with timed() as clock:
        if metrics["enabled"]:
            pairs, built = build(params, root)
            train, held = split_like(pairs, read_jsonl(root / paths.preference_file("dpo", "train")),
                                     read_jsonl(root / paths.preference_file("dpo", "eval")), prefs.eval_fraction,
                                     params.data.seed)
            metrics.update(built, samples_per_prompt=params.on_policy.samples)
    metrics.update(train_pairs=len(train), eval_pairs=len(held))
    cost = {"seconds": clock["seconds"], "peak_memory_mb": peak_memory_mb(), "gpus": int(on_gpu())}
    write_jsonl(root / paths.on_policy_file("train"), train)
    write_jsonl(root / paths.on_policy_file("eval"), held)
    write_json(root / paths.cost_file("pairs"), cost)
    write_json(root / paths.metrics_file("pairs"), metrics)
    print("[pairs] " + " ".join(f"{k}={v}" for k, v in metrics.items() if not isinstance(v, dict)))
    return metrics


def main(argv: list[str] | None = None) -> int:
    return entry.main("pairs", run, argv, training=True)


if __name__ == "__main__":
    sys.exit(main())
