"""Multiple-choice answers by option log-likelihood: as published, voted over shuffled orders
(Medprompt's choice-shuffle ensemble), and under every rotation of the options (position bias).

The highest-likelihood choice of lm-eval's prompt is the headline answer (lm-eval's `acc`). A
model that always picks one letter scores the share of that gold letter, so the predicted-letter
distribution and the accuracy robust to position (CircularEval: right under every rotation) sit
beside it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from ..data.prompts import LoglikRequest, loglik_request, option_permutations, original_letter, shuffled, vote
from ..modeling.inference import LoglikCache
from .stats import rate


def requests_under(records, demos, orders: dict, variant: int = 0) -> tuple[list[tuple], list[LoglikRequest]]:
    """(record, order) jobs and their requests: each record under each of its option orders (None:
    as published), in PubMedQA prompt `variant`."""
    jobs = [(r, order) for r in records for order in orders[r.id]]
    return jobs, [loglik_request(shuffled(r, o) if o else r, demos[r.id], variant) for r, o in jobs]


def choices_under(scorer, records, demos, orders: dict, variant: int = 0) -> dict[str, list]:
    """record id -> the highest-likelihood choice under each of its option orders (None: as
    published), mapped back to the original letters. `scorer(requests)` gives the scores
    (`inference.LoglikCache`)."""
    jobs, requests = requests_under(records, demos, orders, variant)
    chosen = defaultdict(list)
    for (record, order), request, row in zip(jobs, requests, scorer(requests)):
        choice = request.choices[int(np.argmax(row))].strip()
        chosen[record.id].append(original_letter(choice, order) if order else choice)
    return chosen


def published(records) -> dict:
    return {r.id: [None] for r in records}


def rotation_orders(records) -> dict:
    return {r.id: rotations(len(r.options)) for r in records}


def voting_orders(records, params) -> dict:
    return {r.id: option_permutations(len(r.options), params.icl.shuffle_permutations, params.data.seed, r.id)
            for r in records}


def votes(params) -> bool:
    """ICL's choice-shuffle vote is on (reported beside `accuracy`, never in it)."""
    return params.method == "icl" and params.icl.shuffle_permutations > 1


def loglik_predictions(scorer, records, demos, variant: int = 0) -> list[str]:
    """The highest-likelihood choice per record, options as published (lm-eval's `acc`)."""
    chosen = choices_under(scorer, records, demos, published(records), variant)
    return [chosen[r.id][0] for r in records]


def voted_predictions(scorer, records, demos, params) -> list[str]:
    """ICL's choice-shuffle ensemble (Medprompt): the majority over seeded option orders."""
    chosen = choices_under(scorer, records, demos, voting_orders(records, params))
    return [vote(chosen[r.id]) for r in records]


def evaluation_requests(records, demos, params) -> list[LoglikRequest]:
    """Every log-likelihood request `evaluate` makes for one dataset's records: the options as
    published, each rotation (position bias), each voted order, each PubMedQA prompt variant.
    Named up front, they are read in one pass (`LoglikCache.prefetch`)."""
    plans = [(published(records), 0)]
    if records[0].options:
        plans.append((rotation_orders(records), 0))
        if votes(params):
            plans.append((voting_orders(records, params), 0))
    if records[0].dataset == "pubmedqa":
        plans += [(published(records), v) for v in range(1, params.evaluate.consistency_variants)]
    return [request for orders, variant in plans for request in requests_under(records, demos, orders, variant)[1]]


def prefetched_scorer(model, tokenizer, records: dict, demos, params) -> LoglikCache:
    """Every dataset's log-likelihood requests (`evaluation_requests`), read in one pass."""
    scorer = LoglikCache(model, tokenizer, params.evaluate.batch_size)
    scorer.prefetch([request for dataset, rs in records.items() if dataset != "radqa"
                     for request in evaluation_requests(rs, demos, params)])
    return scorer


def rotations(n: int) -> list[tuple[int, ...]]:
    """The n cyclic rotations of n options: each option stands once at each letter."""
    return [tuple((i + shift) % n for i in range(n)) for shift in range(n)]


def position_bias(scorer, records, demos, params, predicted) -> tuple[dict, dict]:
    """The predicted-letter distribution, and accuracy robust to position bias: over every cyclic
    rotation of the options, the item right under all of them (CircularEval) and the mean."""
    chosen = choices_under(scorer, records, demos, rotation_orders(records))
    right = {r.id: [c == r.answer for c in chosen[r.id]] for r in records}
    circular = [float(all(right[r.id])) for r in records]
    rotated = [float(np.mean(right[r.id])) for r in records]
    n_boot, seed = params.evaluate.bootstrap_samples, params.data.seed
    metrics = {
        "circular_accuracy": rate(circular, n_boot, seed),
        "rotation_accuracy": rate(rotated, n_boot, seed, binary=False),
        "predicted_letters": dict(sorted(Counter(predicted).items())),
        "gold_letters": dict(sorted(Counter(r.answer for r in records).items())),
    }
    return metrics, {"circular_accuracy": circular, "rotation_accuracy": rotated}
