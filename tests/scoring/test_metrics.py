"""scoring/metrics.py: SQuAD v2 EM/F1, ROUGE-L, label metrics, consistency across prompt variants."""
from __future__ import annotations

import pytest

from medadapt.scoring.metrics import (
    consistency_metrics,
    exact_match,
    label_metrics,
    normalize_answer,
    rouge_l,
    token_f1,
)
from medadapt.scoring.stats import rate

# ---- SQuAD v2 exact match and token F1 ------------------------------------------------------


def test_normalize_answer_drops_case_articles_punctuation_and_spaces():
    assert normalize_answer("  The  Left, lower LOBE!  ") == "left lower lobe"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer(None) == ""


@pytest.mark.parametrize(
    ("prediction", "gold", "em"),
    [
        ("", "", 1.0),  # unanswerable, answered as unanswerable
        ("left lower lobe", "", 0.0),  # unanswerable, but a span was given
        (None, "", 0.0),  # unreadable answer is wrong even for an unanswerable gold
        (None, "left lower lobe", 0.0),
        ("", "left lower lobe", 0.0),  # answerable, claimed unanswerable
        ("The left lower lobe.", "left lower lobe", 1.0),  # articles and punctuation ignored
        ("LEFT  lower, lobe", "the left lower lobe", 1.0),
        ("right lower lobe", "left lower lobe", 0.0),
    ],
)
def test_exact_match_squad_v2(prediction, gold, em):
    assert exact_match(prediction, gold) == em


@pytest.mark.parametrize(
    ("prediction", "gold", "f1"),
    [
        ("", "", 1.0),
        ("small effusion", "", 0.0),
        ("", "small effusion", 0.0),
        (None, "", 0.0),
        (None, "small effusion", 0.0),
        ("The small effusion.", "a small effusion", 1.0),
        ("pneumothorax", "small effusion", 0.0),
    ],
)
def test_token_f1_edge_cases(prediction, gold, f1):
    assert token_f1(prediction, gold) == f1


def test_token_f1_partial_overlap_by_hand():
    # prediction tokens: small left pleural effusion (4); gold: left pleural effusion (3); common 3
    precision, recall = 3 / 4, 3 / 3
    expected = 2 * precision * recall / (precision + recall)
    assert token_f1("The small left pleural effusion.", "left pleural effusion") == pytest.approx(expected)
    # repeated tokens count with multiplicity: pred "effusion effusion" vs gold "effusion": common 1
    assert token_f1("effusion effusion", "effusion") == pytest.approx(2 * 0.5 * 1 / 1.5)
    # symmetric in its arguments
    assert token_f1("left pleural effusion", "The small left pleural effusion.") == pytest.approx(expected)


def test_exact_match_and_f1_take_the_best_gold_answer():
    # the official SQuAD v2 script scores against every gold answer and keeps the best
    golds = ["the left lower lobe", "left lobe", "lower lobe of the left lung"]
    assert exact_match("Left lobe.", golds) == 1.0
    assert exact_match("right lobe", golds) == 0.0
    assert token_f1("left lobe", golds) == 1.0
    # "lower lobe": vs gold 1 (left lower lobe) p 1 r 2/3; vs gold 3 (lower lobe left lung) p 1 r 2/4
    assert token_f1("lower lobe", golds) == pytest.approx(2 * (2 / 3) / (1 + 2 / 3))
    # one string is one answer, as before; a one-element list is the same
    assert exact_match("left lobe", "left lobe") == exact_match("left lobe", ["left lobe"]) == 1.0


def test_gold_answers_that_normalise_to_nothing_are_dropped():
    # as in the official script: empty answers are dropped, and none left means unanswerable
    assert exact_match("left lobe", ["", "left lobe"]) == 1.0
    assert exact_match("", []) == 1.0 and token_f1("", []) == 1.0
    assert exact_match("", ["the", ""]) == 1.0
    assert exact_match("left lobe", []) == 0.0
    assert exact_match(None, ["left lobe"]) == 0.0 and token_f1(None, []) == 0.0


# ---- ROUGE-L -------------------------------------------------------------------------------


def test_rouge_l_by_hand():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # LCS = "the cat sat" (3 tokens); precision 3/6, recall 3/3
    assert rouge_l("the cat sat on the mat", "the cat sat") == pytest.approx(2 * 0.5 * 1 / 1.5)
    # LCS "a c" (2 of 3 both ways)
    assert rouge_l("a b c", "a c d") == pytest.approx(2 / 3)
    assert rouge_l("completely different words", "nothing shared here") == 0.0
    assert rouge_l("", "the reference") == 0.0
    assert rouge_l("a prediction", "   ") == 0.0


# ---- label metrics ---------------------------------------------------------------------------


