"""The hallucination rule: an explanation fact (number or drug) that no source states; judged only
where a reference exists, and rated per answer and per fact."""

from __future__ import annotations

import pytest

from medadapt.scoring.hallucination import (
    FINDINGS,
    asserted_findings,
    derived_numbers,
    drug_names,
    drugs,
    hallucinates,
    hallucination_rates,
    judge,
    numbers,
    stated_facts,
    unsupported_facts,
)

SOURCES = [
    "A 58-year-old man has chest pain for 40 minutes; pulse 56/min, blood pressure 104/68 mm Hg.",
    "Aspirin was given. Troponin rose to 0.50 ng/mL; 1,000 patients were enrolled and 12.5% died.",
    None,
    "",
]


def test_lexicon_is_loaded():
    names = drug_names()
    assert len(names) > 300
    assert {"aspirin", "metformin", "heparin", "warfarin", "amlodipine"} <= names
    assert all(name == name.lower() and name.strip() == name for name in names)


def test_numbers_and_drugs_extraction():
    assert numbers("1,000 patients, 0.50 mg, 40%, 2.5 cm, dose 500 mg") == {1000.0, 0.5, 40.0, 2.5, 500.0}
    assert numbers("CD4 counts and SGLT2 inhibitors") == set()
    assert numbers(None) == set()
    assert drugs("Start Metformin and ASPIRIN; avoid warfarin.") == {"metformin", "aspirin", "warfarin"}
    assert drugs("aspirinate is not a drug name") == set()


@pytest.mark.parametrize("explanation, fact", [
    ("The man is 59 years old.", "59"),                       # number
    ("Give aspirin 325 mg now.", "325"),                      # dose
    ("Mortality was 15% in the trial.", "15"),                # percentage
    ("Troponin rose to 0.05 ng/mL.", "0.05"),                 # a different decimal
    ("2,000 patients were enrolled.", "2000"),                # a different grouped number
    ("He should start heparin.", "heparin"),                  # drug
    ("Switch from aspirin to Clopidogrel.", "clopidogrel"),   # drug, case-insensitive
])
def test_unsupported_fact_is_flagged(explanation, fact):
    assert hallucinates(explanation, SOURCES)
    assert fact in unsupported_facts(explanation, SOURCES)


@pytest.mark.parametrize("explanation", [
    "The 58-year-old man has had pain for 40 minutes.",
    "Aspirin was the right first step; 12.5% died.",
    "Troponin was 0.5 ng/mL.",                 # 0.5 == 0.50
    "Troponin was 0.500 ng/mL.",
    "There were 1000 patients.",               # 1000 == 1,000
    "Pressure 104/68 mm Hg with pulse 56.",
    "ASPIRIN helps.",
    "No numbers and no drugs here.",
    "",
])
def test_supported_facts_are_not_flagged(explanation):
    assert not hallucinates(explanation, SOURCES)
    assert unsupported_facts(explanation, SOURCES) == []


def test_numbers_compare_by_value_both_ways():
    assert not hallucinates("1,000 patients", ["1000 patients"])
    assert not hallucinates("1000 patients", ["1,000 patients"])
    assert not hallucinates("0.50", ["0.5"])
    assert not hallucinates("0.5", ["0.50"])
    assert not hallucinates("40%", ["40 percent"])
    assert hallucinates("1,001 patients", ["1,000 patients"])
    assert hallucinates("0.55", ["0.5"])


def test_all_sources_count():
    sources = ["question 7", "context: warfarin", "option 3 mg", "gold: B", "rationale 45%"]
    assert not hallucinates("7 days of warfarin 3 mg, 45% bleed", sources)
    assert hallucinates("7 days of warfarin 3 mg, 46% bleed", sources)
    assert hallucinates("anything 1", [])


def test_unsupported_facts_lists_all_sorted():
    facts = unsupported_facts("Give 500 mg metformin and 20 mg lisinopril; 40 minutes", SOURCES)
    assert facts == ["20", "500", "lisinopril", "metformin"]


def test_doses_with_attached_units_are_facts():
    assert hallucinates("Give 500mg twice daily.", ["The patient has a fever."])
    assert not hallucinates("The nodule measures 9 mm.", ["There is a 9mm nodule."])


