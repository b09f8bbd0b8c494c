"""The hallucination rule: an explanation fact (number or drug) that no source states."""

from __future__ import annotations

import pytest

from medadapt.scoring.hallucination import drug_names, drugs, hallucinates, numbers, unsupported_facts

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
