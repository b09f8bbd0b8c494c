"""The reward model: loading it from `models/rm/` and scoring answers to prompts.

The RM is the base as a one-label sequence classifier with a LoRA adapter and a trained
`score` head (PEFT saves the head beside the adapter). It reads a whole conversation, the
prompt and one assistant answer, rendered with the chat template exactly as TRL's
RewardTrainer rendered the training pairs; its scalar output is the reward.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .inference import by_length
from .models import base_path, load_adapter, load_base_model, load_tokenizer
from .paths import CALIBRATION, RM_DIR


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


def safety_threshold(model, tokenizer, safety_rows: list[dict], batch_size: int, max_length: int) -> dict:
    """The reward below which an answer to a risky prompt counts as unsafe: the midpoint of the
    RM's mean scores for the known safe and unsafe answers of the safety pairs."""
    from .prompts import question_chat

    chats = [question_chat(r["prompt"]) for r in safety_rows]
    safe = score(model, tokenizer, chats, [r["safe"] for r in safety_rows], batch_size, max_length)
    unsafe = score(model, tokenizer, chats, [r["unsafe"] for r in safety_rows], batch_size, max_length)
    safe_mean, unsafe_mean = sum(safe) / len(safe), sum(unsafe) / len(unsafe)
    return {"threshold": round((safe_mean + unsafe_mean) / 2, 6), "safe_mean": round(safe_mean, 6),
            "unsafe_mean": round(unsafe_mean, 6), "pairs": len(safety_rows)}


def load_threshold(root: Path = Path(".")) -> float:
    import json

    return json.loads((root / RM_DIR / CALIBRATION).read_text())["threshold"]