def test_drug_names_inside_hyphenated_words():
    assert not hallucinates("Stop heparin.", ["Suspected heparin-induced thrombocytopenia."])
    assert hallucinates("This is heparin-induced thrombocytopenia.", ["Platelets fell after surgery."])


def test_synonyms_of_a_source_drug_are_no_new_fact():
    assert not hallucinates("Give acetaminophen.", ["Paracetamol overdose"])
    assert not hallucinates("Give intramuscular adrenaline.", ["Epinephrine is first line."])
    assert not hallucinates("Salbutamol helps.", ["albuterol"])
    assert drugs("adrenaline and paracetamol") == {"epinephrine", "acetaminophen"}
    assert hallucinates("Give adrenaline and heparin.", ["Epinephrine is first line."])


@pytest.mark.parametrize("stated, source, supported", [
    ("23 mm", "22.8 mm", True),        # rounded to whole units
    ("about 45%", "44.9%", True),
    ("17.4%", "17.38%", True),
    ("13%", "12.5%", True),            # half rounds either way
    ("24 mm", "22.8 mm", False),
    ("0.7 mg", "0.77 mg", False),      # a number cut short is not a rounding
    ("0.55", "0.5", False),            # more decimals than the source: compared exactly
    ("59 years", "58 years", False),
])
def test_a_rounded_source_number_is_supported(stated, source, supported):
    assert hallucinates(stated, [source]) is not supported


# ---- issue 19: arithmetic on source figures, numbers cut off, findings a context denies ------------


@pytest.mark.parametrize("stated, source", [
    ("cut return visits by 8 percentage points", "7.3% with dexamethasone and 15.3% with placebo"),
    ("a relative reduction of about 44%", "risk ratio 0.56 (8.7% vs 4.9%)"),
    ("users were 83% more likely to quit", "relative risk 1.83"),
    ("the median fell by 3 units", "medians of 4 and 1 units"),
])
def test_arithmetic_on_source_figures_is_supported(stated, source):
    assert not hallucinates(stated, [source])


@pytest.mark.parametrize("stated, source", [
    ("cut return visits by 9 percentage points", "7.3% with dexamethasone and 15.3% with placebo"),
    ("a relative reduction of about 54%", "risk ratio 0.56"),
    ("the median fell by 3 units", "a median of 4 units"),  # one figure: no difference to take
])
def test_other_arithmetic_is_not(stated, source):
    assert hallucinates(stated, [source])


def test_derived_numbers_by_hand():
    assert derived_numbers({4.0, 1.0}) == {3.0}  # a ratio of 1 is no change
    assert derived_numbers({15.3, 7.3}) == {8.0}
    assert derived_numbers({0.56}) == {44.0}
    assert derived_numbers({1.83, 2.0}) == {0.17, 83.0}


def test_a_number_cut_off_at_the_end_is_no_claim():
    source = ["The appendix is dilated to 13 mm."]
    assert not hallucinates("The appendix is dilated to 1", source)  # the token budget ran out
    assert hallucinates("The appendix is dilated to 1 mm.", source)  # a finished claim
    assert hallucinates("The appendix is dilated to 2", source)      # not the start of a source figure
    assert hallucinates("It is 1 cm, dilated to 13", source)          # only the last number can be cut off


REPORT = ("FINDINGS: Consolidation in the right lower lobe. No pneumothorax. No free air or abscess. "
          "The common bile duct measures 4 mm. IMPRESSION: Pneumonia.")


def test_findings_asserted_and_denied():
    assert asserted_findings(REPORT) == {"consolidation", "pneumonia"}
    assert asserted_findings("No pneumothorax, but a small left pleural effusion.") == {"effusion"}
    assert asserted_findings("Without dilatation of the duct; haemorrhages and fractured ribs.") == {
        "hemorrhage", "fracture"}
    assert asserted_findings("Stroke rates were not lower.") == {"stroke"}  # the denial must come first
    assert asserted_findings(None) == set()
    assert all(name == name.lower() and name.isalpha() for name in FINDINGS)


