"""Stage `prepare`: raw data -> normalised, de-duplicated, split records; the base model.

    dvc repro prepare          # or: medadapt prepare

Reads `data.*`, `model.*` and `seed`. Writes `data/prepared/<dataset>/{train,eval}.jsonl`,
`data/prepared/preferences/{train,eval}.jsonl`, `models/base/` and `metrics/prepare.json`.

Assumptions: `data.source` is `sample` (the project's illustrative files in `data/sample/`),
`hub` (needs the network) or a folder holding files in the original formats, matched by the
globs in `data.files`. Eval items are drawn first (stratified by label where every label has two
or more items), so the eval set of a dataset depends only on the data, `seed` and `eval_size`.
An item whose normalised question (with its context) is in eval never stays in train.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np

from .. import paths
from ..artifacts import write_json
from ..data.loaders import load_files, load_hub
from ..data.preferences import build_pairs, split_pairs
from ..data.records import DataError, Record, write_jsonl
from ..models import base_path, load_tokenizer, write_base
from ..prompts import messages, render, response



def normalise(text: str) -> str:
    return re.sub(r"\W+", " ", (text or "").lower()).strip()


def item_key(record: Record) -> str:
    """What makes two items the same question (the report too: RadQA reuses questions)."""
    return normalise(" ".join([record.question, record.context or "", *(record.options or [])]))


def load_source(dataset: str, data, root: Path) -> list[Record]:
    if data.source == "hub":
        return _load_hub(dataset, data)
    folder = root / paths.SAMPLE if data.source == "sample" else Path(data.source)
    if not folder.is_dir():
        raise DataError(folder, None, None, "data.source is not a folder; valid: sample, hub, or a folder path")
    return load_files(dataset, folder, getattr(data.files, dataset), data.medmcqa_cop_base)


def _load_hub(dataset: str, data) -> list[Record]:
    others = "use data.source=sample, or a folder of files in the original formats"
    if dataset not in data.hub:
        raise DataError("params.yaml", None, f"data.hub.{dataset}", f"no hub dataset configured; {others}")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DataError("params.yaml", None, "data.source", f"hub is unreachable (HF_HUB_OFFLINE=1); {others}")
    try:
        return load_hub(dataset, data.hub[dataset], data.medmcqa_cop_base)
    except (OSError, ConnectionError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError("params.yaml", None, "data.source", f"hub failed ({error}); {others}") from None


def deduplicate(records: list[Record]) -> tuple[list[Record], int]:
    seen, unique = set(), []
    for record in records:
        key = item_key(record)
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique, len(records) - len(unique)


def split(records: list[Record], eval_size: int, train_size: int, seed: int) -> tuple[list, list]:
    """Seeded, label-stratified eval draw; train is a seeded draw from the rest."""
    from sklearn.model_selection import train_test_split

    records = sorted(records, key=lambda r: r.id)  # file order must not matter
    eval_size = min(eval_size, len(records) // 2)
    labels = [r.label for r in records]
    stratify = labels if min(Counter(labels).values()) >= 2 and eval_size >= len(set(labels)) else None
    rest, evaluation = train_test_split(records, test_size=eval_size, random_state=seed, stratify=stratify)
    random.Random(seed).shuffle(rest)
    return rest[:train_size], sorted(evaluation, key=lambda r: r.id)


def remove_leaks(train: list[Record], evaluation: list[Record]) -> tuple[list[Record], int]:
    eval_keys = {item_key(r) for r in evaluation} | {normalise(r.question) for r in evaluation if not r.context}
    kept = [r for r in train if item_key(r) not in eval_keys and normalise(r.question) not in eval_keys]
    return kept, len(train) - len(kept)


def token_lengths(tokenizer, records: list[Record]) -> list[int]:
    """Tokens of each record's chat prompt plus gold response, as SFT sees it."""
    texts = [render(tokenizer, messages(r)) + response(r) for r in records]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def length_stats(lengths: list[int], max_length: int) -> dict:
    return {
        "p50": int(np.percentile(lengths, 50)),
        "p95": int(np.percentile(lengths, 95)),
        "max": int(max(lengths)),
        "truncated": int(sum(n > max_length for n in lengths)),
    }


def prepare_dataset(dataset: str, params, root: Path) -> tuple[list[Record], list[Record], dict]:
    records, duplicates = deduplicate(load_source(dataset, params.data, root))
    train, evaluation = split(records, params.data.eval_size.get(dataset), params.data.train_size.get(dataset), params.seed)
    train, leaks = remove_leaks(train, evaluation)
    stats = {
        "loaded": len(records) + duplicates,
        "duplicates": duplicates,
        "leakage_removed": leaks,
        "train": len(train),
        "eval": len(evaluation),
        "train_labels": dict(sorted(Counter(r.label for r in train).items())),
        "eval_labels": dict(sorted(Counter(r.label for r in evaluation).items())),
    }
    return train, evaluation, stats


def run(params, root: Path = Path(".")) -> dict:
    metrics, splits = {"datasets": {}}, {}
    for dataset in params.data.datasets:
        train, evaluation, stats = prepare_dataset(dataset, params, root)
        splits[dataset] = (train, evaluation)
        metrics["datasets"][dataset] = stats
        write_jsonl(root / paths.split_file(dataset, "train"), [r.to_dict() for r in train])
        write_jsonl(root / paths.split_file(dataset, "eval"), [r.to_dict() for r in evaluation])

    pairs = build_pairs({d: s[0] for d, s in splits.items()}, params.data.preferences, params.seed, root)
    pair_train, pair_eval = split_pairs(pairs, params.data.preferences.eval_fraction, params.seed)
    write_jsonl(root / paths.PAIRS / "train.jsonl", pair_train)
    write_jsonl(root / paths.PAIRS / "eval.jsonl", pair_eval)
    metrics["preferences"] = {
        "train": len(pair_train),
        "eval": len(pair_eval),
        "sources": dict(sorted(Counter(p["source"] for p in pairs).items())),
    }

    texts = [render_plain(r) for train, _ in splits.values() for r in train]
    write_base(params.model.base, params.seed, texts, root / paths.BASE_DIR)
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    for dataset, (train, evaluation) in splits.items():
        lengths = token_lengths(tokenizer, train + evaluation)
        metrics["datasets"][dataset]["tokens"] = length_stats(lengths, params.model.max_length)
    metrics["leakage"] = sum(_leak_count(*s) for s in splits.values())
    write_json(root / paths.metrics_file("prepare"), metrics)
    return metrics


def render_plain(record: Record) -> str:
    """Text for training the tiny model's tokenizer: everything a prompt can contain."""
    return "\n".join([record.question, record.context or "", *(record.options or []), response(record)])


def _leak_count(train: list[Record], evaluation: list[Record]) -> int:
    return len({item_key(r) for r in train} & {item_key(r) for r in evaluation})
