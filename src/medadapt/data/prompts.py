"""Prompt templates and chat formatting, shared by every method (answers are read in scoring/answers.py).

Two prompt families:
- chat prompts (`messages`) for training and generation: a system line, optional
  demonstrations as earlier user/assistant turns, then the question. Every method answers in
  one format, `Answer: <answer>` then `Explanation: <why>`, so one parser reads them all.
- log-likelihood prompts (`loglik_request`) in lm-evaluation-harness's shapes (`medmcqa`,
  `medqa_4options`, `pubmedqa`): plain text ending in `Answer:`, scored on ` A`/` B`/... or
  ` yes`/` no`/` maybe`; few-shot demonstrations joined by a blank line, as lm-eval does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import permutations

import numpy as np

from .records import LETTERS, PUBMEDQA_LABELS, UNANSWERABLE, Record

SYSTEM = (
    "You are a careful medical assistant. Reply with 'Answer:' and your answer on the first line, "
    "then 'Explanation:' and a short justification that uses only facts you are sure of."
)

# A tokenizer without a chat template (a base model, the tiny test model) gets this one, so
# that training and generation format conversations the same way for every model.
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Question:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

PUBMEDQA_INSTRUCTIONS = (
    "Answer the research question from the abstract with yes, no or maybe.",
    "Based only on the abstract below, is the answer to the question yes, no or maybe?",
    "Read the study summary and decide: yes, no or maybe.",
    "Using the evidence in this abstract, reply yes, no or maybe to the question.",
)


@dataclass(frozen=True)
class PubmedqaVariant:
    """One PubMedQA prompt of the consistency metric: the abstract's paragraph order and the
    instruction (an index into PUBMEDQA_INSTRUCTIONS; the log-likelihood prompt of 0 has none,
    as lm-eval's has none)."""

    reversed_context: bool
    instruction: int


# Variant 0 is the reference prompt (lm-eval's, for log-likelihood). Every later variant
# changes ONE thing against it, so a flip in answer is attributable to that change.
PUBMEDQA_VARIANTS = (
    PubmedqaVariant(reversed_context=False, instruction=0),  # the reference
    PubmedqaVariant(reversed_context=True, instruction=0),  # paragraph order only
    PubmedqaVariant(reversed_context=False, instruction=1),  # paraphrased instruction only
    PubmedqaVariant(reversed_context=False, instruction=2),  # another paraphrase only
    PubmedqaVariant(reversed_context=False, instruction=3),  # another paraphrase only
)


def pubmedqa_variant(variant: int) -> PubmedqaVariant:
    """The variant's prompt form; an unknown variant is an error, not a silent wrap-around."""
    if not 0 <= variant < len(PUBMEDQA_VARIANTS):
        raise ValueError(f"PubMedQA has prompt variants 0..{len(PUBMEDQA_VARIANTS) - 1}, not {variant}")
    return PUBMEDQA_VARIANTS[variant]


def _paragraphs(record: Record, variant: PubmedqaVariant) -> str:
    paragraphs = record.context.split("\n")
    return "\n".join(paragraphs[::-1] if variant.reversed_context else paragraphs)


def options_block(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))


def user_message(record: Record, variant: int = 0) -> str:
    """The question as the user asks it; `variant` picks a PubMedQA prompt of PUBMEDQA_VARIANTS
    (for the consistency metric); other datasets have one prompt."""
    if record.dataset == "pubmedqa":
        form = pubmedqa_variant(variant)
        instruction = PUBMEDQA_INSTRUCTIONS[form.instruction]
        return f"{instruction}\n\nAbstract:\n{_paragraphs(record, form)}\n\nQuestion: {record.question}"
    if record.dataset == "radqa":
        return (
            "Answer the question with a short span copied from the radiology report, or say "
            f"'{UNANSWERABLE}' if the report does not answer it.\n\n"
            f"Report:\n{record.context}\n\nQuestion: {record.question}"
        )
    return f"Choose the single best option and give its letter.\n\nQuestion: {record.question}\n{options_block(record.options)}"


