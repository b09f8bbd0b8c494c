"""modeling/inference.py: batched log-likelihoods against a naive per-choice computation on the tiny model."""
from __future__ import annotations

import pytest
import torch

from medadapt.data.prompts import LoglikRequest
from medadapt.modeling import inference
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


# ---- shared prefixes: a question read once for all its option orders ------------------------

LONG = ("Question: A 54-year-old man with a history of hypertension presents with chest pain radiating to the left "
        "arm for two hours. Does warfarin raise the INR? Is aspirin an antiplatelet drug?\n")
OPTIONS = ["A. aspirin\nB. insulin\nC. warfarin\nD. penicillin", "A. insulin\nB. warfarin\nC. penicillin\nD. aspirin",
           "A. warfarin\nB. penicillin\nC. aspirin\nD. insulin", "A. penicillin\nB. aspirin\nC. insulin\nD. warfarin"]


class CountingModel(torch.nn.Module):
    """The model, counting the tokens of the rows it reads (padding included) and its calls."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.tokens, self.calls = model, 0, 0

    def forward(self, input_ids, **kwargs):
        self.tokens += input_ids.numel()
        self.calls += 1
        return self.inner(input_ids=input_ids, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


def rotated_requests():
    return [LoglikRequest(LONG + block + "\nAnswer:", (" A", " B", " C", " D"), 0) for block in OPTIONS] + [
        LoglikRequest(LONG + OPTIONS[0] + "\nAnswer:", (" yes", " absolutely not"), 0)]  # multi-token choices


def test_a_question_is_read_once_for_all_its_option_orders(tiny):
    """The rotations of one question share its tokens up to the options: one row reads them once,
    and every score equals reading each sequence alone."""
    model, tokenizer = tiny
    requests = rotated_requests()
    shared_len = len(tokenizer.encode(LONG))
    alone, shared = CountingModel(model), CountingModel(model)
    expected = loglikelihoods(alone, tokenizer, requests, batch_size=8, shared_prefix=False)
    got = loglikelihoods(shared, tokenizer, requests, batch_size=8)
    for row, reference, request in zip(got, expected, requests):
        assert row == pytest.approx(reference, abs=1e-4)
        assert row == pytest.approx([naive_loglik(model, tokenizer, request.context, c) for c in request.choices],
                                    abs=1e-4)
    jobs = inference.loglik_jobs(inference.encode_requests(tokenizer, requests), shared_context=True)
    sequences = sum(len(job.tokens) for job in jobs)
    assert shared.tokens <= sequences - (len(jobs) - 1) * (shared_len - 2)  # the question once, not per job
    assert alone.tokens >= sequences


def test_rows_share_a_prefix_only_where_it_saves_work_and_keep_each_sequence_apart():
    jobs = [inference.Job(0, None, list(range(40)) + [1, 2], [5], [41]),
            inference.Job(1, None, list(range(40)) + [3], [5], [40]),
            inference.Job(2, None, list(range(10)) + [7] * 30, [5], [39])]  # shares 10 tokens only
    assert [len(r.jobs) for r in inference.rows_of(jobs, share=0.0)] == [3]  # attention free: any prefix saves
    rows = inference.rows_of(jobs, share=0.05)  # a long row's attention outweighs 10 shared tokens, not 40
    assert sorted(len(r.jobs) for r in rows) == [1, 2]
    assert [len(r.jobs) for r in inference.rows_of(jobs, share=None)] == [1, 1, 1]
    row = next(r for r in rows if len(r.jobs) == 2)
    assert row.prefix == 40 and row.tokens == list(range(40)) + [1, 2, 3]
    assert row.position_ids == list(range(40)) + [40, 41, 40]  # each rest at its own positions
    assert row.where == [[41], [42]]  # job 0 reads position 41 (row 41), job 1 its position 40 (row 42)
    mask = inference.row_masks([row], 44, "cpu")[0, 0]
    assert mask[42, :40].all() and not mask[42, 40:42].any() and mask[42, 42]  # the prefix and itself
    assert mask[41, 40] and not mask[41, 42] and not mask[39, 40]  # causal within a rest and the prefix
    assert mask[43, 43] and not mask[42, 43]  # padding attends to itself only among what follows it


def test_attention_weighs_more_against_a_small_model():
    from transformers import LlamaConfig

    small = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3)
    large = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8)
    assert inference.attention_share(small) == pytest.approx(3.26e-4, rel=0.01)
    assert inference.attention_share(large) == pytest.approx(3.76e-5, rel=0.01)


def test_a_request_asked_twice_is_read_once(tiny):
    model, tokenizer = tiny
    once, twice = CountingModel(model), CountingModel(model)
    request = rotated_requests()[0]
    scores = loglikelihoods(twice, tokenizer, [request, request])
    assert scores[0] == scores[1] == loglikelihoods(once, tokenizer, [request])[0]
    assert twice.tokens == once.tokens


def test_prefetched_requests_need_no_other_pass(tiny):
    model, tokenizer = tiny
    counting = CountingModel(model)
    cache = inference.LoglikCache(counting, tokenizer, batch_size=4)
    requests = rotated_requests()
    cache.prefetch(requests)
    calls = counting.calls
    assert cache(requests[2:4]) == loglikelihoods(model, tokenizer, requests, batch_size=4)[2:4]
    assert counting.calls == calls and cache.misses == 0
    cache([LoglikRequest("Answer:", (" maybe", " no"), 0)])
    assert cache.misses == 1 and counting.calls == calls + 1
