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

from ..data.prompts import LoglikRequest


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation, context = context[-spaces:] + continuation, context[:-spaces]
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids) :]


def by_length(lengths: list[int]) -> list[int]:
    """Indices longest first: batches of similar lengths pad little, and the widest batch comes
    first, so a batch size too large for the memory fails at once. Callers restore the order."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def right_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids right-padded into one batch with `pad_id`, and the attention mask (1 on real tokens)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def _target_log_probs(model, sequences: list[list[int]], positions: list[list[int]], targets: list[list[int]],
                      pad_id: int) -> list[torch.Tensor]:
    """Per sequence (right-padded into one batch), the log-probability of each target token at its
    position. Only those positions go through the LM head and the softmax: the logits of every
    position over the whole vocabulary were most of a pass's memory and a fifth of its compute."""
    ids, mask = right_pad(sequences, pad_id)
    columns = sorted({p for row in positions for p in row})  # the union over rows: one LM-head call
    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                   logits_to_keep=torch.tensor(columns, device=model.device)).logits
    column = {p: c for c, p in enumerate(columns)}
    rows = [r for r, row in enumerate(positions) for _ in row]
    cols = [column[p] for row in positions for p in row]
    tokens = torch.tensor([t for row in targets for t in row], device=logits.device)
    picked = torch.log_softmax(logits[rows, cols].float(), dim=-1).gather(-1, tokens[:, None])[:, 0].cpu()
    return list(picked.split([len(row) for row in positions]))


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
    order = by_length([len(seq) for _, _, seq, _ in jobs])
    for start in range(0, len(order), batch_size):
        batch = [jobs[k] for k in order[start : start + batch_size]]
        positions = [[len(seq) - 1] * len(targets) if j is None  # every choice read after the context
                     else list(range(len(seq) - len(targets) - 1, len(seq) - 1)) for _, j, seq, targets in batch]
        picked = _target_log_probs(model, [seq for _, _, seq, _ in batch], positions,
                                   [targets for *_, targets in batch], pad_id)
        for (i, j, _, _), logprobs in zip(batch, picked):
            if j is None:
                scores[i] = [float(x) for x in logprobs]
            else:
                scores[i][j] = float(sum(logprobs))  # a float32 sum, token by token
    return scores


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 8) -> tuple[list[str], int]:
    """Greedy answers to rendered chat prompts, in their order; also the number of tokens generated.
    Batches are formed by length (less left padding to encode), then put back in order."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of each row
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = by_length(lengths)
    outputs, produced = [""] * len(prompts), 0
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = tokenizer([prompts[k] for k in chunk], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = ids[:, batch["input_ids"].shape[1] :]
            produced += int((new != tokenizer.pad_token_id).sum())
            for k, text in zip(chunk, tokenizer.batch_decode(new, skip_special_tokens=True)):
                outputs[k] = text.strip()
    finally:
        tokenizer.padding_side = side
    return outputs, produced


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
