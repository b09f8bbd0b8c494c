"""Per-item scores: SQuAD v2 exact match and token F1, ROUGE-L, label metrics, and the
consistency of answers across prompt variants."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .stats import rate


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, articles or extra spaces."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def gold_answers(gold: str | Sequence[str]) -> list[str]:
    """The gold answers as the official SQuAD v2 script takes them: a single string is one answer;
    answers that normalise to nothing are dropped, and none left means unanswerable ('')."""
    answers = [gold] if isinstance(gold, str) else list(gold)
    return [a for a in answers if normalize_answer(a)] or [""]


def exact_match(prediction: str | None, gold: str | Sequence[str]) -> float:
    """SQuAD v2 exact match, the best over the gold answers. An unanswerable gold ('') matches
    only an empty prediction; None (an unreadable answer) is wrong."""
    if prediction is None:
        return 0.0
    return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in gold_answers(gold))


def token_f1(prediction: str | None, gold: str | Sequence[str]) -> float:
    """SQuAD v2 token F1, the best over the gold answers; None is wrong."""
    if prediction is None:
        return 0.0
    return max(_token_f1(prediction, g) for g in gold_answers(gold))


def _token_f1(prediction: str, gold: str) -> float:
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
    """Accuracy, macro-F1 and confusion (scikit-learn) over `labels`; an unreadable answer
    counts wrong.

    Macro-F1 averages over the labels that occur in the gold or the predicted answers: a label
    absent from both has no F1 (0/0), and counting it as 0 would drag down every sample that
    lacks a class (a bootstrap resample, a small eval split). A label predicted but never gold,
    or gold but never predicted, still scores 0.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    predicted = [p if p in labels else "unparsed" for p in predicted]
    seen = set(gold) | set(predicted)
    present = [label for label in labels if label in seen]
    return {
        "accuracy": round(float(accuracy_score(gold, predicted)), 4),
        "macro_f1": round(float(f1_score(gold, predicted, labels=present, average="macro", zero_division=0)), 4),
        "confusion": confusion_matrix(gold, predicted, labels=list(labels)).tolist(),
    }


def macro_f1_of_resamples(gold: list[str], predicted: list[str | None], labels: tuple[str, ...],
                          resamples: np.ndarray) -> list[float]:
    """`label_metrics(...)["macro_f1"]` of every resample at once (`resamples`: [samples, n] item
    indices), the same floats: scikit-learn's F-score per label, 2 tp / (true + predicted), 0 where
    both are 0, averaged in label order over the labels the resample's gold or predicted answers
    hold, rounded to 4 decimals. A bootstrap of 1,000 resamples took 5.4 s through scikit-learn
    (three calls each), most of an evaluation's CPU work after its model passes."""
    predicted = [p if p in labels else "unparsed" for p in predicted]
    gold_of = np.array([labels.index(g) if g in labels else len(labels) for g in gold])[resamples]
    predicted_of = np.array([labels.index(p) if p in labels else len(labels) for p in predicted])[resamples]
    f1, present = [], []
    for label in range(len(labels)):
        in_gold, in_predicted = gold_of == label, predicted_of == label
        hits = (in_gold & in_predicted).sum(1).astype(float)
        denominator = in_gold.sum(1) + in_predicted.sum(1)
        f1.append(np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0))
        present.append(denominator > 0)
    f1, present = np.stack(f1, 1), np.stack(present, 1)
    total = np.zeros(len(resamples))
    for label in range(len(labels)):  # in label order, as np.average sums the present labels' scores
        total = total + np.where(present[:, label], f1[:, label], 0.0)
    return [round(float(t / n), 4) for t, n in zip(total, present.sum(1))]


def consistent_items(predictions: Sequence[Sequence[str | None]]) -> list[float]:
    """Per item, 1.0 when every variant gave the same readable answer (predictions[v][i])."""
    if len({len(p) for p in predictions}) > 1:
        raise ValueError("every variant needs one prediction per item")
    return [float(None not in answers and len(set(answers)) == 1) for answers in zip(*predictions)]


def consistency_metrics(predictions: Sequence[Sequence[str | None]], gold: Sequence[str],
                        samples: int = 1000, seed: int = 0) -> dict:
    """Consistency of answers across prompt variants, each a rate `{value, low, high, n}`.

    `predictions[v][i]` is the answer to item i under prompt variant v; variant 0 is the
    reference prompt. Consistency alone rewards a model that always says the same thing (a
    constant answerer scores 1.0), so it comes with:
    - `consistent_correct`: the same answer under every variant, and that answer is gold;
    - `flip_rate`: per variant v >= 1 (keyed "1", "2", ...), the share of items whose answer
      differs from variant 0's: which single change to the prompt moves the model.
    """
    consistent = consistent_items(predictions)
    if len(gold) != len(consistent):
        raise ValueError("gold needs one label per item")
    reference = predictions[0]
    return {
        "consistency": rate(consistent, samples, seed),
        "consistent_correct": rate([bool(c) and p == g for c, p, g in zip(consistent, reference, gold)], samples, seed),
        "flip_rate": {str(v): rate([p != q for p, q in zip(reference, answers)], samples, seed)
                      for v, answers in enumerate(predictions[1:], start=1)},
    }