def test_label_metrics_by_hand():
    labels = ("yes", "no", "maybe")
    gold = ["yes", "no", "maybe", "yes", "no"]
    predicted = ["yes", "yes", None, "maybe", "no"]
    result = label_metrics(gold, predicted, labels)
    # right: items 0 and 4 -> 2/5
    assert result["accuracy"] == 0.4
    # yes: tp 1, fp 1 (gold no), fn 1 (gold yes -> maybe): p .5 r .5 f1 .5
    # no: tp 1, fp 0, fn 1 (gold no -> yes): p 1 r .5 f1 2/3
    # maybe: tp 0 (gold maybe -> unparsed), fp 1: f1 0
    assert result["macro_f1"] == round((0.5 + 2 / 3 + 0) / 3, 4)
    # rows gold, columns predicted, in label order; an unparsed answer appears in no column
    assert result["confusion"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]


def test_label_metrics_unknown_label_counts_wrong():
    result = label_metrics(["A", "B"], ["A", "Z"], ("A", "B", "C", "D"))
    assert result["accuracy"] == 0.5
    assert result["confusion"][1] == [0, 0, 0, 0]


def test_label_metrics_perfect():
    result = label_metrics(["A", "B", "C"], ["A", "B", "C"], ("A", "B", "C"))
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert result["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_macro_f1_ignores_a_class_absent_from_gold_and_predictions():
    # no "maybe" anywhere: its F1 is 0/0 and must not count as 0 (it did: 2/3)
    result = label_metrics(["yes", "no", "yes", "no"], ["yes", "no", "yes", "no"], ("yes", "no", "maybe"))
    assert result["macro_f1"] == 1.0
    # a class predicted but never gold still counts, as 0: its predictions are all wrong
    result = label_metrics(["yes", "yes", "no"], ["yes", "maybe", "no"], ("yes", "no", "maybe"))
    # yes: p 1 r .5 f1 2/3; no: 1; maybe: 0
    assert result["macro_f1"] == round((2 / 3 + 1 + 0) / 3, 4)
    # an unparsed answer is no class of its own; its gold class keeps the miss (yes 1, no 0)
    result = label_metrics(["yes", "no"], ["yes", None], ("yes", "no", "maybe"))
    assert result["macro_f1"] == 0.5


# ---- consistency across prompt variants ------------------------------------------------------


def test_consistency_of_a_constant_answerer_is_not_its_accuracy():
    gold = ["yes", "no", "maybe", "yes"]
    constant = [["yes"] * 4] * 3  # three variants, always "yes"
    result = consistency_metrics(constant, gold, samples=200)
    assert result["consistency"]["value"] == 1.0
    assert result["consistent_correct"]["value"] == 0.5  # right only where gold is yes
    assert result["flip_rate"]["1"]["value"] == 0.0 and result["flip_rate"]["2"]["value"] == 0.0


def test_consistency_flip_rate_per_variant():
    gold = ["yes", "no", "maybe", "yes"]
    predictions = [
        ["yes", "no", "no", "yes"],  # variant 0: 3 right
        ["yes", "yes", "no", "yes"],  # variant 1 flips item 1
        ["no", "yes", "no", "maybe"],  # variant 2 flips items 0, 1, 3
    ]
    result = consistency_metrics(predictions, gold, samples=200)
    assert result["consistency"] == rate([0, 0, 1, 0])  # only item 2 is the same everywhere
    assert result["consistent_correct"]["value"] == 0.0  # ... and it is wrong
    assert result["flip_rate"]["1"] == rate([0, 1, 0, 0])
    assert result["flip_rate"]["2"] == rate([1, 1, 0, 1])
    assert set(result["flip_rate"]) == {"1", "2"}
    for name in ("consistency", "consistent_correct"):
        assert set(result[name]) == {"value", "low", "high", "n"} and result[name]["n"] == 4


def test_consistency_counts_an_unreadable_answer_as_inconsistent():
    result = consistency_metrics([[None, "yes"], [None, "yes"]], ["yes", "yes"])
    assert result["consistency"]["value"] == 0.5 and result["consistent_correct"]["value"] == 0.5
    with pytest.raises(ValueError):
        consistency_metrics([["yes"], ["yes", "no"]], ["yes"])


def test_macro_f1_of_resamples_is_label_metrics_of_each_resample():
    """The vectorised bootstrap statistic gives label_metrics' macro-F1 of every resample, float for
    float: unreadable answers, labels missing from a resample, one-label resamples included."""
    import numpy as np

    from medadapt.scoring.metrics import macro_f1_of_resamples

    rng = np.random.default_rng(7)
    labels = ("yes", "no", "maybe")
    for n in (1, 3, 12, 100):
        gold = [str(x) for x in rng.choice(labels, n, p=[0.6, 0.3, 0.1])]
        predicted = [None if x == "none" else str(x) for x in rng.choice(labels + ("none",), n)]
        resamples = rng.integers(0, n, size=(300, n))
        expected = [label_metrics([gold[i] for i in row], [predicted[i] for i in row], labels)["macro_f1"]
                    for row in resamples]
        assert macro_f1_of_resamples(gold, predicted, labels, resamples) == expected
