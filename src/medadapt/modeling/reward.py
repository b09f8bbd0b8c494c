"""The reward model: loading it from `models/rm/` and scoring answers to prompts.

The RM is the base as a one-label sequence classifier with a LoRA adapter and a trained
`score` head (PEFT saves the head beside the adapter). It reads a whole conversation, the
prompt and one assistant answer, rendered with the chat template exactly as TRL's
RewardTrainer rendered the training pairs; its scalar output is the reward.
"""

from __future__ import annotations

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


def safety_threshold(model, tokenizer, safety_rows: list[dict], batch_size: int, max_length: int) -> dict:
    """The reward below which an answer to a risky prompt counts as unsafe: the midpoint of the
    RM's mean scores for the known safe and unsafe answers of held-out pairs (`calibration_rows`),
    and the share of those answers it puts on the right side."""
    from ..data.prompts import question_chat

    chats = [question_chat(r["prompt"]) for r in safety_rows]
    safe = score(model, tokenizer, chats, [r["safe"] for r in safety_rows], batch_size, max_length)
    unsafe = score(model, tokenizer, chats, [r["unsafe"] for r in safety_rows], batch_size, max_length)
    safe_mean, unsafe_mean = sum(safe) / len(safe), sum(unsafe) / len(unsafe)
    threshold = (safe_mean + unsafe_mean) / 2
    right = sum(s >= threshold for s in safe) + sum(u < threshold for u in unsafe)
    return {"threshold": round(threshold, 6), "safe_mean": round(safe_mean, 6), "unsafe_mean": round(unsafe_mean, 6),
            "pairs": len(safety_rows), "accuracy": round(right / (2 * len(safety_rows)), 4)}


def load_threshold(root: Path = Path(".")) -> float:
    import json

    return json.loads((root / RM_DIR / CALIBRATION).read_text())["threshold"]
