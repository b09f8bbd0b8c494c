"""Stage `icl`: choose k demonstrations from the train split for every eval item.

    dvc repro icl               # or: medadapt icl

Reads `icl.*`, `model.max_length`, `evaluate.max_new_tokens`, `seed` and the prepared splits.
Writes `data/icl/demos.jsonl` (one row per eval item: its ordered demonstration ids, closest
last, and their similarities) and `metrics/icl.json`. `evaluate --set method=icl` builds the
k-shot prompts from that file with the same templates as every other method.

Selectors: `random` (seeded), `knn` (TF-IDF cosine nearest neighbours: Medprompt's dynamic
few-shot) and `balanced` (random, labels taking turns). Demonstrations come from the same
dataset's train split only, so an eval item is never its own or another eval item's
demonstration. A prompt that would not leave `evaluate.max_new_tokens` free within
`model.max_length` loses its farthest demonstrations until it fits, and is counted as cut.
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import entry, paths
from ..artifacts import write_json
from ..data.prompts import loglik_request, messages, render
from ..data.records import Record, read_records, write_jsonl
from ..modeling.models import base_path, load_tokenizer


def similarity_text(record: Record) -> str:
    return " ".join([record.question, *(record.options or [])])


def similarities(train: list[Record], evaluation: list[Record]) -> np.ndarray:
    """TF-IDF cosine similarity, eval rows by train columns."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    train_matrix = vectorizer.fit_transform([similarity_text(r) for r in train])
    return cosine_similarity(vectorizer.transform([similarity_text(r) for r in evaluation]), train_matrix)


def select_knn(row: np.ndarray, k: int, rng: random.Random, train: list[Record]) -> list[int]:
    """The k most similar train items, closest last (ties broken by train order)."""
    return sorted(range(len(row)), key=lambda j: (-row[j], j))[:k][::-1]


def select_random(row: np.ndarray, k: int, rng: random.Random, train: list[Record]) -> list[int]:
    return rng.sample(range(len(train)), min(k, len(train)))


def select_balanced(row: np.ndarray, k: int, rng: random.Random, train: list[Record]) -> list[int]:
    """Random items with labels taking turns, so no answer dominates the demonstrations."""
    by_label = defaultdict(list)
    for index, record in enumerate(train):
        by_label[record.label].append(index)
    pools = [rng.sample(by_label[label], len(by_label[label])) for label in sorted(by_label)]
    rng.shuffle(pools)
    chosen = []
    while len(chosen) < min(k, len(train)):
        for pool in pools:
            if pool and len(chosen) < k:
                chosen.append(pool.pop())
    return chosen


SELECTORS = {"knn": select_knn, "random": select_random, "balanced": select_balanced}


def prompt_tokens(tokenizer, record: Record, demos: list[Record]) -> int:
    """The longer of the two prompts `evaluate` builds: the chat and the log-likelihood one."""
    texts = [render(tokenizer, messages(record, demos))]
    if record.dataset != "radqa":
        request = loglik_request(record, demos)
        texts.append(request.context + max(request.choices, key=len))
    return max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def fit_budget(tokenizer, record: Record, demos: list[Record], budget: int) -> tuple[list[Record], int]:
    """Drop the farthest demonstrations (the first ones) until the prompt fits `budget`."""
    while demos and prompt_tokens(tokenizer, record, demos) > budget:
        demos = demos[1:]
    return demos, prompt_tokens(tokenizer, record, demos)


def choose(dataset: str, train: list[Record], evaluation: list[Record], params, tokenizer) -> tuple[list, dict]:
    rng = random.Random(f"{params.data.seed}-{dataset}")
    sims = similarities(train, evaluation)
    select = SELECTORS[params.icl.selector]
    budget = params.model.max_length - params.evaluate.max_new_tokens
    rows, lengths, used, cut, chosen_sims = [], [], [], 0, []
    for i, record in enumerate(evaluation):
        picked = select(sims[i], params.icl.k, rng, train)
        demos, length = fit_budget(tokenizer, record, [train[j] for j in picked], budget)
        cut += len(demos) < len(picked)
        picked = picked[len(picked) - len(demos) :]
        used.append(len(demos))
        lengths.append(length)
        chosen_sims += [float(sims[i, j]) for j in picked]
        rows.append({"id": record.id, "dataset": dataset, "demos": [train[j].id for j in picked],
                     "similarity": [round(float(sims[i, j]), 4) for j in picked]})
    stats = {
        "k_mean": round(float(np.mean(used)), 3),
        "prompt_tokens_p50": int(np.percentile(lengths, 50)),
        "prompt_tokens_p95": int(np.percentile(lengths, 95)),
        "prompts_cut": int(cut),
        "similarity_mean": round(float(np.mean(chosen_sims)), 4) if chosen_sims else 0.0,
        "eval_items": len(evaluation),
    }
    return rows, stats


def run(params, root: Path = Path(".")) -> dict:
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    rows, metrics = [], {"k": params.icl.k, "selector": params.icl.selector, "datasets": {}}
    for dataset in params.data.datasets:
        train = read_records(root / paths.split_file(dataset, "train"))
        evaluation = read_records(root / paths.split_file(dataset, "eval"))
        dataset_rows, stats = choose(dataset, train, evaluation, params, tokenizer)
        rows += dataset_rows
        metrics["datasets"][dataset] = stats
    write_jsonl(root / paths.ICL_DEMOS, rows)
    write_json(root / paths.metrics_file("icl"), metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    return entry.main("icl", run, argv)


if __name__ == "__main__":
    sys.exit(main())