def response(record: Record) -> str:
    """The gold response: the training target and the demonstration answer."""
    answer = record.answer_text
    if record.options:
        answer = f"{record.answer}. {record.options[LETTERS.index(record.answer)]}"
    text = f"Answer: {answer}"
    if record.rationale:
        text += f"\nExplanation: {record.rationale}"
    return text


def question_chat(text: str) -> list[dict]:
    """A chat of the system line and one user question (safety prompts, preference files)."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def messages(record: Record, demos: list[Record] = (), variant: int = 0) -> list[dict]:
    """A chat: system line, demonstrations as earlier turns (closest last), then the question."""
    chat = [{"role": "system", "content": SYSTEM}]
    for demo in demos:
        chat.append({"role": "user", "content": user_message(demo)})
        chat.append({"role": "assistant", "content": response(demo)})
    chat.append({"role": "user", "content": user_message(record, variant)})
    return chat


def render(tokenizer, chat: list[dict]) -> str:
    """The chat as the model sees it before its answer."""
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


# ---- log-likelihood prompts (lm-evaluation-harness shapes) -----------------------------


@dataclass(frozen=True)
class LoglikRequest:
    context: str  # everything before the continuation
    choices: tuple[str, ...]  # continuations scored, each with a leading space
    gold: int  # index of the gold choice


def loglik_text(record: Record, variant: int = 0) -> str:
    """lm-eval's `doc_to_text` for the record's task; PubMedQA `variant`s > 0 (PUBMEDQA_VARIANTS)
    reverse the paragraphs or put a paraphrased instruction first, for consistency."""
    if record.dataset == "medmcqa":
        return f"Question: {record.question}\nChoices:\n{options_block(record.options)}\nAnswer:"
    if record.dataset == "medqa":
        return f"Question: {record.question}\n{options_block(record.options)}\nAnswer:"
    if record.dataset == "pubmedqa":
        form = pubmedqa_variant(variant)
        text = f"Abstract: {_paragraphs(record, form)}\nQuestion: {record.question}\nAnswer:"
        return f"{PUBMEDQA_INSTRUCTIONS[form.instruction]}\n{text}" if form.instruction else text
    raise ValueError(f"{record.dataset} has no log-likelihood form (open answers are generated)")


def loglik_choices(record: Record) -> tuple[str, ...]:
    if record.dataset == "pubmedqa":
        return PUBMEDQA_LABELS
    return tuple(LETTERS[: len(record.options)])


def loglik_request(record: Record, demos: list[Record] = (), variant: int = 0) -> LoglikRequest:
    """A k-shot request: demonstrations `text + " " + target` joined by blank lines."""
    text = loglik_text(record, variant)  # raises for open-answer datasets
    choices = loglik_choices(record)
    shots = [f"{loglik_text(d)} {d.answer}" for d in demos]
    context = "\n\n".join(shots + [text])
    return LoglikRequest(context, tuple(f" {c}" for c in choices), choices.index(record.answer))


# ---- choice shuffling: option orders for voting (Medprompt) and position-bias checks ----


def option_permutations(n_options: int, count: int, seed: int, item_id: str) -> list[tuple[int, ...]]:
    """`count` distinct option orders, the identity first, seeded per item."""
    identity = tuple(range(n_options))
    others = [p for p in permutations(identity) if p != identity]
    random.Random(f"{seed}-{item_id}").shuffle(others)
    return [identity] + others[: max(count - 1, 0)]


def shuffled(record: Record, order: tuple[int, ...]) -> Record:
    """The record with its options in `order` (new position i shows old option order[i])."""
    options = [record.options[j] for j in order]
    answer = LETTERS[order.index(LETTERS.index(record.answer))]
    return Record(**{**record.to_dict(), "options": options, "answer": answer})


def original_letter(letter: str, order: tuple[int, ...]) -> str:
    """Map a letter chosen under `order` back to the original option's letter."""
    return LETTERS[order[LETTERS.index(letter)]]


def vote(letters: list[str]) -> str:
    """Majority letter; ties go to the earliest vote (the unshuffled order)."""
    counts = {letter: letters.count(letter) for letter in letters}
    best = max(counts.values())
    return next(letter for letter in letters if counts[letter] == best)


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
