"""`medadapt inspect [dataset]`: formatted examples and token lengths, before any GPU hour.

Prints, for each prepared dataset (or the one named), the first train item as the chat the
model trains on (prompt and gold response), its lm-eval log-likelihood prompt where the task
has one, and the token-length percentiles of train and eval under the base tokenizer, with
the number of examples longer than `model.max_length`.
"""

from __future__ import annotations

from pathlib import Path

from ..data.prompts import length_stats, loglik_request, messages, render, response, token_lengths
from ..data.records import read_records
from ..modeling.models import base_path, load_tokenizer
from ..paths import split_file


def show_example(tokenizer, record) -> str:
    parts = [f"--- chat prompt ({record.id}) ---", render(tokenizer, messages(record)),
             "--- gold response ---", response(record)]
    if record.dataset != "radqa":
        request = loglik_request(record)
        parts += ["--- log-likelihood prompt (choices: " + ", ".join(repr(c) for c in request.choices) + ") ---",
                  request.context]
    return "\n".join(parts)


def main(params, root: Path = Path("."), dataset: str | None = None) -> dict:
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    datasets = [dataset] if dataset else params.data.datasets
    table = {}
    for name in datasets:
        train = read_records(root / split_file(name, "train"))
        evaluation = read_records(root / split_file(name, "eval"))
        print(f"\n===== {name} =====")
        print(show_example(tokenizer, train[0]))
        table[name] = {split: length_stats(token_lengths(tokenizer, records), params.model.max_length)
                       for split, records in (("train", train), ("eval", evaluation))}
    print(f"\ntoken lengths of prompt + response (model.max_length={params.model.max_length})")
    print(f"{'dataset':10} {'split':6} {'p50':>6} {'p95':>6} {'max':>6} {'over':>6}")
    for name, splits in table.items():
        for split, stats in splits.items():
            print(f"{name:10} {split:6} {stats['p50']:6} {stats['p95']:6} {stats['max']:6} {stats['truncated']:6}")
    return table
