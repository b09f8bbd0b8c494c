"""Stage `prepare`: raw data -> normalised, de-duplicated, split records; the base model.

    dvc repro prepare          # or: medadapt prepare

Reads `data.*`, `model.*` and `seed`. Writes `data/prepared/<dataset>/{train,eval}.jsonl`,
`data/prepared/preferences/{rm,dpo}/{train,eval}.jsonl` (the preference pool split by prompt
between the reward model and DPO: `data/preferences.py`), `models/base/` and
`metrics/prepare.json`, all
first into a private staging folder that replaces them only when the run succeeded (two
concurrent runs never mix their outputs).

Assumptions: `data.source` is `sample` (the project's illustrative files in `data/sample/`),
`hub` (needs the network) or a folder holding files in the original formats, matched by the
per-split globs in `data.files`. Eval items are drawn from the official evaluation split
(stratified by label where every label has two or more items), so the eval set of a dataset
depends only on the data, `seed` and `eval_size`. Train items come from the official train
split; where the source has none, from the rest of the evaluation split (said on stderr and in
the metrics). A train item equal to an eval item after normalising, or whose TF-IDF cosine to
one reaches `data.near_duplicate_threshold`, never stays in train.
"""

from __future__ import annotations

import os
import random
import re
import sys
from collections import Counter
from pathlib import Path

from .. import entry
from ..artifacts import staged_outputs, write_json
from ..data.loaders import Splits, load_hub_splits, load_splits
from ..data.preferences import preference_sides, prompt_text
from ..data.prompts import length_stats, response, token_lengths
from ..data.records import DataError, Record, write_jsonl
from ..modeling.models import base_path, load_tokenizer, write_base
from ..paths import BASE_DIR, SAMPLE, metrics_file, preference_file, split_file, stage_outputs

OUTPUTS = stage_outputs("prepare")
FROM_TRAIN_SPLIT = "official train split"
FROM_EVAL_REST = "rest of the official eval split (no train file)"


def normalise(text: str) -> str:
    return re.sub(r"\W+", " ", (text or "").lower()).strip()


def item_text(record: Record) -> str:
    """Everything that makes the item: question, context (RadQA reuses questions) and options."""
    return " ".join([record.question, record.context or "", *(record.options or [])])


def item_key(record: Record) -> str:
    """What makes two items the same question."""
    return normalise(item_text(record))


def note(message: str) -> None:
    """A line on stderr for what the run did that the user did not ask for (also in the metrics)."""
    print(f"medadapt prepare: note: {message}", file=sys.stderr)


def load_source(dataset: str, data, root: Path) -> Splits:
    if data.source == "hub":
        return _load_hub(dataset, data, root)
    folder = root / SAMPLE if data.source == "sample" else Path(data.source)
    if not folder.is_dir():
        raise DataError(folder, None, None, "data.source is not a folder; valid: sample, hub, or a folder path")
    return load_splits(dataset, folder, getattr(data.files, dataset), data.medmcqa_cop_base)


def _load_hub(dataset: str, data, root: Path) -> Splits:
    others = "use data.source=sample, or a folder of files in the original formats"
    if dataset not in data.hub:
        raise DataError("params.yaml", None, f"data.hub.{dataset}", f"no hub dataset configured; {others}")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DataError("params.yaml", None, "data.source", f"hub is unreachable (HF_HUB_OFFLINE=1); {others}")
    try:
        return load_hub_splits(dataset, data.hub[dataset], root, data.medmcqa_cop_base)
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


def draw_eval(records: list[Record], size: int, seed: int) -> tuple[list[Record], list[Record]]:
    """`size` items drawn with `seed` (sorted by id) and the rest. Stratified by label where
    every label has two items or more and both sides can hold every label. Input order does not
    matter. Assumes 0 < size <= len(records)."""
    from sklearn.model_selection import train_test_split

    records = sorted(records, key=lambda r: r.id)
    if size == len(records):
        return records, []
    labels = [r.label for r in records]
    classes = len(set(labels))
    stratify = labels if min(Counter(labels).values()) >= 2 and classes <= min(size, len(records) - size) else None
    rest, drawn = train_test_split(records, test_size=size, random_state=seed, stratify=stratify)
    return sorted(drawn, key=lambda r: r.id), rest


