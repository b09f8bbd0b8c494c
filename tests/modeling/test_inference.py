"""modeling/inference.py: batched log-likelihoods against a naive per-choice computation on the tiny model."""
from __future__ import annotations

import pytest
import torch

from medadapt.data.prompts import LoglikRequest
from medadapt.modeling.inference import loglikelihoods
from medadapt.modeling.models import build_tiny_llama

# ---- log-likelihoods on the tiny model -------------------------------------------------------

TEXTS = [
    "Question: Is aspirin an antiplatelet drug?\nAnswer: yes",
    "Question: Does warfarin raise the INR?\nAnswer: yes",
    "Question: Is insulin taken by mouth?\nAnswer: no",
    "Question: Can a virus be treated with penicillin?\nAnswer: absolutely not",
    "Question: Does exercise lower blood pressure?\nAnswer: maybe",
    "The right coronary artery supplies the inferior wall. Answer: no",
] * 30


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = build_tiny_llama(TEXTS, seed=5)
    model.eval()
    return model, tokenizer


def naive_loglik(model, tokenizer, context: str, continuation: str) -> float:
    """Full forward of context + continuation, summed log-softmax of the continuation tokens."""
    context_ids = tokenizer.encode(context)
    whole = tokenizer.encode(context + continuation)
    assert whole[: len(context_ids)] == context_ids
    continuation_ids = whole[len(context_ids):]
    assert continuation_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([whole])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(sum(logprobs[len(context_ids) + i - 1, t] for i, t in enumerate(continuation_ids)))


def test_loglikelihoods_one_token_choices_match_naive(tiny):
    model, tokenizer = tiny
    context = "Question: Does warfarin raise the INR?\nAnswer:"
    choices = (" yes", " no", " maybe")
    for choice in choices:  # precondition: the shared one-forward path is the one exercised
        assert len(tokenizer.encode(context + choice)) == len(tokenizer.encode(context)) + 1
    scores = loglikelihoods(model, tokenizer, [LoglikRequest(context, choices, 0)])
    expected = [naive_loglik(model, tokenizer, context, c) for c in choices]
    assert scores[0] == pytest.approx(expected, abs=1e-4)
    assert all(s < 0 for s in scores[0])


def test_loglikelihoods_multi_token_choices_match_naive(tiny):
    model, tokenizer = tiny
    context = "Question: Can a virus be treated with penicillin?\nAnswer:"
    choices = (" yes", " absolutely not")
    assert len(tokenizer.encode(context + " absolutely not")) - len(tokenizer.encode(context)) >= 2
    scores = loglikelihoods(model, tokenizer, [LoglikRequest(context, choices, 1)])
    expected = [naive_loglik(model, tokenizer, context, c) for c in choices]
    assert scores[0] == pytest.approx(expected, abs=1e-4)


def test_loglikelihoods_batched_equals_one_by_one(tiny):
    model, tokenizer = tiny
    requests = [
        LoglikRequest("Question: Is insulin taken by mouth?\nAnswer:", (" yes", " no"), 1),
        LoglikRequest("Question: Is aspirin an antiplatelet drug? It is commonly used.\nAnswer:",
                      (" yes", " absolutely not", " maybe"), 0),
        LoglikRequest("Answer:", (" maybe", " no"), 0),
        LoglikRequest("The right coronary artery supplies the inferior wall. Answer:", (" no", " absolutely not"), 0),
    ]
    batched = loglikelihoods(model, tokenizer, requests, batch_size=8)
    single = loglikelihoods(model, tokenizer, requests, batch_size=1)
    for got, one, request in zip(batched, single, requests):
        assert got == pytest.approx(one, abs=1e-4)
        assert got == pytest.approx([naive_loglik(model, tokenizer, request.context, c) for c in request.choices],
                                    abs=1e-4)


def test_loglikelihoods_trailing_space_moves_to_continuation(tiny):
    model, tokenizer = tiny
    with_space = loglikelihoods(model, tokenizer, [LoglikRequest("Question: Is insulin taken by mouth?\nAnswer: ",
                                                                 ("no", "absolutely not"), 0)])
    without = loglikelihoods(model, tokenizer, [LoglikRequest("Question: Is insulin taken by mouth?\nAnswer:",
                                                              (" no", " absolutely not"), 0)])
    assert with_space[0] == pytest.approx(without[0], abs=1e-5)
