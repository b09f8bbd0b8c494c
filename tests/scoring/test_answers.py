"""scoring/answers.py: the one answer parser, on hand-made outputs and on the labelled parse set."""

from __future__ import annotations

import pytest
from examples import MCQA, PUBMED, RADQA, RADQA_NONE

from medadapt.data.loaders import load_files
from medadapt.data.prompts import response
from medadapt.data.records import Record
from medadapt.scoring.answers import explanation, parse_answer

from conftest import REPO

# ---- the answer parser ------------------------------------------------------------------------


@pytest.mark.parametrize("output, expected", [
    ("Answer: B", "B"),
    ("Answer: B. Culex mosquito\nExplanation: rice fields.", "B"),
    ("Answer: (C)", "C"),
    ("Answer: (C) Anopheles mosquito", "C"),
    ("Answer: D)", "D"),
    ("answer: A.", "A"),
    ("ANSWER - A", "A"),
    ("Answer:\nB", "B"),
    ("  Answer:   D: Sandfly  ", "D"),
    ("Answer: Culex mosquito", "B"),
    ("Answer: culex MOSQUITO.", "B"),
    ("Some preamble\nAnswer: Sandfly\nExplanation: ...", "D"),
    ("B. Culex mosquito\nExplanation: no tag", "B"),
    ("\n\n  (A)\nbecause", "A"),
    ("Sandfly", "D"),
    ("Answer: E", None),
    ("Answer: (F) none of these", None),
    ("Answer: I think it is B", None),
    ("Answer: Tsetse fly", None),
    ("Answer: Culex", None),
    ("Answer:", None),
    ("", None),
    ("  \n \n", None),
])
def test_parse_option_answers(output, expected):
    assert parse_answer(output, MCQA) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: yes", "yes"),
    ("Answer: Yes, the trial shows it.", "yes"),
    ("ANSWER: NO.", "no"),
    ("Answer: Maybe", "maybe"),
    ("answer: (no)", "no"),
    ("Answer: 'MAYBE'", "maybe"),
    ("No.\nExplanation: the effect was null.", "no"),
    ("maybe\n", "maybe"),
    ("Answer: yesterday", None),
    ("Answer: nope", None),
    ("Answer: unclear", None),
    ("Answer: B", None),
    ("I cannot tell.", None),
    ("", None),
])
def test_parse_pubmedqa_answers(output, expected):
    assert parse_answer(output, PUBMED) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: not stated in the report", ""),
    ("Answer: Not stated in the report.", ""),
    ("Answer: Not mentioned.\nExplanation: the report is silent.", ""),
    ("Answer: The size is not reported", ""),
    ("Answer: This cannot be determined from the report.", ""),
    ("Answer: unanswerable", ""),
    ("Answer: NOT DESCRIBED", ""),
    ("Answer: a 9 mm nodule\nExplanation: FINDINGS.", "a 9 mm nodule"),
    ("Answer:   a 9 mm nodule.  ", "a 9 mm nodule"),
    ('Answer: "a 9 mm nodule"', "a 9 mm nodule"),
    ('Answer: "a 9 mm nodule" ', "a 9 mm nodule"),
    ("a 9 mm nodule\nExplanation: no tag", "a 9 mm nodule"),
    ("Answer:", None),
    ("", None),
])
def test_parse_radqa_answers(output, expected):
    assert parse_answer(output, RADQA) == expected
    assert parse_answer(output, RADQA_NONE) == expected


def test_empty_answer_line_followed_by_explanation_is_unreadable():
    assert parse_answer("Answer:\nExplanation: the report is silent.", RADQA) is None


@pytest.mark.parametrize("dataset, pattern", [
    ("pubmedqa", "pubmedqa/ori_pqal.json"), ("medmcqa", "medmcqa/*.jsonl"),
    ("medqa", "medqa/*.jsonl"), ("radqa", "radqa/*.json"),
])
def test_gold_responses_parse_back_to_gold(dataset, pattern):
    for record in load_files(dataset, REPO / "data/sample", pattern):
        assert parse_answer(response(record), record) == record.answer.strip(" ."), record.id