def draw_train(pool: list[Record], size: int, seed: int) -> list[Record]:
    """A seeded draw of up to `size` items; input order does not matter."""
    pool = sorted(pool, key=lambda r: r.id)
    random.Random(seed).shuffle(pool)
    return pool[:size]


def remove_leaks(train: list[Record], evaluation: list[Record]) -> tuple[list[Record], int]:
    eval_keys = {item_key(r) for r in evaluation} | {normalise(r.question) for r in evaluation if not r.context}
    kept = [r for r in train if item_key(r) not in eval_keys and normalise(r.question) not in eval_keys]
    return kept, len(train) - len(kept)


def remove_near_duplicates(train: list[Record], evaluation: list[Record], threshold: float) -> tuple[list[Record], int]:
    """Train items whose TF-IDF cosine to some eval item is `threshold` or more are dropped:
    paraphrases that exact matching misses. The text is `item_text` (question, context and
    options); the vocabulary and idf come from train and eval together."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not train or not evaluation:
        return train, 0
    vectors = TfidfVectorizer().fit_transform([item_text(r) for r in train + evaluation])
    cosine = vectors[: len(train)] @ vectors[len(train) :].T  # rows are L2-normalised
    nearest = cosine.max(axis=1).toarray().ravel()
    kept = [r for r, similarity in zip(train, nearest) if similarity < threshold]
    return kept, len(train) - len(kept)


def eval_count(dataset: str, splits: Splits, pool: list[Record], requested: int) -> int:
    """How many eval items to draw: `requested`, clamped (with a note) to the split, or to half of
    it when train comes from its rest. Raises DataError when there are too few items to split."""
    if splits.train is not None:
        return _clamped(dataset, "eval", requested, len(pool), "the official eval split has")
    if len(pool) < 2:
        raise DataError(splits.eval_source, None, None,
                        f"{len(pool)} {dataset} item(s) and no train split ({splits.train_source}): "
                        "too few to split into train and eval")
    return _clamped(dataset, "eval", requested, len(pool) // 2, "half the eval split (no train split) is")


def _clamped(dataset: str, kind: str, requested: int, available: int, why: str) -> int:
    if requested > available:
        note(f"{dataset}: data.{kind}_size.{dataset} is {requested} but {why} {available}; using {available} "
             f"(metrics/prepare.json: {kind}_clamped)")
    return min(requested, available)


def train_pool(dataset: str, splits: Splits, rest: list[Record], evaluation: list[Record],
               threshold: float) -> tuple[list[Record], dict]:
    """The train candidates (the train split, or else the eval split's `rest`) less duplicates,
    leaks and near-duplicates of `evaluation`, and how many of each were removed."""
    if splits.train is None:
        note(f"{dataset}: no train split ({splits.train_source}); train items are drawn from the rest of the "
             "official eval split, after the eval items (no item in both)")
        pool, duplicates = rest, 0  # de-duplicated with the eval split
    else:
        pool, duplicates = deduplicate(splits.train)
    pool, leaks = remove_leaks(pool, evaluation)
    pool, near = remove_near_duplicates(pool, evaluation, threshold)
    return pool, {"duplicates": duplicates, "leakage_removed": leaks, "near_duplicates_removed": near}


def prepare_dataset(dataset: str, params, root: Path) -> tuple[list[Record], list[Record], dict]:
    """A dataset's train and eval items and their statistics. Raises DataError for too few items."""
    data, seed = params.data, params.data.seed
    splits = load_source(dataset, data, root)
    eval_pool, eval_duplicates = deduplicate(splits.eval)
    eval_requested, train_requested = data.eval_size.get(dataset), data.train_size.get(dataset)
    evaluation, rest = draw_eval(eval_pool, eval_count(dataset, splits, eval_pool, eval_requested), seed)
    pool, removed = train_pool(dataset, splits, rest, evaluation, data.near_duplicate_threshold)
    train = draw_train(pool, _clamped(dataset, "train", train_requested, len(pool), "the train pool has"), seed)
    if not train:
        raise DataError(splits.train_source, None, None, f"no {dataset} train items left after leakage removal")
    stats = {
        "loaded": len(splits.eval) + len(splits.train or []),
        "duplicates": eval_duplicates + removed["duplicates"],
        "leakage_removed": removed["leakage_removed"],
        "near_duplicates_removed": removed["near_duplicates_removed"],
        "train": len(train),
        "eval": len(evaluation),
        "train_requested": train_requested,
        "train_clamped": train_requested > len(train),
        "eval_requested": eval_requested,
        "eval_clamped": eval_requested > len(evaluation),
        "train_from": FROM_TRAIN_SPLIT if splits.train is not None else FROM_EVAL_REST,
        "train_source": splits.train_source,
        "eval_from": "official eval split",
        "eval_source": splits.eval_source,
        "train_labels": dict(sorted(Counter(r.label for r in train).items())),
        "eval_labels": dict(sorted(Counter(r.label for r in evaluation).items())),
    }
    return train, evaluation, stats


def run(params, root: Path = Path(".")) -> dict:
    """Prepare every dataset into a staging folder that replaces the outputs at the end."""
    with staged_outputs(root, OUTPUTS) as staging:
        return _prepare(params, root, staging)


def _prepare(params, root: Path, out: Path) -> dict:
    """Reads inputs under `root`, writes the stage's outputs under `out`."""
    metrics, splits = {"datasets": {}}, {}
    for dataset in params.data.datasets:
        train, evaluation, stats = prepare_dataset(dataset, params, root)
        splits[dataset] = (train, evaluation)
        metrics["datasets"][dataset] = stats
        write_jsonl(out / split_file(dataset, "train"), [r.to_dict() for r in train])
        write_jsonl(out / split_file(dataset, "eval"), [r.to_dict() for r in evaluation])

    sides = preference_sides({d: s[0] for d, s in splits.items()}, params.data.preferences, params.data.seed, root)
    metrics["preferences"] = {"rm_fraction": params.data.preferences.rm_fraction}
    for side, (pair_train, pair_eval) in sides.items():
        write_jsonl(out / preference_file(side, "train"), pair_train)
        write_jsonl(out / preference_file(side, "eval"), pair_eval)
        metrics["preferences"][side] = _pair_counts(pair_train, pair_eval)

    texts = [render_plain(r) for train, _ in splits.values() for r in train]
    write_base(params.model.base, params.data.seed, texts, out / BASE_DIR)
    tokenizer = load_tokenizer(base_path(params.model.base, out))
    for dataset, (train, evaluation) in splits.items():
        lengths = token_lengths(tokenizer, train + evaluation)
        metrics["datasets"][dataset]["tokens"] = length_stats(lengths, params.model.max_length)
    metrics["leakage"] = sum(_leak_count(*s) for s in splits.values())
    write_json(out / metrics_file("prepare"), metrics)
    return metrics


def render_plain(record: Record) -> str:
    """Text for training the tiny model's tokenizer: everything a prompt can contain."""
    return "\n".join([record.question, record.context or "", *(record.options or []), response(record)])


def _pair_counts(train: list[dict], evaluation: list[dict]) -> dict:
    """A trainer's pairs: per split, per source, and its prompts."""
    return {"train": len(train), "eval": len(evaluation),
            "sources": dict(sorted(Counter(p["source"] for p in train + evaluation).items())),
            "prompts": len({prompt_text(p) for p in train + evaluation})}


def _leak_count(train: list[Record], evaluation: list[Record]) -> int:
    return len({item_key(r) for r in train} & {item_key(r) for r in evaluation})


def main(argv: list[str] | None = None) -> int:
    return entry.main("prepare", run, argv)


if __name__ == "__main__":
    sys.exit(main())
