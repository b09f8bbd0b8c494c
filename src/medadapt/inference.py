"""Batched log-likelihood scoring and greedy generation, the two ways `evaluate` asks a model,
and seeded sampling, the way the `pairs` stage asks the SFT policy for several answers.

Log-likelihood follows lm-evaluation-harness's HFLM: trailing spaces of the context move to
the continuation, `context + continuation` is encoded whole with the tokenizer's default
special tokens and split where the encoded context ends, and a choice's score is the summed
log-probability of its tokens. When every continuation is a single token after one shared
context (` A`..` D`, ` yes`/` no`/` maybe`), one forward pass over the context scores them all,
as lm-eval's one-token cache does.
"""

from __future__ import annotations

import torch

from .prompts import LoglikRequest


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation, context = context[-spaces:] + continuation, context[:-spaces]
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids) :]


def _log_probs(model, sequences: list[list[int]], pad_id: int) -> list[torch.Tensor]:
    """Log-softmax over every position of each (right-padded) sequence."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
    return [logprobs[row, : len(seq)] for row, seq in enumerate(sequences)]


@torch.no_grad()
def loglikelihoods(model, tokenizer, requests: list[LoglikRequest], batch_size: int = 8,
                   shared_context: bool = True) -> list[list[float]]:
    """For each request, the summed log-probability of each choice given its context.
    `shared_context=False` scores every choice with its own forward pass (the benchmark's
    baseline; the scores are the same)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [[encode_pair(tokenizer, r.context, c) for c in r.choices] for r in requests]
    jobs = []  # (request index, choice index or None for the shared one-token case, sequence, targets)
    for i, pairs in enumerate(encoded):
        contexts = {tuple(ctx) for ctx, _ in pairs}
        if shared_context and len(contexts) == 1 and all(len(cont) == 1 for _, cont in pairs):
            jobs.append((i, None, pairs[0][0], [cont[0] for _, cont in pairs]))
        else:
            for j, (ctx, cont) in enumerate(pairs):
                jobs.append((i, j, ctx + cont, cont))
    scores = [[0.0] * len(r.choices) for r in requests]
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        outputs = _log_probs(model, [seq for _, _, seq, _ in batch], pad_id)
        for (i, j, seq, targets), logprobs in zip(batch, outputs):
            if j is None:  # one forward, every single-token choice read at the last position
                scores[i] = [float(logprobs[-1, t]) for t in targets]
            else:
                positions = range(len(seq) - len(targets) - 1, len(seq) - 1)
                scores[i][j] = float(sum(logprobs[p, t] for p, t in zip(positions, targets)))
    return scores


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 8) -> tuple[list[str], int]:
    """Greedy answers to rendered chat prompts; also the number of tokens generated."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of each row
    outputs, produced = [], 0
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = ids[:, batch["input_ids"].shape[1] :]
            produced += int((new != tokenizer.pad_token_id).sum())
            outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return [o.strip() for o in outputs], produced


@torch.no_grad()
def sample(model, tokenizer, prompt: str, n: int, temperature: float, max_new_tokens: int, seed: int) -> list[str]:
    """`n` answers sampled at `temperature` (no top-k/top-p cut) to one rendered chat prompt.
    The generator is seeded per call, so a prompt's samples depend on `seed` alone, not on
    which prompts were sampled before it."""
    batch = tokenizer([prompt], return_tensors="pt", add_special_tokens=False).to(model.device)
    torch.manual_seed(seed)  # every device's generator
    ids = model.generate(**batch, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                         max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=tokenizer.pad_token_id)
    outputs = tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return [o.strip() for o in outputs]