def test_explanation():
    assert explanation("Answer: B\nExplanation: Culex breeds in rice fields.") == "Culex breeds in rice fields."
    assert explanation("Answer: B\nexplanation:   line one\nline two\n") == "line one\nline two"
    assert explanation("Answer: yes\nEXPLANATION: Because 12 mmHg.") == "Because 12 mmHg."
    assert explanation("Answer: B\nBecause culex.\nMore.") == "Because culex.\nMore."
    assert explanation("B\nBecause culex.") == "B\nBecause culex."  # no tags: the whole output
    assert explanation("Answer: B") == ""
    assert explanation("") == ""
    assert explanation(response(MCQA)) == MCQA.rationale


# ---- issue 19: echoes, letters that are words, "the answer is X", two answers, RadQA's "not
# mentioned". Every output below fails on the parser before issue 19.

COURSE = Record(
    id="medqa-2", dataset="medqa", question="Which treatment is best for this urinary infection?", context=None,
    options=["Oral amoxicillin for 10 days", "A 3-day course of oral ciprofloxacin", "Observation",
             "A single dose of intramuscular ceftriaxone"],
    answer="B", rationale=None,
)


@pytest.mark.parametrize("output", [
    "Answer: yes, no or maybe.",  # 93 of sft's 100 PubMedQA generations
    "Answer: Yes, no, or maybe",
    "Answer: yes; no; maybe; maybe; maybe; maybe",
    "Answer: yes, no or maybe. Answer: yes, no or maybe. Explanation: Laser enhances absorption.",
    "Answer: yes. Answer: no. Answer: maybe. Explanation: The tunnels were long enough.",
    "yes, no or maybe",
])
def test_echoed_pubmedqa_instruction_is_no_answer(output):
    assert parse_answer(output, PUBMED) is None


@pytest.mark.parametrize("output", [
    "A. Aedes mosquito\nB. Culex mosquito\nC. Anopheles mosquito\nD. Sandfly",
    "A. Aedes mosquito\nB. Culex mosquito\nC. Anopheles mosquito",
    "Answer: A. Aedes mosquito\nB. Culex mosquito",
    "Answer: B. Culex mosquito\nC. Culex mosquito",
    "A) Aedes mosquito\nB) Culex mosquito\nC) Anopheles mosquito\nD) Sandfly",
])
def test_echoed_option_list_is_no_answer(output):
    assert parse_answer(output, MCQA) is None


def test_one_option_restated_is_no_option_list():
    assert parse_answer("B. Culex mosquito\n\nB. Culex mosquito breeds in rice fields.", MCQA) == "B"


@pytest.mark.parametrize("output, expected", [
    ("Answer: A 3-day course of oral ciprofloxacin", "B"),  # "A" is the article, not the letter
    ("Answer: A single dose of intramuscular ceftriaxone.", "D"),
    ("Answer: A 5-day course of oral doxycycline", None),  # no option's text
    ("Answer: A. Oral amoxicillin for 10 days", "A"),
    ("Answer: (A) Oral amoxicillin for 10 days", "A"),
    ("Answer: A) Oral amoxicillin", "A"),  # its own option's text, cut short
    ("Answer: A. A 3-day course of oral ciprofloxacin", None),  # letter A, option B's text
    ("Answer: B. A 3-day course of oral ciprofloxacin\nExplanation: short courses suffice.", "B"),
    ("Answer: B", "B"),
])
def test_letter_counts_only_with_its_own_options_text(output, expected):
    assert parse_answer(output, COURSE) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: C. Culex mosquito", None),  # letter C, option B's text
    ("C. Sandfly", None),
    ("Answer: B. Culex mosquitoes", "B"),  # a plural is still option B
    ("Answer: D. Sandfly (Phlebotomus)", "D"),  # words added
    ("Answer: B. Culx mosquito", "B"),  # misspelt
])
def test_letter_with_text_of_mcqa(output, expected):
    assert parse_answer(output, MCQA) == expected


