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

from ..data.prompts import loglik_request, option_permutations, original_letter, shuffled, vote
from ..modeling.inference import loglikelihoods
from .stats import rate


def choices_under(model, tokenizer, records, demos, params, orders: dict, variant: int = 0) -> dict[str, list]:
    """record id -> the highest-likelihood choice under each of its option orders (None: as
    published), mapped back to the original letters."""
    jobs = [(r, order) for r in records for order in orders[r.id]]
    requests = [loglik_request(shuffled(r, o) if o else r, demos[r.id], variant) for r, o in jobs]
    scores = loglikelihoods(model, tokenizer, requests, params.evaluate.batch_size)
    chosen = defaultdict(list)
    for (record, order), request, row in zip(jobs, requests, scores):
        choice = request.choices[int(np.argmax(row))].strip()
        chosen[record.id].append(original_letter(choice, order) if order else choice)
    return chosen


def loglik_predictions(model, tokenizer, records, demos, params, variant: int = 0) -> list[str]:
    """The highest-likelihood choice per record, options as published (lm-eval's `acc`)."""
    chosen = choices_under(model, tokenizer, records, demos, params, {r.id: [None] for r in records}, variant)
    return [chosen[r.id][0] for r in records]


def voted_predictions(model, tokenizer, records, demos, params) -> list[str]:
    """ICL's choice-shuffle ensemble (Medprompt): the majority over seeded option orders."""
    orders = {r.id: option_permutations(len(r.options), params.icl.shuffle_permutations, params.data.seed, r.id)
              for r in records}
    chosen = choices_under(model, tokenizer, records, demos, params, orders)
    return [vote(chosen[r.id]) for r in records]


def rotations(n: int) -> list[tuple[int, ...]]:
    """The n cyclic rotations of n options: each option stands once at each letter."""
    return [tuple((i + shift) % n for i in range(n)) for shift in range(n)]


def position_bias(model, tokenizer, records, demos, params, predicted) -> tuple[dict, dict]:
    """The predicted-letter distribution, and accuracy robust to position bias: over every cyclic
    rotation of the options, the item right under all of them (CircularEval) and the mean."""
    orders = {r.id: rotations(len(r.options)) for r in records}
    chosen = choices_under(model, tokenizer, records, demos, params, orders)
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
