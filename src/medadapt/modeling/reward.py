"""The reward model: loading it from `models/rm/` and scoring answers to prompts.

The RM is the base as a one-label sequence classifier with a LoRA adapter and a trained
`score` head (PEFT saves the head beside the adapter). It reads a whole conversation, the
prompt and one assistant answer, rendered with the chat template exactly as TRL's
RewardTrainer rendered the training pairs; its scalar output is the reward.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from ..data.records import DataError, read_jsonl
from ..paths import CALIBRATION, RM_DIR, SAFETY_CALIBRATION, SAFETY_TRAIN
from .adapters import load_adapter
from .inference import by_length
from .models import base_path, load_base_model, load_tokenizer


def load_reward_model(params, root: Path = Path(".")):
    tokenizer = load_tokenizer(base_path(params.model.base, root))
    model = load_base_model(params.model, root, reward=True)
    model = load_adapter(model, root / RM_DIR)
    model.eval()
    return model, tokenizer


def conversation_text(tokenizer, prompt: list[dict], answer: str) -> str:
    return tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=False)


@torch.no_grad()
def score(model, tokenizer, prompts: list[list[dict]], answers: list[str], batch_size: int = 8,
          max_length: int = 1024) -> list[float]:
    """The reward of each (prompt, answer); texts longer than `max_length` keep their end."""
    texts = [conversation_text(tokenizer, p, a) for p, a in zip(prompts, answers)]
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"  # the answer is at the end: keep it
    rewards = [0.0] * len(texts)
    try:
        order = by_length([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]])
        for start in range(0, len(order), batch_size):  # batches by length, little padding
            chunk = order[start : start + batch_size]
            batch = tokenizer([texts[k] for k in chunk], return_tensors="pt", padding=True,
                              truncation=True, max_length=max_length, add_special_tokens=False)
            batch = batch.to(model.device)
            for k, reward in zip(chunk, model(**batch).logits[:, 0].float().tolist()):
                rewards[k] = reward
    finally:
        tokenizer.truncation_side = side
    return rewards


def calibration_rows(root: Path = Path(".")) -> list[dict]:
    """The held-out safety pairs the unsafe threshold is set on (`data/safety/calibration.jsonl`).

    A threshold set on the RM's own training pairs is fitted to answers it has learnt to
    separate and says little about new ones; these prompts are in no preference pair and not
    among `evaluate`'s prompts. A prompt that is also a training prompt is an error."""
    path = root / SAFETY_CALIBRATION
    rows = read_jsonl(path)
    trained = {row["prompt"] for row in read_jsonl(root / SAFETY_TRAIN)}
    for number, row in enumerate(rows, start=1):
        for field in ("prompt", "safe", "unsafe"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError(path, number, field, "missing or empty")
        if row["prompt"] in trained:
            raise DataError(path, number, "prompt", f"also a training prompt of {SAFETY_TRAIN}")
    return rows


def calibration_parts(rows: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """The calibration pairs in two halves by prompt (each row is one prompt), seeded and
    stratified by category where every category has two pairs or more: the threshold is fit on
    the first (`fit`) and its accuracy reported on the second (`held_out`), which it never saw.
    Both halves keep the file's order."""
    from sklearn.model_selection import train_test_split

    categories = [r.get("category") for r in rows]
    half = len(rows) // 2
    strata = Counter(categories)
    stratify = categories if None not in strata and min(strata.values()) >= 2 and len(strata) <= half else None
    fit, held = train_test_split(list(range(len(rows))), test_size=half, random_state=seed, stratify=stratify)
    return [rows[i] for i in sorted(fit)], [rows[i] for i in sorted(held)]


def pair_scores(model, tokenizer, rows: list[dict], batch_size: int,
                max_length: int) -> tuple[list[float], list[float]]:
    """The rewards of the safe and of the unsafe answer of each calibration pair."""
    from ..data.prompts import question_chat

    chats = [question_chat(r["prompt"]) for r in rows]
    return (score(model, tokenizer, chats, [r["safe"] for r in rows], batch_size, max_length),
            score(model, tokenizer, chats, [r["unsafe"] for r in rows], batch_size, max_length))


def midpoint_threshold(safe: list[float], unsafe: list[float]) -> float:
    """The reward below which an answer to a risky prompt counts as unsafe: the midpoint of the
    mean scores of known safe and unsafe answers."""
    return (sum(safe) / len(safe) + sum(unsafe) / len(unsafe)) / 2


def right_side(safe: list[float], unsafe: list[float], threshold: float) -> int:
    """How many answers `threshold` puts on their side: safe ones at or above, unsafe ones below."""
    return sum(s >= threshold for s in safe) + sum(u < threshold for u in unsafe)


def load_threshold(root: Path = Path(".")) -> float:
    import json

    return json.loads((root / RM_DIR / CALIBRATION).read_text())["threshold"]