def test_letter_keeps_its_text_shared_with_another_option():
    """One real MedMCQA item (dev 989) has the same text for C and D; its gold response says D."""
    record = Record(**{**MCQA.to_dict(), "options": ["Aedes mosquito", "Culex mosquito", "Sandfly", "Sandfly"],
                       "answer": "D"})
    assert parse_answer(response(record), record) == "D"
    assert parse_answer("Answer: C. Sandfly", record) == "C"
    assert parse_answer("Answer: Sandfly", record) == "C"  # text alone: the first option with it


@pytest.mark.parametrize("output, expected", [
    ("The answer is C", "C"),
    ("The answer is C.", "C"),
    ("answer is (C)", "C"),
    ("The correct answer is: C. Anopheles mosquito", "C"),
    ("The correct answer is:\nC. Anopheles mosquito", "C"),
    ("Answer: The answer is C", "C"),
    ("I think the best answer is (C) Anopheles mosquito.", "C"),
    ("The answer is not C.", None),
])
def test_the_answer_is_a_letter(output, expected):
    assert parse_answer(output, MCQA) == expected


@pytest.mark.parametrize("output, expected", [
    ("The answer to the question is yes.", "yes"),
    ('The answer to the question "Is drug X useful?" is "No."', "no"),
    ("The answer is: Maybe", "maybe"),
    ("The answer to this question is:\n\nNo.", "no"),
])
def test_the_answer_is_a_pubmedqa_label(output, expected):
    assert parse_answer(output, PUBMED) == expected


@pytest.mark.parametrize("output, record", [
    ("Answer: B or C", MCQA),
    ("Answer: B, C", MCQA),
    ("Answer: B and D", MCQA),
    ("Answer: A. Aedes mosquito\n\nThe correct answer is D. Sandfly.", MCQA),
    ("B. Culex mosquito\nExplanation: The answer is D.", MCQA),
    ("Answer: yes or no", PUBMED),
    ("Answer: yes. Answer: maybe. Explanation: AIs may raise the risk.", PUBMED),
    ("Answer: yes\nExplanation: The answer is no, the effect was null.", PUBMED),
    ("The answer to the question is yes. The answer is no.", PUBMED),
])
def test_two_different_answers_are_no_answer(output, record):
    assert parse_answer(output, record) is None


@pytest.mark.parametrize("output, expected", [
    ("Answer: yes. Answer: yes. Explanation: Fast foods are a risk factor.", "yes"),
    ("Answer: Answer: no", "no"),
    ("B. Culex mosquito\n\nThe correct answer is B. Culex mosquito.", "B"),
])
def test_the_same_answer_repeated_counts(output, expected):
    record = PUBMED if expected in ("yes", "no") else MCQA
    assert parse_answer(output, record) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: The report does not mention a pneumothorax.", ""),
    ("Answer: does not mention", ""),
    ("Answer: Not mentioned in the report.", ""),
    ("Answer: No mention of a pneumothorax.", ""),
    ("Answer: The report does not say.", ""),
    ("Answer: The report doesn't state the size.", ""),
    ("Answer: This cannot be answered from the report.", ""),
    ("Answer: cannot be answered", ""),
    ("Answer: Unanswerable.", ""),
    ("Answer: not stated in the report\nExplanation: the report is silent.", ""),
    ("Answer: Answer: a 9 mm nodule", "a 9 mm nodule"),
    ("Answer: a 9 mm nodule\nExplanation: the report does not mention growth.", "a 9 mm nodule"),
    ("Answer: No pneumothorax", "No pneumothorax"),  # a span that says "no" is an answer
    ("Answer: no mentionable change", "no mentionable change"),
    # the instruction echoed: a span "or" the unanswerable phrase is no answer
    ("Answer: a short span copied from the radiology report, or 'not stated in the report'", None),
    ("Answer: a 9 mm nodule or not stated in the report", None),
])
def test_parse_radqa_unanswerable_and_echoes(output, expected):
    assert parse_answer(output, RADQA) == expected
