"""Batched log-likelihood scoring and greedy generation, the two ways `evaluate` asks a model,
and seeded sampling, the way the `pairs` stage asks the SFT policy for several answers.

Log-likelihood follows lm-evaluation-harness's HFLM: trailing spaces of the context move to
the continuation, `context + continuation` is encoded whole with the tokenizer's default
special tokens and split where the encoded context ends, and a choice's score is the summed
log-probability of its tokens. When every continuation is a single token after one shared
context (` A`..` D`, ` yes`/` no`/` maybe`), one forward pass over the context scores them all,
as lm-eval's one-token cache does. Sequences that begin alike (a question under each rotation
of its options, a few-shot prompt's demonstrations under each PubMedQA variant) share a row: the
common prefix is read once and each sequence's rest attends to it (`Row`), the same computation
as reading each alone, with fewer tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.prompts import LoglikRequest


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    return encode_requests(tokenizer, [LoglikRequest(context, (continuation,), 0)])[0][0]


def encode_requests(tokenizer, requests: list[LoglikRequest]) -> list[list[tuple[list[int], list[int]]]]:
    """Per request, per choice: (context ids, continuation ids), as lm-eval's HFLM splits them.
    All texts go through the tokenizer in one call, each context once."""
    contexts, continuations = [], []
    for request in requests:
        spaces = len(request.context) - len(request.context.rstrip())
        contexts.append(request.context[: len(request.context) - spaces])
        continuations.append([request.context[len(request.context) - spaces :] + c for c in request.choices])
    wholes = iter(tokenizer([c + x for c, xs in zip(contexts, continuations) for x in xs])["input_ids"])
    encoded = []
    for context_ids, choices in zip(tokenizer(contexts)["input_ids"], continuations):
        encoded.append([(context_ids, whole[len(context_ids) :]) for whole in (next(wholes) for _ in choices)])
    return encoded


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


# ---- log-likelihoods: jobs, rows that share a prefix, one pass -------------------------------

MAX_ROW_TOKENS = 4096  # a row of shared-prefix jobs stops growing here (one job may be longer)


def attention_share(config) -> float:
    """FLOPs of one query-key pair of attention over those of one token through the linear layers,
    for a Llama-like config: how much a row's quadratic attention weighs against the tokens it saves.
    SmolLM2-135M: 3.3e-4 (a 4,000-token row's attention costs more than its tokens); Llama-3.1-8B:
    3.8e-5. 0 where the config does not say."""
    try:
        d, ff = config.hidden_size, config.intermediate_size
        kv = d // config.num_attention_heads * getattr(config, "num_key_value_heads", config.num_attention_heads)
    except (AttributeError, TypeError):
        return 0.0
    return 4 * d / (2 * (d * (d + 2 * kv) + d * d + 3 * d * ff))


def row_cost(tokens: int, share: float) -> float:
    """A row's forward FLOPs in tokens: linear layers per token, attention per pair (masked rows are
    computed whole)."""
    return tokens + share * tokens * tokens


@dataclass
class Job:
    """One sequence the model reads, and the tokens scored in it."""

    request: int
    choice: int | None  # None: every choice is one token after the shared context
    tokens: list[int]
    targets: list[int]  # the token scored at each of `positions`
    positions: list[int]  # the position each target is predicted from


@dataclass
class Row:
    """Jobs that begin with the same `prefix` tokens, laid out as the prefix once, then each job's
    rest. Every rest attends to the prefix and to itself only, at the positions it has in its own
    sequence, so each job is computed exactly as if it were alone (up to float summation order)."""

    jobs: list[Job]
    prefix: int
    tokens: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)  # 0: the shared prefix; k: the rest of job k
    where: list[list[int]] = field(default_factory=list)  # per job, the row index of each scored position

    def __post_init__(self):
        self.tokens, self.position_ids = list(self.jobs[0].tokens[: self.prefix]), list(range(self.prefix))
        self.segments = [0] * self.prefix
        for k, job in enumerate(self.jobs, start=1):
            start = len(self.tokens) - self.prefix  # row index = start + position, past the prefix
            self.tokens += job.tokens[self.prefix :]
            self.position_ids += range(self.prefix, len(job.tokens))
            self.segments += [k] * (len(job.tokens) - self.prefix)
            self.where.append([p if p < self.prefix else start + p for p in job.positions])


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def rows_of(jobs: list[Job], share: float | None) -> list[Row]:
    """Jobs in rows. In lexicographic order, jobs with a common prefix are neighbours; a job joins
    the row before it when the row with it (its prefix, that of its first and last job, read once)
    costs less than the row and the job apart (`row_cost`, with `share` the attention's weight),
    up to MAX_ROW_TOKENS. So a question's option rotations share a row, while items whose few-shot
    prompts merely begin with the same demonstration do not, where the longer row's attention would
    cost more than the tokens saved. `share` None: a row per job."""
    if share is None:
        return [Row([job], len(job.tokens)) for job in jobs]
    rows, group, prefix = [], [], 0
    for job in sorted(jobs, key=lambda j: j.tokens):
        if group:
            shared = common_prefix(group[0].tokens, job.tokens)
            length = shared + sum(len(j.tokens) - shared for j in group + [job])
            apart = row_cost(prefix + sum(len(j.tokens) - prefix for j in group), share) + row_cost(len(job.tokens), share)
            if length <= MAX_ROW_TOKENS and row_cost(length, share) < apart:
                group.append(job)
                prefix = shared
                continue
            rows.append(Row(group, prefix))
        group, prefix = [job], len(job.tokens)
    return rows + ([Row(group, prefix)] if group else [])


def row_masks(rows: list[Row], width: int, device) -> torch.Tensor:
    """[rows, 1, width, width] boolean attention masks (True: may attend): causal, and within a row
    a token sees the shared prefix and its own job only. Padding sees padding, so no row is empty."""
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        segments[r, : len(row.segments)] = torch.tensor(row.segments)
    segments = segments.to(device)
    index = torch.arange(width, device=device)
    causal = index[None, :] <= index[:, None]
    same = segments[:, :, None] == segments[:, None, :]
    return (causal & (same | (segments == 0)[:, None, :]))[:, None]


def _forward_rows(model, rows: list[Row], pad_id: int) -> list[list[torch.Tensor]]:
    """Per row, per job, the log-probability of each target. Only the scored positions go through
    the LM head and the softmax: the logits of every position over the whole vocabulary were most
    of a pass's memory and a fifth of its compute."""
    ids, mask = right_pad([row.tokens for row in rows], pad_id)
    inputs = {"input_ids": ids.to(model.device)}
    if all(len(row.jobs) == 1 and row.prefix == len(row.tokens) for row in rows):
        inputs["attention_mask"] = mask.to(model.device)  # plain causal rows: the model builds the mask
    else:
        positions, _ = right_pad([row.position_ids for row in rows], 0)
        allowed = row_masks(rows, ids.shape[1], model.device)
        if model.config._attn_implementation == "eager":  # eager attention adds its mask
            allowed = torch.zeros(allowed.shape, dtype=model.dtype, device=model.device).masked_fill(
                ~allowed, torch.finfo(model.dtype).min)
        inputs.update(attention_mask=allowed, position_ids=positions.to(model.device))
    places = [(r, p, t) for r, row in enumerate(rows) for job, where in zip(row.jobs, row.where)
              for p, t in zip(where, job.targets)]
    columns = sorted({p for _, p, _ in places})  # the union over rows: one LM-head call
    column = {p: c for c, p in enumerate(columns)}
    logits = model(**inputs, logits_to_keep=torch.tensor(columns, device=model.device)).logits
    picked_rows = torch.tensor([r for r, _, _ in places], device=logits.device)
    picked_cols = torch.tensor([column[p] for _, p, _ in places], device=logits.device)
    tokens = torch.tensor([t for _, _, t in places], device=logits.device)
    picked = torch.log_softmax(logits[picked_rows, picked_cols].float(), dim=-1).gather(-1, tokens[:, None])[:, 0]
    picked = iter(picked.cpu().split([len(job.targets) for row in rows for job in row.jobs]))
    return [[next(picked) for _ in row.jobs] for row in rows]


def loglik_jobs(encoded, shared_context: bool) -> list[Job]:
    """The sequences to read: one per request when every choice is a single token after one shared
    context (read after the context), else one per choice."""
    jobs = []
    for i, pairs in enumerate(encoded):
        contexts = {tuple(ctx) for ctx, _ in pairs}
        if shared_context and len(contexts) == 1 and all(len(cont) == 1 for _, cont in pairs):
            ctx = pairs[0][0]
            jobs.append(Job(i, None, ctx, [cont[0] for _, cont in pairs], [len(ctx) - 1] * len(pairs)))
        else:
            for j, (ctx, cont) in enumerate(pairs):
                seq = ctx + cont
                jobs.append(Job(i, j, seq, cont, list(range(len(seq) - len(cont) - 1, len(seq) - 1))))
    return jobs


@torch.no_grad()
def loglikelihoods(model, tokenizer, requests: list[LoglikRequest], batch_size: int = 8,
                   shared_context: bool = True, shared_prefix: bool = True) -> list[list[float]]:
    """For each request, the summed log-probability of each choice given its context.
    `shared_context=False` scores every choice with its own forward pass (the benchmark's
    baseline); `shared_prefix=False` reads every sequence in a row of its own. The scores are the
    same (up to float summation order)."""
    if not requests:
        return []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    unique = list(dict.fromkeys((r.context, r.choices) for r in requests))  # a request asked twice is read once
    index = {key: i for i, key in enumerate(unique)}
    encoded = encode_requests(tokenizer, [LoglikRequest(c, choices, 0) for c, choices in unique])
    rows = rows_of(loglik_jobs(encoded, shared_context), attention_share(model.config) if shared_prefix else None)
    scores = [[0.0] * len(choices) for _, choices in unique]
    order = by_length([len(row.tokens) for row in rows])
    for start in range(0, len(order), batch_size):
        batch = [rows[k] for k in order[start : start + batch_size]]
        for row, per_job in zip(batch, _forward_rows(model, batch, pad_id)):
            for job, logprobs in zip(row.jobs, per_job):
                if job.choice is None:
                    scores[job.request] = [float(x) for x in logprobs]
                else:
                    scores[job.request][job.choice] = float(sum(logprobs))  # a float32 sum, token by token
    return [list(scores[index[(r.context, r.choices)]]) for r in requests]


class LoglikCache:
    """Log-likelihoods asked for by several metrics of one evaluation, read in one pass: `prefetch`
    scores every request named up front (so that a question's option rotations and prompt
    variants share rows and batches), and a call returns scores, reading any not prefetched."""

    def __init__(self, model, tokenizer, batch_size: int):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.scores: dict[tuple, list[float]] = {}
        self.misses = 0  # requests read outside a prefetch

    def prefetch(self, requests: list[LoglikRequest]) -> None:
        new = list(dict.fromkeys(r for r in requests if (r.context, r.choices) not in self.scores))
        for request, row in zip(new, loglikelihoods(self.model, self.tokenizer, new, self.batch_size)):
            self.scores[(request.context, request.choices)] = row

    def __call__(self, requests: list[LoglikRequest]) -> list[list[float]]:
        missing = [r for r in requests if (r.context, r.choices) not in self.scores]
        self.misses += len(missing)
        self.prefetch(missing)
        return [self.scores[(r.context, r.choices)] for r in requests]


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int,
             batch_size: int = 8) -> tuple[list[str], list[int]]:
    """Greedy answers to rendered chat prompts, in their order, and the tokens each generated.
    Batches are formed by length (less left padding to encode), then put back in order."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of each row
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = by_length(lengths)
    outputs, produced = [""] * len(prompts), [0] * len(prompts)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = tokenizer([prompts[k] for k in chunk], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = ids[:, batch["input_ids"].shape[1] :]
            counts = (new != tokenizer.pad_token_id).sum(dim=1).tolist()
            for k, text, count in zip(chunk, tokenizer.batch_decode(new, skip_special_tokens=True), counts):
                outputs[k], produced[k] = text.strip(), count
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