@pytest.mark.parametrize("output, unsupported", [
    ("Answer: pneumonia\nExplanation: Right lower lobe consolidation.", []),
    ("Answer: pneumonia\nExplanation: Consolidation, and no effusion.", []),             # denied: no claim
    ("Answer: pneumonia\nExplanation: Consolidation with a small pleural effusion.", ["effusion"]),
    ("Answer: pneumonia\nExplanation: A small pneumothorax as well.", ["pneumothorax"]),  # the report denies it
    ("Answer: pneumonia\nExplanation: The common bile duct is dilated.", ["dilated"]),
])
def test_findings_are_checked_against_the_context(output, unsupported):
    question = "Is there pneumonia or an effusion?"  # asks, asserts nothing
    verdict = judge(output, [question, REPORT, "pneumonia"], "The IMPRESSION reports pneumonia.", REPORT)
    assert verdict["unsupported"] == unsupported


def test_findings_are_not_checked_without_a_context():
    # an exam item's rationale leaves out most of what is true: a finding it lacks is no invention
    verdict = judge("Answer: A. Warfarin\nExplanation: It prevents stroke and embolism.", QUESTION,
                    "Warfarin prevents stroke in atrial fibrillation.")
    assert verdict == {"facts": 1, "unsupported": []}


# ---- judged only where a reference exists; rates per answer and per fact ---------------------------

QUESTION = ["A 40-year-old woman has atrial fibrillation. Which drug prevents stroke?", "A. Warfarin", "B. Digoxin", "A"]


@pytest.mark.parametrize("rationale", [None, "", "  "])
def test_answers_without_a_reference_are_not_judged(rationale):
    # a correct drug and dose the question does not state: without a reference, not a hallucination to flag
    assert judge("Answer: A. Warfarin\nExplanation: Apixaban 5 mg twice daily is an alternative.", QUESTION,
                 rationale) is None


def test_judge_counts_stated_and_unsupported_facts():
    rationale = "Warfarin (target INR 2-3) or a direct oral anticoagulant such as apixaban prevents stroke."
    output = "Answer: A. Warfarin\nExplanation: Warfarin with an INR of 2-3, or apixaban 5 mg twice daily."
    assert stated_facts(output) == ["2", "3", "5", "apixaban", "warfarin"]
    assert judge(output, QUESTION, rationale) == {"facts": 5, "unsupported": ["5"]}
    assert judge("Answer: A. Warfarin", QUESTION, rationale) == {"facts": 1, "unsupported": []}


def test_rates_per_answer_and_per_fact_by_hand():
    judgements = [
        {"facts": 10, "unsupported": ["7"]},            # a long answer: one slip in ten facts
        {"facts": 1, "unsupported": ["heparin"]},       # a short one, all wrong
        {"facts": 0, "unsupported": []},
        {"facts": 4, "unsupported": []},
        None,                                           # no reference: not judged
    ]
    rates = hallucination_rates(judgements, samples=200, seed=0)
    assert rates["judged"] == 4 and rates["not_judged"] == 1
    assert rates["per_answer"]["value"] == 0.5 and rates["per_answer"]["n"] == 4
    assert rates["per_fact"]["value"] == round(2 / 15, 4) and rates["per_fact"]["n"] == 15
    assert rates["facts_per_answer"]["value"] == 15 / 4 and rates["facts_per_answer"]["n"] == 4
    assert rates["facts_per_answer"]["low"] <= 15 / 4 <= rates["facts_per_answer"]["high"]
    assert 0 <= rates["per_fact"]["low"] <= rates["per_fact"]["value"] <= rates["per_fact"]["high"] <= 1
    assert hallucination_rates(judgements, samples=200, seed=0) == rates  # seeded


def test_rates_with_nothing_judged():
    rates = hallucination_rates([None, None])
    assert rates["judged"] == 0 and rates["not_judged"] == 2
    assert rates["per_answer"]["value"] is None and rates["per_fact"]["value"] is None
    assert rates["facts_per_answer"]["value"] is None


def test_an_answer_that_states_nothing_shows_in_facts_per_answer():
    """Issue 19: `sft` stated 1 fact in 100 answers and scored a hallucination rate of 0.00; the
    facts per answer beside the rate say why."""
    judgements = [{"facts": 1, "unsupported": []}] + [{"facts": 0, "unsupported": []}] * 99
    rates = hallucination_rates(judgements, samples=200, seed=0)
    assert rates["per_answer"]["value"] == 0.0 and rates["facts_per_answer"]["value"] == 0.01
