"""Per-item scores: SQuAD v2 exact match and token F1, ROUGE-L, and label metrics."""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, articles or extra spaces."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str | None, gold: str) -> float:
    """SQuAD v2: an unanswerable gold ('') matches only an empty prediction; None is wrong."""
    if prediction is None:
        return 0.0
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str | None, gold: str) -> float:
    if prediction is None:
        return 0.0
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:  # SQuAD v2: both empty is a match, one empty is not
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score, Porter stemming)."""
    if not prediction.strip() or not reference.strip():
        return 0.0
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def label_metrics(gold: list[str], predicted: list[str | None], labels: tuple[str, ...]) -> dict:
    """Accuracy and macro-F1 (scikit-learn) over `labels`; an unreadable answer counts wrong."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    predicted = [p if p in labels else "unparsed" for p in predicted]
    return {
        "accuracy": round(float(accuracy_score(gold, predicted)), 4),
        "macro_f1": round(float(f1_score(gold, predicted, labels=list(labels), average="macro", zero_division=0)), 4),
        "confusion": confusion_matrix(gold, predicted, labels=list(labels)).tolist(),
    }
